"""What both connectors share: the neutral errors, the connection interface, per-thread connections."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from .. import errors

Params = Sequence[Any]
T = TypeVar("T")


class Busy(errors.Busy):
    """A lock (SQLite's write lock, a PostgreSQL row or advisory lock) was not granted in the time this thread waits."""


class StoreUnavailable(errors.Unavailable):
    """The database cannot be reached (refused, lost, shut down): a retryable answer (911, HTTP 503)."""


class IntegrityError(Exception):
    """A constraint refused a write (the store says what it means in ddns.errors)."""


class UniqueViolation(IntegrityError):
    """A row with that key exists already."""


class ForeignKeyViolation(IntegrityError):
    """A referenced row does not exist (or a referencing row still does)."""


class Row(Protocol):
    """A result row: ``row["column"]`` and ``row[0]``; iterable over its values."""

    def __getitem__(self, key: int | str) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class Conn(Protocol):
    """The connection a transaction yields."""

    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run SQL for each of ROWS; the rows affected in all."""

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT into a table with an ``id`` column; the new row's id."""

    def rollback(self) -> None:
        """End the transaction in progress without its changes (quietly, if the connection broke)."""

    def close(self) -> None: ...


class Database:
    """An engine's database: one connection per thread, opened on first use and again after it broke."""

    dialect: str
    url: str
    begin: tuple[str, ...]  # the statements that start a write transaction and take the writers' lock
    # Seconds any connection's write waits for a lock, then Busy: every connection of both engines (the
    # CLI's, the publisher's, the cluster's own), unless ``wait_at_most`` set less for the thread (web requests).
    BUSY_TIMEOUT = 30.0

    def __init__(self) -> None:
        self._local = threading.local()

    # -- what a connector provides ---------------------------------------------------------------
    def _open(self) -> Any:
        """A new connection of the engine, configured (autocommit, row factory, timeouts)."""
        raise NotImplementedError

    def _wrap(self, raw: Any) -> Conn:
        """The ``Conn`` over RAW: SQL translated, errors made neutral."""
        raise NotImplementedError

    def _set_wait(self, conn: Conn, millis: int) -> None:
        raise NotImplementedError

    def tables(self) -> list[str]:
        """The tables of the database."""
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        """TABLE's columns in order ([] when there is no such table)."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------
    def conn(self) -> Conn:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._wrap(self._open())
            self._local.conn = conn
            self._local.wait = None
        return conn

    def close(self) -> None:
        """Close this thread's connection (it broke, or the thread is done with it): the next use opens one."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        self._local.wait = None
        if conn is not None:
            conn.close()

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """One statement outside a transaction (a read), on this thread's connection."""
        return self._retrying(lambda conn: conn.execute(sql, params))

    def _retrying(self, first: Callable[[Conn], T]) -> T:
        """FIRST on this thread's connection, once more on a new one if a kept one turns out dead.

        Only for a first statement (a read, a BEGIN): nothing was written yet.
        A server restarted meanwhile costs no request an error.
        """
        kept = getattr(self._local, "conn", None) is not None
        try:
            return first(self.conn())
        except StoreUnavailable:
            self.close()
            if not kept:
                raise
            return first(self.conn())

    def wait_at_most(self, seconds: float) -> None:
        """How long this thread's writes wait for a lock before ``Busy`` (set on the connection at the next write)."""
        self._local.wanted_wait = int(seconds * 1000)

    def never_wait(self) -> None:
        """This thread's statements, reads included, wait for no lock: ``Busy`` at once instead.

        For a thread that must not block (the HTTP loop's answers from memory):
        an SQLite read in WAL mode takes no lock a writer holds, but its busy
        handler would still wait out a rare recovery or checkpoint.
        """
        self.wait_at_most(0)
        self._apply_wait()

    def _apply_wait(self) -> None:
        wanted = getattr(self._local, "wanted_wait", None)
        if wanted is not None and getattr(self._local, "wait", None) != wanted:
            self._set_wait(self.conn(), wanted)
            self._local.wait = wanted

    @contextmanager
    def tx(self) -> Iterator[Conn]:
        """A write transaction: committed on leaving, rolled back on an exception; ``Busy`` if the lock waits too long."""
        def start(conn: Conn) -> Conn:
            self._apply_wait()
            try:
                for statement in self.begin:
                    conn.execute(statement)
            except BaseException:
                conn.rollback()  # the writers' lock not granted: leave no transaction open
                raise
            return conn

        conn = self._retrying(start)
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            self._abandon(conn)
            raise

    def _abandon(self, conn: Conn) -> None:
        """A failed COMMIT: roll back what may still be open (SQLite keeps it), or drop the connection.

        SQLite leaves the transaction open when a deferred constraint refuses
        the COMMIT (its write lock still held); PostgreSQL ends it. Either
        way the next use of this thread's connection starts clean.
        """
        try:
            conn.rollback()
        except Exception:
            self.close()
