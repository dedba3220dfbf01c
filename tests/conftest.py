"""Fixtures that run the real parts: a private named on loopback high ports,
a real zones Git repository per test, the real app over a real socket.

Missing tools make tests FAIL (never skip): CI must install them.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ddns import cli
from testkit.instance import (REQUIRED_TOOLS, CliResult, Instance, Running, free_port, http, port_free,
                              pushed_upstream, query, read_reply, require, serving, start_serving, tree_records,
                              wait_until)
from testkit.processes import stop_process

# Made in testkit (the benches use them too); the tests import them from here, as before.
__all__ = ["REQUIRED_TOOLS", "CliResult", "Instance", "Running", "free_port", "http", "port_free", "pushed_upstream",
           "query", "read_reply", "require", "serving", "start_serving", "tree_records", "wait_until"]

class Crashes(logging.Handler):
    """Log records with an exception attached, from any logger: a hostile-input run must leave none."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(f"{record.name}: {record.getMessage()} ({record.exc_info[0].__name__})")


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    """A fresh instance (config, SQLite, zones repo, named.conf) with free ports.

    bcrypt cost 4 keeps the suite fast; the cost is a setting, not a code path.
    """
    require(*REQUIRED_TOOLS)
    http_port, dns_port, rndc_port, update_port = free_port(), free_port(), free_port(), free_port()
    directory = tmp_path / "inst"
    cli.init_instance(directory, http_port, dns_port, rndc_port, update_port=update_port,
                      extra={"security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False})
    return Instance(directory, directory / "ddns.toml", http_port, dns_port, rndc_port, update_port=update_port)


@contextmanager
def write_lock_held(path: Path):
    """Another connection holds the database's write lock until the block ends."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


@pytest.fixture
def serve(instance: Instance):
    """serve(overrides) -> Running: the instance served with OVERRIDES; every one started is stopped at the end."""
    started: list[Running] = []

    def start(overrides: dict | None = None) -> Running:
        r = start_serving(instance, overrides)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop.set()
        r.thread.join(30)
        assert not r.thread.is_alive(), "serve did not stop"


@pytest.fixture
def running(instance: Instance):
    """The instance served: named, publisher thread, web server on its port."""
    with serving(instance) as r:
        yield r


class ServeProcess:
    """``ddns serve`` as a separate process (for crash tests: SIGKILL it)."""

    def __init__(self, instance: Instance, log_path: Path):
        self.instance = instance
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ddns.cli", "-c", str(self.instance.config_path), "serve"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(Path(__file__).resolve().parent.parent))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ddns serve exited: {self.log_path.read_text()}")
            try:
                status, _, _ = http(self.instance.url + "/healthz", timeout=1)
                if status in (200, 503):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"ddns serve did not come up: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, 30)


def kill_named(instance: Instance) -> None:
    """SIGKILL the instance's named (after a SIGKILLed serve left it running)."""
    pid_file = instance.dir / "bind" / "named.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 9)
        except (ValueError, ProcessLookupError):
            pass


# ------------------------------------------------------------ OpenID Connect

OIDC_CLIENT = {"client_id": "ddns-web", "client_secret": "ddns-web-secret"}
OIDC_OTHER_CLIENT = {"client_id": "other-app", "client_secret": "other-app-secret"}
OIDC_USERS = [
    {"sub": "0a11ce00-0000-4000-8000-000000000001", "username": "alice", "password": "alice-pw",
     "email": "alice@example.org", "name": "Alice Liddell", "groups": ["staff"]},
    {"sub": "0b0b0000-0000-4000-8000-000000000002", "username": "bob", "password": "bob-pw",
     "email": "bob@example.org", "name": "Bob Builder", "groups": []},
    {"sub": "0ca10100-0000-4000-8000-000000000003", "username": "carol", "password": "carol-pw",
     "email": "carol@example.org", "name": "Carol Admin", "groups": ["ddns-admins"]},
]
RESTRICTED_ZONE = "staff.example.test"


@dataclass
class OidcPortal:
    """ddns serving with OpenID Connect login against a real provider (tests/oidc)."""

    running: Running
    idp: object  # oidc_provider.OidcProvider

    @property
    def url(self) -> str:
        return self.running.url


@contextmanager
def oidc_portal(instance: Instance, tmp_path: Path, overrides: dict | None = None):
    """The provider (a client for this instance plus another client) and the service using it.

    Users: alice (group staff), bob (no group), carol (group ddns-admins, hence admin).
    The zone RESTRICTED_ZONE is open to the group staff only.
    """
    from oidc_provider import OidcProvider

    callback = f"{instance.url}/login/callback"
    clients = [{**c, "redirect_uris": [callback], "post_logout_redirect_uris": [f"{instance.url}/login"]}
               for c in (OIDC_CLIENT, OIDC_OTHER_CLIENT)]
    idp = OidcProvider().start(tmp_path / "idp", free_port(), clients, OIDC_USERS)
    try:
        settings = {"oidc.enabled": True, "oidc.server_url": idp.server_url, "oidc.realm": idp.realm,
                    "oidc.client_id": OIDC_CLIENT["client_id"], "oidc.client_secret": OIDC_CLIENT["client_secret"],
                    "oidc.admin_groups": ["ddns-admins"], "oidc.button": "Log in with Example SSO",
                    "dyndns2.allow_loopback": True, **(overrides or {})}
        with serving(instance, settings) as running:
            running.service.add_domain(RESTRICTED_ZONE, actor="test")
            running.service.set_domain_access(RESTRICTED_ZONE, False, ["staff"])
            yield OidcPortal(running, idp)
    finally:
        idp.stop()
