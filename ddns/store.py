"""The store: users, domains, hosts, secret hashes and update metadata (SQLite).

DNS data is not here -- it lives in the zones repository. Secrets are never
stored, only their bcrypt hashes.
"""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    token_hash TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS domains (
    zone TEXT PRIMARY KEY,
    created REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS hosts (
    fqdn TEXT PRIMARY KEY,
    zone TEXT NOT NULL REFERENCES domains(zone),
    owner_id INTEGER NOT NULL REFERENCES users(id),
    secret_hash TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_update REAL,
    last_client TEXT,
    last_agent TEXT,
    last_tls INTEGER,
    auth_faults INTEGER NOT NULL DEFAULT 0,
    client_faults INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hosts_owner ON hosts(owner_id);
"""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str | None
    token_hash: str | None
    is_admin: bool


@dataclass(frozen=True)
class LastSeen:
    """A host's last update request: when, client address, user agent, over TLS or not."""

    when: float
    client: str
    agent: str
    tls: bool


@dataclass(frozen=True)
class Host:
    fqdn: str
    zone: str
    owner_id: int
    secret_hash: str
    comment: str
    created: float
    last_update: float | None
    last_client: str | None
    last_agent: str | None
    last_tls: bool | None
    auth_faults: int
    client_faults: int
    blocked: bool

    @property
    def label(self) -> str:
        return self.fqdn[: -len(self.zone) - 1]


class Conflict(ValueError):
    """The object exists already."""


class NotFound(LookupError):
    """No such object."""


class Store:
    """SQLite in WAL mode, one connection per thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, *exc) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> "Store._Tx":
        return Store._Tx(self._db())

    # users
    def add_user(self, name: str, password_hash: str | None, is_admin: bool, now: float) -> User:
        try:
            with self._tx() as db:
                db.execute("INSERT INTO users(name, password_hash, is_admin, created) VALUES (?,?,?,?)",
                           (name, password_hash, int(is_admin), now))
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"user {name} exists") from exc
        return self.user(name)

    def user(self, name: str) -> User:
        row = self._db().execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no user {name}")
        return _user(row)

    def user_by_id(self, user_id: int) -> User:
        row = self._db().execute("SELECT * FROM users WHERE id=?", (user_id,)).fetchone()
        if row is None:
            raise NotFound(f"no user #{user_id}")
        return _user(row)

    def users(self) -> list[User]:
        return [_user(r) for r in self._db().execute("SELECT * FROM users ORDER BY name")]

    def set_user_token(self, name: str, token_hash: str) -> None:
        with self._tx() as db:
            if db.execute("UPDATE users SET token_hash=? WHERE name=?", (token_hash, name)).rowcount == 0:
                raise NotFound(f"no user {name}")

    def set_user_password(self, name: str, password_hash: str) -> None:
        with self._tx() as db:
            if db.execute("UPDATE users SET password_hash=? WHERE name=?", (password_hash, name)).rowcount == 0:
                raise NotFound(f"no user {name}")

    # domains
    def add_domain(self, zone: str, now: float) -> None:
        """Open ZONE for hosts (again, if a merge had removed it)."""
        with self._tx() as db:
            if db.execute("UPDATE domains SET active=1 WHERE zone=? AND active=0", (zone,)).rowcount:
                return
            try:
                db.execute("INSERT INTO domains(zone, created) VALUES (?,?)", (zone, now))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"domain {zone} exists") from exc

    def deactivate_domain(self, zone: str) -> None:
        """The zone left the repository: hide it; its hosts stay, unserved, until it returns."""
        with self._tx() as db:
            db.execute("UPDATE domains SET active=0 WHERE zone=?", (zone,))

    def domains(self) -> list[str]:
        """Zones open for hosts."""
        return [r[0] for r in self._db().execute("SELECT zone FROM domains WHERE active=1 ORDER BY zone")]

    def host_counts(self) -> dict[str, int]:
        return dict(self._db().execute("SELECT zone, count(*) FROM hosts GROUP BY zone").fetchall())

    # hosts
    def add_host(self, fqdn: str, zone: str, owner_id: int, secret_hash: str, now: float, comment: str = "") -> Host:
        try:
            with self._tx() as db:
                db.execute("INSERT INTO hosts(fqdn, zone, owner_id, secret_hash, comment, created) VALUES (?,?,?,?,?,?)",
                           (fqdn, zone, owner_id, secret_hash, comment, now))
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"host {fqdn} exists") from exc
        return self.host(fqdn)

    def host(self, fqdn: str) -> Host:
        row = self._db().execute("SELECT * FROM hosts WHERE fqdn=?", (fqdn,)).fetchone()
        if row is None:
            raise NotFound(f"no host {fqdn}")
        return _host(row)

    def find_host(self, fqdn: str) -> Host | None:
        row = self._db().execute("SELECT * FROM hosts WHERE fqdn=?", (fqdn,)).fetchone()
        return _host(row) if row else None

    def hosts(self, owner_id: int | None = None) -> list[Host]:
        if owner_id is None:
            rows = self._db().execute("SELECT * FROM hosts ORDER BY fqdn")
        else:
            rows = self._db().execute("SELECT * FROM hosts WHERE owner_id=? ORDER BY fqdn", (owner_id,))
        return [_host(r) for r in rows]

    def set_secret_hash(self, fqdn: str, secret_hash: str) -> None:
        with self._tx() as db:
            if db.execute("UPDATE hosts SET secret_hash=?, auth_faults=0, blocked=0 WHERE fqdn=?",
                          (secret_hash, fqdn)).rowcount == 0:
                raise NotFound(f"no host {fqdn}")

    def delete_host(self, fqdn: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM hosts WHERE fqdn=?", (fqdn,)).rowcount == 0:
                raise NotFound(f"no host {fqdn}")

    def record_updates(self, seen: dict[str, "LastSeen"]) -> None:
        """Store when, from where and with what each host last updated (one transaction)."""
        with self._tx() as db:
            db.executemany("UPDATE hosts SET last_update=?, last_client=?, last_agent=?, last_tls=? WHERE fqdn=?",
                           [(e.when, e.client, e.agent, int(e.tls), fqdn) for fqdn, e in seen.items()])

    def count_fault(self, fqdn: str, kind: str) -> None:
        column = {"auth": "auth_faults", "client": "client_faults"}[kind]
        with self._tx() as db:
            db.execute(f"UPDATE hosts SET {column}={column}+1 WHERE fqdn=?", (fqdn,))

    def set_blocked(self, fqdn: str, blocked: bool) -> None:
        with self._tx() as db:
            if db.execute("UPDATE hosts SET blocked=? WHERE fqdn=?", (int(blocked), fqdn)).rowcount == 0:
                raise NotFound(f"no host {fqdn}")


def _user(row: sqlite3.Row) -> User:
    return User(row["id"], row["name"], row["password_hash"], row["token_hash"], bool(row["is_admin"]))


def _host(row: sqlite3.Row) -> Host:
    return Host(
        fqdn=row["fqdn"], zone=row["zone"], owner_id=row["owner_id"], secret_hash=row["secret_hash"],
        comment=row["comment"], created=row["created"], last_update=row["last_update"],
        last_client=row["last_client"], last_agent=row["last_agent"],
        last_tls=None if row["last_tls"] is None else bool(row["last_tls"]),
        auth_faults=row["auth_faults"], client_faults=row["client_faults"], blocked=bool(row["blocked"]),
    )
