"""The publisher: the one writer of the zones repository.

``Publisher.commit`` takes a group of ``model.Update``s and, under the lock,
decides each one (guard, prerequisites, operations: all or nothing) against
the records as the updates before it left them, renders each touched zone
once with a bumped serial (only the shards it touched, ``ddns.shards``),
writes them atomically, commits once and asks named
to reload each zone; ``wait_served`` then waits, without the lock, until named
serves the new serials (``apply`` does both). ``ddns.publishing.publish_queue.PublisherThread``
feeds it from a queue so that concurrent requests share one render / commit /
reload (group commit). It speaks only ``model.Result``: no protocol's words.

Its parts, one job each; none of them takes the lock but the cache's readers
(below), the publisher calls them under it:

- ``zonecache.ZoneCache``: the in-memory zones, re-read when another process
  changed their files (``zonestate.ZoneReader`` reads and validates one);
- ``committer.Committer``: a group of updates -> one commit (``records``
  decides each update, ``worktree.ServiceFiles`` puts HEAD's files back when a
  commit fails, or holds the zone);
- ``bindtarget.BindTarget``: reloads named and waits for a served serial;
- ``zonesync.ZoneSync``: reconcile with the sources, the upstream
  (fetch/rebase/push), an admin's zone changes;
- ``servedview.ServedView``: what named serves, read without any lock
  (``served``: a ``nochg`` decided from memory).

The lock (``locked``, ``ddns.publishing.repolock``): a re-entrant thread lock plus
``flock`` on ``.git/ddns.lock``, so that CLI commands and git hooks in other
processes wait their turn. Its rules:

- Every write to the working tree, the index or HEAD, and every change of the
  in-memory zone state, is made under it. Taking it clears git locks a killed
  writer left.
- Guards and prerequisites are evaluated under it, right before their update
  is applied: two racing updates cannot both pass "this name is free", and an
  update authenticated before its credential was revoked changes nothing.
- A reader (``current``, ``rrsets``, ``has_zone``) of a known zone does not
  wait for this process's own publish: while the publisher holds the lock,
  the in-memory state is the acknowledged truth. It takes the lock only to
  read files another process changed (or a zone another process added) again.
- rndc calls under the lock wait at most half the verify budget left; the
  publish path (``commit`` then ``wait_served``), ``retry`` and ``push`` do
  their slow part (waiting for named, pushing) without it, so a frozen named
  or a slow upstream does not stall the next commit. The rarer ``reconcile``,
  ``add_zone`` and ``update_settings`` wait for named under it, within one
  verify budget.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from .. import records, shards, zones
from . import serialfloor
from .bindtarget import BindTarget, PublishTarget
from .catalogzone import CatalogZone
from .committer import Batch, Committer, Status
from ..gitrepo import ZonesRepo
from ..model import Outcome, Result, RRset, Update
from .observer import Observer
from .repolock import RepoLock
from .servedview import Served, ServedView
from .worktree import BACKUP_SUFFIX, ServiceFiles
from .zonecache import ZoneCache
from .zonestate import ZoneReader, ZoneState
from .zonesync import ZoneHeld, ZoneSync

log = logging.getLogger("ddns.publisher")

__all__ = ["Batch", "Publisher", "ZoneHeld"]


class Publisher:
    """The one writer: commits groups of updates and keeps named serving what HEAD has (see the module)."""

    def __init__(self, repo: ZonesRepo, template_dirs: list[Path], target: PublishTarget,
                 clock: Callable[[], float] = time.time, fsync: bool = True, shard_count: int = shards.DEFAULT_SHARDS,
                 catalog_zone: str = ""):
        self.repo = repo
        self.root = repo.path
        self.clock = clock
        self.status = Status()
        self.lock = RepoLock(repo)
        self.catalog = CatalogZone(catalog_zone, repo, clock, fsync, self._note_error) if catalog_zone else None
        self.named = BindTarget(target, self._newest_serial, self._failed("named"), self._committed_text,
                                lock=self.lock.held, floor_file=repo.git_dir / serialfloor.FILE_NAME)
        self.reader = ZoneReader(self.root, zones.template_environment(template_dirs), target.checkzone,
                                 self._note_error, shard_count)
        self.files = ServiceFiles(repo, self.root, self._failed("git"), fsync, spares=target.zone_dir is not None)
        self.cache = ZoneCache(self.root, self.reader, self.files, self.lock, self.named.unserved.discard)
        self.committer = Committer(self.cache, self.reader, self.files, repo, self.named, self.status, clock)
        self.zonesync = ZoneSync(self.cache, self.reader, self.files, repo, self.named, self.status, clock, fsync,
                                 self.catalog)
        self.view = ServedView(lambda: self.cache.zones, self.reader.service_paths, self._trusted)
        # how long stages took, which part failed: the service connects its metrics (ddns.publishing.observer)
        self.observer: Observer = self.committer.observer

    # ---- what the status page and /healthz read ---------------------------
    @property
    def zones(self) -> dict[str, ZoneState]:
        return self.cache.zones

    @property
    def held(self) -> dict[str, str]:
        """Zones whose files could not be put back as HEAD has them, and why: nothing is published from them."""
        return self.files.held

    @property
    def unserved(self) -> set[str]:
        """Zones named did not serve after their last publish (the retry loop reloads them)."""
        return self.named.unserved

    @property
    def last_publish(self) -> float | None:
        return self.status.last_publish

    @property
    def last_error(self) -> str | None:
        return self.status.last_error

    @last_error.setter
    def last_error(self, message: str | None) -> None:
        self.status.last_error = message

    @property
    def failure(self) -> str | None:
        """Why the last commit failed; None once one succeeds."""
        return self.status.failure

    @failure.setter
    def failure(self, message: str | None) -> None:
        self.status.failure = message

    def _note_error(self, message: str) -> None:
        """Where the parts report a failure: the last error the status page and /healthz show."""
        self.status.last_error = message

    def _is_catalog(self, zone: str) -> bool:
        return self.catalog is not None and zone == self.catalog.name

    def _newest_serial(self, zone: str) -> int | None:
        if self._is_catalog(zone):
            return self.catalog.serial
        state = self.cache.zones.get(zone)
        return None if state is None else state.serial

    def _committed_text(self, zone: str) -> str:
        """ZONE as committed, as one file (what named must serve): for a target that loads whole files.

        Assembled from the head and the shard texts kept in memory (nothing is
        formatted again); a broken zone's from the working tree, which is HEAD.
        The catalog zone's is its one file.
        """
        if self._is_catalog(zone):
            return self.catalog.text()
        state = self.cache.zones[zone]
        if state.broken:
            return self.zonesync.tree_text(zone)
        return self.reader.flat(state, state.serial)

    # ---- locking and reading -------------------------------------------------
    def locked(self) -> ContextManager[None]:
        """Exclusive access to the repository, across threads and processes (see the module)."""
        return self.lock.held()

    def load(self) -> None:
        """Read every zone from the working tree and validate its human-edited sources."""
        with self.locked():
            self.cache.load()

    def has_zone(self, zone: str) -> bool:
        """Whether ZONE is in the repository now (another process may have added or removed it)."""
        return self.cache.has_zone(zone)

    def dynamic(self, zone: str, label: str) -> dict[str, records.RecordSet]:
        """LABEL's dynamic RRsets in ZONE now, by type; KeyError when ZONE is gone."""
        return self.cache.dynamic(zone, label)

    def current(self, zone: str, label: str, rtype: str) -> str | None:
        """The rdata of LABEL's dynamic RTYPE set, joined by ", "; None: none. KeyError when ZONE is gone."""
        return self.cache.current(zone, label, rtype)

    def rrsets(self, zone: str, label: str) -> list[RRset]:
        """What ZONE holds at LABEL now, static and dynamic, the apex SOA with the current serial."""
        return self.cache.rrsets(zone, label)

    def served(self, zone: str) -> Served | None:
        """ZONE's records as committed and served right now, without any lock; None: ask the publisher (``servedview``)."""
        return self.view.get(zone)

    def _trusted(self, zone: str) -> bool:
        state = self.cache.zones.get(zone)
        return state is not None and state.broken is None and zone not in self.files.held and zone not in self.named.unserved

    def _note_served(self, statuses: dict[str, str]) -> dict[str, str]:
        """Zones a reconcile found served at their current serial (under the lock) become readable from memory."""
        served = {z: self.cache.zones[z].serial for z, s in statuses.items() if s == "served" and z in self.cache.zones}
        for zone in served:
            self.view.committed(zone)
        self.view.served(served)
        return statuses

    # ---- publishing --------------------------------------------------------
    def apply(self, updates: list[Update]) -> list[Result]:
        """Publish UPDATES as one commit and wait until named serves them; one result per update."""
        batch = self.commit(updates)
        return batch.settle(self.wait_served(batch.serials, deadline=batch.deadline))

    def commit(self, updates: list[Update]) -> Batch:
        """Decide and commit UPDATES as one group under the lock (``committer.Committer.commit``); no wait for named."""
        with self.observer.timed("under_lock"), self.locked():
            batch = self.committer.commit(updates)
            for zone in batch.serials:
                self.view.committed(zone)
            return batch

    def served_now(self, serials: dict[str, int]) -> bool:
        """Whether named is known to serve each zone at its serial already (it took their updates): no wait.
        True also tells the served view, as ``wait_served`` would: the caller settles on SERIALS directly."""
        if not self.named.served_now(serials):
            return False
        self.observer.stage("wait_served", 0.0)  # the stage's count stays one per group: this one waited 0 s
        self.view.served(dict(serials))
        return True

    def wait_served(self, serials: dict[str, int], timeout: float | None = None,
                    deadline: float | None = None) -> set[str]:
        """Wait (without the lock) until named serves each zone at (or after) its serial; returns the zones served."""
        with self.observer.timed("wait_served"):
            served = self.named.wait_served(serials, timeout, deadline)
        self.view.served({zone: serials[zone] for zone in served})
        return served

    def close(self) -> None:
        """The service stops: close what is kept open to named (the update connection)."""
        self.named.close()

    # ---- startup and repair ------------------------------------------------
    def recover(self) -> None:
        """After a crash: drop service-file edits that never reached a commit (HEAD is the truth).

        The working tree is not fsynced, so a file whose data an unclean stop
        lost while its size and times stayed passes git's stat check: every
        service file's content is compared with HEAD's too (``differing_content``).
        """
        with self.locked():
            if self.repo.head() is None:
                return
            for lock in self.repo.clear_stale_locks():
                log.warning("removed stale git lock %s", lock)
            for zone in zones.list_zones(self.root):
                dirty = [rel for rel in self.files.service_files(zone) if not self.repo.is_clean([rel])]
                damaged = tuple(rel for rel in self.repo.differing_content(zone)
                                if self.files.is_service_file(zone, rel) and rel not in dirty)
                if dirty:
                    log.warning("discarding %s: written but never committed", ", ".join(dirty))
                if damaged:
                    log.warning("putting back %s: its content is not HEAD's, though git's stat check passes it",
                                ", ".join(damaged))
                    dirty += damaged
                if dirty:
                    self.files.put_back([zone], damaged)
                    if zone in self.files.held:  # the service must not start from files nobody acknowledged
                        raise ZoneHeld(f"cannot recover zone {zone}: {self.files.held[zone]}")
                    for rel in dirty:
                        self.files.unstage(rel)
            for pattern in ("*/.*.zone.*", "*/.dynamic.records.*", f"*/.*{BACKUP_SUFFIX}",
                            f"*/{shards.SHARD_DIR}/.*{shards.SHARD_SUFFIX}.*"):
                for tmp in self.root.glob(pattern):
                    tmp.unlink(missing_ok=True)

    def retry(self) -> None:
        """Put held zones' files back, and reload zones that named did not serve after their last publish.

        The reload and the wait for named happen outside the lock: a frozen
        named must not keep the next commit waiting.
        """
        if self.files.held:
            with self.locked():
                for zone in sorted(self.files.held):
                    self.files.writable(zone)
        if not self.unserved:
            return
        with self.locked():
            pending = sorted(z for z in self.unserved if z in self.cache.zones or self._is_catalog(z))
            serials = {z: self._newest_serial(z) for z in pending}
            for zone in pending:
                self.view.committed(zone)
        served = self.named.reload_and_verify(pending, serials)
        self.view.served({zone: serials[zone] for zone in served})

    # ---- the sources, the upstream, the zone set (ddns.publishing.zonesync) ---------------
    def reconcile(self) -> dict[str, str]:
        """Make named serve what the sources say; a zone -> status map ("served", "published", "broken: ...")."""
        with self.locked():
            return self._note_served(self.zonesync.reconcile())

    def write_zones_conf(self) -> bool:
        """Rewrite the named.conf fragment that lists the zones (when configured); True if it changed."""
        with self.locked():
            return self.zonesync.write_zones_conf()

    def sync(self, branch: str = "main", token: str = "", attempts: int = 5, always_reconcile: bool = False) -> dict[str, str]:
        """Take in what was merged upstream, publish it, push the service's commits (``ZoneSync.sync``)."""
        with self.locked(), self._reported("git"):
            return self._note_served(self.zonesync.sync(branch, token, attempts, always_reconcile))

    def push(self, branch: str = "main", token: str = "") -> bool:
        """Push the service's commits; False when rejected (a merge landed first: sync).

        HEAD is read under the lock -- a finished state, never the middle of
        another process's rebase -- and pushed without holding it: a push
        (hooks, the upstream's auto-gc) must not stall publishing.
        """
        if not self.repo.has_upstream():
            return True
        with self.locked():
            head = self.repo.head()
        with self._reported("git"):
            return head is None or self.repo.push(branch, token, head)

    def _failed(self, component: str) -> Callable[[str], None]:
        """_note_error for a part that is COMPONENT ("named", "git"), which the observer is told of too."""
        def note(message: str) -> None:
            self._note_error(message)
            self.observer.error(component)
        return note

    @contextmanager
    def _reported(self, component: str) -> Iterator[None]:
        """Tell the observer when the block fails (the caller still gets the exception)."""
        try:
            yield
        except Exception:
            self.observer.error(component)
            raise

    def add_zone(self, zone: str, settings_toml: str, static_text: str, actor: str) -> Outcome:
        """Create a zone directory, validate, commit, and have named load it."""
        with self.locked():
            return self.zonesync.add_zone(zone, settings_toml, static_text, actor)

    def update_settings(self, zone: str, settings_toml: str, actor: str) -> Outcome:
        """Replace ZONE's zone.toml (an admin's change from the portal): validate, commit, reload."""
        with self.locked():
            return self.zonesync.update_settings(zone, settings_toml, actor)
