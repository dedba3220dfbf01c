"""The active publisher's side of the changes table: apply queued rows in id order, then answer them.

One thread claims queued rows (in id order as they become visible, never one twice) and submits them
to the publisher thread (group commit, as for local requests); another takes
the submitted groups in order, waits for their results, has the commits
pushed to the upstream (``push``) and only then writes the outcomes with
``state = 'done'`` and one ``NOTIFY ddns_done`` per row, in one transaction.
So a change is never answered before the upstream has it: a publisher that
dies after its commit and before its push leaves the row queued, and the next
one applies it from the table.

Before each push and each write of outcomes, ``confirm`` asks the database
whether this publisher still holds the lock (``election``); if not, nothing
more is pushed or answered.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

import psycopg

from .. import errors
from ..model import Outcome, Result, Update
from . import codec
from .changes import CHANGES_CHANNEL, DONE_CHANNEL, POLL_SECONDS, PUBLISHED_CHANNEL, connect

log = logging.getLogger("ddns.cluster")


class LostLock(Exception):
    """This publisher may no longer be the active one: stop answering."""


class Consumer:
    """Feeds queued rows to SUBMIT and answers them once PUSH returned (see the module)."""

    def __init__(self, url: str, submit: Callable[[list[Update]], list[Future]], push: Callable[[], None],
                 confirm: Callable[[], bool], max_batch: int = 1000, result_seconds: float = 120.0):
        self.url = url
        self.submit = submit
        self.push = push
        self.confirm = confirm
        self.max_batch = max_batch
        self.result_seconds = result_seconds
        self.answered = 0
        self._groups: queue.Queue[tuple[list[int], list[Future | Result]] | None] = queue.Queue()
        # Rows submitted and not answered yet: claimed once each. Not "ids above the last one": two
        # web nodes' transactions may commit their rows in the other order than their ids.
        self._claimed: set[int] = set()
        self._lock = threading.Lock()
        self._writer: psycopg.Connection | None = None  # the answerer's own connection
        self._stop = threading.Event()
        self._claimer = threading.Thread(target=self._claim_loop, name="cluster-claim", daemon=True)
        self._answerer = threading.Thread(target=self._answer_loop, name="cluster-answer", daemon=True)

    def start(self) -> None:
        self._claimer.start()
        self._answerer.start()

    def stop(self) -> None:
        self._stop.set()
        self._groups.put(None)
        self._claimer.join(10)
        self._answerer.join(self.result_seconds)
        if self._writer is not None:
            self._writer.close()

    # ---- claiming -----------------------------------------------------------------
    def _claim_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.url) as conn:
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    while not self._stop.is_set():
                        with self._lock:
                            claimed = list(self._claimed)
                        rows = conn.execute("SELECT id, payload FROM changes WHERE state = 'queued'"
                                            " AND id <> ALL(%s) ORDER BY id LIMIT %s",
                                            (claimed, self.max_batch)).fetchall()
                        if rows:
                            group = self._submit(rows)  # raises (publisher stopping): the rows stay unclaimed
                            with self._lock:
                                self._claimed.update(r[0] for r in rows)
                            self._groups.put(group)
                        else:
                            for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
                                pass
            except Exception as exc:  # a database that went away: claim on once it is back
                log.warning("claiming changes failed: %s", exc)
                self._stop.wait(POLL_SECONDS)

    def _submit(self, rows: list[tuple[int, object]]) -> tuple[list[int], list[Future | Result]]:
        """ROWS decoded and submitted; a garbled one is answered FAILED with the reason."""
        answers: list[Future | Result] = []
        updates: list[Update] = []
        for change_id, payload in rows:
            try:
                updates.append(codec.decode_update(payload, change_id))
                answers.append(None)
            except codec.GarbledChange as exc:
                log.error("change %s: %s", change_id, exc)
                answers.append(Result(Outcome.FAILED, reason=str(exc)))
        futures = iter(self.submit(updates) if updates else ())
        return [r[0] for r in rows], [a or next(futures) for a in answers]

    # ---- answering ----------------------------------------------------------------
    def _answer_loop(self) -> None:
        """Answer the submitted groups in order; the groups waiting meanwhile share one push and one write."""
        while True:
            groups = [self._groups.get()]
            while groups[-1] is not None:
                try:
                    groups.append(self._groups.get_nowait())
                except queue.Empty:
                    break
            ending = groups[-1] is None
            ids = [i for g in groups if g is not None for i in g[0]]
            results = [self._result(a) for g in groups if g is not None for a in g[1]]
            if ids:
                try:
                    self._settle(ids, results)
                except LostLock as exc:
                    log.error("not answering changes %s..%s: %s", ids[0], ids[-1], exc)
                    return
            if ending:
                return

    def _result(self, answer: Future | Result) -> Result:
        if isinstance(answer, Result):
            return answer
        while True:  # the publisher thread answers every change it took (at stop too); a "failed" now could be a lie
            try:
                return answer.result(self.result_seconds)
            except FutureTimeout:
                log.warning("the publisher has not answered a change for %.0f s; still waiting", self.result_seconds)

    def _settle(self, ids: list[int], results: list[Result]) -> None:
        """Push (until it works, while still active), then write the outcomes and notify, in one transaction."""
        while True:
            if not self.confirm():
                raise LostLock("the publisher lock is lost")
            try:
                self.push()
                break
            except Exception as exc:  # an unreachable upstream: nothing is answered until it has the commits
                log.error("pushing changes %s..%s failed: %s", ids[0], ids[-1], exc)
                if self._stop.wait(1.0):
                    raise LostLock("stopping before the push") from exc
        while True:
            if not self.confirm():
                raise LostLock("the publisher lock is lost")
            try:
                self._write(ids, results)
                with self._lock:
                    self._claimed.difference_update(ids)
                self.answered += len(ids)
                return
            except (psycopg.Error, errors.Unavailable) as exc:
                log.error("writing outcomes of changes %s..%s failed: %s", ids[0], ids[-1], exc)
                if self._stop.wait(POLL_SECONDS):
                    raise LostLock("stopping before the outcomes were written") from exc

    def _write(self, ids: list[int], results: list[Result]) -> None:
        """The outcomes of IDS, their notifications and the web nodes' cue to follow, in one transaction."""
        if self._writer is None or self._writer.closed:
            self._writer = connect(self.url)
        try:
            with self._writer.transaction():
                self._writer.execute(
                    "UPDATE changes AS c SET state = 'done', outcome = v.outcome FROM"
                    " (SELECT unnest(%s::bigint[]) AS id, unnest(%s::jsonb[]) AS outcome) AS v WHERE c.id = v.id",
                    (ids, [codec.encode_result(r) for r in results]))
                self._writer.execute("SELECT pg_notify(%s, i::text) FROM unnest(%s::bigint[]) AS i", (DONE_CHANNEL, ids))
                self._writer.execute("SELECT pg_notify(%s, '')", (PUBLISHED_CHANNEL,))  # web nodes follow the upstream
        except psycopg.Error:
            self._writer.close()
            raise
