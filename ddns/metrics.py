"""The service's metrics, in Prometheus's text format, for ``/metrics``.

One registry per ``Service``, never prometheus_client's global one: tests
run several services in one process, and each must count only its own.
Each number is counted in one place, none in an adapter:

- ``ddns_updates_total{interface,outcome}``: every update's result as the
  update use case (``ddns.updates``) returns it. ``interface`` is the
  actor's (dyndns2, rfc2136, portal, api, cli, httpreq), ``outcome`` the
  neutral ``model.Outcome`` (published, unchanged, unserved, refused, unmet,
  failed) or, for a request refused before anything was decided, the
  error's kind (invalid, busy, ...).
- ``ddns_publish_stage_seconds{stage}``: the publisher's observer
  (``ddns.publishing.observer``): per group decide, write, git_commit,
  named_publish, under_lock (lock wait included), wait_served, and from the
  queue queue_wait (its oldest update) and group_total (commit to answer).
- ``ddns_queue_length``: updates waiting for the publisher thread, read at
  scrape time.
- ``ddns_serial_lag{zone}``: the committed serial minus the one named
  serves (RFC 1982 difference), asked of named at a scrape and kept for
  ``metrics.serial_lag_seconds`` (one query per zone, not one per zone and
  scrape: several scrapers, or a fast one, cost named nothing more); +Inf
  when named serves nothing for the zone, so ``> 0`` catches both.
- ``ddns_auth_failures_total``: credentials the guard refused (a wrong
  secret or password, a network refused for guessing).
- ``ddns_errors_total{component}``: db (the database busy or unreachable),
  git (a commit, a put-back, a sync or a push failed), named (named did not
  take or serve a change), cluster (the changes table failed under a
  hand-over, or the publisher did not answer a change in time: counted by
  the node's ``ChangeQueue``, whichever interface asked).

Who may read them is ``metrics.allow``: the numbers say which zones exist
and how busy the service is, so by default only the machine itself.
"""
from __future__ import annotations

import ipaddress
import math
import threading
import time
from typing import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from .background import Background
from .cluster import QueueUnavailable, Unanswered
from .config import Config, ConfigError
from .db import Busy as StoreBusy, StoreUnavailable
from .publishing.publisher import Publisher

COMPONENTS = ("db", "git", "named", "cluster")
# Stages run from tens of microseconds (deciding a small group) to seconds (a full load of a big zone).
STAGE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LABEL_MAX = 64  # a label value longer than this is cut: its set of values must stay small

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks(values: list[str]) -> tuple[Network, ...]:
    """metrics.allow as networks; a value that is no address or network refuses the configuration."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value if isinstance(value, str) else "", strict=False))
        except ValueError as exc:
            raise ConfigError(f"metrics.allow: {str(value)[:100]!r} is not an address or network") from exc
    return tuple(networks)


def lag_seconds(value: object) -> float:
    """metrics.serial_lag_seconds as a number; a negative or non-finite one (NaN would keep no answer, inf
    the first for ever) refuses the configuration."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"metrics.serial_lag_seconds must be a finite number of seconds, 0 or more, "
                          f"not {str(value)[:100]!r}")
    return float(value)


def check(config: Config) -> None:
    """Refuse the metrics settings that cannot be used (before anything starts)."""
    allowed_networks(config["metrics.allow"])
    lag_seconds(config["metrics.serial_lag_seconds"])


def serial_lag(committed: int, served: int | None) -> float:
    """COMMITTED minus SERVED in RFC 1982 arithmetic (negative: named serves a newer serial); +Inf: nothing served."""
    if served is None:
        return math.inf
    difference = (committed - served) % 2**32
    return float(difference - 2**32 if difference >= 2**31 else difference)


Serials = dict[str, tuple[int, int | None]]


class SerialLag:
    """The ``ddns_serial_lag`` gauges from SERIALS (zone -> (committed, served or None)), asked at most every KEEP s."""

    def __init__(self, serials: Callable[[], Serials], keep: float, clock: Callable[[], float] = time.monotonic):
        self.serials = serials
        self.keep = keep
        self.clock = clock
        self._lock = threading.Lock()  # scrapes at once: one asks named, the others take its answer
        self._asked: tuple[float, Serials] | None = None

    def current(self) -> Serials:
        """SERIALS' answer, asked again once the last is KEEP seconds old."""
        with self._lock:
            now = self.clock()
            if self._asked is None or now - self._asked[0] >= self.keep or now < self._asked[0]:
                self._asked = (now, self.serials())
            return self._asked[1]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily("ddns_serial_lag", "Committed serial minus the serial named serves, per zone "
                                 "(+Inf: named serves nothing for it).", labels=["zone"])

    def describe(self) -> list[Metric]:
        return [self._family()]  # without asking named: registering must not query it

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for zone, (committed, served) in sorted(self.current().items()):
            family.add_metric([zone], serial_lag(committed, served))
        yield family


class Metrics:
    """The counters, histogram and gauges of one service (see the module)."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic):
        self.enabled: bool = config["metrics.enabled"]
        self.serial_lag_seconds = lag_seconds(config["metrics.serial_lag_seconds"])
        self.clock = clock
        self.allow = allowed_networks(config["metrics.allow"])
        self.registry = CollectorRegistry()
        self._updates = Counter("ddns_updates", "Updates by interface and outcome.", ["interface", "outcome"],
                                registry=self.registry)
        self._stages = Histogram("ddns_publish_stage_seconds", "Seconds each stage of publishing a group took.",
                                 ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self._queue = Gauge("ddns_queue_length", "Updates waiting for the publisher.", registry=self.registry)
        self._auth_failures = Counter("ddns_auth_failures", "Credentials refused (wrong secret or password, "
                                      "or a network refused for guessing).", registry=self.registry)
        self._errors = Counter("ddns_errors", "Failures by component: db, git, named, cluster.", ["component"],
                               registry=self.registry)
        for component in COMPONENTS:
            self._errors.labels(component)  # present at 0: a rate is defined before the first failure

    # ---- what is counted -------------------------------------------------------
    def update(self, interface: str, outcome: str) -> None:
        """One update's result (``ddns.updates``): its actor's interface and its outcome's value."""
        self._updates.labels(interface[:LABEL_MAX], outcome[:LABEL_MAX]).inc()

    def stage(self, name: str, seconds: float) -> None:
        self._stages.labels(name[:LABEL_MAX]).observe(seconds)

    def auth_failure(self) -> None:
        self._auth_failures.inc()

    def error(self, component: str) -> None:
        """COMPONENT (one of ``COMPONENTS``) failed once."""
        if component in COMPONENTS:
            self._errors.labels(component).inc()

    def failure(self, exc: BaseException) -> None:
        """Count EXC, a refusal that reached the web app, when the database caused it.

        Not the cluster's hand-over (QueueUnavailable, a StoreUnavailable too,
        and Unanswered): the ChangeQueue counts those itself, whichever adapter
        asked (most catch them before the web app sees them).
        """
        if isinstance(exc, (QueueUnavailable, Unanswered)):
            return
        if isinstance(exc, (StoreBusy, StoreUnavailable)):
            self.error("db")

    def watch(self, publisher: Publisher, background: Background) -> None:
        """Hear PUBLISHER's stages and failures; read the queue and the serials from them when scraped."""
        publisher.observer.stage = self.stage
        publisher.observer.error = self.error

        def queue_length() -> int:
            thread = background.publisher_thread
            return thread.queue_length if thread is not None else 0

        def serials() -> Serials:
            return {zone: (state.serial, publisher.named.served_serial(zone))
                    for zone, state in publisher.zones.copy().items()}

        self._queue.set_function(queue_length)
        self.registry.register(SerialLag(serials, self.serial_lag_seconds, self.clock))

    # ---- what is read ----------------------------------------------------------
    def allows(self, client: str) -> bool:
        """Whether CLIENT (an address as text) may scrape."""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address.version == n.version and address in n for n in self.allow)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
