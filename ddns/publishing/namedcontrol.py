"""How publishing talks to a named: the ``NamedControl`` protocol, the real one (rndc and DNS), and its settings.

Apart from ``bindtarget`` so that the wait, the updates and named's copies are
one module and the channel to named (which a test replaces with
``memtarget.MemoryNamed`` through ``PublishTarget.control``) another.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from .. import bind
from .incremental import RELOAD, IncrementalNamed, PublisherKeyError, read_key
from .zonechange import ZoneChange

# An update sent to named: called once, it waits at most its argument (seconds) for named's rcode
# (raises bind.BindError when named cannot be reached).
Answer = Callable[[float], int]


class NamedControl(Protocol):
    """What publishing needs of a named: (re)load a zone, apply an update, the serial it serves."""

    def reload(self, zone: str, timeout: float) -> None: ...     # raises bind.BindError
    def reconfig(self, timeout: float) -> None: ...              # raises bind.BindError
    def served_serial(self, zone: str, timeout: float) -> int | None: ...
    def freeze(self, zone: str, timeout: float) -> None: ...     # raises bind.BindError
    def thaw(self, zone: str, timeout: float) -> None: ...       # raises bind.BindError
    def send_update(self, change: ZoneChange, timeout: float) -> Answer: ...  # raises bind.BindError
    def serves(self, change: ZoneChange, timeout: float) -> bool: ...  # raises bind.BindError


@dataclass
class PublishTarget:
    """Where the publisher reloads and verifies: named through rndc and DNS, CONTROL instead, or none at all."""

    rndc: bind.Rndc | None
    dns_server: str = "127.0.0.1"
    dns_port: int = 53
    verify_timeout: float = 5.0
    zones_conf: Path | None = None
    checkzone: str = "named-checkzone"
    control: NamedControl | None = None  # e.g. ddns.publishing.memtarget.MemoryNamed: the publisher's logic without a named
    zone_dir: Path | None = None  # where named's copies of the zones are written (None: named loads the working tree)
    mode: str = RELOAD            # RELOAD or INCREMENTAL (wiring.build_publisher resolves "auto")
    update_key: Path | None = None  # the publisher's TSIG key (incremental mode)
    fsync: bool = True


class RndcControl:
    """The real named: rndc for reloads, a DNS query for the served serial (SETTINGS' rndc read at each call)."""

    def __init__(self, settings: PublishTarget):
        self.settings = settings
        self._updates: IncrementalNamed | None = None  # made at the first update (the key was checked at start)

    def reload(self, zone: str, timeout: float) -> None:
        self.settings.rndc.reload(zone, timeout=timeout)

    def freeze(self, zone: str, timeout: float) -> None:
        self.settings.rndc.run("freeze", zone, timeout=timeout)

    def thaw(self, zone: str, timeout: float) -> None:
        self.settings.rndc.run("thaw", zone, timeout=timeout)

    def send_update(self, change: ZoneChange, timeout: float) -> Answer:
        return self._incremental().send_update(change, timeout)

    def serves(self, change: ZoneChange, timeout: float) -> bool:
        return self._incremental().serves(change, timeout)

    def _incremental(self) -> IncrementalNamed:
        if self._updates is None:
            try:
                key = read_key(self.settings.update_key)
            except PublisherKeyError as exc:  # gone since the start: loads until it is back
                raise bind.BindError(str(exc)) from exc
            self._updates = IncrementalNamed(self.settings.dns_server, self.settings.dns_port, key)
        return self._updates

    def reconfig(self, timeout: float) -> None:
        self.settings.rndc.reconfig(timeout=timeout)

    def close(self) -> None:
        """Close the kept-open update connections (a later update opens them again)."""
        if self._updates is not None:
            self._updates.close()

    def served_serial(self, zone: str, timeout: float) -> int | None:
        return bind.served_serial(zone, self.settings.dns_server, self.settings.dns_port, timeout=timeout)
