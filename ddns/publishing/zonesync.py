"""Keeping named serving what the repository says: reconcile, the upstream, and changes of the zone set.

``reconcile`` re-reads the zones whose files changed (another process, a
merge), re-renders and commits what differs from its sources -- a zone of the
old layout (one ``dynamic.records``) or of another number of shards is
rewritten into the current one in one commit, its records unchanged -- drops the
service files of zones a merge removed, and reloads what named does not
serve. ``sync`` takes in the upstream (fetch, rebase the service's commits,
reconcile) and pushes. ``add_zone`` and ``update_settings`` are an admin's
changes of a zone's sources, validated before they are committed. None of it
locks: the publisher calls it under its lock, and these wait for named under
it, within one verify budget (they are rare).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from .. import bind, errors, shards, zones
from .bindtarget import BindTarget
from .catalogzone import CatalogZone
from .committer import Status, rewrite_zone
from ..errors import Unavailable
from ..gitrepo import SyncConflict, ZonesRepo
from ..model import Outcome
from ..serial import next_serial, serial_gt
from .worktree import ServiceFiles, atomic_write
from .zonecache import ZoneCache
from .zonestate import ZoneReader, ZoneState, stamp

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so


class ZoneHeld(Unavailable):
    """A zone's files differ from HEAD and cannot be put back: nothing is published from them."""


class ZoneSync:
    """Reconciles the zones of CACHE with their sources, named and the upstream (see the module)."""

    def __init__(self, cache: ZoneCache, reader: ZoneReader, files: ServiceFiles, repo: ZonesRepo,
                 named: BindTarget, status: Status, clock: Callable[[], float], fsync: bool,
                 catalog: CatalogZone | None = None):
        self.cache = cache
        self.reader = reader
        self.files = files
        self.repo = repo
        self.root: Path = repo.path
        self.named = named
        self.status = status
        self.clock = clock
        self.fsync = fsync
        self.catalog = catalog

    def reconcile(self) -> dict[str, str]:
        """Make named serve what the sources say: re-render what changed, reload what is not served.

        Returns a zone -> status map ("served", "published", "broken: ...", "unserved").
        """
        status: dict[str, str] = {}
        known = set(self.cache.zones)
        self.cache.zones = {z: self.cache.unchanged_or_load(z) for z in zones.list_zones(self.root)}
        for zone in self.remove_orphans():
            status[zone] = "removed"
        zone_set_changed = bool(self._zones_conf_written()) or known != set(self.cache.zones)
        to_reload: list[str] = []
        serials: dict[str, int] = {}
        for zone, state in self.cache.zones.items():
            if state.broken:
                status[zone] = f"broken: {state.broken}"
                continue
            if zone in self.files.held:
                status[zone] = f"held: {self.files.held[zone]}"
                continue
            head_path = self.reader.head_path(zone)
            on_disk = head_path.read_text() if head_path.exists() else ""
            served = self.named.served_serial(zone) if self.named.enabled else state.serial
            newer = served is not None and serial_gt(served, state.serial)
            if not state.settled or self.reader.render(state, state.serial) != on_disk or newer:
                floor = self.named.serial_floor(zone, served if newer else state.serial)  # past a withdrawn one
                serial = next_serial(floor, int(self.clock()))
                with self.files.replacing([zone]) as files:
                    paths = rewrite_zone(files, self.reader, zone, state, self.reader.sharded(state.dynamic), serial)
                    self.repo.commit(paths, self._rewrite_message(zone, state, serial))
                state.serial, state.settled, state.legacy = serial, True, False
                state.stamp = stamp(head_path)
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
        self.serve_catalog()
        return status

    def _rewrite_message(self, zone: str, state: ZoneState, serial: int) -> str:
        """The message of reconcile's commit of ZONE: a migration, a reshard or a re-render."""
        count = self.reader.shard_count
        if state.legacy:
            return (f"Shard dynamic records of {zone} (serial {serial})\n\nThe {len(state.dynamic)} record sets of "
                    f"{zone}/{zones.DYNAMIC_FILE} move into {zone}/{shards.SHARD_DIR}/ ({count} shards by owner "
                    f"name), and {zone}/{zones.rendered_file(zone)} includes them; no record changes.\n")
        if not state.settled:
            return (f"Reshard dynamic records of {zone} (serial {serial})\n\nThe record sets move into {count} "
                    f"shards by owner name; no record changes.\n")
        return f"Re-render {zone} (serial {serial})\n\nThe zone's sources changed, or named served a newer serial.\n"

    def write_zones_conf(self) -> bool:
        """Rewrite the named.conf fragment that lists the zones (when configured); True if it changed.

        Wherever the zone set may have changed: the catalog zone is committed
        first when it lists other zones, and is one of the zones named serves.
        """
        files = {z: (self.root / z / zones.rendered_file(z)).resolve() for z in self.cache.zones}
        if self.catalog is not None:
            self.catalog.refresh(sorted(self.cache.zones))
            if self.catalog.path.exists():
                files[self.catalog.name] = self.catalog.path.resolve()
        return self.named.write_zones_conf(files, self.fsync)

    def serve_catalog(self) -> None:
        """Have named serve the catalog zone as committed, after the zones it lists (named reconfigured first)."""
        serial = self.catalog.serial if self.catalog is not None else None
        if serial is None or not self.named.enabled or self.named.served_serial(self.catalog.name) == serial:
            return
        self.named.reload_and_verify([self.catalog.name], {self.catalog.name: serial})

    def _zones_conf_written(self) -> bool | None:
        """``write_zones_conf`` after a commit: a failure is reported (None), never raised over a commit made."""
        try:
            return self.write_zones_conf()
        except (bind.BindError, OSError) as exc:
            message = f"cannot write the zones for named: {exc}"
            log.error("%s", message)
            self.status.last_error = message
            return None

    def tree_text(self, zone: str) -> str:
        """ZONE's files in the working tree assembled into one (the head with its shards in place)."""
        head = self.reader.head_path(zone)
        text = head.read_text() if head.exists() else ""
        files = shards.record_files(self.root / zone)
        return shards.assemble(text, {rel: files.get(rel, "") for rel in shards.included(text)})

    def remove_orphans(self) -> list[str]:
        """Service files of zones whose zone.toml a merge removed: delete and commit them."""
        removed = []
        for zone_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            zone = zone_dir.name
            if (zone_dir / zones.SETTINGS_FILE).exists() or (self.catalog is not None and zone == self.catalog.name):
                continue
            head = zone_dir / zones.rendered_file(zone)
            paths = [head] if head.exists() else []
            paths += [zone_dir / rel for rel in shards.record_files(zone_dir)]
            if not paths:
                continue
            for path in paths:
                path.unlink()
            try:
                (zone_dir / shards.SHARD_DIR).rmdir()  # gone with its shards: an empty zone directory is what is left
            except OSError:
                pass
            self.repo.commit([str(p.relative_to(self.root)) for p in paths],
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

    def add_zone(self, zone: str, settings_toml: str, static_text: str, actor: str) -> Outcome:
        """Create a zone directory, validate, commit, and have named load it."""
        zone_dir = self.root / zone
        if zone_dir.exists() and any(zone_dir.iterdir()):  # an empty one is what a removed zone leaves
            raise errors.Conflict(f"zone {zone} exists in the repository")
        zone_dir.mkdir(exist_ok=True)
        try:
            (zone_dir / zones.SETTINGS_FILE).write_text(settings_toml)
            (zone_dir / zones.STATIC_FILE).write_text(static_text)
            state = self.reader.read(zone)
            state.serial = next_serial(self.named.serial_floor(zone, 0), int(self.clock()))
            error = self.reader.validate(zone, state, self.reader.flat(state, state.serial))
            if error:
                raise errors.Invalid(f"zone {zone} does not validate: {error}")
            head_path = self.reader.head_path(zone)
            atomic_write(head_path, self.reader.render(state, state.serial), self.fsync)  # no records: no shards
            self.repo.commit([zone], f"Add zone {zone}\n\nby {actor}\n", author=actor)
        except BaseException:
            for p in sorted(zone_dir.rglob("*"), reverse=True):
                p.unlink()
            zone_dir.rmdir()
            raise
        state.stamp = stamp(head_path)
        self.cache.zones[zone] = state
        if self._zones_conf_written() is None:  # committed: named cannot be told of it until a reconcile
            self.named.unserved.add(zone)
            return Outcome.UNSERVED
        if not self.named.enabled:
            return Outcome.PUBLISHED
        try:
            self.named.reconfig()
        except bind.BindError as exc:
            self.status.last_error = str(exc)
            self.named.unserved.add(zone)
            return Outcome.UNSERVED
        served = self.named.reload_and_verify([zone], {zone: state.serial})
        self.serve_catalog()
        return Outcome.PUBLISHED if zone in served else Outcome.UNSERVED

    def update_settings(self, zone: str, settings_toml: str, actor: str) -> Outcome:
        """Replace ZONE's zone.toml (an admin's change from the portal): validate, commit, reload."""
        state = self.cache.fresh(zone)
        settings_path = self.root / zone / zones.SETTINGS_FILE
        old_text = settings_path.read_text()
        if old_text == settings_toml:
            return Outcome.UNCHANGED
        if not self.files.writable(zone):
            raise ZoneHeld(f"zone {zone} is held: {self.files.held[zone]}")
        head_path = self.reader.head_path(zone)
        settings_rel = f"{zone}/{zones.SETTINGS_FILE}"
        with self.files.replacing([zone], (settings_rel,)) as files:
            files.write(settings_path, settings_toml)
            new_state = self.reader.read(zone)
            new_state.dynamic, new_state.types = state.dynamic, state.types
            new_state.serial = next_serial(self.named.serial_floor(zone, state.serial), int(self.clock()))
            error = self.reader.validate(zone, new_state, self.reader.flat(new_state, new_state.serial))
            if error:
                raise errors.Invalid(f"zone {zone} does not validate: {error}")
            if new_state.settled:
                files.write(head_path, self.reader.render(new_state, new_state.serial))
                paths = [settings_rel, f"{zone}/{head_path.name}"]
            else:  # not reconciled into the current layout yet: all of it
                paths = [settings_rel, *rewrite_zone(files, self.reader, zone, new_state,
                                                     self.reader.sharded(new_state.dynamic), new_state.serial)]
                new_state.settled, new_state.legacy = True, False
            self.repo.commit(paths,
                             f"Change the settings of {zone}\n\nby {actor}\n", author=actor)
        new_state.stamp = stamp(head_path)
        self.cache.zones[zone] = new_state
        self.status.last_publish = self.clock()
        if not self.named.reload(zone):
            self.named.unserved.add(zone)
            return Outcome.UNSERVED
        served = self.named.wait_served({zone: new_state.serial})
        return Outcome.PUBLISHED if zone in served else Outcome.UNSERVED

