"""Thin wrappers around BIND: rndc, named-checkzone, SOA queries, and a
managed private ``named``.

``rndc reload ZONE`` answers 0 even when the file is broken, so the only
proof that a zone is published is the SOA serial named serves.
"""
from __future__ import annotations

import base64
import ctypes
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from . import errors, keyconfigs, namedconf, private
from .rndc import RndcClient, RndcError, RndcKey


class BindError(errors.Unavailable):
    """rndc, named or named-checkzone failed."""


@dataclass(frozen=True)
class Rndc:
    """Commands on one named control channel (see ddns.rndc: no process per call)."""

    server: str
    port: int
    key_file: Path

    def run(self, *args: str, timeout: float = 10.0) -> str:
        try:
            client = RndcClient(self.server, self.port, _read_key(self.key_file), timeout)
            return client.command(" ".join(args))
        except (RndcError, OSError) as exc:
            raise BindError(f"rndc {' '.join(args)}: {exc}") from exc

    def reload(self, zone: str, timeout: float = 10.0) -> None:
        self.run("reload", zone, timeout=timeout)

    def reconfig(self, timeout: float = 10.0) -> None:
        self.run("reconfig", timeout=timeout)

    def status(self) -> bool:
        try:
            self.run("status", timeout=3.0)
            return True
        except BindError:
            return False


_keys: dict[Path, tuple[tuple[int, int], RndcKey]] = {}


def _read_key(path: Path) -> RndcKey:
    """The key in PATH, parsed again only when the file changes."""
    st = path.stat()
    stamp = (st.st_ino, st.st_mtime_ns)
    cached = _keys.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, RndcKey.from_file(path))
        _keys[path] = cached
    return cached[1]


def served_serial(zone: str, server: str, port: int, timeout: float = 1.0) -> int | None:
    """The SOA serial SERVER answers for ZONE, or None (no answer, SERVFAIL, ...)."""
    query = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
    query.flags &= ~dns.flags.RD
    try:
        response = dns.query.udp(query, server, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset[0].serial
    return None


def served_records(name: str, rtype: str, server: str, port: int, timeout: float = 1.0) -> list[str] | None:
    """The RTYPE records SERVER answers for NAME ([] for none), or None when it does not answer."""
    query = dns.message.make_query(name + ".", dns.rdatatype.from_text(rtype))
    query.flags &= ~dns.flags.RD
    try:
        response = dns.query.udp(query, server, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    return sorted(r.to_text() for rrset in response.answer if rrset.rdtype == query.question[0].rdtype for r in rrset)


def check_zone(zone: str, path: Path, binary: str = "named-checkzone") -> str | None:
    """Run named-checkzone; None when the file is valid, else its message."""
    try:
        proc = subprocess.run([binary, "-k", "fail", "-n", "fail", "-i", "local", zone, str(path)],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BindError(f"named-checkzone: {exc}") from exc
    if proc.returncode == 0:
        return None
    return (proc.stdout + proc.stderr).strip() or f"named-checkzone exited {proc.returncode}"


def zones_conf(zone_files: dict[str, Path], update_key: str | None = None) -> str:
    """The named.conf fragment declaring each zone as primary from its file.

    With UPDATE_KEY (the publisher's TSIG key name), named takes RFC 2136
    updates of the zones signed with it (and keeps a journal of them).
    """
    policy = f' update-policy {{ grant "{update_key}" zonesub ANY; }};' if update_key else ""
    parts = [f'zone "{zone}" {{ type primary; file "{path}";{policy} }};\n' for zone, path in sorted(zone_files.items())]
    return "# written by ddns; do not edit\n" + "".join(parts)


def named_conf(bind_dir: Path, zones_conf_path: Path, listen: str, port: int, rndc_port: int,
               publisher_key: Path | None = None, transfer_key: Path | None = None,
               notify: str = "explicit", also_notify: Iterable[namedconf.Endpoint] = (), full_loads: bool = False) -> str:
    """named.conf of a private, authoritative-only instance: the hidden primary of the secondaries.

    PUBLISHER_KEY: the TSIG key file the publisher signs updates and zone
    transfers with; TRANSFER_KEY: the one secondaries transfer zones with.
    Only these two may transfer zones; FULL_LOADS: bind.publish is reload (``namedconf.primary_options``).
    """
    d = bind_dir.resolve()
    keys = [k for k in (publisher_key, transfer_key) if k is not None]
    key_include = "".join(f'include "{k.resolve()}";\n' for k in keys)
    primary = namedconf.primary_options(notify, also_notify, [key_name(k) for k in keys], full_loads)
    return f"""{NAMED_CONF_HEADER}
include "{d}/rndc.key";
{key_include}controls {{ inet 127.0.0.1 port {rndc_port} allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ {listen}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
{primary}}};
include "{zones_conf_path.resolve()}";
"""


NAMED_CONF_HEADER = "# written by ddns init for a private named"
PUBLISHER_KEY_NAME = "ddns-publisher"
TRANSFER_KEY_NAME = "ddns-transfer"


def key_name(path: Path) -> str:
    """The name of the key in the key file PATH (BindError when it has none)."""
    try:
        return RndcKey.from_file(path).name
    except (RndcError, OSError, ValueError) as exc:
        raise BindError(f"{path}: {exc}") from exc


def create_publisher_key(path: Path, name: str = PUBLISHER_KEY_NAME) -> Path:
    """A new TSIG key NAME (the publisher's updates, secondaries' transfers), as ``tsig-keygen`` writes it,
    readable by this user only."""
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    private.write_new(path, keyconfigs.key_file(name, "hmac-sha256", secret))
    return path


def create_rndc_key(bind_dir: Path) -> Path:
    key = bind_dir / "rndc.key"
    subprocess.run(["rndc-confgen", "-a", "-A", "hmac-sha256", "-k", "rndc-key", "-c", str(key)],
                   check=True, capture_output=True)
    return key


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _dies_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when its parent dies (Linux), even of SIGKILL.

    prctl is looked up before the fork, so the child only makes the call. The
    signal comes when the *thread* that started the child ends: start named
    from a thread that lives as long as the service.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the call: nobody would stop us
            os._exit(1)
    return preexec


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie is dead; its parent just has not reaped it
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class ManagedNamed:
    """A private named process: started before the service, stopped after, dies with it."""

    def __init__(self, bind_dir: Path, rndc: Rndc, binary: str = "named"):
        self.bind_dir = bind_dir
        self.rndc = rndc
        self.binary = binary
        self.process: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.bind_dir / "named.conf"

    def start(self, timeout: float = 15.0) -> None:
        """Start named and wait until it answers rndc (``launch``, then ``wait_ready``)."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start named without waiting for it; one left over from this instance (its parent was killed) is replaced first.

        Call it from the thread that stays (the main one): named dies with the thread that started it.
        """
        leftover = self.leftover()
        if leftover is not None:
            self._stop_pid(leftover)
        if self.rndc.status():
            raise BindError(f"a named that this instance did not start answers on rndc port {self.rndc.port} "
                            f"(not the one in {self.bind_dir / 'named.pid'}): stop it or choose another bind.rndc_port")
        log = open(self.bind_dir / "named.log", "ab")
        self.process = subprocess.Popen([self.binary, "-g", "-c", str(self.conf)],
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=_dies_with(os.getpid()))
        log.close()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the launched named answers rndc; BindError (named stopped) when it exits or does not in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BindError(f"named exited with {self.process.returncode}; see {self.bind_dir / 'named.log'}")
            if self.rndc.status():
                return
            time.sleep(0.05)
        self.stop()
        raise BindError("named did not start in time")

    def leftover(self) -> int | None:
        """The pid of a running named started with this instance's named.conf (from its pid file), if any."""
        try:
            pid = int((self.bind_dir / "named.pid").read_text().strip())
            proc = Path(f"/proc/{pid}")
            args = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            cwd = Path(os.readlink(proc / "cwd"))
        except (OSError, ValueError):
            return None
        if not args or "named" not in Path(args[0]).name or "-c" not in args[:-1]:
            return None
        conf = Path(args[args.index("-c") + 1])
        if (cwd / conf).resolve() != self.conf.resolve() or not _is_alive(pid):
            return None
        return pid

    @staticmethod
    def _stop_pid(pid: int, timeout: float = 10.0) -> None:
        """Stop a named that is not our child (SIGTERM, then SIGKILL) and wait until it is gone."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _is_alive(pid):
                    return
                time.sleep(0.05)
        raise BindError(f"the named left over from an earlier run (pid {pid}) does not stop")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "ManagedNamed":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

