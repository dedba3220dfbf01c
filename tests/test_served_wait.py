"""bindtarget's wait for the served serial, on an injected clock: a named that
loads for a given time after each reload (and drops a reload asked for while
it loads, as named does). The answer must leave within a millisecond of the
serial being served once the zone's load time is known, for a handful of
queries, and the re-ask and deadline rules must hold."""
from __future__ import annotations

import pytest

from ddns.publishing.bindtarget import BindTarget, PublishTarget
from ddns.publishing.loadtimes import LoadTimes, next_delay

ZONE = "dyn.example.test"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class LoadingNamed:
    """Takes LOAD seconds (on CLOCK) to serve the serial of a reload; drops reloads while loading."""

    def __init__(self, clock: Clock, load: float | None):
        self.clock, self.load = clock, load  # load None: never finishes (frozen)
        self.serial = 1            # what the zone file says
        self.served = 1
        self.loading: tuple[float, int] | None = None  # (done at, serial)
        self.queries = self.reloads = 0

    def _advance(self) -> None:
        if self.loading and self.clock.now >= self.loading[0]:
            self.served, self.loading = self.loading[1], None

    def reload(self, zone: str, timeout: float) -> None:
        self._advance()
        self.reloads += 1
        if self.loading is None and self.load is not None:
            self.loading = (self.clock.now + self.load, self.serial)

    def reconfig(self, timeout: float) -> None:
        pass

    def served_serial(self, zone: str, timeout: float) -> int | None:
        self._advance()
        self.queries += 1
        return self.served


def target(load: float | None, verify_timeout: float = 5.0):
    clock = Clock()
    named = LoadingNamed(clock, load)
    bind = BindTarget(PublishTarget(rndc=None, verify_timeout=verify_timeout, control=named),
                      newest=lambda zone: named.serial, on_error=lambda message: None, committed=lambda zone: "",
                      monotonic=clock.monotonic, sleep=clock.sleep)
    return clock, named, bind


def publish(clock: Clock, named: LoadingNamed, bind: BindTarget) -> tuple[set[str], float, int]:
    """One commit: a new serial, a reload, the wait. Returns (served, seconds after the load finished, queries)."""
    named.serial += 1
    named.queries = 0
    deadline = bind.deadline()
    assert bind.reload(ZONE, deadline)
    loaded_at = named.loading[0] if named.loading else None
    served = bind.wait_served({ZONE: named.serial}, deadline=deadline)
    late = clock.now - loaded_at if loaded_at is not None else None
    return served, late, named.queries


@pytest.mark.parametrize("load", [0.004, 0.045, 0.3])
def test_once_the_load_time_is_known_the_answer_leaves_within_a_millisecond(load):
    clock, named, bind = target(load)
    lateness = []
    for n in range(10):  # the first learns it with backoff, the next ones narrow it down
        served, late, queries = publish(clock, named, bind)
        assert served == {ZONE}
        assert 0 <= late <= 0.02 + 1e-9
        assert queries <= load / 0.02 + (8 if n == 0 else 15)  # not a busy loop
        lateness.append(late)
    assert max(lateness[-4:]) <= 0.001 + 1e-9


def test_a_zone_that_got_quicker_is_found_as_soon_as_without_an_estimate():
    clock, named, bind = target(0.3)
    for _ in range(3):
        publish(clock, named, bind)
    named.load = 0.02
    served, late, _ = publish(clock, named, bind)
    assert served == {ZONE} and late <= 0.02 + 1e-9


def test_a_zone_that_got_slower_is_still_found_with_backoff():
    clock, named, bind = target(0.01)
    for _ in range(3):
        publish(clock, named, bind)
    named.load = 0.2
    served, late, queries = publish(clock, named, bind)
    assert served == {ZONE} and late <= 0.02 + 1e-9 and queries <= 25


def test_a_frozen_named_is_asked_again_and_the_deadline_holds():
    clock, named, bind = target(None, verify_timeout=1.0)
    start = clock.now
    served, _, queries = publish(clock, named, bind)
    assert served == set() and bind.unserved == {ZONE}
    assert clock.now - start == pytest.approx(1.0)  # the deadline, not a sleep past it
    assert named.reloads >= 4                        # re-asked every 0.2 s
    assert queries <= 1.0 / 0.02 + 15                # backed off to one query per 20 ms


def test_a_reload_dropped_while_loading_is_asked_again():
    clock, named, bind = target(0.05)
    publish(clock, named, bind)
    named.serial += 1
    bind.reload(ZONE)       # named loads serial 3 ...
    named.serial += 1       # ... and the next commit's reload (serial 4) is dropped
    bind.reload(ZONE)
    assert bind.wait_served({ZONE: named.serial}) == {ZONE}
    assert named.served == named.serial


def test_next_delay_schedule():
    assert next_delay(0.0, None, 0.0) == 0.001                     # unknown: start fine, back off
    assert next_delay(0.05, None, 0.016) == 0.02
    assert next_delay(0.0, 0.04, 0.0) == 0.02                      # before it: every 20 ms
    assert next_delay(0.02, 0.04, 0.02) == pytest.approx(0.014)   # ... up to shortly before
    assert next_delay(0.035, 0.04, 0.03) == 0.001                  # fine around the expected time
    assert next_delay(0.046, 0.04, 0.001) == 0.002                 # late: backing off
    assert next_delay(0.0, 0.004, 0.0) == pytest.approx(0.003)    # a quick zone: a shorter window
    assert next_delay(0.993, 1.0, 0.02) == 0.001                   # a slow one: the window stays 12 ms
    assert next_delay(1.007, 1.0, 0.001) == 0.002
    assert next_delay(0.2, 0.04, 0.02) == 0.02


def test_load_times_average_and_ignore_a_stuck_load():
    times = LoadTimes()
    assert times.expected(ZONE) is None
    times.learn(ZONE, 0.04)
    times.learn(ZONE, 0.08)
    assert times.expected(ZONE) == pytest.approx(0.06)
    times.learn(ZONE, 30.0)
    times.learn(ZONE, -1.0)
    assert times.expected(ZONE) == pytest.approx(0.06)
