"""The store's database on one of two engines: SQLite (the default, one process) or PostgreSQL.

``connect(url_or_path)`` opens either; the store writes its SQL once, with
``?`` placeholders, and the connector translates what differs
(``ddns.db.dialect``). Both connectors keep one connection per thread (the
web server has a fixed set of worker threads) and give the same interface:

- ``Database.tx()``: a write transaction; writers are serialised (SQLite's
  ``BEGIN IMMEDIATE``, a transaction-level advisory lock on PostgreSQL), so a
  read-then-write in one transaction means the same on both engines;
- ``Database.execute(sql, params)``: one statement outside a transaction (reads);
- ``Conn.execute / executemany / insert``: inside a transaction; ``insert``
  returns the new row's id (``lastrowid`` / ``RETURNING id``).

Rows are addressable by column name and by position. The engines' errors
become the neutral ones below: a unique or foreign-key violation, ``Busy``
(a lock not granted in time) and ``StoreUnavailable`` (no connection).
"""
from __future__ import annotations

from pathlib import Path

from .. import errors
from .base import (Busy, Conn, Database, ForeignKeyViolation, IntegrityError, Row, StoreUnavailable,
                   UniqueViolation)

__all__ = ["Busy", "Conn", "Database", "ForeignKeyViolation", "IntegrityError", "RETRYABLE", "Row",
           "StoreUnavailable", "UniqueViolation", "connect", "is_url"]

# What a client should simply retry (911, HTTP 503): any Busy (the database's, the publisher's), no database.
RETRYABLE = (errors.Busy, StoreUnavailable)

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(url_or_path: str | Path) -> bool:
    """Whether URL_OR_PATH names a PostgreSQL database (anything else is an SQLite file)."""
    return isinstance(url_or_path, str) and url_or_path.startswith(URL_SCHEMES)


def connect(url_or_path: str | Path) -> Database:
    """The database at URL_OR_PATH: a ``postgresql://`` URL, or the path of an SQLite file (made 0600)."""
    if is_url(url_or_path):
        from .postgres import PostgresDatabase  # psycopg is loaded only by instances that use it
        return PostgresDatabase(str(url_or_path))
    from .sqlite import SqliteDatabase
    return SqliteDatabase(Path(url_or_path))
