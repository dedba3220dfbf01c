"""A named in memory, for tests of the publisher's logic: fast, and told when to fail.

``MemoryNamed`` is a ``namedcontrol.NamedControl``: a reload (or a thaw) "loads"
the zone's rendered file from the working tree (its SOA serial becomes the
served one), as named does with a valid file; an update makes its serial the
served one, as named does when it takes an RFC 2136 update. ``down`` makes it
refuse rndc and answer no queries (named stopped), ``frozen`` makes it take
reloads without loading (named busy or stuck), ``update_rcode`` makes it answer
updates with that rcode without applying them (a diverged zone: NXRRSET; a
wrong key: NOTAUTH). Pass it as ``PublishTarget(rndc=None, control=...)``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import dns.rcode

from .. import bind, zones
from .zonechange import ZoneChange


class MemoryNamed:
    """Serves the serials of the zone files it was asked to load and of the updates it took (see the module)."""

    def __init__(self, root: Path):
        self.root = root
        self.served: dict[str, int] = {}
        self.reloads: list[str] = []   # every zone asked for a (re)load, in order
        self.updates: list[ZoneChange] = []  # every update taken, in order
        self.reconfigs = 0
        self.down = False
        self.frozen = False
        self.update_rcode = dns.rcode.NOERROR
        self._frozen_zones: set[str] = set()
        self._lock = threading.Lock()

    def reload(self, zone: str, timeout: float) -> None:
        with self._lock:
            if self.down:
                raise bind.BindError(f"rndc reload {zone}: connection refused")
            self._load(zone)

    def _load(self, zone: str) -> None:
        self.reloads.append(zone)
        if not self.frozen:
            serial = zones.serial_of((self.root / zone / zones.rendered_file(zone)).read_text())
            if serial is not None:
                self.served[zone] = serial

    def freeze(self, zone: str, timeout: float) -> None:
        with self._lock:
            if self.down:
                raise bind.BindError(f"rndc freeze {zone}: connection refused")
            self._frozen_zones.add(zone)

    def thaw(self, zone: str, timeout: float) -> None:
        with self._lock:
            if self.down:
                raise bind.BindError(f"rndc thaw {zone}: connection refused")
            self._frozen_zones.discard(zone)
            self._load(zone)

    def send_update(self, change: ZoneChange, timeout: float) -> Callable[[float], int]:
        """Applied (or refused) as it arrives, as named does; the function returned gives the rcode."""
        with self._lock:
            if self.down:
                raise bind.BindError(f"update of {change.zone}: connection refused")
            if change.zone in self._frozen_zones:
                rcode = dns.rcode.REFUSED
            elif self.update_rcode != dns.rcode.NOERROR:
                rcode = self.update_rcode
            else:
                self.updates.append(change)
                self.served[change.zone] = change.serial
                rcode = dns.rcode.NOERROR
        return lambda wait: rcode

    def serves(self, change: ZoneChange, timeout: float) -> bool:
        with self._lock:
            if self.down:
                raise bind.BindError(f"update of {change.zone}: connection refused")
            return self.served.get(change.zone) == change.serial

    def reconfig(self, timeout: float) -> None:
        with self._lock:
            if self.down:
                raise bind.BindError("rndc reconfig: connection refused")
            self.reconfigs += 1

    def served_serial(self, zone: str, timeout: float) -> int | None:
        with self._lock:
            return None if self.down else self.served.get(zone)
