"""The publisher: the one writer of the zones repository.

``Publisher.commit`` takes a group of changes and, under the lock, applies
them to the in-memory dynamic records, renders each touched zone once with a
bumped serial, writes it atomically, commits once and asks named to reload
each zone; ``wait_served`` then waits, without the lock, until named serves
the new serials (``apply`` does both). ``ddns.publish_queue.PublisherThread``
feeds it from a queue so that concurrent requests share one render / commit /
reload (group commit).

Its parts: ``zonestate.ZoneReader`` reads and validates a zone,
``worktree.ServiceFiles`` puts the service's files back as HEAD has them when
a commit fails (or holds the zone), ``bindtarget.BindTarget`` reloads named and
waits for a served serial. None of them locks: the publisher calls them under
its lock.

The lock (``locked``, ``ddns.repolock``): a re-entrant thread lock plus
``flock`` on ``.git/ddns.lock``, so that CLI commands and git hooks in other
processes wait their turn. Its rules:

- Every write to the working tree, the index or HEAD, and every change of the
  in-memory zone state, is made under it. Taking it clears git locks a killed
  writer left.
- A reader (``current``, ``records``) of a known zone does not wait for this
  process's own publish: while the publisher holds the lock, the in-memory
  state is the acknowledged truth. It takes the lock only to read files
  another process changed (or a zone another process added) again.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

from . import bind, records, zones
from .bindtarget import BindTarget, PublishTarget
from .errors import Unavailable
from .gitrepo import ChangeRecord, SyncConflict, ZonesRepo, commit_message
from .model import Actor, Outcome, Result, RRset, Update
from .repolock import RepoLock
from .serial import next_serial, serial_gt
from .worktree import BACKUP_SUFFIX, ServiceFiles, atomic_write
from .zonestate import ZoneReader, ZoneState, stamp

log = logging.getLogger("ddns.publisher")


class ZoneHeld(Unavailable):
    """A zone's files differ from HEAD and cannot be put back: nothing is published from them."""


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


class Publisher:
    """The one writer: commits groups of changes and keeps named serving what HEAD has (see the module)."""

    def __init__(self, repo: ZonesRepo, template_dirs: list[Path], target: PublishTarget,
                 clock: Callable[[], float] = time.time, fsync: bool = True):
        self.repo = repo
        self.root = repo.path
        self.clock = clock
        self.fsync = fsync
        self.named = BindTarget(target, self._newest_serial, self._note_error)
        self.reader = ZoneReader(self.root, zones.template_environment(template_dirs), target.checkzone,
                                 self._note_error)
        self.files = ServiceFiles(repo, self.root, self.reader.service_paths, self._note_error, fsync)
        self.zones: dict[str, ZoneState] = {}
        self.last_publish: float | None = None
        self.last_error: str | None = None
        self.failure: str | None = None      # why the last commit failed; None once one succeeds
        self.lock = RepoLock(repo)

    @property
    def held(self) -> dict[str, str]:
        """Zones whose files could not be put back as HEAD has them, and why: nothing is published from them."""
        return self.files.held

    @property
    def unserved(self) -> set[str]:
        """Zones named did not serve after their last publish (the retry loop reloads them)."""
        return self.named.unserved

    def _note_error(self, message: str) -> None:
        """Where the parts report a failure: the last error the status page and /healthz show."""
        self.last_error = message

    def _newest_serial(self, zone: str) -> int | None:
        state = self.zones.get(zone)
        return None if state is None else state.serial

    # ---- locking and state -------------------------------------------------
    def locked(self) -> ContextManager[None]:
        """Exclusive access to the repository, across threads and processes (see the module)."""
        return self.lock.held()

    def _unchanged_or_load(self, zone: str) -> ZoneState:
        """The zone's state as validated before when none of its files changed since, else loaded anew.

        A held zone keeps its state: its files are not what was acknowledged.
        """
        state = self.zones.get(zone)
        if state is not None and not self.files.writable(zone):
            return state
        if state is not None and self.reader.unchanged(zone, state):
            return state
        return self._load_committed(zone)

    def _load_committed(self, zone: str) -> ZoneState:
        """ZONE's state read again from its files, once they are what HEAD has.

        Another writer changed them. If it did not commit (it was killed in the
        middle), its edit is put back first: an unacknowledged change is never
        adopted. A zone whose files cannot be put back is held, its state kept.
        """
        self.files.put_back([zone])
        state = self.zones.get(zone)
        if zone in self.files.held and state is not None:
            return state
        return self.reader.load(zone)

    def load(self) -> None:
        """Read every zone from the working tree and validate its human-edited sources."""
        with self.locked():
            self.zones = {}
            for zone in zones.list_zones(self.root):
                self.zones[zone] = self.reader.load(zone)

    def _fresh(self, zone: str) -> ZoneState:
        """The zone's state, re-read if another process changed its files."""
        state = self.zones.get(zone)
        if state is None:  # perhaps added by another process since we loaded
            if not (self.root / zone / zones.SETTINGS_FILE).exists():
                raise KeyError(zone)
            with self.locked():
                if zone not in self.zones:
                    self.zones[zone] = self.reader.load(zone)
                return self.zones[zone]
        if state.stamp and zone not in self.files.held and stamp(*self.reader.service_paths(zone)) != state.stamp:
            # Our own publisher rewrites the files before it commits: while it
            # holds the lock, the in-memory state is the acknowledged truth and
            # a request must not wait for the publish to finish.
            with self.lock.unless_busy() as acquired:
                if not acquired:
                    return state
                state = self.zones[zone]
                if zone not in self.files.held and stamp(*self.reader.service_paths(zone)) != state.stamp:
                    if not (self.root / zone / zones.SETTINGS_FILE).exists():  # another process removed it
                        del self.zones[zone]
                        self.named.unserved.discard(zone)
                        raise KeyError(zone)
                    state = self._load_committed(zone)
                    self.zones[zone] = state
        return state

    def current(self, zone: str, label: str, rtype: str) -> str | None:
        """The rdata of LABEL's dynamic RTYPE set now, joined by ", " as the audit trailer writes it; None: none."""
        found = self._fresh(zone).dynamic.get((label, rtype))
        return None if found is None else ", ".join(found.rdatas)

    def has_zone(self, zone: str) -> bool:
        """Whether ZONE is in the repository now (another process may have added or removed it)."""
        try:
            self._fresh(zone)
        except KeyError:
            return False
        return True

    def dynamic(self, zone: str, label: str) -> dict[str, records.RecordSet]:
        """LABEL's dynamic RRsets in ZONE now, by type."""
        state = self._fresh(zone)
        return {t: rs for t in state.types if (rs := state.dynamic.get((label, t))) is not None}

    def rrsets(self, zone: str, label: str) -> list[RRset]:
        """What ZONE holds at LABEL now, static and dynamic, the apex SOA with the current serial."""
        state = self._fresh(zone)
        name = zone if label == records.APEX else f"{label}.{zone}"
        ttl = state.source.settings.dynamic_ttl
        found = {**state.static.get(label, {}), **self.dynamic(zone, label)}
        out = []
        for rtype, rs in sorted(found.items()):
            rdatas = rs.rdatas if rtype != "SOA" else tuple(records.with_serial(r, state.serial) for r in rs.rdatas)
            out.append(RRset(name, rtype, ttl if rs.ttl is None else rs.ttl, rdatas))
        return out

    # ---- publishing --------------------------------------------------------
    def apply(self, updates: list[Update]) -> list[Result]:
        """Publish UPDATES as one commit and wait until named serves them; one result per update."""
        batch = self.commit(updates)
        return batch.settle(self.wait_served(batch.serials, deadline=batch.deadline))

    def wait_served(self, serials: dict[str, int], timeout: float | None = None,
                    deadline: float | None = None) -> set[str]:
        """Wait until named serves each zone at (or after) its serial; returns the zones served."""
        return self.named.wait_served(serials, timeout, deadline)

    def commit(self, updates: list[Update]) -> "Batch":
        """Decide UPDATES in order, render each touched zone once, commit once, ask named to reload.

        Each update's guard and prerequisites are evaluated here, under the
        lock, against the records as the updates before it in the group left
        them; each is applied all or nothing. Does not wait for named: the
        caller waits for ``batch.serials`` to be served (``wait_served``), so
        the next group can be committed meanwhile.
        """
        with self.locked():
            return self._commit_locked(updates)

    def _decide(self, update: Update, work: dict[str, records.Dynamic]) -> tuple[Result | None, list[ChangeRecord]]:
        """UPDATE applied to WORK (the group's records so far, per zone): (None, its change records), or why not."""
        if update.guard is not None and not update.guard():
            return Result(Outcome.REFUSED, reason="the credential is gone"), []
        try:
            state = self._fresh(update.zone)
        except KeyError:
            return Result(Outcome.FAILED, reason=f"no zone {update.zone}"), []
        if state.broken:
            return Result(Outcome.FAILED, reason=f"zone {update.zone} is broken: {state.broken}"), []
        if not self.files.writable(update.zone):  # its files could not be put back: nothing is published from them
            return Result(Outcome.FAILED, reason=f"zone {update.zone} is held"), []
        work.setdefault(update.zone, dict(state.dynamic))  # copied once per group and zone
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
            made.append(_change_record(update.zone, label, rtype, dynamic.get((label, rtype)), new, update.actor))
            if new is None:
                del dynamic[(label, rtype)]
            else:
                dynamic[(label, rtype)] = new
                state.types.add(rtype)  # a superset does no harm, even if the commit fails
        return None, made

    def _commit_locked(self, updates: list[Update]) -> "Batch":
        results: list[Result | None] = [None] * len(updates)
        changes: list[tuple[int, ChangeRecord]] = []
        work: dict[str, records.Dynamic] = {}
        for i, update in enumerate(updates):
            results[i], made = self._decide(update, work)
            changes += [(i, c) for c in made]
        zone_of = [u.zone for u in updates]
        unchanged = Result(Outcome.UNCHANGED)
        if not changes:
            return Batch([r or unchanged for r in results], zone_of, {})

        touched = sorted({updates[i].zone for i, _ in changes})
        serials: dict[str, int] = {}
        paths: list[str] = []
        try:
            with self.files.replacing(touched) as files:  # a failure puts HEAD's files back (or holds the zone)
                for zone in touched:
                    state = self.zones[zone]
                    serials[zone] = next_serial(state.serial, int(self.clock()))
                    dyn_path, rendered_path = self.reader.service_paths(zone)
                    files.write(dyn_path, zones.format_dynamic(work[zone]))
                    files.write(rendered_path, self.reader.render(state, serials[zone], work[zone]))
                    paths += [f"{zone}/{dyn_path.name}", f"{zone}/{rendered_path.name}"]
                actors = {c.actor for _, c in changes}
                self.repo.commit(paths, commit_message([c for _, c in changes]),
                                 author=actors.pop() if len(actors) == 1 else None)
        except Exception as exc:  # disk full, git failure: HEAD's files are back, nothing changed
            log.exception("commit failed; the last commit's files are kept")
            self.failure = self.last_error = f"commit failed: {exc}"
            failed = Result(Outcome.FAILED, reason=self.failure)
            for i, _ in changes:
                results[i] = failed
            return Batch([r or unchanged for r in results], zone_of, {})

        for zone in touched:
            state = self.zones[zone]
            state.dynamic = work[zone]
            state.serial = serials[zone]
            state.stamp = stamp(*self.reader.service_paths(zone))
        self.last_publish = self.clock()
        self.failure = None
        deadline = self.named.deadline()
        for zone in touched:
            if not self.named.reload(zone, deadline):  # named unreachable: committed, not served; retried later
                del serials[zone]
                self.named.unserved.add(zone)
                for i, _ in changes:
                    if updates[i].zone == zone:
                        results[i] = Result(Outcome.UNSERVED, reason="named did not take the reload")
        return Batch(results, zone_of, serials, deadline)

    # ---- startup and repair ------------------------------------------------
    def recover(self) -> None:
        """After a crash: drop service-file edits that never reached a commit (HEAD is the truth)."""
        with self.locked():
            if self.repo.head() is None:
                return
            for lock in self.repo.clear_stale_locks():
                log.warning("removed stale git lock %s", lock)
            for zone in zones.list_zones(self.root):
                dirty = [rel for rel in (f"{zone}/{p.name}" for p in self.reader.service_paths(zone)) if not self.repo.is_clean([rel])]
                if dirty:
                    log.warning("discarding %s: written but never committed", ", ".join(dirty))
                    self.files.put_back([zone])
                    if zone in self.files.held:  # the service must not start from files nobody acknowledged
                        raise ZoneHeld(f"cannot recover zone {zone}: {self.files.held[zone]}")
                    for rel in dirty:
                        self.files.unstage(rel)
            for pattern in ("*/.*.zone.*", "*/.dynamic.records.*", f"*/.*{BACKUP_SUFFIX}"):
                for tmp in self.root.glob(pattern):
                    tmp.unlink(missing_ok=True)

    def reconcile(self) -> dict[str, str]:
        """Make named serve what the sources say: re-render what changed, reload what is not served.

        Returns a zone -> status map ("served", "published", "broken: ...", "unserved").
        """
        status: dict[str, str] = {}
        with self.locked():
            known = set(self.zones)
            self.zones = {z: self._unchanged_or_load(z) for z in zones.list_zones(self.root)}
            for zone in self._remove_orphans():
                status[zone] = "removed"
            zone_set_changed = self.write_zones_conf() or known != set(self.zones)
            to_reload: list[str] = []
            serials: dict[str, int] = {}
            for zone, state in self.zones.items():
                if state.broken:
                    status[zone] = f"broken: {state.broken}"
                    continue
                if zone in self.files.held:
                    status[zone] = f"held: {self.files.held[zone]}"
                    continue
                dyn_path, rendered_path = self.reader.service_paths(zone)
                on_disk = rendered_path.read_text() if rendered_path.exists() else ""
                served = self.named.served_serial(zone) if self.named.enabled else state.serial
                if self.reader.render(state, state.serial) != on_disk or (served is not None and serial_gt(served, state.serial)):
                    base = served if served is not None and serial_gt(served, state.serial) else state.serial
                    serial = next_serial(base, int(self.clock()))
                    with self.files.replacing([zone]) as files:
                        files.write(rendered_path, self.reader.render(state, serial))
                        files.write(dyn_path, zones.format_dynamic(state.dynamic))
                        self.repo.commit([f"{zone}/{dyn_path.name}", f"{zone}/{rendered_path.name}"],
                                         f"Re-render {zone} (serial {serial})\n\nThe zone's sources changed, or named served a newer serial.\n")
                    state.serial = serial
                    state.stamp = stamp(dyn_path, rendered_path)
                    status[zone] = "published"
                    to_reload.append(zone)
                elif served != state.serial:
                    to_reload.append(zone)
                else:
                    status[zone] = "served"
                serials[zone] = state.serial
            if (to_reload or zone_set_changed) and self.named.enabled:
                try:
                    self.named.reconfig()
                except bind.BindError as exc:
                    log.warning("reconfig failed: %s", exc)
            if to_reload:
                served_now = self.named.reload_and_verify(to_reload, serials)
                for zone in to_reload:
                    status[zone] = status.get(zone, "served") if zone in served_now else "unserved"
        return status

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
            pending = sorted(z for z in self.unserved if z in self.zones)
            serials = {z: self.zones[z].serial for z in pending}
        self.named.reload_and_verify(pending, serials)

    def write_zones_conf(self) -> bool:
        """Rewrite the named.conf fragment that lists the zones (when configured); True if it changed."""
        files = {z: (self.root / z / zones.rendered_file(z)).resolve() for z in self.zones}
        return self.named.write_zones_conf(files, self.fsync)

    def _remove_orphans(self) -> list[str]:
        """Service files of zones whose zone.toml a merge removed: delete and commit them."""
        removed = []
        for zone_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            zone = zone_dir.name
            if (zone_dir / zones.SETTINGS_FILE).exists():
                continue
            paths = [p for p in self.reader.service_paths(zone) if p.exists()]
            if not paths:
                continue
            for path in paths:
                path.unlink()
            self.repo.commit([f"{zone}/{p.name}" for p in paths],
                             f"Remove zone {zone}\n\nIts zone.toml was removed; the service's files go with it.\n")
            self.named.unserved.discard(zone)
            removed.append(zone)
        return removed

    def sync(self, branch: str = "main", token: str = "", attempts: int = 5, always_reconcile: bool = False) -> dict[str, str]:
        """Take in what was merged upstream, publish it, and push the service's commits.

        Fetch, rebase the service's unpushed commits onto the upstream (they
        touch other files than humans do), re-render and validate what changed
        (reconcile), push; when someone pushed meanwhile, again. A real
        conflict raises SyncConflict and changes nothing: BIND keeps the last
        good zones. A push the upstream refuses for another reason (a full
        disk, a hook) raises PushFailed with git's message, at once.
        """
        with self.locked():
            if not self.repo.has_upstream():
                return self.reconcile()
            status: dict[str, str] = {}  # kept across attempts: a retried push must not hide what was published
            for _ in range(attempts):
                before = self.repo.head()
                upstream = self.repo.fetch(branch)
                if upstream is not None and not self.repo.is_ancestor(upstream):
                    self.repo.rebase(upstream)
                if always_reconcile or self.repo.head() != before:
                    status.update(self.reconcile())
                if upstream == self.repo.head() or self.repo.push(branch, token):
                    return status
            raise SyncConflict(f"the upstream kept moving; gave up after {attempts} attempts")

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
        return head is None or self.repo.push(branch, token, head)

    def add_zone(self, zone: str, settings_toml: str, static_text: str, actor: str) -> Outcome:
        """Create a zone directory, validate, commit, and have named load it."""
        with self.locked():
            zone_dir = self.root / zone
            if zone_dir.exists() and any(zone_dir.iterdir()):  # an empty one is what a removed zone leaves
                raise FileExistsError(f"zone {zone} exists in the repository")
            zone_dir.mkdir(exist_ok=True)
            try:
                (zone_dir / zones.SETTINGS_FILE).write_text(settings_toml)
                (zone_dir / zones.STATIC_FILE).write_text(static_text)
                state = self.reader.read(zone)
                state.serial = next_serial(0, int(self.clock()))
                text = self.reader.render(state, state.serial)
                error = self.reader.check(zone, text)
                if error:
                    raise ValueError(f"zone {zone} does not validate: {error}")
                dyn_path, rendered_path = self.reader.service_paths(zone)
                atomic_write(dyn_path, "", self.fsync)
                atomic_write(rendered_path, text, self.fsync)
                self.repo.commit([zone], f"Add zone {zone}\n\nby {actor}\n", author=actor)
            except BaseException:
                for p in sorted(zone_dir.rglob("*"), reverse=True):
                    p.unlink()
                zone_dir.rmdir()
                raise
            state.stamp = stamp(dyn_path, rendered_path)
            self.zones[zone] = state
            self.write_zones_conf()
            if not self.named.enabled:
                return Outcome.PUBLISHED
            try:
                self.named.reconfig()
            except bind.BindError as exc:
                self.last_error = str(exc)
                self.named.unserved.add(zone)
                return Outcome.UNSERVED
            served = self.named.reload_and_verify([zone], {zone: state.serial})
            return Outcome.PUBLISHED if zone in served else Outcome.UNSERVED

    def update_settings(self, zone: str, settings_toml: str, actor: str) -> Outcome:
        """Replace ZONE's zone.toml (an admin's change from the portal): validate, commit, reload."""
        with self.locked():
            state = self._fresh(zone)
            settings_path = self.root / zone / zones.SETTINGS_FILE
            old_text = settings_path.read_text()
            if old_text == settings_toml:
                return Outcome.UNCHANGED
            if not self.files.writable(zone):
                raise ZoneHeld(f"zone {zone} is held: {self.files.held[zone]}")
            dyn_path, rendered_path = self.reader.service_paths(zone)
            settings_rel = f"{zone}/{zones.SETTINGS_FILE}"
            with self.files.replacing([zone], (settings_rel,)) as files:
                files.write(settings_path, settings_toml)
                new_state = self.reader.read(zone)
                new_state.dynamic, new_state.types = state.dynamic, state.types
                new_state.serial = next_serial(state.serial, int(self.clock()))
                text = self.reader.render(new_state, new_state.serial)
                error = self.reader.check(zone, text)
                if error:
                    raise ValueError(f"zone {zone} does not validate: {error}")
                files.write(rendered_path, text)
                self.repo.commit([settings_rel, f"{zone}/{rendered_path.name}"],
                                 f"Change the settings of {zone}\n\nby {actor}\n", author=actor)
            new_state.stamp = stamp(dyn_path, rendered_path)
            self.zones[zone] = new_state
            self.last_publish = self.clock()
            if not self.named.reload(zone):
                self.named.unserved.add(zone)
                return Outcome.UNSERVED
            served = self.wait_served({zone: new_state.serial})
            return Outcome.PUBLISHED if zone in served else Outcome.UNSERVED


def _change_record(zone: str, label: str, rtype: str, old: records.RecordSet | None,
                   new: records.RecordSet | None, actor: Actor) -> ChangeRecord:
    """The audit trailer's record of one changed RRset: its rdata before and after, joined by ", "."""
    fqdn = zone if label == records.APEX else f"{label}.{zone}"
    return ChangeRecord(fqdn, rtype, old and ", ".join(old.rdatas), new and ", ".join(new.rdatas), actor.name,
                        actor.client, actor.interface, actor.agent, actor.request)
