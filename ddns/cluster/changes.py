"""The changes table: how a web node hands updates to the active publisher and hears their outcome.

A web node inserts one row per checked update (its JSON, ``codec``) and
``NOTIFY ddns_changes`` in the same transaction, so the publisher is woken
exactly when the rows are visible. The publisher writes each row's outcome,
``state = 'done'``, and ``NOTIFY ddns_done, '<id>'`` in one transaction
(``consumer``). The waiting request wakes on that notification and reads the
outcome row; the row, not the notification, is the truth, so a notification
lost to a reconnect costs at most one poll interval.

A wait that ends without an outcome is ``Unanswered`` (``errors.Busy``:
``911`` / 503, retry): the row stays queued and may still be applied, so the
request is never told "failed" or "good" without knowing. A database that
cannot be reached is ``StoreUnavailable`` (``QueueUnavailable`` when it fails
in the middle; ``errors.Unavailable``: the same codes); retrying is safe
either way. The table is the store's migration 2 (``ddns.db.migrations``).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import psycopg

from ..db import StoreUnavailable
from ..db.postgres import PostgresDatabase
from ..model import Outcome, Result, Update
from . import QueueUnavailable, Unanswered, codec

log = logging.getLogger("ddns.cluster")

CHANGES_CHANNEL = "ddns_changes"  # a web node queued rows: the publisher looks
DONE_CHANNEL = "ddns_done"        # payload: a row's id, whose outcome is written
PUBLISHED_CHANNEL = "ddns_published"  # payload: the upstream commit the publisher pushed

POLL_SECONDS = 0.5  # a waiter reads its rows at least this often, notified or not


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection of its own to URL; StoreUnavailable when the database cannot be reached."""
    return PostgresDatabase(url).connect_raw()


class Connections:
    """A few idle connections kept for reuse: one request's insert or read costs no new connection."""

    def __init__(self, url: str, keep: int = 8):
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue(keep)

    @contextmanager
    def get(self) -> Iterator[psycopg.Connection]:
        """A connection; a failure on it is QueueUnavailable, and it is not kept."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = connect(self.url)
        try:
            yield conn
        except psycopg.Error as exc:
            conn.close()
            raise QueueUnavailable(f"the cluster database failed: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def insert(conn: psycopg.Connection, updates: list[Update]) -> list[int]:
    """Queue UPDATES as rows and wake the publisher, in one transaction; their ids in order."""
    with conn.transaction():
        ids = [conn.execute("INSERT INTO changes (payload) VALUES (%s::jsonb) RETURNING id",
                            (codec.encode_update(u),)).fetchone()[0] for u in updates]
        conn.execute(f"NOTIFY {CHANGES_CHANNEL}")
    return ids


def outcomes(conn: psycopg.Connection, ids: list[int]) -> dict[int, Result]:
    """The outcomes written so far for IDS (a garbled outcome row is FAILED, with the reason)."""
    rows = conn.execute("SELECT id, outcome FROM changes WHERE id = ANY(%s) AND state = 'done'", (ids,)).fetchall()
    found = {}
    for change_id, outcome in rows:
        try:
            found[change_id] = codec.decode_result(outcome)
        except codec.GarbledChange as exc:
            found[change_id] = Result(Outcome.FAILED, reason=str(exc))
    return found


class DoneListener:
    """One connection per process that LISTENs on ddns_done and wakes the requests waiting for those ids."""

    def __init__(self, url: str, monotonic: Callable[[], float] = time.monotonic):
        self.url = url
        self.monotonic = monotonic
        self._waiting: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-done", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def watch(self, ids: list[int], event: threading.Event) -> None:
        with self._lock:
            self._waiting.update((i, event) for i in ids)

    def forget(self, ids: list[int]) -> None:
        with self._lock:
            for i in ids:
                self._waiting.pop(i, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.url) as conn:
                    conn.execute(f"LISTEN {DONE_CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_SECONDS):
                            self._wake(note.payload)
            except (psycopg.Error, StoreUnavailable) as exc:  # waiters poll meanwhile; reconnect
                log.warning("listening for outcomes failed: %s", exc)
                self._stop.wait(POLL_SECONDS)

    def _wake(self, payload: str) -> None:
        try:
            change_id = int(payload)
        except ValueError:
            return
        with self._lock:
            event = self._waiting.get(change_id)
        if event is not None:
            event.set()


class ChangeQueue:
    """The web node's side: hand updates over and wait for their outcomes (see the module)."""

    def __init__(self, url: str, wait_seconds: float, monotonic: Callable[[], float] = time.monotonic):
        self.connections = Connections(url)
        self.listener = DoneListener(url)
        self.wait_seconds = wait_seconds
        self.monotonic = monotonic
        # Told of each hand-over that failed (Unanswered, QueueUnavailable), whichever adapter asked:
        # the node's metrics count it here (ddns.cluster.roles), as no adapter maps these the same way.
        self.failed: Callable[[], None] = lambda: None

    def start(self) -> None:
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()
        self.connections.close()

    def publish(self, updates: list[Update], timeout: float | None = None) -> list[Result]:
        """Queue UPDATES (their guards hold now, else REFUSED) and wait for their results.

        Unanswered when an outcome does not come within TIMEOUT (default
        ``wait_seconds``); QueueUnavailable when the database fails.
        """
        results: list[Result | None] = [None if u.guard is None or u.guard() else
                                        Result(Outcome.REFUSED, reason="the credential is gone") for u in updates]
        todo = [u for u, r in zip(updates, results) if r is None]
        if todo:
            try:
                answers = iter(self._hand_over(todo, self.wait_seconds if timeout is None else timeout))
            except (Unanswered, QueueUnavailable):
                self.failed()
                raise
            results = [r or next(answers) for r in results]
        return results

    def _hand_over(self, updates: list[Update], timeout: float) -> list[Result]:
        deadline = self.monotonic() + timeout
        event = threading.Event()
        with self.connections.get() as conn:
            ids = insert(conn, updates)
        self.listener.watch(ids, event)
        try:
            found: dict[int, Result] = {}
            while True:
                event.clear()  # before the read: a notification after it wakes the next wait
                with self.connections.get() as conn:
                    found.update(outcomes(conn, [i for i in ids if i not in found]))
                left = deadline - self.monotonic()
                if len(found) == len(ids) or left <= 0:
                    break
                event.wait(min(left, POLL_SECONDS))
        finally:
            self.listener.forget(ids)
        if len(found) < len(ids):
            missing = [i for i in ids if i not in found]
            raise Unanswered(f"no outcome for change {', '.join(map(str, missing))} in {timeout:.0f} s; "
                             "it is queued and may still be applied: retry")
        return [found[i] for i in ids]
