"""Thin wrappers around BIND: rndc, named-checkzone, SOA queries, and a
managed private ``named``.

``rndc reload ZONE`` answers 0 even when the file is broken, so the only
proof that a zone is published is the SOA serial named serves.
"""
from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from .rndc import RndcClient, RndcError, RndcKey


class BindError(RuntimeError):
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


def zones_conf(zone_files: dict[str, Path]) -> str:
    """The named.conf fragment declaring each zone as primary from its file."""
    parts = [f'zone "{zone}" {{ type primary; file "{path}"; }};\n' for zone, path in sorted(zone_files.items())]
    return "# written by ddns; do not edit\n" + "".join(parts)


def named_conf(bind_dir: Path, zones_conf_path: Path, listen: str, port: int, rndc_port: int) -> str:
    """named.conf of a private, loopback-only, authoritative-only instance."""
    d = bind_dir.resolve()
    return f"""# written by ddns init for a private named
include "{d}/rndc.key";
controls {{ inet 127.0.0.1 port {rndc_port} allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ {listen}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ 127.0.0.1; }};
}};
include "{zones_conf_path.resolve()}";
"""


def create_rndc_key(bind_dir: Path) -> Path:
    key = bind_dir / "rndc.key"
    subprocess.run(["rndc-confgen", "-a", "-A", "hmac-sha256", "-k", "rndc-key", "-c", str(key)],
                   check=True, capture_output=True)
    return key


class ManagedNamed:
    """A private named process: started before the service, stopped after."""

    def __init__(self, bind_dir: Path, rndc: Rndc, binary: str = "named"):
        self.bind_dir = bind_dir
        self.rndc = rndc
        self.binary = binary
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        if self.rndc.status():
            raise BindError(f"a named already answers on rndc port {self.rndc.port}")
        log = open(self.bind_dir / "named.log", "ab")
        self.process = subprocess.Popen([self.binary, "-g", "-c", str(self.bind_dir / "named.conf")],
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BindError(f"named exited with {self.process.returncode}; see {self.bind_dir / 'named.log'}")
            if self.rndc.status():
                return
            time.sleep(0.05)
        self.stop()
        raise BindError("named did not start in time")

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

