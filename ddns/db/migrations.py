"""Numbered schema migrations, recorded in the table ``schema_version``.

``MIGRATIONS`` is ordered; each ``Migration`` has its script for each engine
(the PostgreSQL one of a script written for SQLite comes from
``dialect.postgres_ddl``; a migration for one engine only leaves the other
""). A new one is appended with the next version. Opening the store
upgrades an older database in place (``upgrade``), in one write
transaction, so the quickstart needs no step of its own; ``ddns db upgrade``
does the same on purpose (before starting several nodes, say). A database
newer than the code is refused (``SchemaTooNew``): this ddns would not know
its tables.

Version 1 is the schema of the first release. A database of that release
has no ``schema_version``: it is recognised by its ``users`` table, given
the columns the first release added to its tables as it went
(``LEGACY_COLUMNS``) and the tables it may lack, and recorded as version 1.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from .. import errors
from .base import Conn, Database
from .dialect import postgres_ddl, statements

V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    token_hash TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    sub TEXT,
    email TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    groups TEXT NOT NULL DEFAULT '[]',
    last_login REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_sub ON users(sub);
CREATE TABLE IF NOT EXISTS domains (
    zone TEXT PRIMARY KEY,
    created REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    public INTEGER NOT NULL DEFAULT 1,
    groups TEXT NOT NULL DEFAULT '[]'
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
    blocked INTEGER NOT NULL DEFAULT 0,
    principal TEXT
);
CREATE INDEX IF NOT EXISTS hosts_owner ON hosts(owner_id);
CREATE UNIQUE INDEX IF NOT EXISTS hosts_principal ON hosts(principal);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    seen REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS tsig_keys (
    name TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    secret TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('host', 'acme', 'zone')),
    host TEXT REFERENCES hosts(fqdn) ON DELETE CASCADE,
    zone TEXT,
    rules TEXT NOT NULL DEFAULT '[]',
    owner_id INTEGER REFERENCES users(id),
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tsig_keys_host ON tsig_keys(host);
"""

# Columns the first release added to its tables as it went: (table, column, definition), SQLite only.
# (SQLite cannot add a UNIQUE column; users.sub has a unique index instead.)
LEGACY_COLUMNS = (
    ("users", "sub", "TEXT"),
    ("users", "email", "TEXT NOT NULL DEFAULT ''"),
    ("users", "display_name", "TEXT NOT NULL DEFAULT ''"),
    ("users", "groups", "TEXT NOT NULL DEFAULT '[]'"),
    ("users", "last_login", "REAL"),
    ("domains", "public", "INTEGER NOT NULL DEFAULT 1"),
    ("domains", "groups", "TEXT NOT NULL DEFAULT '[]'"),
    ("hosts", "principal", "TEXT"),
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str    # its script for SQLite ("" : nothing to do there)
    postgres: str  # its script for PostgreSQL ("" : nothing to do there)

    def script(self, dialect: str) -> str:
        return self.sqlite if dialect == "sqlite" else self.postgres


# The queue of a cluster's web nodes to its publisher (ddns.cluster.changes); a cluster runs on PostgreSQL only.
CHANGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    id bigserial PRIMARY KEY,
    created timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL,
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done')),
    outcome jsonb
);
CREATE INDEX IF NOT EXISTS changes_queued ON changes (id) WHERE state = 'queued';
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the first release's schema", V1_SCHEMA, postgres_ddl(V1_SCHEMA)),
    Migration(2, "the cluster's changes table", "", CHANGES_SCHEMA),
)
LATEST = MIGRATIONS[-1].version

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, " \
                "name TEXT NOT NULL, applied REAL NOT NULL)"


class SchemaTooNew(errors.Invalid):
    """The database was upgraded by a newer ddns: this one does not know its schema."""

    def __init__(self, found: int):
        super().__init__(f"database schema version {found} is newer than this ddns ({LATEST}); upgrade ddns")
        self.found = found


def current_version(db: Database) -> int:
    """The database's schema version: 0 when it has no tables of ddns, 1 for the first release's."""
    tables = set(db.tables())
    if "schema_version" in tables:
        return db.execute("SELECT coalesce(max(version), 0) AS v FROM schema_version").fetchone()["v"]
    return 1 if "users" in tables else 0


def check(db: Database) -> int:
    """The database's version; SchemaTooNew when it is newer than the code."""
    found = current_version(db)
    if found > LATEST:
        raise SchemaTooNew(found)
    return found


def upgrade(db: Database, now: float | None = None) -> list[Migration]:
    """Bring DB to LATEST in one transaction; the migrations applied ([] when it was current)."""
    if check(db) == LATEST and "schema_version" in db.tables():
        return []
    applied = []
    with db.tx() as conn:
        tables = set(db.tables())  # again, inside the transaction: another process may have upgraded it
        if "schema_version" not in tables:
            conn.execute(VERSION_TABLE if db.dialect == "sqlite" else postgres_ddl(VERSION_TABLE))
            if "users" in tables:
                _adopt_first_release(db, conn, now)
                applied.append(MIGRATIONS[0])
        found = conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_version").fetchone()["v"]
        if found > LATEST:
            raise SchemaTooNew(found)
        for migration in MIGRATIONS:
            if migration.version > found:
                _apply(db, conn, migration, now)
                applied.append(migration)
    return applied


def _adopt_first_release(db: Database, conn: Conn, now: float | None) -> None:
    """A database of the first release (SQLite, no schema_version): its late columns and tables, then version 1."""
    for table, column, definition in LEGACY_COLUMNS:
        columns = db.columns(table)
        if columns and column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    _apply(db, conn, MIGRATIONS[0], now)


def _apply(db: Database, conn: Conn, migration: Migration, now: float | None) -> None:
    for statement in statements(migration.script(db.dialect)):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version(version, name, applied) VALUES (?,?,?)",
                 (migration.version, migration.name, time.time() if now is None else now))


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)


def tables_in_order(dialect: str) -> list[str]:
    """The tables the migrations make on DIALECT, in the order made (a table references only earlier ones)."""
    names: list[str] = []
    for migration in MIGRATIONS:
        names += [n for n in _CREATE_TABLE.findall(migration.script(dialect)) if n not in names]
    return names
