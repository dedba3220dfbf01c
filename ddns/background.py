"""The running side of ``ddns serve``: the threads beside the request handlers.

While the service serves, changes go through a PublisherThread (group
commit), last-update metadata is written by a flusher once a second (a nochg
must not queue for SQLite's write lock), and, with an upstream, a syncer
pushes new commits and fetches merged ones, and a housekeeper runs git's
gc (the service's own git commands never do: it would stall a commit for
seconds). A one-shot CLI command starts none of this: the service then
publishes and writes directly.

The loops call the service's use cases (sync, reconcile, flush_seen) given
to Background; they own no rules of their own.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

from .config import Config
from .publishing.publish_queue import PublisherThread
from .model import Outcome, Result, Update
from .publishing.publisher import Publisher

# The service's logger: its error lines are what the admins' status page and log filters know.
log = logging.getLogger("ddns.service")


class RecentErrors(logging.Handler):
    """The service's last error log lines, for the admins' status page."""

    def __init__(self, size: int = 20):
        super().__init__(logging.ERROR)
        self.lines: deque[tuple[float, str]] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.created, f"{record.name}: {record.getMessage()}"[:500]))


class Background:
    """Starts and stops what runs while the service serves, and keeps what went wrong with the upstream."""

    def __init__(self, config: Config, publisher: Publisher, sync: Callable[..., dict[str, str]],
                 reconcile: Callable[[], dict[str, str]], flush_seen: Callable[[], None]):
        self.config = config
        self.publisher = publisher
        self._sync = sync  # take in the upstream and publish it (sync(always_reconcile=...))
        self._reconcile = reconcile  # publish the working tree's HEAD without the upstream
        self._flush_seen = flush_seen
        self.publisher_thread: PublisherThread | None = None  # None: not serving, changes are applied directly
        self._flusher: threading.Thread | None = None
        self._syncer: threading.Thread | None = None
        self._housekeeper: threading.Thread | None = None
        self._stop = threading.Event()  # ends both loops
        self._sync_requested = threading.Event()
        self.sync_error: str | None = None  # the upstream cannot be synced (shown by /healthz)
        self.recent_errors = RecentErrors()

    @property
    def flushing(self) -> bool:
        """Whether the last-seen flusher runs: notes of updates may wait for it."""
        return self._flusher is not None

    def start(self) -> dict[str, str]:
        """Take in the upstream, reconcile BIND with the repository, then publish from background threads."""
        logging.getLogger("ddns").addHandler(self.recent_errors)
        self._await_named()
        try:
            status = self._sync(always_reconcile=True)
        except Exception as exc:  # a conflict or an unreachable upstream must not keep named from serving
            log.exception("sync with the upstream failed; serving the working tree's HEAD")
            self.sync_error = f"sync with the upstream failed: {exc}"
            status = self._reconcile()
        self.publisher_thread = PublisherThread(self.publisher, self.config["publisher.max_batch"],
                                                self.config["publisher.retry_seconds"],
                                                self.config["publisher.group_wait"])
        self.publisher_thread.start()
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="last-seen", daemon=True)
        self._flusher.start()
        if self.publisher.repo.has_upstream():
            self._syncer = threading.Thread(target=self._sync_loop, name="sync", daemon=True)
            self._syncer.start()
        if self.config["zones.gc_seconds"] > 0:
            self._housekeeper = threading.Thread(target=self._gc_loop, name="git-gc", daemon=True)
            self._housekeeper.start()
        return status

    def _await_named(self) -> None:
        """Wait (one verify budget at most) while named answers nothing for a zone: it is still loading it.

        A named started just now may still be loading a big zone (a second at
        100k records): a reload asked meanwhile is refused, and the zone would
        count as unserved until the next retry. A zone named answers for, at
        whatever serial, is the reconcile's to judge, at once.
        """
        named = self.publisher.named
        if not named.enabled:
            return
        loading = [zone for zone, state in self.publisher.zones.items() if state.broken is None]
        deadline = time.monotonic() + self.config["bind.verify_timeout"]
        while loading and time.monotonic() < deadline:
            # each query waits at most what is left: a named that answers nothing ends the wait in time
            loading = [zone for zone in loading
                       if (left := deadline - time.monotonic()) > 0 and named.served_serial(zone, min(1.0, left)) is None]
            if loading:
                time.sleep(0.01)

    def stop(self) -> None:
        """Answer what is queued, end the loops, write the last metadata and push the last commits."""
        if self.publisher_thread is not None:
            self.publisher_thread.stop()
            self.publisher_thread = None
        self._stop.set()
        for thread in (self._flusher, self._syncer, self._housekeeper):
            if thread is not None:
                thread.join(30)
        self._flusher = self._syncer = self._housekeeper = None
        self._flush_seen()
        self._push_quietly()
        logging.getLogger("ddns").removeHandler(self.recent_errors)

    def publish(self, updates: list[Update], timeout: float | None = None) -> list[Result]:
        """Publish UPDATES and wait for their results (FAILED on timeout).

        While serving they join the publisher thread's next group; else (a
        one-shot CLI command) they are applied at once, under the same lock.
        """
        if not updates:
            return []
        queue = self.publisher_thread
        if queue is None:
            return self.publisher.apply(updates)
        futures = queue.submit(updates)
        if timeout is None:
            timeout = self.config["bind.verify_timeout"] + 60
        deadline = time.monotonic() + timeout
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                outcomes.append(Result(Outcome.FAILED, reason="no answer from the publisher in time"))
        return outcomes

    def request_sync(self) -> None:
        """Ask the background syncer to fetch now (webhook)."""
        self._sync_requested.set()

    def _push_quietly(self) -> bool:
        """Push (syncing first when a merge landed); False, with sync_error set, when it failed."""
        try:
            if not self.publisher.push(self.config["zones.branch"], self.config["zones.push_token"]):
                self._sync()
            self.sync_error = None
            return True
        except Exception as exc:  # a conflict or an unreachable upstream: keep serving, report
            self.sync_error = f"sync with the upstream failed: {exc}"
            log.exception("pushing to the upstream failed")
            return False

    def _sync_loop(self) -> None:
        """Push new commits every zones.push_seconds; fetch every zones.sync_seconds or when asked."""
        push_every = self.config["zones.push_seconds"]
        last_sync = last_push = time.monotonic()
        pushed = self.publisher.repo.head()
        while not self._stop.wait(min(0.5, push_every)):
            now = time.monotonic()
            if self._sync_requested.is_set() or now - last_sync >= self.config["zones.sync_seconds"]:
                self._sync_requested.clear()
                last_sync = now
                try:
                    self._sync()
                    self.sync_error = None
                    pushed = self.publisher.repo.head()
                except Exception as exc:
                    self.sync_error = f"sync with the upstream failed: {exc}"
                    log.exception("sync with the upstream failed")
            elif now - last_push >= push_every:
                head = self.publisher.repo.head()
                if head != pushed:
                    last_push = now
                    if self._push_quietly():  # a failed push is tried again next time
                        pushed = head

    def _gc_loop(self) -> None:
        """Every zones.gc_seconds, once HEAD moved: ``git gc --auto`` when the publisher is idle.

        Idle means nothing queued and no group published for a second; under
        constant load it runs after one more period anyway (git's locks keep
        it safe beside commits, the lock-free wait only spares their latency).
        """
        every = self.config["zones.gc_seconds"]
        collected = self.publisher.repo.head()
        due: float | None = None  # when the gc became due (HEAD moved)
        while not self._stop.wait(min(every, 1.0)):
            now = time.monotonic()
            if due is None:
                if self.publisher.repo.head() != collected:
                    due = now + every
                continue
            if now < due or (not self._publisher_idle() and now < due + every):
                continue
            head = self.publisher.repo.head()
            self.publisher.repo.maintain(timeout=max(60.0, every))
            collected, due = head, None

    def _publisher_idle(self) -> bool:
        """Nothing queued for the publisher, and no group published in the last second."""
        queue, last = self.publisher_thread, self.publisher.last_publish
        return (queue is None or queue.queue_length == 0) and (last is None or self.publisher.clock() - last >= 1.0)

    def _flush_loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._flush_seen()
            except Exception:  # a locked database now and then must not end the loop
                log.exception("writing last-update metadata failed")
