"""An instance ``ddns init`` makes, served in a thread, and the loopback clients that talk to it.

What the tests (through tests/conftest.py, which re-exports every name for
them) and the benches share: free loopback ports, ``Instance`` and its CLI,
``start_serving`` / ``serving`` (``ddns serve`` in a thread), ``http``,
``query`` (a DNS question to a named), ``read_reply``, ``wait_until``, and
``require`` (a tool missing fails the test or the bench, never skips it).
"""
from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import dns.message
import dns.query
import dns.rdatatype
import pytest

from ddns import cli, cli_serve, config as configmod
from ddns.service import Service


REQUIRED_TOOLS = ("named", "rndc", "rndc-confgen", "named-checkzone", "git", "curl")


def require(*tools: str) -> None:
    """Fail (not skip) when a tool the test needs is missing."""
    missing = [t for t in tools if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        pytest.fail(f"required tools missing: {', '.join(missing)} (install them; see .ci/run)")


def port_free(port: int) -> bool:
    """Whether PORT on 127.0.0.1 is free for both TCP and UDP now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


_used_ports: set[int] = set()


# Below Linux's ephemeral range (32768-60999): a port there can be taken by any
# outgoing connection between the check and the bind.
PORT_RANGE = (20000, 32767)


def port_range(environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """PORT_RANGE, or this pytest-xdist worker's own slice of it: a port one worker checked as free could
    otherwise be bound by another worker's server before this one binds it (once seen: "Address already
    in use"). Outside xdist (serial runs, benches) the whole range."""
    worker, count = environ.get("PYTEST_XDIST_WORKER", ""), environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(worker[2:]) < int(count)):
        return PORT_RANGE
    low, high = PORT_RANGE
    width = (high - low + 1) // int(count)
    start = low + int(worker[2:]) * width
    return start, start + width - 1


def free_port() -> int:
    """A loopback port free for both TCP and UDP, not handed out before in this run."""
    low, high = port_range()
    for _ in range(1000):
        port = random.randint(low, high)
        if port not in _used_ports and port_free(port):
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def tree_records(zone_dir: Path) -> str:
    """The dynamic records of a zone directory as one sorted text (its shard files, or the old dynamic.records)."""
    from ddns import shards, zones
    return zones.format_dynamic(shards.parse_shards(shards.record_files(zone_dir)))


@dataclass
class Instance:
    """An instance made by ``ddns init`` in a temp dir (named not started)."""

    dir: Path
    config_path: Path
    http_port: int
    dns_port: int
    rndc_port: int
    zone: str = "dyn.example.test"
    update_port: int = 0  # the RFC 2136 listener's (0: none)

    @property
    def config(self) -> configmod.Config:
        return configmod.load(self.config_path, environ={})

    @property
    def repo(self) -> Path:
        return self.dir / "zones"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cli(self, *args: str, stdin: str = "") -> CliResult:
        """Run ``ddns -c CONFIG ARGS`` in this process."""
        out, err = io.StringIO(), io.StringIO()
        env = cli.Env(stdout=out, stderr=err, stdin=io.StringIO(stdin), environ={}, cwd=self.dir)
        code = cli.main(["-c", str(self.config_path), *args], env)
        return CliResult(code, out.getvalue(), err.getvalue())

    def open_service(self) -> Service:
        return Service.open(self.config)

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.repo), *args], check=True, capture_output=True, text=True).stdout

    def records(self, zone: str, rev: str = "HEAD", repo: Path | None = None) -> str:
        """ZONE's dynamic records at REV as one sorted text: the lines of all its shards (or its old dynamic.records)."""
        from ddns import gitops, zones
        files = {p[len(zone) + 1:]: b.decode() for _, p, b in gitops.tree_files(repo or self.repo, rev, f"{zone}/")}
        return zones.format_dynamic(gitops.zone_records_in(files))

    def tree_records(self, zone: str) -> str:
        """ZONE's dynamic records in the working tree as one sorted text (all its shard files)."""
        return tree_records(self.repo / zone)

    def commit_count(self) -> int:
        return int(self.git("rev-list", "--count", "HEAD").strip())

    def dig(self, name: str, rtype: str = "A") -> list[str]:
        """What named serves for NAME (addresses as text; [] for none)."""
        return query(self.dns_port, name, rtype)

    def served_serial(self) -> int | None:
        answers = query(self.dns_port, self.zone, "SOA")
        return int(answers[0].split()[2]) if answers else None

    def add_user(self, name: str = "alice", admin: bool = False) -> None:
        args = ["user", "add", name, "--password-stdin"] + (["--admin"] if admin else [])
        r = self.cli(*args, stdin="pw-" + name + "\n")
        assert r.code == 0, r.err

    def add_host(self, fqdn: str, owner: str = "alice") -> str:
        """Register FQDN (creating OWNER if needed); returns its secret."""
        if owner not in {u["name"] for u in self.cli("user", "list", "--json").json()}:
            self.add_user(owner)
        r = self.cli("host", "add", fqdn, "--owner", owner, "--json")
        assert r.code == 0, r.err
        return r.json()["secret"]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll PREDICATE until it returns something true; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pushed_upstream(instance: Instance) -> None:
    """Wait until the service pushed all its commits to the upstream admins clone (its push is deferred)."""
    head = instance.git("rev-parse", "HEAD").strip()
    upstream = ["git", "-C", str(instance.dir / "zones.git"), "rev-parse", "main"]
    wait_until(lambda: subprocess.run(upstream, capture_output=True, text=True).stdout.strip() == head, 15, 0.1,
               "the service's commits pushed upstream")


def read_reply(sock: socket.socket, limit: int = 1 << 20, complete=lambda reply: False) -> bytes:
    """What the server sends on SOCK until it closes, COMPLETE(reply) says the answer is whole, or LIMIT bytes.

    A reset ends the reply too (a server may refuse and close before reading a
    whole request); a timeout raises socket.timeout.
    """
    reply = b""
    while len(reply) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        reply += chunk
        if not chunk or complete(reply):
            break
    return reply


def query(port: int, name: str, rtype: str = "A", timeout: float = 2.0) -> list[str]:
    q = dns.message.make_query(name if name.endswith(".") else name + ".", dns.rdatatype.from_text(rtype))
    response = dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset
                  if rrset.rdtype == dns.rdatatype.from_text(rtype))


@dataclass
class Running:
    """``ddns serve`` running in a thread of the test process (real sockets, real named)."""

    instance: Instance
    service: Service
    stop: threading.Event
    thread: threading.Thread
    log: io.StringIO = field(default_factory=io.StringIO)

    @property
    def url(self) -> str:
        return self.instance.url

    def request(self, path: str, auth: tuple[str, str] | None = None, headers: dict | None = None,
                method: str = "GET", data: bytes | None = None) -> tuple[int, str, dict]:
        """One HTTP request; returns (status, body, headers)."""
        return http(self.url + path, auth, headers, method, data)

    def update(self, user: str, secret: str, query_string: str = "", **headers) -> tuple[int, str]:
        status, body, _ = self.request("/nic/update" + (("?" + query_string) if query_string else ""),
                                       auth=(user, secret), headers=headers or None)
        return status, body


def http(url: str, auth: tuple[str, str] | None = None, headers: dict | None = None, method: str = "GET",
         data: bytes | None = None, timeout: float = 30) -> tuple[int, str, dict]:
    req = urllib.request.Request(url, data=data, method=method)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def start_serving(instance: Instance, overrides: dict | None = None) -> Running:
    """Run cli_serve.serve (managed named included) in a thread; wait until ready."""
    cfg = configmod.load(instance.config_path, environ={}, overrides=overrides)
    ready = threading.Event()
    stop = threading.Event()
    holder: dict = {}
    log = io.StringIO()

    def on_ready(service: Service) -> None:
        holder["service"] = service
        ready.set()

    def run() -> None:
        try:
            cli_serve.serve(cfg, cli.Env(stdout=log, stderr=log, environ={}), ready=on_ready, stop_event=stop)
        except BaseException as exc:  # surfaced by the wait below
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(60) or "error" in holder:
        stop.set()
        raise RuntimeError(f"serve did not start: {holder.get('error')}\n{log.getvalue()}")
    return Running(instance, holder["service"], stop, thread, log)


@contextmanager
def serving(inst: Instance, overrides: dict | None = None):
    """``ddns serve`` (named included) in a thread, always stopped at the end."""
    r = start_serving(inst, overrides)
    try:
        yield r
    finally:
        r.stop.set()
        r.thread.join(30)
        assert not r.thread.is_alive(), "serve did not stop"
