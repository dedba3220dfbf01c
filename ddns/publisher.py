"""The publisher: the one writer of the zones repository (DESIGN.md §4).

``Publisher.apply`` takes a group of changes and, under one lock (a thread
lock plus ``flock`` on a file in ``.git`` so other processes wait their
turn), applies them to the in-memory dynamic records, renders each touched
zone once with a bumped serial, writes it atomically, commits once, reloads
each zone and checks that named serves the new serial.

``PublisherThread`` feeds it from a queue so that concurrent requests share
one render / commit / reload (group commit).
"""
from __future__ import annotations

import enum
import fcntl
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import jinja2

from . import bind, zones
from .gitrepo import ChangeRecord, ZonesRepo, commit_message
from .serial import next_serial, serial_gt

log = logging.getLogger("ddns.publisher")


class Outcome(enum.Enum):
    GOOD = "good"        # committed, and named serves it
    NOCHG = "nochg"      # nothing to change
    DNSERR = "dnserr"    # committed, but named does not serve it (yet)
    FAILED = "911"       # not committed: nothing changed


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

    @property
    def fqdn(self) -> str:
        return f"{self.label}.{self.zone}"


@dataclass
class ZoneState:
    """What the publisher knows of one zone: its validated sources and records."""

    source: zones.ZoneSource
    template: jinja2.Template
    dynamic: zones.DynamicRecords
    serial: int
    stamp: tuple
    broken: str | None = None  # why the zone's human-edited sources cannot be published


def _stamp(*paths: Path) -> tuple:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def atomic_write(path: Path, text: str, fsync: bool = True) -> None:
    """Temp file in the same directory, fsync, rename: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o644)  # named may run as another user
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
        self.env = zones.template_environment([self.root, *template_dirs])
        self.zones: dict[str, ZoneState] = {}
        self.unserved: set[str] = set()
        self.last_publish: float | None = None
        self.last_error: str | None = None
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
                    yield
                finally:
                    self._lock_depth = 0
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _paths(self, zone: str) -> tuple[Path, Path]:
        d = self.root / zone
        return d / zones.DYNAMIC_FILE, d / zones.rendered_file(zone)

    def _load_zone(self, zone: str) -> ZoneState:
        zone_dir = self.root / zone
        dyn_path, rendered_path = self._paths(zone)
        stamp = _stamp(dyn_path, rendered_path)
        source = zones.ZoneSource.read(zone_dir)
        template = self.env.get_template(source.template_name)
        dynamic = zones.parse_dynamic(dyn_path.read_text()) if dyn_path.exists() else {}
        serial = zones.serial_of(rendered_path.read_text()) if rendered_path.exists() else None
        state = ZoneState(source, template, dynamic, serial or 0, stamp)
        return state

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
        if state.stamp and _stamp(*self._paths(zone)) != state.stamp:
            # Our own publisher rewrites the files before it commits: while it
            # holds the lock, the in-memory state is the acknowledged truth and
            # a request must not wait for the publish to finish.
            if not self._thread_lock.acquire(blocking=False):
                return state
            try:
                with self.locked():
                    state = self.zones[zone]
                    if _stamp(*self._paths(zone)) != state.stamp:
                        state = self._load_validated(zone)
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
        """Publish CHANGES as one commit; one outcome per change, in order."""
        with self.locked():
            return self._apply_locked(changes)

    def _apply_locked(self, changes: list[Change]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(changes)
        records: list[tuple[int, ChangeRecord]] = []
        new_dynamic: dict[str, zones.DynamicRecords] = {}
        for i, change in enumerate(changes):
            try:
                state = self._fresh(change.zone)
            except KeyError:
                outcomes[i] = Outcome.FAILED
                continue
            if state.broken:
                outcomes[i] = Outcome.DNSERR
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
        if not records:
            return [o or Outcome.NOCHG for o in outcomes]

        touched = sorted({changes[i].zone for i, _ in records})
        serials: dict[str, int] = {}
        paths: list[str] = []
        try:
            for zone in touched:
                state = self.zones[zone]
                serials[zone] = next_serial(state.serial, int(self.clock()))
                dyn_path, rendered_path = self._paths(zone)
                atomic_write(dyn_path, zones.format_dynamic(new_dynamic[zone]), self.fsync)
                atomic_write(rendered_path, self._render(state, serials[zone], new_dynamic[zone]), self.fsync)
                paths += [f"{zone}/{dyn_path.name}", f"{zone}/{rendered_path.name}"]
            actors = {r.actor for _, r in records}
            self.repo.commit(paths, commit_message([r for _, r in records]),
                             author=actors.pop() if len(actors) == 1 else None)
        except Exception as exc:  # disk full, git failure: restore HEAD's files, change nothing
            log.exception("commit failed; restoring the last commit's files")
            self.last_error = f"commit failed: {exc}"
            self._restore(touched)
            for i, _ in records:
                outcomes[i] = Outcome.FAILED
            return [o or Outcome.NOCHG for o in outcomes]

        for zone in touched:
            state = self.zones[zone]
            state.dynamic = new_dynamic[zone]
            state.serial = serials[zone]
            state.stamp = _stamp(*self._paths(zone))
        served = self._reload_and_verify(touched, serials)
        self.last_publish = self.clock()
        for i, _ in records:
            outcomes[i] = Outcome.GOOD if changes[i].zone in served else Outcome.DNSERR
        return [o or Outcome.NOCHG for o in outcomes]

    def _unstage(self, rel: str) -> None:
        try:
            self.repo.unstage(rel)
        except Exception as exc:  # e.g. index.lock held: then nothing was staged by us either
            log.warning("cannot reset %s in the index: %s", rel, exc)

    def _restore(self, zones_: list[str]) -> None:
        """Put the service-written files of ZONES_ back as HEAD has them."""
        for zone in zones_:
            for path in self._paths(zone):
                rel = f"{zone}/{path.name}"
                try:
                    atomic_write(path, self.repo.show("HEAD", rel), self.fsync)
                except Exception:  # not in HEAD (new zone) or git broken: remove what we wrote
                    path.unlink(missing_ok=True)
                self._unstage(rel)
            self.zones[zone] = self._load_validated(zone)

    def _reload_and_verify(self, zone_names: list[str], serials: dict[str, int]) -> set[str]:
        """Reload each zone and wait until named serves its serial; returns those served."""
        target = self.target
        if target.rndc is None:
            return set(zone_names)
        reloaded = []
        for zone in zone_names:
            try:
                target.rndc.reload(zone)
                reloaded.append(zone)
            except bind.BindError as exc:
                self.last_error = str(exc)
                log.warning("reload of %s failed: %s", zone, exc)
        served = set()
        deadline = time.monotonic() + target.verify_timeout
        for zone in reloaded:
            remaining = max(0.0, deadline - time.monotonic())
            if bind.wait_for_serial(zone, serials[zone], target.dns_server, target.dns_port, remaining):
                served.add(zone)
            else:
                self.last_error = f"named does not serve serial {serials[zone]} of {zone}"
                log.warning("%s", self.last_error)
        self.unserved.difference_update(served)
        self.unserved.update(set(zone_names) - served)
        return served

    # ---- startup and repair ------------------------------------------------
    def recover(self) -> None:
        """After a crash: drop service-file edits that never reached a commit (HEAD is the truth)."""
        with self.locked():
            if self.repo.head() is None:
                return
            for lock in self.repo.clear_stale_locks():
                log.warning("removed stale git lock %s", lock)
            for zone in zones.list_zones(self.root):
                for path in self._paths(zone):
                    rel = f"{zone}/{path.name}"
                    if not self.repo.is_clean([rel]):
                        log.warning("discarding %s: written but never committed", rel)
                        try:
                            atomic_write(path, self.repo.show("HEAD", rel), self.fsync)
                        except Exception:
                            path.unlink()
                        self._unstage(rel)
            for tmp in self.root.glob("*/.*.zone.*"):
                tmp.unlink()
            for tmp in self.root.glob("*/.dynamic.records.*"):
                tmp.unlink()

    def reconcile(self) -> dict[str, str]:
        """Make named serve what the sources say: re-render what changed, reload what is not served.

        Returns a zone -> status map ("served", "published", "broken: ...", "unserved").
        """
        status: dict[str, str] = {}
        with self.locked():
            self.zones = {z: self._load_validated(z) for z in zones.list_zones(self.root)}
            self.write_zones_conf()
            to_reload: list[str] = []
            serials: dict[str, int] = {}
            for zone, state in self.zones.items():
                if state.broken:
                    status[zone] = f"broken: {state.broken}"
                    continue
                dyn_path, rendered_path = self._paths(zone)
                on_disk = rendered_path.read_text() if rendered_path.exists() else ""
                target = self.target
                served = (bind.served_serial(zone, target.dns_server, target.dns_port)
                          if target.rndc is not None else state.serial)
                if self._render(state, state.serial) != on_disk or (served is not None and serial_gt(served, state.serial)):
                    base = served if served is not None and serial_gt(served, state.serial) else state.serial
                    state.serial = next_serial(base, int(self.clock()))
                    atomic_write(rendered_path, self._render(state, state.serial), self.fsync)
                    atomic_write(dyn_path, zones.format_dynamic(state.dynamic), self.fsync)
                    self.repo.commit([f"{zone}/{dyn_path.name}", f"{zone}/{rendered_path.name}"],
                                     f"Re-render {zone} (serial {state.serial})\n\nThe zone's sources changed, or named served a newer serial.\n")
                    state.stamp = _stamp(dyn_path, rendered_path)
                    status[zone] = "published"
                    to_reload.append(zone)
                elif served != state.serial:
                    to_reload.append(zone)
                else:
                    status[zone] = "served"
                serials[zone] = state.serial
            if to_reload:
                if self.target.rndc is not None:
                    try:
                        self.target.rndc.reconfig()
                    except bind.BindError as exc:
                        log.warning("reconfig failed: %s", exc)
                served_now = self._reload_and_verify(to_reload, serials)
                for zone in to_reload:
                    status[zone] = status.get(zone, "served") if zone in served_now else "unserved"
        return status

    def retry_unserved(self) -> None:
        """Reload zones that named did not serve after their last publish."""
        if not self.unserved:
            return
        with self.locked():
            pending = sorted(self.unserved)
            self._reload_and_verify(pending, {z: self.zones[z].serial for z in pending if z in self.zones})

    def write_zones_conf(self) -> None:
        """Rewrite the named.conf fragment that lists the zones (when configured)."""
        if self.target.zones_conf is None:
            return
        files = {z: (self.root / z / zones.rendered_file(z)).resolve() for z in self.zones}
        text = bind.zones_conf(files)
        path = self.target.zones_conf
        if not path.exists() or path.read_text() != text:
            atomic_write(path, text, self.fsync)

    def add_zone(self, zone: str, settings_toml: str, static_text: str, actor: str) -> Outcome:
        """Create a zone directory, validate, commit, and have named load it."""
        with self.locked():
            zone_dir = self.root / zone
            if zone_dir.exists():
                raise FileExistsError(f"zone {zone} exists in the repository")
            zone_dir.mkdir()
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
                self.target.rndc.reconfig()
            except bind.BindError as exc:
                self.last_error = str(exc)
                self.unserved.add(zone)
                return Outcome.DNSERR
            served = self._reload_and_verify([zone], {zone: state.serial})
            return Outcome.GOOD if zone in served else Outcome.DNSERR


@dataclass
class _Pending:
    change: Change
    future: Future = field(default_factory=Future)


class PublisherThread:
    """Queue in front of a Publisher: group commit for concurrent requests."""

    def __init__(self, publisher: Publisher, max_batch: int = 1000, retry_seconds: float = 5.0):
        self.publisher = publisher
        self.max_batch = max_batch
        self.retry_seconds = retry_seconds
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self.batches = 0
        self.changes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    @property
    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, changes: list[Change]) -> list[Future]:
        pending = [_Pending(c) for c in changes]
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
                    if not self._cond.wait(timeout=self.retry_seconds) and self.publisher.unserved:
                        break
                if self._stopping and not self._queue:
                    return
                batch = self._queue[: self.max_batch]
                del self._queue[: len(batch)]
            if not batch:
                self._safely(self.publisher.retry_unserved)
                continue
            try:
                outcomes = self.publisher.apply([p.change for p in batch])
            except Exception as exc:  # never leave a waiter hanging
                log.exception("publishing failed")
                self.publisher.last_error = str(exc)
                outcomes = [Outcome.FAILED] * len(batch)
            self.batches += 1
            self.changes += len(batch)
            for pending, outcome in zip(batch, outcomes):
                pending.future.set_result(outcome)

    @staticmethod
    def _safely(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("background publisher task failed")
