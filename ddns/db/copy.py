"""``ddns db copy``: every table of one store database into another, empty one (SQLite to PostgreSQL, say).

Both are at the code's schema version (the target is given it first, so an
empty database is enough); a target with any row is refused. The rows keep
their ids, the target's id sequences continue after them, all in one
transaction of the target while the source's writers wait (a consistent
copy). The row counts of source and target are compared at the end.

The cluster's ``changes`` table is not copied (``TRANSIENT``): it is the
queue of updates in flight between web nodes and the publisher, and the
copy is made with every node stopped, so each row is answered already or
its client was told to retry (``911`` / 503). It exists on PostgreSQL only;
the target's stays empty, but its ids go on after the source's highest: the
repository's change trailers name ids the publisher applied (the takeover
reads them back to mark rows done), so a new row reusing an old id would be
marked done unapplied.
"""
from __future__ import annotations

from .. import errors
from . import migrations
from .base import Conn, Database

# Tables not copied, and why (printed by ``ddns db copy``).
TRANSIENT = {"changes": "the cluster's queue of updates in flight: answered, or retried by their clients"}


def copy(source: Database, target: Database) -> tuple[dict[str, int], dict[str, int]]:
    """Copy SOURCE's rows into TARGET; the rows copied per table, and the rows of ``TRANSIENT`` tables left."""
    found = migrations.check(source)
    if found != migrations.LATEST or "schema_version" not in source.tables():
        raise errors.Invalid(f"the source database is at schema version {found}, this ddns at "
                             f"{migrations.LATEST}: run `ddns db upgrade` first")
    migrations.upgrade(target)
    present = set(source.tables())
    tables = [t for t in migrations.tables_in_order(source.dialect) if t in present and t not in TRANSIENT]
    _refuse_rows(target)
    skipped = {t: _count(source, t) for t in TRANSIENT if t in present}
    copied: dict[str, int] = {}
    with source.tx() as src, target.tx() as dst:
        for table in tables:
            columns = source.columns(table)
            missing = set(columns) - set(target.columns(table))
            if missing:
                raise errors.Invalid(f"the target's table {table} lacks the columns {', '.join(sorted(missing))}")
            names = ", ".join(columns)
            rows = [tuple(r) for r in src.execute(f"SELECT {names} FROM {table}").fetchall()]
            if rows:
                dst.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)
            if target.dialect == "postgresql" and "id" in columns:
                # the identity goes on after the ids copied (an empty table: it starts at 1)
                dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")
            copied[table] = len(rows)
        if target.dialect == "postgresql":
            for table in (t for t in TRANSIENT if t in present):
                _continue_ids(src, dst, table)
    for table, count in copied.items():
        there = _count(target, table)
        if there != count:
            raise errors.Internal(f"table {table}: {count} rows copied, the target has {there}")
    return copied, skipped


def _continue_ids(src: Conn, dst: Conn, table: str) -> None:
    """Set TABLE's id sequence in DST past every id SRC (PostgreSQL, the table's only home) ever gave."""
    high = src.execute(f"SELECT greatest(coalesce(max(id), 0), coalesce(pg_sequence_last_value("
                       f"pg_get_serial_sequence('{table}', 'id')), 0)) AS n FROM {table}").fetchone()["n"]
    dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {int(high)} + 1, false)")


def _count(db: Database, table: str) -> int:
    return db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def _refuse_rows(target: Database) -> None:
    for table in migrations.tables_in_order(target.dialect):
        if table in set(target.tables()) and _count(target, table):
            raise errors.Conflict(f"the target database is not empty (table {table} has rows); "
                                  "copy only into an empty database")
