"""The lock of the zones repository: one writer at a time, across threads and processes.

A re-entrant thread lock orders the threads of this process (the thread that
holds it may take it again); ``flock`` on ``.git/ddns.lock`` orders processes
(CLI commands, git hooks, another ``serve``), and goes with a killed holder.
Git's own lock files do not: a writer killed mid-commit leaves them behind, so
they are cleared each time the lock is taken, not only at start. What must be
done under the lock is the publisher's rule (see ``ddns.publishing.publisher``).
"""
from __future__ import annotations

import fcntl
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..gitrepo import ZonesRepo

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so

# How long a running git process (a killed writer's child) may keep its lock before a commit fails.
_LIVE_GIT_WAIT = 1.0


class RepoLock:
    """Exclusive access to REPO for the block of ``held``."""

    def __init__(self, repo: ZonesRepo):
        self.repo = repo
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._path = Path(repo._repo.git_dir) / "ddns.lock"

    @contextmanager
    def held(self) -> Iterator[None]:
        """Exclusive access to the repository, across threads and processes."""
        with self._thread_lock:
            if self._depth:  # re-entered by the thread that holds it
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with open(self._path, "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    self._clear_stale_locks()
                    yield
                finally:
                    self._depth = 0
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    @contextmanager
    def unless_busy(self) -> Iterator[bool]:
        """The lock (True) unless another thread of this process holds it: then at once, without it (False)."""
        if not self._thread_lock.acquire(blocking=False):
            yield False
            return
        try:
            with self.held():
                yield True
        finally:
            self._thread_lock.release()

    def _clear_stale_locks(self) -> None:
        """Git locks left by a killed writer go as soon as we hold the lock, not only at start."""
        for lock in self.repo.clear_stale_locks(wait=_LIVE_GIT_WAIT):
            log.warning("removed stale git lock %s", lock)
