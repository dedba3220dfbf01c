"""The committer: decides a group of updates and makes it one commit (render, write, commit, reload).

For each update of a group, in order: its guard, its zone (exists, not
broken, not held), then ``records.apply`` -- prerequisites against the static
data and the dynamic records as the updates before it left them (an
``shards.Overlay`` of the group's changes: nothing of the zone is copied),
operations all or nothing. Each touched zone gets its touched shards and its
head rewritten with a bumped serial, atomically (``worktree.ServiceFiles``: a
failure puts HEAD's files back) -- untouched shards are neither formatted nor
written, so the cost does not grow with the zone -- the group is committed
once with one audit trailer per changed RRset,
and each zone's change (``zonechange.ZoneChange``) is handed to named; waiting until it serves them is the
caller's (``Batch.serials``). The first zone's update is sent once the
commit's objects are written, the branch's lock is taken and the branch
found unmoved, before the fsyncs and the move (``bindtarget.BindTarget.send``):
named applies it while the commit ends, and its answer is read after. When
a write fails after that (an fsync, a reflog, the rename), named is loaded
from the last commit again (``BindTarget.withdraw``); a commit that fails
earlier (a held or stale lock, a branch moved by a push) sent nothing. It does
not lock: the publisher calls it under its lock.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from .. import records, shards, zones
from .bindtarget import Answer, BindTarget
from .observer import Observer
from ..gitrepo import ChangeRecord, ZonesRepo, commit_message
from ..model import Actor, Outcome, Result, Update
from ..serial import next_serial
from .worktree import Replacement, ServiceFiles
from .zonechange import ZoneChange, zone_change
from .zonecache import ZoneCache
from .zonestate import ZoneReader, ZoneState, stamp

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so


@dataclass
class Status:
    """What the status page and /healthz show of publishing: shared by the publisher's parts."""

    last_publish: float | None = None
    last_error: str | None = None
    failure: str | None = None  # why the last commit failed; None once one succeeds


@dataclass
class Batch:
    """What one commit did: results settled so far, and the serial each zone must be served at."""

    results: list[Result | None]    # None: committed, waiting for named to serve its zone
    zones: list[str]                # the zone of each update
    serials: dict[str, int]         # zones reloaded, and the serial that proves it
    deadline: float | None = None   # (monotonic) when the wait for named ends: one verify budget per commit

    def settle(self, served: set[str]) -> list[Result]:
        return [r if r is not None else Result(Outcome.PUBLISHED if self.zones[i] in served else Outcome.UNSERVED)
                for i, r in enumerate(self.results)]


class Committer:
    """Commits groups of updates to the zones of CACHE (see the module)."""

    def __init__(self, cache: ZoneCache, reader: ZoneReader, files: ServiceFiles, repo: ZonesRepo,
                 named: BindTarget, status: Status, clock: Callable[[], float]):
        self.cache = cache
        self.reader = reader
        self.files = files
        self.repo = repo
        self.named = named
        self.status = status
        self.clock = clock
        self.observer = Observer()  # the stages decide, write, git_commit, named_publish; git failures

    def commit(self, updates: list[Update]) -> Batch:
        """Decide UPDATES in order, render each touched zone once, commit once, ask named to reload.

        Each update's guard and prerequisites are evaluated against the records
        as the updates before it in the group left them, each applied all or
        nothing. Does not wait for named: the caller waits for
        ``batch.serials`` to be served, so the next group can be committed
        meanwhile.
        """
        results: list[Result | None] = [None] * len(updates)
        started = time.perf_counter()
        changes: list[tuple[int, ChangeRecord]] = []
        work: dict[str, shards.Overlay] = {}  # per zone: the group's changes, the RRsets its updates touched
        for i, update in enumerate(updates):
            results[i], made = self._decide(update, work)
            changes += [(i, c) for c in made]
        zone_of = [u.zone for u in updates]
        decided = self.observer.since("decide", started)
        unchanged = Result(Outcome.UNCHANGED)
        if not changes:
            return Batch([r or unchanged for r in results], zone_of, {})

        touched = sorted({updates[i].zone for i, _ in changes})
        now = int(self.clock())
        serials = {zone: next_serial(self.named.serial_floor(zone, self.cache.zones[zone].serial), now)
                   for zone in touched}
        after = {zone: self.reader.sharded(work[zone].result()) for zone in touched}
        published = {zone: self._change(zone, serials[zone], self.cache.zones[zone].dynamic, after[zone], work[zone])
                     for zone in touched}
        deadline = self.named.deadline()
        first = touched[0]
        ahead: dict[str, Answer | None] = {}  # the update sent before the branch moves

        def send_ahead() -> None:  # the branch is locked, unmoved: named applies the update while git fsyncs
            if first not in ahead:
                ahead[first] = self.named.send(published[first], deadline)
        try:
            with self.files.replacing(touched) as files:  # a failure puts HEAD's files back (or holds the zone)
                with files.together():  # the shard files land together, renamed in order
                    paths = [p for zone in touched for p in self._write(files, zone, serials[zone], after[zone],
                                                                         work[zone])]
                written = self.observer.since("write", decided)
                actors = {c.actor for _, c in changes}
                self.repo.commit(paths, commit_message([c for _, c in changes]),
                                 author=actors.pop() if len(actors) == 1 else None, before_branch=send_ahead)
        except Exception as exc:  # disk full, git failure: HEAD's files are back, nothing changed
            failed = self._failed(exc)
            for i, _ in changes:
                results[i] = failed
            if ahead.get(first) is not None:  # the branch did not move: named must not keep the update
                self._withdraw(published[first], ahead[first], after[first], work[first], deadline)
            return Batch([r or unchanged for r in results], zone_of, {})

        self.observer.since("git_commit", written)
        self._committed(touched, after, serials)
        sent = time.perf_counter()
        for zone in touched:
            if not self.named.publish(published[zone], deadline, ahead.get(zone)):  # named unreachable: committed, not served; retried later
                del serials[zone]
                self.named.unserved.add(zone)
                for i, _ in changes:
                    if updates[i].zone == zone:
                        results[i] = Result(Outcome.UNSERVED, reason="named did not take the reload")
        self.observer.since("named_publish", sent)
        return Batch(results, zone_of, serials, deadline)

    def _write(self, files: Replacement, zone: str, serial: int, after: shards.ShardedRecords,
               work: shards.Overlay) -> list[str]:
        """ZONE's files as AFTER at SERIAL has them (the shards WORK touched, or all of them); their paths."""
        state = self.cache.zones[zone]
        if not state.settled:  # the old layout or another number of shards (not reconciled yet): all of it
            return rewrite_zone(files, self.reader, zone, state, after, serial)
        # the head first: its stamp then shows any write that was not committed
        files.write(self.reader.head_path(zone), self.reader.render(state, serial, after))
        return [f"{zone}/{zones.rendered_file(zone)}", *write_shards(files, self.reader, zone, after,
                                                                    after.indexes(work.changes))]

    def _failed(self, exc: Exception) -> Result:
        """The commit failed (HEAD's files are back): logged, counted, shown in the status; each update's result."""
        log.exception("commit failed; the last commit's files are kept")
        self.observer.error("git")
        self.status.failure = self.status.last_error = f"commit failed: {exc}"
        return Result(Outcome.FAILED, reason=self.status.failure)

    def _withdraw(self, change: ZoneChange, sent: Answer, after: records.Dynamic, work: shards.Overlay,
                  deadline: float) -> None:
        """CHANGE was sent to named, then its commit failed: named goes back to the zone as last committed."""
        state = self.cache.zones[change.zone]
        back = self._change(change.zone, state.serial, after, state.dynamic, work)
        self.named.withdraw(change, sent, back, deadline)

    def _committed(self, touched: list[str], after: dict[str, shards.ShardedRecords], serials: dict[str, int]) -> None:
        """The branch moved: the cache holds TOUCHED's zones as committed (records, serial, layout, files' stamp)."""
        for zone in touched:
            state = self.cache.zones[zone]
            state.dynamic = after[zone]
            state.serial = serials[zone]
            state.settled, state.legacy = True, False
            state.stamp = stamp(*self.reader.service_paths(zone))
        self.status.last_publish = self.clock()
        self.status.failure = None

    def _change(self, zone: str, serial: int, before: records.Dynamic, after: records.Dynamic,
                work: shards.Overlay) -> ZoneChange:
        """ZONE from BEFORE to AFTER at SERIAL, as named needs it (the RRsets the group touched, WORK's)."""
        state = self.cache.zones[zone]
        return zone_change(zone, serial, state.static, before, after, work.changes.keys(),
                           state.source.settings.dynamic_ttl)

    def _decide(self, update: Update, work: dict[str, shards.Overlay]) -> tuple[Result | None, list[ChangeRecord]]:
        """UPDATE applied to WORK (the group's records so far, per zone): (None, its change records), or why not."""
        if update.guard is not None and not update.guard():
            return Result(Outcome.REFUSED, reason="the credential is gone"), []
        try:
            state = self.cache.fresh(update.zone)
        except KeyError:
            return Result(Outcome.FAILED, reason=f"no zone {update.zone}"), []
        if state.broken:
            return Result(Outcome.FAILED, reason=f"zone {update.zone} is broken: {state.broken}"), []
        if not self.files.writable(update.zone):  # its files could not be put back: nothing is published from them
            return Result(Outcome.FAILED, reason=f"zone {update.zone} is held"), []
        if update.zone not in work:
            work[update.zone] = shards.Overlay(state.dynamic)  # the group's changes; the zone is not copied
        changes, refused = records.apply(update, state.static, work[update.zone], state.types)
        if refused is not None:
            if refused.outcome is Outcome.FAILED:
                log.warning("%s: refused: %s", update.zone, refused.reason)
            return refused, []
        if not changes:
            return Result(Outcome.UNCHANGED), []
        made = []
        dynamic = work[update.zone]
        for (label, rtype), new in sorted(changes.items()):
            made.append(_change_record(update.zone, label, rtype, dynamic.get((label, rtype)), new, update.actor,
                                       update.change_id))
            if new is None:
                del dynamic[(label, rtype)]
            else:
                dynamic[(label, rtype)] = new
                state.types.add(rtype)  # a superset does no harm, even if the commit fails
        return None, made


def write_shards(files: Replacement, reader: ZoneReader, zone: str, found: shards.ShardedRecords,
                 indexes: set[int]) -> list[str]:
    """Write the shards INDEXES of FOUND (ZONE's records), removing those left empty; their repository paths."""
    zone_dir = reader.root / zone
    rels = []
    for index in sorted(indexes):
        rel = shards.shard_path(index, found.count)
        text = found.text(index)
        if text:
            files.write(zone_dir / rel, text)
        elif (zone_dir / rel).exists():
            files.remove(zone_dir / rel)
        else:  # made and emptied again within the group: no file, nothing to commit
            continue
        rels.append(f"{zone}/{rel}")
    return rels


def rewrite_zone(files: Replacement, reader: ZoneReader, zone: str, state: ZoneState, found: shards.ShardedRecords,
                 serial: int) -> list[str]:
    """Make ZONE's service files FOUND and the head of STATE at SERIAL: every shard that differs, the old
    layout's dynamic.records and shards of another count removed. Their repository paths (for one commit)."""
    zone_dir = reader.root / zone
    want, have = found.texts(), shards.record_files(zone_dir)  # the old layout's dynamic.records goes too
    files.write(reader.head_path(zone), reader.render(state, serial, found))  # first, as in every commit
    rels = [zones.rendered_file(zone)]
    for rel in sorted(have.keys() - want.keys()):
        files.remove(zone_dir / rel)
        rels.append(rel)
    for rel, text in want.items():
        if have.get(rel) != text:
            files.write(zone_dir / rel, text)
            rels.append(rel)
    return [f"{zone}/{rel}" for rel in rels]


def _change_record(zone: str, label: str, rtype: str, old: records.RecordSet | None,
                   new: records.RecordSet | None, actor: Actor, change: int | None = None) -> ChangeRecord:
    """The audit trailer's record of one changed RRset: its rdata before and after, joined by ", "."""
    fqdn = zone if label == records.APEX else f"{label}.{zone}"
    return ChangeRecord(fqdn, rtype, old and ", ".join(old.rdatas), new and ", ".join(new.rdatas), actor.name,
                        actor.client, actor.interface, actor.agent, actor.request, change)
