"""The serial floor of each zone: the serial of its last withdrawn update, kept across restarts.

An update sent to named before its commit's branch moved can be withdrawn
(``BindTarget.withdraw``): named, and any secondary it NOTIFYed, may have
seen that serial with data that was never committed. Every later commit of
the zone -- the committer's, reconcile's, a settings change's, after a
restart too -- must take a serial past it, or a secondary that transferred
the withdrawn version would never fetch the committed one. Withdrawals are
rare, so each one rewrites a small file in ``.git`` (fsynced before the
zone is loaded again); it is read once at start. A file that cannot be read
counts as empty (logged): the clock still moves serials on.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..serial import serial_gt
from .worktree import atomic_write

log = logging.getLogger("ddns.publisher")

FILE_NAME = "ddns-serial-floor.json"


class SerialFloors:
    """Per zone, the serial its next commit must pass (see the module); PATH None: in memory only."""

    def __init__(self, path: Path | None):
        self.path = path
        self._floors: dict[str, int] = self._read() if path is not None else {}

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
            return {str(zone): int(serial) for zone, serial in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("cannot read the withdrawn serials (%s): %s; none assumed", self.path, exc)
            return {}

    def withdrawn(self, zone: str, serial: int) -> None:
        """SERIAL of ZONE was sent and withdrawn: the next commit passes it. Written (fsynced) before it returns;
        raises OSError when that fails (the caller logs it: the floor still holds while this process runs)."""
        self._floors[zone] = serial
        if self.path is not None:
            atomic_write(self.path, json.dumps(self._floors, sort_keys=True) + "\n")

    def floor(self, zone: str, serial: int) -> int:
        """SERIAL, or ZONE's withdrawn serial when that is higher: the next serial is made from this."""
        withdrawn = self._floors.get(zone)
        return withdrawn if withdrawn is not None and serial_gt(withdrawn, serial) else serial
