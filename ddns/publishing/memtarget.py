"""A named in memory, for tests of the publisher's logic: fast, and told when to fail.

``MemoryNamed`` is a ``bindtarget.NamedControl``: a reload "loads" the zone's
rendered file from the working tree (its SOA serial becomes the served one),
as named does with a valid file. ``down`` makes it refuse rndc and answer no
queries (named stopped), ``frozen`` makes it take reloads without loading
(named busy or stuck). Pass it as ``PublishTarget(rndc=None, control=...)``.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .. import bind, zones


class MemoryNamed:
    """Serves the serials of the zone files it was asked to reload (see the module)."""

    def __init__(self, root: Path):
        self.root = root
        self.served: dict[str, int] = {}
        self.reloads: list[str] = []   # every zone asked for, in order
        self.reconfigs = 0
        self.down = False
        self.frozen = False
        self._lock = threading.Lock()

    def reload(self, zone: str, timeout: float) -> None:
        with self._lock:
            if self.down:
                raise bind.BindError(f"rndc reload {zone}: connection refused")
            self.reloads.append(zone)
            if not self.frozen:
                serial = zones.serial_of((self.root / zone / zones.rendered_file(zone)).read_text())
                if serial is not None:
                    self.served[zone] = serial

    def reconfig(self, timeout: float) -> None:
        with self._lock:
            if self.down:
                raise bind.BindError("rndc reconfig: connection refused")
            self.reconfigs += 1

    def served_serial(self, zone: str, timeout: float) -> int | None:
        with self._lock:
            return None if self.down else self.served.get(zone)
