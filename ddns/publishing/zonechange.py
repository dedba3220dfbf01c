"""What one commit changed in one zone, as the BIND side needs it: pure values, no protocol.

The committer hands a ``ZoneChange`` per touched zone to
``bindtarget.BindTarget.publish``: the new serial and SOA, and each changed
dynamic RRset before and after. A target that can apply a change to the
running zone (an RFC 2136 update to named) needs no more than this; one that
reloads whole files asks the publisher for the committed zone instead. The
SOA goes with its TTL as committed: what a human set is what named gets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from ..records import APEX, Dynamic, RecordSet, Static, with_serial


@dataclass(frozen=True)
class RRsetChange:
    """One dynamic RRset before and after a commit (None: absent); NAME absolute, without the final dot."""

    name: str
    rtype: str
    old: RecordSet | None
    new: RecordSet | None
    ttl: int  # the TTL the new set is served with: its own, or the zone's dynamic_ttl


@dataclass(frozen=True)
class ZoneChange:
    """A commit's effect on one zone: its new serial, SOA rdata and SOA TTL, and the changed dynamic RRsets."""

    zone: str
    serial: int
    soa: str
    soa_ttl: int  # the committed zone's, as its static data has it
    changes: tuple[RRsetChange, ...]


def zone_change(zone: str, serial: int, static: Static, before: Dynamic, after: Dynamic,
                keys: Collection[tuple[str, str]], dynamic_ttl: int) -> ZoneChange:
    """The change from BEFORE to AFTER at KEYS ((label, type) an update touched; unchanged ones are left out)."""
    changes = []
    for label, rtype in sorted(keys):
        old, new = before.get((label, rtype)), after.get((label, rtype))
        if old == new:
            continue
        name = zone if label == APEX else f"{label}.{zone}"
        ttl = dynamic_ttl if new is None or new.ttl is None else new.ttl
        changes.append(RRsetChange(name, rtype, old, new, ttl))
    soa = static[APEX]["SOA"]
    return ZoneChange(zone, serial, with_serial(soa.rdatas[0], serial), soa.ttl, tuple(changes))
