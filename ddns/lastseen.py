"""Hosts' last-update metadata, batched: a request appends, a flusher writes each host's latest.

A ``nochg`` must not queue for SQLite's write lock, nor for any lock: the
batch is a deque (append and popleft are atomic), and each entry is popped by
one flusher (the background loop, or a page that shows hosts), none waiting
for another's write.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from .db import RETRYABLE
from .store import LastSeen


class SeenBatch:
    """Last-seen entries not written yet (see the module)."""

    def __init__(self):
        self._seen: deque[tuple[str, LastSeen]] = deque()

    def note(self, fqdn: str, entry: LastSeen) -> None:
        self._seen.append((fqdn, entry))

    def flush(self, write: Callable[[dict[str, LastSeen]], None]) -> None:
        """WRITE each host's latest entry; while the database is busy, keep them for the next flush."""
        batch: dict[str, LastSeen] = {}
        for _ in range(len(self._seen)):  # what comes meanwhile stays for the next flush
            try:
                fqdn, entry = self._seen.popleft()
            except IndexError:  # another flusher took the rest
                break
            batch[fqdn] = entry
        if batch:
            try:
                write(batch)
            except RETRYABLE:
                self._seen.extendleft(reversed(batch.items()))  # before anything newer
