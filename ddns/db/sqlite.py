"""The SQLite connector: one file in WAL mode, made 0600, one connection per thread.

Reads never wait for the write lock (WAL). A write transaction starts with
``BEGIN IMMEDIATE`` and waits up to ``BUSY_TIMEOUT`` seconds for the write
lock, or what ``wait_at_most`` set for the thread, then raises ``Busy``.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable

from .. import private
from .base import Busy, Cursor, Database, ForeignKeyViolation, IntegrityError, Params, UniqueViolation


def _neutral(exc: sqlite3.Error) -> Exception:
    """The neutral error for an sqlite3 one (itself when there is none)."""
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        if text.startswith("UNIQUE") or "PRIMARY KEY" in text:
            return UniqueViolation(text)
        if text.startswith("FOREIGN KEY"):
            return ForeignKeyViolation(text)
        return IntegrityError(text)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return Busy("the database is busy; try again in a moment")
    return exc


class SqliteConn:
    """An sqlite3 connection in autocommit mode; its errors made neutral."""

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            return self.raw.execute(sql, params)
        except sqlite3.Error as exc:
            raise _neutral(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        try:
            return self.raw.executemany(sql, rows).rowcount
        except sqlite3.Error as exc:
            raise _neutral(exc) from exc

    def insert(self, sql: str, params: Params = ()) -> int:
        return self.execute(sql, params).lastrowid

    def rollback(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


class SqliteDatabase(Database):
    dialect = "sqlite"
    begin = ("BEGIN IMMEDIATE",)

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.url = str(self.path)
        # SQLite gives -wal and -shm the database file's mode: create it 0600 first.
        private.touch(self.path)
        for file in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            private.narrow(file)

    def _open(self) -> sqlite3.Connection:
        raw = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        raw.row_factory = sqlite3.Row
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA foreign_keys=ON")
        return raw

    def _wrap(self, raw: Any) -> SqliteConn:
        return SqliteConn(raw)

    def _set_wait(self, conn: SqliteConn, millis: int) -> None:
        conn.execute(f"PRAGMA busy_timeout={millis}")

    def tables(self) -> list[str]:
        return [r[0] for r in self.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%' ORDER BY name")]

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.execute(f"PRAGMA table_info({table})")]
