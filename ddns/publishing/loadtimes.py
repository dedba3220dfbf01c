"""How long named takes to serve a reloaded zone, and when to ask it for the serial meanwhile (pure).

``rndc reload ZONE`` answers before named loads the file, so the wait for
the served serial asks named now and then: often around the time the
zone's loads took so far (``LoadTimes``), rarely before it, backing off
after it (``next_delay``). ``bindtarget.BindTarget.wait_served`` follows it.
"""
from __future__ import annotations

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
