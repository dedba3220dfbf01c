"""Which publisher is active: a session-level advisory lock held on a connection of its own.

``pg_try_advisory_lock(cluster.lock_id)`` is held by the database for the
session that took it: when the active publisher dies, is killed or loses its
connection, PostgreSQL releases it, and the standby polling every
``POLL_SECONDS`` takes it. The connection is used for nothing else, so no
query of the publisher's work can end the session by accident.

The active one checks its session as often (a query on the connection, and
that the lock is still in ``pg_locks`` for this backend): on any doubt it is
no longer active, and ``on_lost`` is called at once -- ``roles`` stops the
process, so a publisher that may have lost the lock never marks another change
done, nor pushes. A restarted process is a standby that resets to the upstream.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

import psycopg

from ..db import StoreUnavailable
from .changes import connect

log = logging.getLogger("ddns.cluster")

POLL_SECONDS = 0.5


class Elector:
    """Polls for the advisory lock LOCK_ID on URL; ``on_elected`` once it is held, ``on_lost`` once it may not be."""

    def __init__(self, url: str, lock_id: int, on_elected: Callable[[], None], on_lost: Callable[[str], None],
                 poll_seconds: float = POLL_SECONDS):
        self.url = url
        self.lock_id = lock_id
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.poll_seconds = poll_seconds
        self.active = threading.Event()  # set while the lock is held (as last checked)
        self._conn: psycopg.Connection | None = None
        self._checking = threading.Lock()
        self.polls = 0  # tries made while standing by
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-election", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the connection (which releases the lock)."""
        self._stop.set()
        self._thread.join(10)

    def confirm(self) -> bool:
        """Whether the lock is held now, asked of the database (before a push or an outcome is written)."""
        if self.active.is_set():
            self._check()
        return self.active.is_set()

    def _run(self) -> None:
        try:
            while not self._stop.wait(0 if self._conn is None and not self.active.is_set() else self.poll_seconds):
                if self.active.is_set():
                    self._check()
                else:
                    self._try()
        finally:
            self._close()

    def _try(self) -> None:
        try:
            if self._conn is None:
                self._conn = connect(self.url)
                self._conn.execute("SET idle_session_timeout = 0")
            got = self._conn.execute("SELECT pg_try_advisory_lock(%s::bigint)", (self.lock_id,)).fetchone()[0]
        except (psycopg.Error, StoreUnavailable) as exc:
            log.warning("cannot poll the publisher lock: %s", exc)
            self._close()
            self._stop.wait(self.poll_seconds)
            return
        self.polls += 1
        if got:
            log.info("elected: this publisher is active (lock %s)", self.lock_id)
            self.active.set()
            self.on_elected()

    def _check(self) -> None:
        with self._checking:  # the poll and a confirm may ask at once: lose it once
            if not self.active.is_set():
                return
            try:
                held = self._conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                    " AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = %s",
                    (self.lock_id,)).fetchone()[0]
                reason = "" if held else "the publisher lock is no longer held"
            except (psycopg.Error, AttributeError) as exc:  # AttributeError: closed by stop meanwhile
                reason = f"the connection holding the publisher lock failed: {exc}"
            if not reason:
                return
            log.error("no longer active: %s", reason)
            self.active.clear()
            self._stop.set()  # never active again in this process: the lost one restarts as a standby
        self.on_lost(reason)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
