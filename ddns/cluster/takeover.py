"""A publisher node's life: stand by following the upstream, then take over once elected.

``Follower`` keeps a node's clone at the upstream (on ``NOTIFY
ddns_published`` and every ``zones.sync_seconds``): what web nodes and
standbys read. ``Takeover`` runs on the elected node: its clone reset to the
upstream (its own unpushed commits discarded: their rows are still queued),
the zones read again, the rows the upstream already has marked done from
its trailers (so none is applied twice; a history it cannot trust refuses
the takeover before anything started), the service started (named
reconciled, the publisher thread), then the consumer applies the rest.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import psycopg

from ..db.postgres import neutral_error
from ..model import Outcome, Result
from ..service import Service
from . import codec, upstream
from .changes import DONE_CHANNEL, POLL_SECONDS, PUBLISHED_CHANNEL, connect
from .consumer import Consumer
from .election import Elector

log = logging.getLogger("ddns.cluster")

APPLIED = Result(Outcome.PUBLISHED, reason="in the upstream: applied by an earlier publisher")


class Follower:
    """Resets the node's clone to the upstream whenever the active publisher pushed (see the module)."""

    def __init__(self, follow: Callable[[], object], url: str, every: float):
        self.follow = follow  # resets the clone to the upstream, under the publisher's lock
        self.url = url
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-follow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        every = self.every
        while not self._stop.is_set():
            try:
                with connect(self.url) as conn:
                    conn.execute(f"LISTEN {PUBLISHED_CHANNEL}")
                    due = time.monotonic() + every
                    while not self._stop.is_set():
                        notified = any(True for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1))
                        if notified:  # pushes meanwhile: one follow takes them all in
                            for _ in conn.notifies(timeout=0.01):
                                pass
                        if (notified or time.monotonic() >= due) and not self._stop.is_set():
                            self.follow()
                            due = time.monotonic() + every
            except Exception as exc:  # a database or an upstream away for a while: try again
                log.warning("following the upstream failed: %s", exc)
                self._stop.wait(POLL_SECONDS * 4)


def settle_applied(url: str, service: Service) -> list[int]:
    """Mark done the queued rows whose change ids the upstream's trailers hold; their ids.

    Only the repository is read (at the upstream's head): it runs before the
    service starts, so a refusal (``UntrustedHistory``) changes nothing. A
    database failure is the store's neutral error (``Busy`` for a row lock
    not granted in time), not a psycopg one.
    """
    try:
        return _settle(url, service)
    except psycopg.Error as exc:
        raise neutral_error(exc) from exc


def _settle(url: str, service: Service) -> list[int]:
    with connect(url) as conn, conn.transaction():
        oldest = conn.execute("SELECT min(created) FROM changes WHERE state = 'queued'").fetchone()[0]
        if oldest is None:
            return []
        applied = sorted(upstream.applied_ids(service.publisher.repo, oldest))
        rows = conn.execute("UPDATE changes SET state = 'done', outcome = %s::jsonb WHERE state = 'queued'"
                            " AND id = ANY(%s) RETURNING id", (codec.encode_result(APPLIED), applied)).fetchall()
        for (change_id,) in rows:
            conn.execute("SELECT pg_notify(%s, %s)", (DONE_CHANNEL, str(change_id)))
    return sorted(r[0] for r in rows)


class Takeover:
    """Waits for the election, then makes this node the active publisher (see the module)."""

    def __init__(self, service: Service, url: str, follower: Follower, elector: Elector, elected: threading.Event):
        self.service = service
        self.url = url
        self.follower = follower
        self.elected = elected  # set by ELECTOR once this node holds the lock
        self.elector = elector
        self.consumer: Consumer | None = None
        self._started = False
        self._pushed: str | None = None

    def run_until(self, stop: threading.Event, out: Callable[[str], None]) -> None:
        """Stand by until elected (or STOP), then take over."""
        while not stop.is_set() and not self.elected.wait(POLL_SECONDS):
            pass
        if stop.is_set():
            return
        self.follower.stop()
        publisher, cfg = self.service.publisher, self.service.config
        with publisher.lock.held():
            self.follower.follow()
            publisher.load()
        settled = settle_applied(self.url, self.service)  # before the start: its refusal leaves nothing running
        if settled:
            log.info("changes %s were in the upstream already: marked done", ", ".join(map(str, settled)))
        self._started = True
        for zone, state in sorted(self.service.start().items()):  # named reconciled, the publisher thread runs
            out(f"zone {zone}: {state}")
        self._pushed = publisher.repo.head()
        self.consumer = Consumer(self.url, self.service.background.publisher_thread.submit, self.push,
                                 self.elector.confirm, cfg["publisher.max_batch"],
                                 cfg["bind.verify_timeout"] + cfg["cluster.takeover_seconds"])
        self.consumer.start()
        out("active: publishing the changes table")

    def push(self) -> None:
        """Push what was committed since the last push (a merge landed first: rebase onto it, push)."""
        repo, cfg = self.service.publisher.repo, self.service.config
        head = repo.head()
        if head == self._pushed:
            return
        if not self.service.publisher.push(cfg["zones.branch"], cfg["zones.push_token"]):
            self.service.sync()
            head = repo.head()
        self._pushed = head

    def stop(self) -> None:
        """Answer nothing more, stop the service (what it committed is pushed), release the lock."""
        if self.consumer is not None:
            self.consumer.stop()
        if self._started:
            self.service.stop()
        self.elector.stop()
