"""A real PostgreSQL on loopback, in a temp dir, for the store and cluster tests.

Debian's ``postgresql`` package gives the server binaries (initdb, pg_ctl)
under /usr/lib/postgresql/VERSION/bin; nothing runs as a system service:
each server is initdb'd into its own directory and listens on 127.0.0.1 at a
high port, with its socket in that directory. initdb refuses to run as root,
so as root the server runs as the ``postgres`` user the package creates.
Missing binaries make the tests fail, never skip.

``start_postgres`` / ``stop_postgres`` run one (tests/pgserver.py's
fixtures, a test that stops its own server for a while, bench_cluster).
"""
from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .instance import free_port

_SUPERUSER = "postgres"
_databases = itertools.count(1)


def _bin(name: str) -> str:
    """The server binary NAME: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError(f"PostgreSQL server binary {name} missing (install Debian's postgresql; see .ci/run)")
    return candidates[-1]


def _as_server_user(args: list[str]) -> list[str]:
    """ARGS run as the postgres user when we are root (initdb and postgres refuse root)."""
    if os.getuid() != 0:
        return args
    return ["runuser", "-u", _SUPERUSER, "--", *args]


@dataclass
class PgServer:
    """A running server: its directory, port and an URL builder."""

    directory: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        command = _as_server_user([_bin("pg_ctl"), "-D", str(self.directory / "data"), *args])
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {result.stderr or result.stdout}\n"
                               f"{_tail(self.directory / 'server.log')}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-l", str(self.directory / "server.log"), "-w", "-t", "60", "start", "-o", options)

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_postgres(directory: Path | None = None) -> PgServer:
    """initdb a new cluster in DIRECTORY (default: a new temp dir) and start it on a free loopback port.

    As root the directory must be reachable by the postgres user, which
    pytest's own temp dirs (mode 0700) are not; the default is therefore a
    directory of its own under the system temp dir.
    """
    directory = Path(directory or tempfile.mkdtemp(prefix="ddns-pg-"))
    directory.chmod(0o755)
    if os.getuid() == 0:
        shutil.chown(directory, _SUPERUSER)
    result = subprocess.run(_as_server_user([_bin("initdb"), "-D", str(directory / "data"), "-A", "trust",
                                             "-U", _SUPERUSER, "-E", "UTF8", "--no-sync"]),
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed: {result.stderr or result.stdout}")
    server = PgServer(directory, free_port())
    server.start()
    return server


def stop_postgres(server: PgServer) -> None:
    """Stop SERVER (if it runs) and remove its directory."""
    try:
        server.stop()
    except RuntimeError:
        pass
    shutil.rmtree(server.directory, ignore_errors=True)
