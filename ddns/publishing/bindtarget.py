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

named loads its own copy of each zone (``zone_dir``/ZONE.zone), never the
Git working tree: a full load writes the zone as committed there (one file,
``committed``) and asks named to load it. In incremental mode
(``mode="incremental"``, ``incremental``) named owns that copy and keeps a
journal: ``publish`` sends the commit's change as one RFC 2136 update (NOERROR:
served, nothing to wait for), and a full load is ``rndc freeze`` (named writes
the journal into the file and stops taking updates), the write, ``rndc thaw``
(named loads the file and, as it changed, drops the journal). An update named
does not take (a prerequisite shows its zone diverged, a wrong key, no answer)
falls back to a full load. Updates are sent only while named is known to serve
the last change sent (``_sent`` / ``_synced``): after a lost one, a full load.

A commit's update is sent before its branch moves (``send``; the committer
reads the answer after, ``publish``): named applies it while git fsyncs. If
the branch then does not move, ``withdraw`` loads the committed zone again
(named goes back to its serial; its journal goes, or it would roll the copy
forward again) and proves it by its data, and the next commit's serial passes
the withdrawn one (``serial_floor``, kept in ``.git`` across restarts and
applied by reconcile's and the settings' commits too: ``serialfloor``), so a
secondary that took it still sees the next commit as newer.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Callable, ContextManager

import dns.rcode

from .. import bind
from ..serial import serial_gt
from .incremental import INCREMENTAL
from .loadtimes import LoadTimes, next_delay
from .namedcontrol import Answer, NamedControl, PublishTarget, RndcControl
from .serialfloor import SerialFloors
from .worktree import atomic_write
from .zonechange import ZoneChange

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so

# How long a zone may stay behind its serial before named is asked to reload it again.
_REASK_SECONDS = 0.2
# The shortest rndc timeout, however little of the verify budget is left.
_MIN_RNDC_TIMEOUT = 0.05

class BindTarget:
    """Reloads zones in named and waits for their serials; remembers the zones named does not serve yet.

    NEWEST gives a zone's newest published serial (None: no such zone): a
    zone left behind is asked again only for that one, which covers the rest.
    ON_ERROR receives the reason of each failure (the publisher's last error).
    COMMITTED gives a zone as committed, as one file: what named must serve after a full load.
    LOCK is the publisher's: a reload asked outside a commit (``wait_served``
    asking again, ``reload_and_verify`` from the retry loop) writes named's
    copy and freezes the zone, so it takes the lock, as a commit's publish has it.
    """

    def __init__(self, settings: PublishTarget, newest: Callable[[str], int | None],
                 on_error: Callable[[str], None], committed: Callable[[str], str],
                 lock: Callable[[], ContextManager[None]] = contextlib.nullcontext,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, floor_file: Path | None = None):
        self.settings = settings
        self.unserved: set[str] = set()  # zones named did not serve after their last publish
        self.load_times = LoadTimes()
        self._reloaded: dict[str, float] = {}  # zone -> when (monotonic) named last took a reload of it
        self._rndc = RndcControl(settings)
        self._newest = newest
        self._on_error = on_error
        self._committed = committed
        self._lock = lock
        self._monotonic = monotonic
        self._sleep = sleep
        self._sent: dict[str, int] = {}    # zone -> the serial last sent to named (an update or a full load)
        self._synced: dict[str, int] = {}  # zone -> the serial named is known to serve exactly
        self._diverged: dict[str, ZoneChange] = {}  # zone -> a change named refused: served when its data is
        self.floors = SerialFloors(floor_file)  # zone -> the serial of the last update sent whose commit failed
        self._key_name: str | None = None  # the publisher key's, read once (the key file may go meanwhile)

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

    def close(self) -> None:
        """Close what is kept open to named (the update connection) when the service stops."""
        self._rndc.close()

    def reconfig(self) -> None:
        """Have named read its configuration again (the set of zones changed); raises BindError."""
        if self.control is not None:
            self.control.reconfig(self.rndc_timeout())

    def served_serial(self, zone: str, timeout: float = 1.0) -> int | None:
        """The serial named serves for ZONE now (None: not served, or no answer within TIMEOUT seconds)."""
        return self.control.served_serial(zone, timeout) if self.control is not None else None

    def committed(self, zone: str) -> str:
        """ZONE as committed, as one file: what named must serve."""
        return self._committed(zone)

    @property
    def incremental(self) -> bool:
        """Whether commits reach named as RFC 2136 updates (else as reloads of the whole zone)."""
        return self.settings.mode == INCREMENTAL and self.control is not None

    def copy_path(self, zone: str) -> Path | None:
        """The file named loads ZONE from (None: the working tree's, no copy)."""
        return None if self.settings.zone_dir is None else self.settings.zone_dir / f"{zone}.zone"

    def reload(self, zone: str, deadline: float | None = None) -> bool:
        """A full load: ZONE as committed written to named's copy, and named asked to load it.

        Waits for named's answer at most half the budget left before DEADLINE.
        The wait for the new serial counts ZONE's load time from here (a
        re-ask while named loads changes nothing: named drops it).
        """
        if not self._ask_reload(zone, deadline):
            return False
        self._reloaded[zone] = self._monotonic()
        return True

    def send(self, change: ZoneChange, deadline: float | None = None) -> Answer | None:
        """Send CHANGE as an update before its commit is made, so that named applies it meanwhile; its answer
        goes to ``publish`` once the commit is made, else to ``withdraw``. None: not one for an update
        (reload mode, or named may have missed the zone's last change): ``publish`` loads the zone.
        """
        zone = change.zone
        if not self.incremental or zone in self.unserved or self._sent.get(zone) != self._synced.get(zone):
            return None
        self._sent[zone] = change.serial
        try:
            return self.control.send_update(change, self.rndc_timeout(deadline))
        except bind.BindError as exc:
            error = exc

            def unreachable(timeout: float) -> int:
                raise error
            return unreachable

    def publish(self, change: ZoneChange, deadline: float | None = None, sent: Answer | None = None) -> bool:
        """Have named serve a commit's CHANGE of one zone; False: named did not take it (committed, not served).

        Incremental: one update (SENT: the one ``send`` sent before the
        commit); NOERROR means served (``wait_served`` returns at once).
        Anything else, or a zone whose last change named may have missed: a
        full load, and ``wait_served`` waits for CHANGE's serial.
        """
        zone = change.zone
        answer = sent or self.send(change, deadline)
        if answer is None:
            return self.reload(zone, deadline)
        try:
            rcode = answer(self.rndc_timeout(deadline))
        except bind.BindError as exc:
            self._on_error(str(exc))
            log.warning("%s; loading the zone instead", exc)
            return self.reload(zone, deadline)
        if rcode == dns.rcode.NOERROR:
            self._synced[zone] = change.serial
            return True
        message = f"named did not take the update of {zone} ({dns.rcode.to_text(rcode)})"
        self._on_error(message)
        log.warning("%s; loading the zone instead", message)
        self._diverged[zone] = change  # named may serve our serial already, with other data
        return self.reload(zone, deadline)

    def withdraw(self, change: ZoneChange, sent: Answer, committed: ZoneChange, deadline: float) -> bool:
        """CHANGE was SENT (``send``) but its commit failed: named goes back to COMMITTED (the zone as its
        last commit has it, at that commit's serial), proven by its data; True once named serves it.

        Whatever named answered it may have applied CHANGE (a lost answer
        says nothing), so the zone is loaded from what is committed and the
        wait asks named whether it serves COMMITTED's RRsets and SOA (the
        serial alone cannot tell: CHANGE's is higher). Under the publisher's
        lock, within DEADLINE; a zone not served by then is left to the retry
        loop, which proves it the same way. The next commit's serial passes
        CHANGE's (``serial_floor``): a secondary that took CHANGE fetches it.
        """
        zone = change.zone
        try:
            sent(self.rndc_timeout(deadline))
        except bind.BindError as exc:
            log.warning("%s", exc)
        try:
            self.floors.withdrawn(zone, change.serial)
        except OSError as exc:  # the floor holds in memory: lost only if this process stops before a commit
            log.error("cannot keep the withdrawn serial %s of %s: %s", change.serial, zone, exc)
        self._diverged[zone] = committed
        self._synced.pop(zone, None)  # what named serves is not known until the wait proves it
        log.warning("%s: loading the committed zone again (serial %s): its update of serial %s was sent, its "
                    "commit failed", zone, committed.serial, change.serial)
        if not self.reload(zone, deadline):
            self.unserved.add(zone)
            return False
        return zone in self.wait_served({zone: committed.serial}, deadline=deadline)

    def serial_floor(self, zone: str, serial: int) -> int:
        """SERIAL, or the serial of ZONE's last withdrawn update when that is higher (kept across restarts,
        ``serialfloor``): every commit's serial follows it, so a secondary that took the withdrawn one still
        sees the next commit as newer."""
        return self.floors.floor(zone, serial)

    def _ask_reload(self, zone: str, deadline: float | None) -> bool:
        control = self.control
        if control is None:
            return True
        timeout = self.rndc_timeout(deadline)
        try:
            if self.incremental:  # named owns its copy: it writes the journal in, then takes ours
                try:
                    control.freeze(zone, timeout)
                except bind.BindError:
                    if control.served_serial(zone, timeout) is not None:
                        raise  # a zone named serves cannot be written under it
                    # not loaded (a copy it could not load): nothing of named's to keep
                    self._write_copy(zone, drop_journal=True)
                    control.reload(zone, timeout)
                    return True
                try:  # a diverged zone's journal is not ours: named would roll the copy forward with it
                    self._write_copy(zone, drop_journal=zone in self._diverged)
                finally:  # a frozen zone takes no updates: never leave it so
                    control.thaw(zone, timeout)
            else:
                self._write_copy(zone, drop_journal=True)
                control.reload(zone, timeout)
            return True
        except (bind.BindError, OSError, KeyError) as exc:  # the copy unwritable, the zone gone: not served
            self._on_error(str(exc))
            log.warning("reload of %s failed: %s", zone, exc)
            return False

    def _write_copy(self, zone: str, drop_journal: bool = False) -> None:
        """Write ZONE as committed to named's copy (when there is one); the serial it holds is the one sent.

        DROP_JOURNAL (reload mode): a journal left from incremental mode would
        not fit the new file, and named would refuse to load it; (a diverged
        zone, a withdrawn update) named would apply it to the copy again.
        """
        self._sent[zone] = self._newest(zone)
        path = self.copy_path(zone)
        if path is not None:
            atomic_write(path, self._committed(zone), self.settings.fsync)
            if drop_journal:
                Path(f"{path}.jnl").unlink(missing_ok=True)

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
        served = {zone for zone, serial in serials.items() if self._applied(zone, serial)}
        for zone in served:
            del pending[zone]
        start = self._monotonic()
        if deadline is None:
            deadline = start + (self.settings.verify_timeout if timeout is None else timeout)
        asked = {zone: start for zone in pending}
        seen: dict[str, int | None] = {}
        delay = 0.0
        while pending:
            for zone, serial in list(pending.items()):
                now_serving = control.served_serial(zone, max(0.05, min(0.5, deadline - self._monotonic())))
                if now_serving is not None and (now_serving == serial or serial_gt(now_serving, serial)) \
                        and self._serves_diverged(zone, serial, deadline):
                    served.add(zone)
                    del pending[zone]
                    if now_serving == self._sent.get(zone):
                        self._synced[zone] = now_serving
                    if zone in self._reloaded:
                        self.load_times.learn(zone, self._monotonic() - self._reloaded[zone])
                    continue
                # named just finished an older load (the serial moved), or has been quiet for a
                # while: ask again -- but only for the zone's newest commit, which covers the rest.
                finished_older = zone in seen and now_serving != seen[zone]
                seen[zone] = now_serving
                if self._newest(zone) == serial and (finished_older or self._monotonic() - asked[zone] > _REASK_SECONDS):
                    self._ask_again(zone, serial, deadline, finished_older)
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

    def _ask_again(self, zone: str, serial: int, deadline: float, finished_older: bool) -> None:
        """Ask named again to load ZONE for SERIAL, under the publisher's lock (it writes named's copy).

        A commit that came meanwhile publishes its own serial: nothing to ask then.
        After an older load named starts this one now; a re-ask while it loads changes nothing.
        """
        with self._lock():
            if self._newest(zone) == serial:
                (self.reload if finished_older else self._ask_reload)(zone, deadline)

    def _serves_diverged(self, zone: str, serial: int, deadline: float) -> bool:
        """For a zone whose update named refused: whether it serves that change's data now (not just its serial)."""
        change = self._diverged.get(zone)
        if change is None:
            return True
        if change.serial != serial:  # a newer commit's wait: its own publish decides
            del self._diverged[zone]
            return True
        try:
            if not self.control.serves(change, max(_MIN_RNDC_TIMEOUT, (deadline - self._monotonic()) / 2)):
                return False
        except bind.BindError as exc:
            log.warning("%s", exc)
            return False
        del self._diverged[zone]
        return True

    def served_now(self, serials: dict[str, int]) -> bool:
        """Whether named took an update of each zone at its serial (``wait_served`` would return at once)."""
        return self.control is None or all(self._applied(zone, serial) for zone, serial in serials.items())

    def _applied(self, zone: str, serial: int) -> bool:
        """Whether named took an update of ZONE at SERIAL (or later) and nothing was sent since."""
        synced = self._synced.get(zone)
        return (self.incremental and synced is not None and synced == self._sent.get(zone)
                and (synced == serial or serial_gt(synced, serial)))

    def reload_and_verify(self, zone_names: list[str], serials: dict[str, int]) -> set[str]:
        """Reload each zone and wait until named serves its serial (zones it cannot reload: not served).

        All of it within one verify budget, whatever named does.
        """
        deadline = self.deadline()
        with self._lock():  # the retry loop calls this without it: the copies are written under it
            reloaded = [zone for zone in zone_names if self.reload(zone, deadline)]
        self.unserved.update(set(zone_names) - set(reloaded))
        return self.wait_served({zone: serials[zone] for zone in reloaded}, deadline=deadline)

    def write_zones_conf(self, zone_files: dict[str, Path], fsync: bool = True) -> bool:
        """Rewrite the named.conf fragment that lists the zones (when configured); True if it changed.

        ZONE_FILES are the working tree's files; with a ``zone_dir`` named
        loads its copies instead: those missing are written (a new zone, an
        instance of an older version), those of zones gone are removed.
        Raises OSError (a file unwritable) or BindError (the publisher key
        unreadable the first time it is needed: its name is read once).
        """
        if self.settings.zone_dir is not None:
            zone_files = self._write_missing_copies(sorted(zone_files))
        path = self.settings.zones_conf
        if path is None:
            return False
        text = bind.zones_conf(zone_files, update_key=self._update_key_name())
        if path.exists() and path.read_text() == text:
            return False
        atomic_write(path, text, fsync)
        return True

    def copies_ready(self, zone_names: list[str]) -> bool:
        """Whether named can start on what is on disk: a copy of each of ZONE_NAMES, and a zone list naming exactly them.

        Then nothing of the zones' load is needed before named starts (its
        copies are only ever written from what is committed).
        """
        if self.settings.zone_dir is None or self.settings.zones_conf is None:
            return False
        copies = {zone: self.copy_path(zone) for zone in sorted(zone_names)}
        try:
            if not all(path.is_file() for path in copies.values()):
                return False
            return self.settings.zones_conf.read_text() == bind.zones_conf(copies, update_key=self._update_key_name())
        except (OSError, bind.BindError):
            return False

    def _update_key_name(self) -> str | None:
        """The name named.conf gives the publisher key (incremental mode; else None), read from its file once."""
        if self.settings.mode != INCREMENTAL:
            return None
        if self._key_name is None:
            self._key_name = bind.key_name(self.settings.update_key)
        return self._key_name

    def _write_missing_copies(self, zone_names: list[str]) -> dict[str, Path]:
        """named's copies of ZONE_NAMES, each written from the committed zone if missing (without a journal)."""
        directory = self.settings.zone_dir
        directory.mkdir(parents=True, exist_ok=True)
        copies = {zone: self.copy_path(zone) for zone in zone_names}
        for zone, path in copies.items():
            if not path.exists():
                Path(f"{path}.jnl").unlink(missing_ok=True)  # a journal of an older copy does not fit this one
                try:
                    text = self._committed(zone)
                except Exception as exc:  # a broken zone that never had a copy: named cannot load it yet
                    log.warning("no copy of %s for named: %s", zone, exc)
                    continue
                atomic_write(path, text, self.settings.fsync)
        listed = {p.name for p in copies.values()} | {f"{p.name}.jnl" for p in copies.values()}
        for stale in directory.glob("*.zone*"):
            if stale.name not in listed and (stale.name.endswith(".zone") or stale.name.endswith(".zone.jnl")):
                stale.unlink()
        return copies
