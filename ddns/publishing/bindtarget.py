"""The BIND side of publishing: ask named to reload a zone, and wait until it serves a serial.

It knows nothing of Git: the publisher commits, then hands over the zones to
reload and the serial that proves each one is served (``rndc reload`` answers
0 even for a broken file, so only the served serial is proof).

The publisher makes rndc calls under its lock, so each one waits at most half
the verify budget left: a frozen named costs an update its verify budget and
the publisher a fraction of it, not rndc's 10 s a call.

``rndc reload ZONE`` answers "zone reload queued" before named loads the
file (a 10k-record zone loads in tens of milliseconds after that), so the wait
asks for the SOA serial. It learns how long each zone takes to load and asks
every millisecond around that time, every 20 ms before it and backing off
after it (``LoadTimes``, ``next_delay``): the answer leaves about a
millisecond after named serves, for a handful of queries, and never later
than with no estimate when a load was quicker or slower than the last ones.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from .. import bind
from ..serial import serial_gt
from .worktree import atomic_write
from .zonechange import ZoneChange

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so

# How long a zone may stay behind its serial before named is asked to reload it again.
_REASK_SECONDS = 0.2
# The shortest rndc timeout, however little of the verify budget is left.
_MIN_RNDC_TIMEOUT = 0.05
# The served-serial schedule: every _FINE seconds within a quarter of a zone's expected load
# time (at most _WINDOW) either side of it, then backing off to every _COARSE seconds (next_delay).
_FINE = 0.001
_COARSE = 0.02
_SPREAD, _WINDOW = 0.25, 0.006
# How much one load's time moves a zone's expected one; loads slower than _MAX_LOAD are not learned.
_LEARN = 0.5
_MAX_LOAD = 2.0


def next_delay(since_reload: float, expected: float | None, last_delay: float) -> float:
    """How long to wait before asking named for the serial again.

    SINCE_RELOAD: seconds since named took the reload; EXPECTED: how long this
    zone's loads take (None: not known yet); LAST_DELAY: the previous wait (0
    before the first). Before the expected time: every _COARSE (a load
    quicker than the last ones is found as late as with no estimate); around
    it: every _FINE; after it (or unknown): doubling from _FINE to _COARSE, so
    a slow or stuck named costs a query every 20 ms.
    """
    if expected is not None:
        spread = min(_SPREAD * expected, _WINDOW)
        if since_reload < expected - spread - _FINE:
            return min(_COARSE, expected - spread - since_reload)
        if since_reload < expected + spread:
            return _FINE
    return min(_COARSE, max(_FINE, last_delay * 2))


class LoadTimes:
    """How long named takes from a reload to serving the new serial, per zone (a moving average)."""

    def __init__(self):
        self._expected: dict[str, float] = {}

    def expected(self, zone: str) -> float | None:
        return self._expected.get(zone)

    def learn(self, zone: str, seconds: float) -> None:
        """One load of ZONE took (at most) SECONDS; a load past _MAX_LOAD (a stuck named) is not learned."""
        if not 0 <= seconds <= _MAX_LOAD:
            return
        old = self._expected.get(zone)
        self._expected[zone] = seconds if old is None else old + _LEARN * (seconds - old)


class NamedControl(Protocol):
    """What publishing needs of a named: reload a zone, read the configuration again, the serial it serves."""

    def reload(self, zone: str, timeout: float) -> None: ...     # raises bind.BindError
    def reconfig(self, timeout: float) -> None: ...              # raises bind.BindError
    def served_serial(self, zone: str, timeout: float) -> int | None: ...


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


class _RndcControl:
    """The real named: rndc for reloads, a DNS query for the served serial (SETTINGS' rndc read at each call)."""

    def __init__(self, settings: PublishTarget):
        self.settings = settings

    def reload(self, zone: str, timeout: float) -> None:
        self.settings.rndc.reload(zone, timeout=timeout)

    def reconfig(self, timeout: float) -> None:
        self.settings.rndc.reconfig(timeout=timeout)

    def served_serial(self, zone: str, timeout: float) -> int | None:
        return bind.served_serial(zone, self.settings.dns_server, self.settings.dns_port, timeout=timeout)


class BindTarget:
    """Reloads zones in named and waits for their serials; remembers the zones named does not serve yet.

    NEWEST gives a zone's newest published serial (None: no such zone): a
    zone left behind is asked again only for that one, which covers the rest.
    ON_ERROR receives the reason of each failure (the publisher's last error).
    COMMITTED gives a zone as committed, as one file: what named must serve after a full load.
    """

    def __init__(self, settings: PublishTarget, newest: Callable[[str], int | None],
                 on_error: Callable[[str], None], committed: Callable[[str], str] = lambda zone: "",
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.unserved: set[str] = set()  # zones named did not serve after their last publish
        self.load_times = LoadTimes()
        self._reloaded: dict[str, float] = {}  # zone -> when (monotonic) named last took a reload of it
        self._rndc = _RndcControl(settings)
        self._newest = newest
        self._on_error = on_error
        self._committed = committed
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def control(self) -> NamedControl | None:
        """The named reloaded and asked (None: none, every commit counts as served)."""
        if self.settings.control is not None:
            return self.settings.control
        return self._rndc if self.settings.rndc is not None else None

    @property
    def enabled(self) -> bool:
        """Whether there is a named to reload (without one, every commit counts as served)."""
        return self.control is not None

    def deadline(self) -> float:
        """When (monotonic) a wait for named that starts now ends: one verify budget."""
        return self._monotonic() + self.settings.verify_timeout

    def rndc_timeout(self, deadline: float | None = None) -> float:
        """Half the verify budget left before DEADLINE (default: a whole budget)."""
        left = self.settings.verify_timeout if deadline is None else deadline - self._monotonic()
        return max(_MIN_RNDC_TIMEOUT, left / 2)

    def reconfig(self) -> None:
        """Have named read its configuration again (the set of zones changed); raises BindError."""
        if self.control is not None:
            self.control.reconfig(self.rndc_timeout())

    def served_serial(self, zone: str) -> int | None:
        """The serial named serves for ZONE now (None: not served)."""
        return self.control.served_serial(zone, 1.0) if self.control is not None else None

    def reload(self, zone: str, deadline: float | None = None) -> bool:
        """Ask named to reload ZONE, waiting for its answer at most half the budget left before DEADLINE.

        The wait for the new serial counts ZONE's load time from here (a
        re-ask while named loads changes nothing: named drops it).
        """
        self.write_copy(zone, self._committed(zone))
        if not self._ask_reload(zone, deadline):
            return False
        self._reloaded[zone] = self._monotonic()
        return True

    def copy_path(self, zone: str) -> Path | None:
        """The file named loads ZONE from: a flattened copy beside zones.conf (None: no zones.conf, nothing written).

        The tree's head includes its shards by paths relative to the zone
        directory, which named would resolve against its own directory.
        """
        conf = self.settings.zones_conf
        return None if conf is None else conf.parent / "zones" / f"{zone}.zone"

    def write_copy(self, zone: str, text: str) -> None:
        """Write ZONE's flattened copy (when there is one to write); named reads it on its next load."""
        path = self.copy_path(zone)
        if path is not None:
            atomic_write(path, text, fsync=False)  # the commit is the durable truth; a lost copy is rewritten

    def publish(self, change: ZoneChange, deadline: float | None = None) -> bool:
        """Have named serve a commit's CHANGE of one zone; False: named did not take it (committed, not served).

        For now the whole zone is reloaded; ``wait_served`` waits for CHANGE's serial.
        """
        return self.reload(change.zone, deadline)

    def _ask_reload(self, zone: str, deadline: float | None) -> bool:
        control = self.control
        if control is None:
            return True
        try:
            control.reload(zone, self.rndc_timeout(deadline))
            return True
        except bind.BindError as exc:
            self._on_error(str(exc))
            log.warning("reload of %s failed: %s", zone, exc)
            return False

    def wait_served(self, serials: dict[str, int], timeout: float | None = None,
                    deadline: float | None = None) -> set[str]:
        """Wait until named serves each zone at (or after) its serial; returns the zones served.

        The wait ends at DEADLINE (monotonic), else TIMEOUT (default verify_timeout) from now.
        Queries follow ``next_delay``: often around the time a zone's load is expected.

        named drops a reload asked for while it is still loading the zone, so a
        zone that stays behind is asked again now and then.
        """
        control = self.control
        if control is None or not serials:
            return set(serials)
        pending = dict(serials)
        served: set[str] = set()
        start = self._monotonic()
        if deadline is None:
            deadline = start + (self.settings.verify_timeout if timeout is None else timeout)
        asked = {zone: start for zone in pending}
        seen: dict[str, int | None] = {}
        delay = 0.0
        while pending:
            for zone, serial in list(pending.items()):
                now_serving = control.served_serial(zone, max(0.05, min(0.5, deadline - self._monotonic())))
                if now_serving is not None and (now_serving == serial or serial_gt(now_serving, serial)):
                    served.add(zone)
                    del pending[zone]
                    if zone in self._reloaded:
                        self.load_times.learn(zone, self._monotonic() - self._reloaded[zone])
                    continue
                # named just finished an older load (the serial moved), or has been quiet for a
                # while: ask again -- but only for the zone's newest commit, which covers the rest.
                finished_older = zone in seen and now_serving != seen[zone]
                seen[zone] = now_serving
                if self._newest(zone) == serial and (finished_older or self._monotonic() - asked[zone] > _REASK_SECONDS):
                    # after an older load named starts this one now; a re-ask while it loads changes nothing
                    (self.reload if finished_older else self._ask_reload)(zone, deadline)
                    asked[zone] = self._monotonic()
            now = self._monotonic()
            if not pending or now >= deadline:
                break
            delay = min(next_delay(now - self._reloaded.get(zone, start), self.load_times.expected(zone), delay)
                        for zone in pending)
            self._sleep(min(delay, deadline - now))
        for zone in pending:
            message = f"named does not serve serial {serials[zone]} of {zone}"
            self._on_error(message)
            log.warning("%s", message)
        self.unserved.difference_update(served)
        self.unserved.update(pending)
        return served

    def reload_and_verify(self, zone_names: list[str], serials: dict[str, int]) -> set[str]:
        """Reload each zone and wait until named serves its serial (zones it cannot reload: not served).

        All of it within one verify budget, whatever named does.
        """
        deadline = self.deadline()
        reloaded = [zone for zone in zone_names if self.reload(zone, deadline)]
        self.unserved.update(set(zone_names) - set(reloaded))
        return self.wait_served({zone: serials[zone] for zone in reloaded}, deadline=deadline)

    def write_zones_conf(self, zone_files: dict[str, Path], fsync: bool = True) -> bool:
        """Rewrite the named.conf fragment that lists the zones (when configured); True if it changed.

        named loads each zone's flattened copy (``copy_path``), written here from the committed zone when
        missing (a new zone, an instance of an older version), instead of ZONE_FILES, the working tree's heads.
        """
        path = self.settings.zones_conf
        if path is None:
            return False
        for zone in zone_files:
            copy = self.copy_path(zone)
            if copy is not None and not copy.exists():
                self.write_copy(zone, self._committed(zone))
        text = bind.zones_conf({zone: (self.copy_path(zone) or file).resolve() for zone, file in zone_files.items()})
        if path.exists() and path.read_text() == text:
            return False
        atomic_write(path, text, fsync)
        return True
