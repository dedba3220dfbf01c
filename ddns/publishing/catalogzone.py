"""The catalog zone in the zones repository: ``CATALOG/CATALOG.zone``, rendered and committed by the service.

The catalog (``ddns.catalog``) lists the zones named serves, so that
secondaries follow the zone set by themselves. It lives in the repository like
any zone's rendered file -- every change is a commit, ``git log CATALOG``
says when a zone came or went -- but it has no ``zone.toml``: no human
source, no hosts, no domain. ``refresh`` is called under the publisher's
lock wherever the zone set may have changed (``ZoneSync.write_zones_conf``),
and commits only when the members differ; named loads it like the other
zones (``BindTarget``, through the publisher's committed text and serial).
Human pushes may not touch its directory (``gitops.check_revision``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from .. import catalog, zones
from ..gitrepo import ZonesRepo
from ..serial import next_serial
from .worktree import atomic_write

log = logging.getLogger("ddns.publisher")


class CatalogZone:
    """The catalog zone NAME of the repository REPO (see the module)."""

    def __init__(self, name: str, repo: ZonesRepo, clock: Callable[[], float], fsync: bool,
                 on_error: Callable[[str], None]):
        self.name = name
        self.repo = repo
        self.rel = f"{name}/{zones.rendered_file(name)}"
        self.path: Path = repo.path / self.rel
        self._clock = clock
        self._fsync = fsync
        self._on_error = on_error

    def text(self) -> str:
        """The catalog as committed (the working tree's file, which only the service writes)."""
        return self.path.read_text()

    @property
    def serial(self) -> int | None:
        """The committed catalog's serial; None before its first commit."""
        try:
            return zones.serial_of(self.text())
        except FileNotFoundError:
            return None

    def refresh(self, zone_names: list[str]) -> bool:
        """Commit the catalog of ZONE_NAMES when it lists other zones than the committed one; True if so.

        A failed write or commit puts the committed file back and is reported
        (the last error), not raised: the zone change that called stands, and
        the next refresh tries again.
        """
        try:
            old = self.text()
        except FileNotFoundError:
            old = None
        old_serial = zones.serial_of(old or "") or 0
        if old is not None and old == catalog.render(self.name, zone_names, old_serial):
            return False
        serial = next_serial(old_serial, int(self._clock()))
        added = sorted(set(zone_names) - set(catalog.members(old or "")))
        removed = sorted(set(catalog.members(old or "")) - set(zone_names))
        try:
            atomic_write(self.path, catalog.render(self.name, zone_names, serial), self._fsync)
            self.repo.commit([self.rel], self._message(serial, added, removed))
        except Exception as exc:
            self._put_back(old)
            message = f"catalog zone {self.name} not committed: {exc}"
            self._on_error(message)
            log.warning("%s", message)
            return False
        return True

    def _put_back(self, old: str | None) -> None:
        try:
            if old is None:
                self.path.unlink(missing_ok=True)
            else:
                atomic_write(self.path, old, self._fsync)
        except OSError as exc:
            log.warning("catalog zone %s: could not put the committed file back: %s", self.name, exc)

    def _message(self, serial: int, added: list[str], removed: list[str]) -> str:
        lines = [f"add {z}" for z in added] + [f"remove {z}" for z in removed]
        return (f"Catalog {self.name} (serial {serial})\n\nThe zones secondaries serve changed: "
                f"{', '.join(lines) or 'rendered again'}.\n")
