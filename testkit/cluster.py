"""A cluster on one machine for the tests and the benchmark: web and publisher nodes as `ddns serve` processes.

A seed instance (``ddns init``: the shared bare upstream, the store, the zone)
and one directory per node: its own config with its own ports, its own clone
of the upstream (made at start), its own managed named (publishers). All
nodes share the upstream, the store and the PostgreSQL database of the
changes table (``store.url``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .instance import Instance, free_port, http, query
from ddns import cli, config as configmod
from ddns.gitrepo import parse_trailers

ROOT = Path(__file__).resolve().parent.parent
ZONE = "dyn.example.test"


class Node:
    """One `ddns serve --role ROLE` process of the cluster."""

    def __init__(self, name: str, role: str, directory: Path, http_port: int, dns_port: int):
        self.name, self.role, self.dir = name, role, directory
        self.http_port, self.dns_port = http_port, dns_port
        self.proc: subprocess.Popen | None = None
        self.log = directory / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ddns.cli", "-c", str(self.dir / "ddns.toml"), "serve",
                                          "--role", self.role], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=str(ROOT))

    def wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            if self.health() is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not come up: {self.log.read_text()[-3000:]}")

    def health(self) -> dict | None:
        try:
            status, body, _ = http(self.url + "/healthz", timeout=2)
        except OSError:
            return None
        return json.loads(body) if status in (200, 503) else None

    def active(self) -> bool:
        health = self.health()
        return bool(health and health.get("active"))

    def dig(self, name: str, rtype: str = "A") -> list[str]:
        return query(self.dns_port, name, rtype)

    def kill(self) -> None:
        """SIGKILL the serve process, then its named (which may outlive it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        pid_file = self.dir / "bind" / "named.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def make_seed(directory: Path, pg_url: str) -> Instance:
    """The instance ``ddns init`` makes for the cluster: the shared upstream, the zone, the store at PG_URL."""
    http_port, dns_port, rndc_port = free_port(), free_port(), free_port()
    cli.init_instance(directory, http_port, dns_port, rndc_port, update_port=0,
                      extra={"security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False,
                             "store.url": pg_url})
    return Instance(directory, directory / "ddns.toml", http_port, dns_port, rndc_port)


def make_node(seed: Instance, pg_url: str, name: str, role: str, lock_id: int, extra: dict | None = None) -> Node:
    """A node directory like ``ddns init`` makes (config, BIND), pointed at the seed's upstream and store."""
    directory = seed.dir.parent / name
    http_port, dns_port, rndc_port = free_port(), free_port(), free_port()
    cli.init_instance(directory, http_port, dns_port, rndc_port, update_port=0)
    shutil.rmtree(directory / "zones")  # the node clones the shared upstream at start
    shutil.rmtree(directory / "zones.git")
    (directory / "ddns.sqlite3").unlink()
    shared = seed.config
    values = {"http.port": http_port, "bind.port": dns_port, "bind.rndc_port": rndc_port, "dnsupdate.port": 0,
              "zones.upstream": str(seed.dir / "zones.git"), "zones.push_token": shared["zones.push_token"],
              "store.path": str(seed.dir / "ddns.sqlite3"), "store.url": pg_url, "cluster.lock_id": lock_id,
              "security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False,
              "cluster.takeover_seconds": 20.0, **(extra or {})}
    (directory / "ddns.toml").write_text(configmod.render_toml(values))
    return Node(name, role, directory, http_port, dns_port)


def upstream_trailers(seed: Instance) -> list:
    """The change records of every commit in the shared upstream, newest first (one list per commit)."""
    out = subprocess.run(["git", "-C", str(seed.dir / "zones.git"), "log", "-z", "--format=%B", "main"],
                         check=True, capture_output=True, text=True).stdout
    return [parse_trailers(message) for message in out.split("\x00") if message.strip()]


def change_ids_per_commit(seed: Instance) -> list[set[int]]:
    """Per upstream commit, the change ids its trailers record."""
    return [{c.change for c in commit if c.change is not None} for commit in upstream_trailers(seed)]
