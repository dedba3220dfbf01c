"""Hosts' last-update metadata, batched: a request appends, a flusher writes each host's latest.

A ``nochg`` must not queue for SQLite's write lock, nor for any lock: the
batch is a deque (append is atomic), and one flusher at a time (the
background loop, or a page that shows hosts) pops and writes it. Another
that comes meanwhile does not wait for that write: it returns, and what was
noted after the first one began is written by the next flush. Two writers at
once could land a host's older entry after its newer one (or put an older
one back, the database busy, after a newer one was written).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from .db import RETRYABLE
from .store import LastSeen


class SeenBatch:
    """Last-seen entries not written yet (see the module)."""

    def __init__(self):
        self._seen: deque[tuple[str, LastSeen]] = deque()
        self._flushing = threading.Lock()

    def note(self, fqdn: str, entry: LastSeen) -> None:
        self._seen.append((fqdn, entry))

    def flush(self, write: Callable[[dict[str, LastSeen]], None]) -> bool:
        """WRITE each host's latest entry; while the database is busy, keep them for the next flush.

        False, at once, when another flush is writing (its entries are older than any left).
        """
        if not self._flushing.acquire(blocking=False):
            return False
        try:
            batch: dict[str, LastSeen] = {}
            for _ in range(len(self._seen)):  # what comes meanwhile stays for the next flush
                fqdn, entry = self._seen.popleft()
                batch[fqdn] = entry
            if batch:
                try:
                    write(batch)
                except RETRYABLE:
                    self._seen.extendleft(reversed(batch.items()))  # before anything newer
            return True
        finally:
            self._flushing.release()
