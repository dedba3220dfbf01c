"""What named serves, readable without any lock: the records behind a fast ``nochg``.

The publisher records, per zone, an immutable ``Served`` snapshot of the
records it committed at a serial, and promotes it once named is known to
serve that serial (``served``). Readers (``get``) take no lock at all: the
map is replaced whole, never changed in place, so one dictionary read sees
either the old map or the new one.

A snapshot is handed out only while it is still the truth, checked against
the publisher's state at the moment of reading:

- the zone's in-memory state is the very object, records and serial the
  snapshot was taken from (the committer replaces ``state.dynamic`` with a new
  dictionary on each commit and never changes one in place; a reload, merge
  or reconcile makes a new state): no commit of this process came after it;
- the service's files carry the stamp of that state: no other process (a CLI
  command, a hook) rewrote the zone since;
- the zone is not broken, not held and not left unserved.

So an update that the snapshot says changes nothing changes nothing in what
is committed and served at that moment, and answering it ``UNCHANGED`` is the
answer it would get if it were decided then. A concurrent change to the
same name is either already in memory (the snapshot is no longer current:
the update goes to the publisher) or not yet (it is not acknowledged to
anyone, and the ``UNCHANGED`` answer is ordered before it). A stale snapshot
is never used: it can only send an update the slow way.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from .. import records
from .zonestate import ZoneState, stamp


@dataclass(frozen=True)
class Served:
    """ZONE's records as committed at SERIAL, and the state they were taken from (never changed)."""

    serial: int
    static: records.Static
    dynamic: records.Dynamic
    types: frozenset[str]
    state: ZoneState
    stamp: tuple


class ServedView:
    """Per zone, the last snapshot named is known to serve (see the module).

    STATES gives the publisher's zone map, PATHS a zone's service files, and
    TRUSTED(zone) whether the zone may be answered from memory now (not
    broken, held or unserved).
    """

    def __init__(self, states: Callable[[], dict[str, ZoneState]], paths: Callable[[str], tuple],
                 trusted: Callable[[str], bool]):
        self._states = states
        self._paths = paths
        self._trusted = trusted
        self._served: dict[str, Served] = {}    # replaced whole, read without a lock
        self._pending: dict[str, Served] = {}   # committed, not yet known served (writers only)
        self._write = threading.Lock()           # writers among themselves; readers never take it

    def committed(self, zone: str) -> None:
        """ZONE's current state was committed (called under the publisher's lock)."""
        state = self._states().get(zone)
        if state is None or not state.stamp:
            return
        snap = Served(state.serial, state.static, state.dynamic, frozenset(state.types), state, state.stamp)
        with self._write:
            self._pending[zone] = snap

    def served(self, serials: dict[str, int]) -> None:
        """named serves each zone at its serial: its snapshot of that serial, if still the newest, is promoted."""
        with self._write:
            promoted = {z: snap for z, s in serials.items()
                        if (snap := self._pending.get(z)) is not None and snap.serial == s}
            if promoted:
                for zone in promoted:
                    del self._pending[zone]
                self._served = {**self._served, **promoted}

    def get(self, zone: str) -> Served | None:
        """ZONE's snapshot if it is still what is committed and served (see the module); no lock."""
        snap = self._served.get(zone)
        if snap is None:
            return None
        state = self._states().get(zone)
        if (state is not snap.state or state.dynamic is not snap.dynamic or state.serial != snap.serial
                or not self._trusted(zone) or stamp(*self._paths(zone)) != snap.stamp):
            return None
        return snap
