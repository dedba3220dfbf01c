"""The publisher: the one writer of the zones repository.

``Publisher.apply`` takes a group of changes and, under one lock (a thread
lock plus ``flock`` on a file in ``.git`` so other processes wait their
turn), applies them to the in-memory dynamic records, renders each touched
zone once with a bumped serial, writes it atomically, commits once, reloads
each zone and checks that named serves the new serial.

``ddns.publish_queue.PublisherThread`` feeds it from a queue so that
concurrent requests share one render / commit / reload (group commit).
"""
from __future__ import annotations

import enum
import fcntl
import logging
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import jinja2

from . import bind, zones
from .gitrepo import ChangeRecord, SyncConflict, ZonesRepo, commit_message
from .serial import next_serial, serial_gt
from .worktree import BACKUP_SUFFIX, Replacement, atomic_write, put_back

log = logging.getLogger("ddns.publisher")


class ZoneHeld(RuntimeError):
    """A zone's files differ from HEAD and cannot be put back: nothing is published from them."""


class Outcome(enum.Enum):
    GOOD = "good"        # committed, and named serves it
    NOCHG = "nochg"      # nothing to change
    DNSERR = "dnserr"    # committed, but named does not serve it (yet)
    FAILED = "911"       # not committed: nothing changed
    REFUSED = "refused"  # the change's precondition did not hold when it was applied: nothing changed


# How long a zone may stay behind its serial before named is asked to reload it again.
_REASK_SECONDS = 0.2
# How long a running git process (a killed writer's child) may keep its lock before a commit fails.
_LIVE_GIT_WAIT = 1.0
# The shortest rndc timeout, however little of the verify budget is left.
_MIN_RNDC_TIMEOUT = 0.05


@dataclass(frozen=True)
class Change:
    """Set (or with ``address=None`` delete) one record of one host."""

    zone: str
    label: str
    rtype: str
    address: str | None
    actor: str
    client: str = ""
    interface: str = "cli"
    agent: str = ""
    request: str = ""
    # Evaluated under the publisher's lock just before the change is applied; False refuses it.
    # The caller's decision ("this host still exists") is then made against the state it changes.
    guard: Callable[[], bool] | None = field(default=None, compare=False, repr=False)

    @property
    def fqdn(self) -> str:
        return f"{self.label}.{self.zone}"


@dataclass
class Batch:
    """What one commit did: outcomes settled so far, and the serial each zone must be served at."""

    outcomes: list[Outcome | None]  # None: committed, waiting for named to serve its zone
    zones: list[str]                # the zone of each change
    serials: dict[str, int]         # zones reloaded, and the serial that proves it
    deadline: float | None = None   # (monotonic) when the wait for named ends: one verify budget per commit

    def settle(self, served: set[str]) -> list[Outcome]:
        return [o if o is not None else (Outcome.GOOD if self.zones[i] in served else Outcome.DNSERR)
                for i, o in enumerate(self.outcomes)]


@dataclass
class ZoneState:
    """What the publisher knows of one zone: its validated sources and records."""

    source: zones.ZoneSource
    template: jinja2.Template
    dynamic: zones.DynamicRecords
    serial: int
    stamp: tuple                # of the service's files, to notice other writers
    broken: str | None = None  # why the zone's human-edited sources cannot be published
    source_stamp: tuple = ()   # of the human-edited files, to validate them only when they change


def _stamp(*paths: Path) -> tuple:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


@dataclass
class PublishTarget:
    """Where the publisher reloads and verifies (None rndc: no BIND at all)."""

    rndc: bind.Rndc | None
    dns_server: str = "127.0.0.1"
    dns_port: int = 53
    verify_timeout: float = 5.0
    zones_conf: Path | None = None
    checkzone: str = "named-checkzone"


class Publisher:
    def __init__(self, repo: ZonesRepo, template_dirs: list[Path], target: PublishTarget,
                 clock: Callable[[], float] = time.time, fsync: bool = True):
        self.repo = repo
        self.root = repo.path
        self.target = target
        self.clock = clock
        self.fsync = fsync
        self.env = zones.template_environment(template_dirs)  # trusted templates only, never the repository's
        self.zones: dict[str, ZoneState] = {}
        self.unserved: set[str] = set()
        self.last_publish: float | None = None
        self.last_error: str | None = None
        self.failure: str | None = None      # why the last commit failed; None once one succeeds
        self.held: dict[str, str] = {}       # zones whose files could not be put back, and why
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_path = Path(repo._repo.git_dir) / "ddns.lock"

    # ---- locking and state -------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access to the repository, across threads and processes."""
        with self._thread_lock:
            if self._lock_depth:  # re-entered by the thread that holds it
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            with open(self._lock_path, "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                self._lock_depth = 1
                try:
                    self._clear_stale_locks()
                    yield
                finally:
                    self._lock_depth = 0
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _clear_stale_locks(self) -> None:
        """Git locks left by a killed writer go as soon as we hold the lock, not only at start."""
        for lock in self.repo.clear_stale_locks(wait=_LIVE_GIT_WAIT):
            log.warning("removed stale git lock %s", lock)

    def _paths(self, zone: str) -> tuple[Path, Path]:
        d = self.root / zone
        return d / zones.DYNAMIC_FILE, d / zones.rendered_file(zone)

    def _load_zone(self, zone: str) -> ZoneState:
        zone_dir = self.root / zone
        dyn_path, rendered_path = self._paths(zone)
        stamp = _stamp(dyn_path, rendered_path)
        source = zones.ZoneSource.read(zone_dir)
        template = self.env.get_template(zones.TEMPLATE_FILE)
        dynamic = zones.parse_dynamic(dyn_path.read_text()) if dyn_path.exists() else {}
        zones.check_host_names(source, {label for label, _ in dynamic})
        serial = zones.serial_of(rendered_path.read_text()) if rendered_path.exists() else None
        return ZoneState(source, template, dynamic, serial or 0, stamp, source_stamp=_stamp(*self._source_paths(zone)))

    def _source_paths(self, zone: str) -> tuple[Path, Path, Path]:
        d = self.root / zone
        return d / zones.SETTINGS_FILE, d / zones.STATIC_FILE, d / zones.TEMPLATE_FILE

    def _unchanged_or_load(self, zone: str) -> ZoneState:
        """The zone's state as validated before when none of its files changed since, else loaded anew.

        A held zone keeps its state: its files are not what was acknowledged.
        """
        state = self.zones.get(zone)
        if state is not None and not self._writable(zone):
            return state
        if (state is not None and state.stamp and state.stamp == _stamp(*self._paths(zone))
                and state.source_stamp == _stamp(*self._source_paths(zone))):
            return state
        return self._load_committed(zone)

    def _load_committed(self, zone: str) -> ZoneState:
        """ZONE's state read again from its files, once they are what HEAD has.

        Another writer changed them. If it did not commit (it was killed in the
        middle), its edit is put back first: an unacknowledged change is never
        adopted. A zone whose files cannot be put back is held, its state kept.
        """
        self._put_back([zone])
        state = self.zones.get(zone)
        if zone in self.held and state is not None:
            return state
        return self._load_validated(zone)

    def load(self) -> None:
        """Read every zone from the working tree and validate its human-edited sources."""
        with self.locked():
            self.zones = {}
            for zone in zones.list_zones(self.root):
                self.zones[zone] = self._load_validated(zone)

    def _load_validated(self, zone: str) -> ZoneState:
        try:
            state = self._load_zone(zone)
        except (OSError, ValueError, jinja2.TemplateError) as exc:
            log.error("zone %s cannot be read: %s", zone, exc)
            self.last_error = f"zone {zone} cannot be read: {exc}"
            placeholder = zones.ZoneSource(zones.ZoneSettings(zone), "")
            return ZoneState(placeholder, jinja2.Template(""), {}, 0, (), broken=str(exc))
        error = self._check(zone, self._render(state, state.serial or 1))
        if error:
            log.error("zone %s does not validate; keeping what named serves: %s", zone, error)
            state.broken = error
            self.last_error = f"zone {zone} does not validate: {error}"
        return state

    def _fresh(self, zone: str) -> ZoneState:
        """The zone's state, re-read if another process changed its files."""
        state = self.zones.get(zone)
        if state is None:  # perhaps added by another process since we loaded
            if not (self.root / zone / zones.SETTINGS_FILE).exists():
                raise KeyError(zone)
            with self.locked():
                if zone not in self.zones:
                    self.zones[zone] = self._load_validated(zone)
                return self.zones[zone]
        if state.stamp and zone not in self.held and _stamp(*self._paths(zone)) != state.stamp:
            # Our own publisher rewrites the files before it commits: while it
            # holds the lock, the in-memory state is the acknowledged truth and
            # a request must not wait for the publish to finish.
            if not self._thread_lock.acquire(blocking=False):
                return state
            try:
                with self.locked():
                    state = self.zones[zone]
                    if zone not in self.held and _stamp(*self._paths(zone)) != state.stamp:
                        if not (self.root / zone / zones.SETTINGS_FILE).exists():  # another process removed it
                            del self.zones[zone]
                            self.unserved.discard(zone)
                            raise KeyError(zone)
                        state = self._load_committed(zone)
                        self.zones[zone] = state
            finally:
                self._thread_lock.release()
        return state

    def current(self, zone: str, label: str, rtype: str) -> str | None:
        """The address a host's record has now (for the nochg fast path)."""
        return self._fresh(zone).dynamic.get((label, rtype))

    def records(self, zone: str) -> zones.DynamicRecords:
        return dict(self._fresh(zone).dynamic)

    # ---- rendering and validation -----------------------------------------
    def _render(self, state: ZoneState, serial: int, dynamic: zones.DynamicRecords | None = None) -> str:
        return zones.render_zone(state.template, state.source.settings, serial, state.source.static_text,
                                 state.dynamic if dynamic is None else dynamic)

    def _check(self, zone: str, text: str) -> str | None:
        """named-checkzone on a temp copy: the real file is only ever replaced by a valid one."""
        with tempfile.NamedTemporaryFile("w", suffix=".zone") as f:
            f.write(text)
            f.flush()
            return bind.check_zone(zone, Path(f.name), self.target.checkzone)

    # ---- publishing --------------------------------------------------------
    def apply(self, changes: list[Change]) -> list[Outcome]:
        """Publish CHANGES as one commit and wait until named serves them; one outcome per change."""
        batch = self.commit(changes)
        return batch.settle(self.wait_served(batch.serials, deadline=batch.deadline))

    def commit(self, changes: list[Change]) -> "Batch":
        """Apply CHANGES, render each touched zone once, commit once, ask named to reload.

        Does not wait for named: the caller waits for ``batch.serials`` to be
        served (``wait_served``), so the next group can be committed meanwhile.
        """
        with self.locked():
            return self._commit_locked(changes)

    def _commit_locked(self, changes: list[Change]) -> "Batch":
        outcomes: list[Outcome | None] = [None] * len(changes)
        records: list[tuple[int, ChangeRecord]] = []
        new_dynamic: dict[str, zones.DynamicRecords] = {}
        for i, change in enumerate(changes):
            if change.guard is not None and not change.guard():
                outcomes[i] = Outcome.REFUSED
                continue
            try:
                state = self._fresh(change.zone)
            except KeyError:
                outcomes[i] = Outcome.FAILED
                continue
            if state.broken:
                outcomes[i] = Outcome.DNSERR
                continue
            if not self._writable(change.zone):  # its files could not be put back: nothing is published from them
                outcomes[i] = Outcome.FAILED
                continue
            if change.address is not None and change.label in state.source.owners:
                log.warning("%s: refused, static records of %s use that name", change.fqdn, change.zone)
                outcomes[i] = Outcome.FAILED  # never merge a host's records into static ones
                continue
            dynamic = new_dynamic.setdefault(change.zone, dict(state.dynamic))
            key = (change.label, change.rtype)
            old = dynamic.get(key)
            if old == change.address:
                outcomes[i] = Outcome.NOCHG
                continue
            if change.address is None:
                del dynamic[key]
            else:
                dynamic[key] = change.address
            records.append((i, ChangeRecord(change.fqdn, change.rtype, old, change.address, change.actor,
                                            change.client, change.interface, change.agent, change.request)))
        zone_of = [c.zone for c in changes]
        if not records:
            return Batch([o or Outcome.NOCHG for o in outcomes], zone_of, {})

        touched = sorted({changes[i].zone for i, _ in records})
        serials: dict[str, int] = {}
        paths: list[str] = []
        try:
            with self._replacing(touched) as files:  # a failure puts HEAD's files back (or holds the zone)
                for zone in touched:
                    state = self.zones[zone]
                    serials[zone] = next_serial(state.serial, int(self.clock()))
                    dyn_path, rendered_path = self._paths(zone)
                    files.write(dyn_path, zones.format_dynamic(new_dynamic[zone]))
                    files.write(rendered_path, self._render(state, serials[zone], new_dynamic[zone]))
                    paths += [f"{zone}/{dyn_path.name}", f"{zone}/{rendered_path.name}"]
                actors = {r.actor for _, r in records}
                self.repo.commit(paths, commit_message([r for _, r in records]),
                                 author=actors.pop() if len(actors) == 1 else None)
        except Exception as exc:  # disk full, git failure: HEAD's files are back, nothing changed
            log.exception("commit failed; the last commit's files are kept")
            self.failure = self.last_error = f"commit failed: {exc}"
            for i, _ in records:
                outcomes[i] = Outcome.FAILED
            return Batch([o or Outcome.NOCHG for o in outcomes], zone_of, {})

        for zone in touched:
            state = self.zones[zone]
            state.dynamic = new_dynamic[zone]
            state.serial = serials[zone]
            state.stamp = _stamp(*self._paths(zone))
        self.last_publish = self.clock()
        self.failure = None
        deadline = time.monotonic() + self.target.verify_timeout
        for zone in touched:
            if not self._reload(zone, deadline):  # named unreachable: committed, not served; retried later
                del serials[zone]
                self.unserved.add(zone)
                for i, _ in records:
                    if changes[i].zone == zone:
                        outcomes[i] = Outcome.DNSERR
        return Batch(outcomes, zone_of, serials, deadline)

    def _rndc_timeout(self, deadline: float | None = None) -> float:
        """Half the verify budget left before DEADLINE (default: a whole budget).

        rndc calls are made under the lock: a frozen named must cost an update
        its verify budget and the publisher a fraction of it, not rndc's 10 s each.
        """
        left = self.target.verify_timeout if deadline is None else deadline - time.monotonic()
        return max(_MIN_RNDC_TIMEOUT, left / 2)

    def _reload(self, zone: str, deadline: float | None = None) -> bool:
        """Ask named to reload ZONE, waiting for its answer at most half the budget left before DEADLINE."""
        if self.target.rndc is None:
            return True
        try:
            self.target.rndc.reload(zone, timeout=self._rndc_timeout(deadline))
            return True
        except bind.BindError as exc:
            self.last_error = str(exc)
            log.warning("reload of %s failed: %s", zone, exc)
            return False

    def wait_served(self, serials: dict[str, int], timeout: float | None = None,
                    deadline: float | None = None) -> set[str]:
        """Wait until named serves each zone at (or after) its serial; returns the zones served.

        The wait ends at DEADLINE (monotonic), else TIMEOUT (default verify_timeout) from now.

        named drops a reload asked for while it is still loading the zone, so a
        zone that stays behind is asked again now and then.
        """
        target = self.target
        if target.rndc is None or not serials:
            return set(serials)
        pending = dict(serials)
        served: set[str] = set()
        start = time.monotonic()
        if deadline is None:
            deadline = start + (target.verify_timeout if timeout is None else timeout)
        asked = {zone: start for zone in pending}
        seen: dict[str, int | None] = {}
        delay = 0.002
        while pending:
            for zone, serial in list(pending.items()):
                now_serving = bind.served_serial(zone, target.dns_server, target.dns_port,
                                                 timeout=max(0.05, min(0.5, deadline - time.monotonic())))
                if now_serving is not None and (now_serving == serial or serial_gt(now_serving, serial)):
                    served.add(zone)
                    del pending[zone]
                    continue
                # named just finished an older load (the serial moved), or has been quiet for a
                # while: ask again -- but only for the zone's newest commit, which covers the rest.
                finished_older = zone in seen and now_serving != seen[zone]
                seen[zone] = now_serving
                newest = zone in self.zones and self.zones[zone].serial == serial
                if newest and (finished_older or time.monotonic() - asked[zone] > _REASK_SECONDS):
                    self._reload(zone, deadline)
                    asked[zone] = time.monotonic()
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        for zone in pending:
            self.last_error = f"named does not serve serial {serials[zone]} of {zone}"
            log.warning("%s", self.last_error)
        self.unserved.difference_update(served)
        self.unserved.update(pending)
        return served

    def _reload_and_verify(self, zone_names: list[str], serials: dict[str, int]) -> set[str]:
        """Reload each zone and wait until named serves its serial (zones it cannot reload: not served).

        All of it within one verify budget, whatever named does.
        """
        deadline = time.monotonic() + self.target.verify_timeout
        reloaded = [zone for zone in zone_names if self._reload(zone, deadline)]
        self.unserved.update(set(zone_names) - set(reloaded))
        return self.wait_served({zone: serials[zone] for zone in reloaded}, deadline=deadline)

    def _unstage(self, rel: str) -> None:
        try:
            self.repo.unstage(rel)
        except Exception as exc:  # e.g. index.lock held: then nothing was staged by us either
            log.warning("cannot reset %s in the index: %s", rel, exc)

    @contextmanager
    def _replacing(self, zone_names: list[str], extra: tuple[str, ...] = ()) -> Iterator[Replacement]:
        """File replacements for one commit of ZONE_NAMES (and EXTRA, paths of human-edited files).

        When the block fails, every file goes back to what HEAD has, or, when
        that fails too, the zone is held: no commit is made from its files until
        they are put back. The in-memory state is never reloaded from them.
        """
        files = Replacement(self.fsync)
        head = self.repo.head()
        try:
            yield files
        except BaseException:
            if self.repo.head() == head:
                self._put_back(zone_names, extra)
                files.done()
                raise
            # we hold the lock, so the new HEAD is our commit: git failed after making it
            log.warning("git failed after committing %s; the commit stands", self.repo.head())
        files.done()

    def _put_back(self, zone_names: list[str], extra: tuple[str, ...] = ()) -> None:
        """Put the files of ZONE_NAMES back as HEAD has them; hold the zones where that fails."""
        for zone in zone_names:
            files = [(f"{zone}/{p.name}", p, True) for p in self._paths(zone)]
            files += [(rel, self.root / rel, False) for rel in extra if rel.startswith(f"{zone}/")]
            errors = []
            for rel, path, service_file in files:
                try:
                    if put_back(self.repo, rel, path, self.fsync, service_file):
                        log.warning("%s differed from HEAD (never committed): put back", rel)
                        self._unstage(rel)
                except Exception as exc:  # disk full, git broken: keep trying the others
                    errors.append(f"cannot put back {rel}: {exc}")
            if errors:
                self.held[zone] = "; ".join(errors)
                self.last_error = f"zone {zone} is held: {self.held[zone]}"
                log.error("%s", self.last_error)
            elif self.held.pop(zone, None) is not None:
                log.warning("zone %s: its files are what HEAD has again; publishing resumes", zone)

    def _writable(self, zone: str) -> bool:
        """Whether commits may be made from ZONE's files (a held zone is put back first)."""
        if zone in self.held:
            self._put_back([zone], (f"{zone}/{zones.SETTINGS_FILE}",))
        return zone not in self.held

    # ---- startup and repair ------------------------------------------------
    def recover(self) -> None:
        """After a crash: drop service-file edits that never reached a commit (HEAD is the truth)."""
        with self.locked():
            if self.repo.head() is None:
                return
            for lock in self.repo.clear_stale_locks():
                log.warning("removed stale git lock %s", lock)
            for zone in zones.list_zones(self.root):
                dirty = [rel for rel in (f"{zone}/{p.name}" for p in self._paths(zone)) if not self.repo.is_clean([rel])]
                if dirty:
                    log.warning("discarding %s: written but never committed", ", ".join(dirty))
                    self._put_back([zone])
                    if zone in self.held:  # the service must not start from files nobody acknowledged
                        raise ZoneHeld(f"cannot recover zone {zone}: {self.held[zone]}")
                    for rel in dirty:
                        self._unstage(rel)
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
                if zone in self.held:
                    status[zone] = f"held: {self.held[zone]}"
                    continue
                dyn_path, rendered_path = self._paths(zone)
                on_disk = rendered_path.read_text() if rendered_path.exists() else ""
                target = self.target
                served = (bind.served_serial(zone, target.dns_server, target.dns_port)
                          if target.rndc is not None else state.serial)
                if self._render(state, state.serial) != on_disk or (served is not None and serial_gt(served, state.serial)):
                    base = served if served is not None and serial_gt(served, state.serial) else state.serial
                    serial = next_serial(base, int(self.clock()))
                    with self._replacing([zone]) as files:
                        files.write(rendered_path, self._render(state, serial))
                        files.write(dyn_path, zones.format_dynamic(state.dynamic))
                        self.repo.commit([f"{zone}/{dyn_path.name}", f"{zone}/{rendered_path.name}"],
                                         f"Re-render {zone} (serial {serial})\n\nThe zone's sources changed, or named served a newer serial.\n")
                    state.serial = serial
                    state.stamp = _stamp(dyn_path, rendered_path)
                    status[zone] = "published"
                    to_reload.append(zone)
                elif served != state.serial:
                    to_reload.append(zone)
                else:
                    status[zone] = "served"
                serials[zone] = state.serial
            if (to_reload or zone_set_changed) and self.target.rndc is not None:
                try:
                    self.target.rndc.reconfig(timeout=self._rndc_timeout())
                except bind.BindError as exc:
                    log.warning("reconfig failed: %s", exc)
            if to_reload:
                served_now = self._reload_and_verify(to_reload, serials)
                for zone in to_reload:
                    status[zone] = status.get(zone, "served") if zone in served_now else "unserved"
        return status

    def retry(self) -> None:
        """Put held zones' files back, and reload zones that named did not serve after their last publish.

        The reload and the wait for named happen outside the lock: a frozen
        named must not keep the next commit waiting.
        """
        if self.held:
            with self.locked():
                for zone in sorted(self.held):
                    self._writable(zone)
        if not self.unserved:
            return
        with self.locked():
            pending = sorted(z for z in self.unserved if z in self.zones)
            serials = {z: self.zones[z].serial for z in pending}
        self._reload_and_verify(pending, serials)

    def write_zones_conf(self) -> bool:
        """Rewrite the named.conf fragment that lists the zones (when configured); True if it changed."""
        if self.target.zones_conf is None:
            return False
        files = {z: (self.root / z / zones.rendered_file(z)).resolve() for z in self.zones}
        text = bind.zones_conf(files)
        path = self.target.zones_conf
        if path.exists() and path.read_text() == text:
            return False
        atomic_write(path, text, self.fsync)
        return True

    def _remove_orphans(self) -> list[str]:
        """Service files of zones whose zone.toml a merge removed: delete and commit them."""
        removed = []
        for zone_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            zone = zone_dir.name
            if (zone_dir / zones.SETTINGS_FILE).exists():
                continue
            paths = [p for p in self._paths(zone) if p.exists()]
            if not paths:
                continue
            for path in paths:
                path.unlink()
            self.repo.commit([f"{zone}/{p.name}" for p in paths],
                             f"Remove zone {zone}\n\nIts zone.toml was removed; the service's files go with it.\n")
            self.unserved.discard(zone)
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
                state = self._load_zone(zone)
                state.serial = next_serial(0, int(self.clock()))
                text = self._render(state, state.serial)
                error = self._check(zone, text)
                if error:
                    raise ValueError(f"zone {zone} does not validate: {error}")
                dyn_path, rendered_path = self._paths(zone)
                atomic_write(dyn_path, "", self.fsync)
                atomic_write(rendered_path, text, self.fsync)
                self.repo.commit([zone], f"Add zone {zone}\n\nby {actor}\n", author=actor)
            except BaseException:
                for p in sorted(zone_dir.rglob("*"), reverse=True):
                    p.unlink()
                zone_dir.rmdir()
                raise
            state.stamp = _stamp(dyn_path, rendered_path)
            self.zones[zone] = state
            self.write_zones_conf()
            if self.target.rndc is None:
                return Outcome.GOOD
            try:
                self.target.rndc.reconfig(timeout=self._rndc_timeout())
            except bind.BindError as exc:
                self.last_error = str(exc)
                self.unserved.add(zone)
                return Outcome.DNSERR
            served = self._reload_and_verify([zone], {zone: state.serial})
            return Outcome.GOOD if zone in served else Outcome.DNSERR

    def update_settings(self, zone: str, settings_toml: str, actor: str) -> Outcome:
        """Replace ZONE's zone.toml (an admin's change from the portal): validate, commit, reload."""
        with self.locked():
            state = self._fresh(zone)
            settings_path = self.root / zone / zones.SETTINGS_FILE
            old_text = settings_path.read_text()
            if old_text == settings_toml:
                return Outcome.NOCHG
            if not self._writable(zone):
                raise ZoneHeld(f"zone {zone} is held: {self.held[zone]}")
            dyn_path, rendered_path = self._paths(zone)
            settings_rel = f"{zone}/{zones.SETTINGS_FILE}"
            with self._replacing([zone], (settings_rel,)) as files:
                files.write(settings_path, settings_toml)
                new_state = self._load_zone(zone)
                new_state.dynamic = state.dynamic
                new_state.serial = next_serial(state.serial, int(self.clock()))
                text = self._render(new_state, new_state.serial)
                error = self._check(zone, text)
                if error:
                    raise ValueError(f"zone {zone} does not validate: {error}")
                files.write(rendered_path, text)
                self.repo.commit([settings_rel, f"{zone}/{rendered_path.name}"],
                                 f"Change the settings of {zone}\n\nby {actor}\n", author=actor)
            new_state.stamp = _stamp(dyn_path, rendered_path)
            self.zones[zone] = new_state
            self.last_publish = self.clock()
            if not self._reload(zone):
                self.unserved.add(zone)
                return Outcome.DNSERR
            served = self.wait_served({zone: new_state.serial})
            return Outcome.GOOD if zone in served else Outcome.DNSERR
