"""The PostgreSQL connector (psycopg 3): one autocommit connection per thread, reopened when it broke.

One connection per thread rather than a pool: the web server runs a fixed
set of worker threads, so each keeps its connection for its lifetime, with
no checkout per statement and no pool of its own to size. A connection that
broke (the server restarted, the network dropped) raises ``StoreUnavailable``
once and is replaced on the next use; a kept connection found dead on a
transaction's first statement is replaced at once (nothing was written yet).

Write transactions take one transaction-level advisory lock first, as
SQLite's ``BEGIN IMMEDIATE`` takes its write lock: the store's
read-then-write transactions (a login creating its user, a domain opened
again) mean the same on both engines, and the wait for it is bounded by
``lock_timeout``, then ``Busy``: every connection sets ``BUSY_TIMEOUT``
(the same 30 s SQLite waits) once connected -- the raw ones of the cluster's
roles too; a lock_timeout the URL's options or PGOPTIONS give wins -- and
``wait_at_most`` sets less for a thread (web requests).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg import errors as pgerrors

from .base import (Busy, Cursor, Database, ForeignKeyViolation, IntegrityError, Params, StoreUnavailable,
                   UniqueViolation)
from .dialect import postgres_params, postgres_sql

CONNECT_TIMEOUT = 5  # seconds to reach the server before StoreUnavailable
WRITER_LOCK = (0x64646E73, 1)  # ("ddns", 1): the two-key form, apart from the one-key locks others may take
# lock_timeout set after connecting, not by an ``options`` keyword (which would replace PGOPTIONS and a
# service file's options); unless the connection's options (URL, PGOPTIONS) set one of their own.
_BOUND = ("SELECT set_config('lock_timeout', %s, false) FROM pg_settings "
          "WHERE name = 'lock_timeout' AND source <> 'client'")
_BUSY = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected, pgerrors.SerializationFailure)


class PgRow:
    """A row addressable by column name and by position, like sqlite3.Row."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]):
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: psycopg.Cursor):
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)


def neutral_error(exc: psycopg.Error) -> Exception:
    """The neutral error for a psycopg one (itself when there is none): the store's, and the cluster's own connections'."""
    if isinstance(exc, pgerrors.UniqueViolation):
        return UniqueViolation(str(exc))
    if isinstance(exc, pgerrors.ForeignKeyViolation):
        return ForeignKeyViolation(str(exc))
    if isinstance(exc, psycopg.IntegrityError):
        return IntegrityError(str(exc))
    if isinstance(exc, _BUSY):
        return Busy("the database is busy; try again in a moment")
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return StoreUnavailable("the database is unavailable; try again in a moment")
    return exc


class PostgresConn:
    """A psycopg connection in autocommit mode: SQL translated, errors made neutral."""

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            return self.raw.execute(postgres_sql(sql), postgres_params(params))
        except psycopg.Error as exc:
            raise neutral_error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        try:
            with self.raw.cursor() as cursor:
                cursor.executemany(postgres_sql(sql), (postgres_params(r) for r in rows))
                return cursor.rowcount
        except psycopg.Error as exc:
            raise neutral_error(exc) from exc

    def insert(self, sql: str, params: Params = ()) -> int:
        return self.execute(sql + " RETURNING id", params).fetchone()[0]

    def rollback(self) -> None:
        if self.raw.broken or self.raw.closed:
            return
        try:
            self.raw.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection went away meanwhile: the server rolled back

    def close(self) -> None:
        self.raw.close()


class PostgresDatabase(Database):
    dialect = "postgresql"
    begin = ("BEGIN", "SELECT pg_advisory_xact_lock(%d, %d)" % WRITER_LOCK)

    def __init__(self, url: str):
        super().__init__()
        self.url = url

    def connect_raw(self) -> psycopg.Connection:
        """A new connection of its own in autocommit mode (LISTEN, session advisory locks); the caller closes it."""
        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                  row_factory=_row_factory)
        except psycopg.Error as exc:
            raise StoreUnavailable("the database is unavailable; try again in a moment") from exc
        try:
            raw.execute(_BOUND, (f"{int(self.BUSY_TIMEOUT * 1000)}ms",))
        except psycopg.Error as exc:
            raw.close()
            raise neutral_error(exc) from exc
        return raw

    def _open(self) -> psycopg.Connection:
        return self.connect_raw()

    def _wrap(self, raw: Any) -> PostgresConn:
        return PostgresConn(raw)

    def conn(self) -> PostgresConn:
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.raw.broken or conn.raw.closed):
            self.close()
        return super().conn()

    def _set_wait(self, conn: PostgresConn, millis: int) -> None:
        conn.execute(f"SET lock_timeout = {int(millis)}")

    def tables(self) -> list[str]:
        return [r[0] for r in self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name")]

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? ORDER BY ordinal_position", (table,))]
