"""The publisher's in-memory zones: what it acknowledged, re-read when another process changed the files.

``ZoneCache.zones`` maps each zone to its ``ZoneState`` (validated sources,
static and dynamic RRsets, serial, file stamps). Readers (``fresh`` and the
queries built on it) answer from memory while the publisher holds the lock --
then the in-memory state is the acknowledged truth -- and take the lock only
to read files another process changed (or a zone it added) again. The rules
of the lock are in ``ddns.publishing.publisher``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .. import records, zones
from ..model import RRset
from .repolock import RepoLock
from .worktree import ServiceFiles
from .zonestate import ZoneReader, ZoneState, stamp


class ZoneCache:
    """The zones of the working tree ROOT as the publisher knows them (see the module)."""

    def __init__(self, root: Path, reader: ZoneReader, files: ServiceFiles, lock: RepoLock,
                 forget: Callable[[str], None]):
        self.root = root
        self.reader = reader
        self.files = files
        self.lock = lock
        self._forget = forget  # a zone another process removed: the parts drop what they keep of it
        self.zones: dict[str, ZoneState] = {}

    def load(self) -> None:
        """Read every zone from the working tree and validate its human-edited sources (under the lock)."""
        self.zones = {zone: self.reader.load(zone) for zone in zones.list_zones(self.root)}

    def unchanged_or_load(self, zone: str) -> ZoneState:
        """The zone's state as validated before when none of its files changed since, else loaded anew.

        A held zone keeps its state: its files are not what was acknowledged.
        """
        state = self.zones.get(zone)
        if state is not None and not self.files.writable(zone):
            return state
        if state is not None and self.reader.unchanged(zone, state):
            return state
        return self.load_committed(zone)

    def load_committed(self, zone: str) -> ZoneState:
        """ZONE's state read again from its files, once they are what HEAD has (under the lock).

        Another writer changed them. If it did not commit (it was killed in the
        middle), its edit is put back first: an unacknowledged change is never
        adopted. A zone whose files cannot be put back is held, its state kept.
        """
        self.files.put_back([zone])
        state = self.zones.get(zone)
        if zone in self.files.held and state is not None:
            return state
        return self.reader.load(zone)

    def fresh(self, zone: str) -> ZoneState:
        """The zone's state, re-read if another process changed its files; KeyError when it is gone."""
        state = self.zones.get(zone)
        if state is None:  # perhaps added by another process since we loaded
            if not (self.root / zone / zones.SETTINGS_FILE).exists():
                raise KeyError(zone)
            with self.lock.held():
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
                        self._forget(zone)
                        raise KeyError(zone)
                    state = self.load_committed(zone)
                    self.zones[zone] = state
        return state

    # ---- queries -----------------------------------------------------------
    def has_zone(self, zone: str) -> bool:
        """Whether ZONE is in the repository now (another process may have added or removed it)."""
        try:
            self.fresh(zone)
        except KeyError:
            return False
        return True

    def dynamic(self, zone: str, label: str) -> dict[str, records.RecordSet]:
        """LABEL's dynamic RRsets in ZONE now, by type."""
        state = self.fresh(zone)
        return {t: rs for t in state.types if (rs := state.dynamic.get((label, t))) is not None}

    def current(self, zone: str, label: str, rtype: str) -> str | None:
        """The rdata of LABEL's dynamic RTYPE set now, joined by ", " as the audit trailer writes it; None: none."""
        found = self.fresh(zone).dynamic.get((label, rtype))
        return None if found is None else ", ".join(found.rdatas)

    def rrsets(self, zone: str, label: str) -> list[RRset]:
        """What ZONE holds at LABEL now, static and dynamic, the apex SOA with the current serial."""
        state = self.fresh(zone)
        name = zone if label == records.APEX else f"{label}.{zone}"
        ttl = state.source.settings.dynamic_ttl
        found = {**state.static.get(label, {}), **self.dynamic(zone, label)}
        out = []
        for rtype, rs in sorted(found.items()):
            rdatas = rs.rdatas if rtype != "SOA" else tuple(records.with_serial(r, state.serial) for r in rs.rdatas)
            out.append(RRset(name, rtype, ttl if rs.ttl is None else rs.ttl, rdatas))
        return out
