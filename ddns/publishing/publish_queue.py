"""The queue in front of the publisher: group commit for concurrent requests.

Requests submit updates and wait on futures; one thread commits them in
groups, and watcher threads answer each group when named serves it. The
publisher's observer hears how long a group waited in the queue
(``queue_wait``: its oldest update) and took from its commit to its last
answer (``group_total``).
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..model import Outcome, Result, Update
from .publisher import Batch, Publisher

log = logging.getLogger("ddns.publisher")


@dataclass
class _Pending:
    update: Update
    queued: float
    future: Future = field(default_factory=Future)


class PublisherThread:
    """Queue in front of a Publisher: group commit for concurrent requests.

    A pipeline: the thread commits a group and asks named to reload, then
    takes the next group at once, while a watcher answers the first group's
    waiters when named serves its serial (a large zone's load takes longer
    than its commit). A group named already serves (it took the updates) is
    answered by the thread itself.
    """

    def __init__(self, publisher: Publisher, max_batch: int = 1000, retry_seconds: float = 5.0,
                 group_wait: float = 0.05, watchers: int = 8, monotonic: Callable[[], float] = time.monotonic):
        self.publisher = publisher
        self.max_batch = max_batch
        self.retry_seconds = retry_seconds
        self.group_wait = group_wait
        self.monotonic = monotonic
        self._in_flight = 0  # committed groups whose waiters wait for named
        self._queue: list[_Pending] = []
        self._committing: float | None = None  # when the group being committed was queued
        self._retrying = False
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._watchers = ThreadPoolExecutor(max_workers=watchers, thread_name_prefix="served-watch")
        self.batches = 0
        self.changes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, answer every waiter, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        self._watchers.shutdown(wait=True)

    @property
    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue)

    def stalled_for(self) -> float:
        """Seconds the oldest update not yet committed has waited (0 when there is none)."""
        with self._cond:
            since = [t for t in (self._committing, self._queue[0].queued if self._queue else None) if t is not None]
        return self.monotonic() - min(since) if since else 0.0

    def submit(self, updates: list[Update]) -> list[Future]:
        """Queue UPDATES for the next group; each future's result is the update's ``Result``."""
        now = self.monotonic()
        pending = [_Pending(u, now) for u in updates]
        with self._cond:
            if self._stopping:
                raise RuntimeError("publisher is stopping")
            self._queue.extend(pending)
            self._cond.notify()
        return [p.future for p in pending]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    if not self._cond.wait(timeout=self.retry_seconds) and (self.publisher.unserved or self.publisher.held):
                        break
                if self._stopping and not self._queue:
                    return
                # While named still loads the previous group, let this one grow
                # (up to group_wait): a big zone is reloaded once per group.
                if self._queue:
                    deadline = self._queue[0].queued + self.group_wait
                    while (self._in_flight and len(self._queue) < self.max_batch and not self._stopping
                           and self.monotonic() < deadline):
                        self._cond.wait(deadline - self.monotonic())
                batch = self._queue[: self.max_batch]
                del self._queue[: len(batch)]
                if batch:
                    self._in_flight += 1
                    self._committing = batch[0].queued
            if not batch:
                self._start_retry()
                continue
            self.publisher.observer.stage("queue_wait", self.monotonic() - batch[0].queued)
            started = time.perf_counter()
            try:
                committed = self.publisher.commit([p.update for p in batch])
            except Exception as exc:  # never leave a waiter hanging
                log.exception("publishing failed")
                self.publisher.failure = self.publisher.last_error = f"publishing failed: {exc}"
                failed = Result(Outcome.FAILED, reason=self.publisher.failure)
                committed = Batch([failed] * len(batch), [p.update.zone for p in batch], {})
            finally:
                with self._cond:
                    self._committing = None
            self.batches += 1
            self.changes += len(batch)
            if committed.serials and not self.publisher.served_now(committed.serials):
                self._watchers.submit(self._answer, batch, committed, started)
            else:  # nothing to wait for (named took the updates): answered here, without a thread's wake-up
                self._answer(batch, committed, started, served=set(committed.serials))

    def _answer(self, batch: list[_Pending], committed: Batch, started: float, served: set[str] | None = None) -> None:
        """Settle BATCH's waiters; the group took from STARTED (its commit) until now. SERVED: the zones named
        is known to serve already (not asked again: a sync meanwhile must not make this thread wait)."""
        self._settle(batch, committed, served)
        self.publisher.observer.stage("group_total", time.perf_counter() - started)

    def _settle(self, batch: list[_Pending], committed: Batch, served: set[str] | None) -> None:
        try:
            if served is None:
                served = self.publisher.wait_served(committed.serials, deadline=committed.deadline)
            outcomes = committed.settle(served)
        except Exception:
            log.exception("waiting for named failed")
            outcomes = committed.settle(set())
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify()
        for pending, result in zip(batch, outcomes):
            pending.future.set_result(result)

    def _start_retry(self) -> None:
        """Retry in a watcher, one round at a time: its wait for named must not hold up commits."""
        with self._cond:
            if self._retrying or self._stopping:
                return
            self._retrying = True
        self._watchers.submit(self._retry)

    def _retry(self) -> None:
        try:
            self.publisher.retry()
        except Exception:
            log.exception("background publisher task failed")
        finally:
            with self._cond:
                self._retrying = False
