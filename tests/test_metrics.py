"""/metrics: what a Prometheus scrape of a running service shows, and who may scrape.

The served tests run ``ddns serve`` (named included) and read /metrics over
its socket; the others drive a publisher against the in-memory named, where
a lagging or failing named is a flag to set.
"""
from __future__ import annotations

import math
import os
import sqlite3
import threading
from contextlib import closing

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Instance, free_port, http, serving
from ddns import cli, cli_serve, config as configmod, db as dbmod, errors
from ddns.cluster import changes
from ddns.db import connect as db_connect, migrations
from ddns.config import ConfigError
from ddns.gitrepo import ZonesRepo
from ddns.metrics import Metrics, allowed_networks, serial_lag
from ddns.model import Actor, Grant, Identity, Match, Operation, Outcome, Update
from ddns.publishing.bindtarget import PublishTarget
from ddns.publishing.memtarget import MemoryNamed
from ddns.publishing.publisher import Publisher
from ddns.updates import Updates
from ddns.validate import AddressPolicy
from ddns.wiring import ZONE_TEMPLATES
from pgserver import pg_server, pg_url  # noqa: F401

ZONE = "dyn.example.test"
FQDN = f"metrics.{ZONE}"
PUBLISH_STAGES = ("decide", "write", "git_commit", "named_publish", "under_lock", "wait_served",
                  "queue_wait", "group_total")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(url: str, headers: dict | None = None) -> dict[tuple[str, frozenset], float]:
    status, body, answer_headers = http(url + "/metrics", headers=headers)
    assert status == 200, body
    assert answer_headers["Content-Type"].startswith("text/plain; version=")  # the exposition format
    return samples(body)


def value(metrics: dict, name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def test_updates_auth_failures_stages_queue_and_lag_of_a_running_service(serve, instance: Instance):
    r = serve({"metrics.serial_lag_seconds": 0})  # each scrape asks named: "after" is not the lag kept from "before"
    secret = instance.add_host(FQDN)
    before = scrape(r.url)
    assert value(before, "ddns_publish_stage_seconds_count", stage="git_commit") is None  # nothing published yet
    assert value(before, "ddns_updates_total", interface="dyndns2", outcome="published") is None

    assert r.update(FQDN, secret, "myip=192.0.2.44") == (200, "good 192.0.2.44\n")
    assert r.update(FQDN, secret, "myip=192.0.2.44") == (200, "nochg 192.0.2.44\n")
    assert r.update(FQDN, secret + "-wrong") == (401, "badauth\n")
    assert r.service.set_address(FQDN, "192.0.2.45", "user:admin", interface="portal") is Outcome.PUBLISHED

    after = scrape(r.url)
    assert value(after, "ddns_updates_total", interface="dyndns2", outcome="published") == 1
    assert value(after, "ddns_updates_total", interface="dyndns2", outcome="unchanged") == 1
    assert value(after, "ddns_updates_total", interface="portal", outcome="published") == 1
    assert value(after, "ddns_auth_failures_total") == 1
    for stage in PUBLISH_STAGES:
        assert value(after, "ddns_publish_stage_seconds_count", stage=stage) == 2, stage
        if stage != "wait_served":  # 0 s when named took the group's update (answered with no wait)
            assert value(after, "ddns_publish_stage_seconds_sum", stage=stage) > 0, stage
    assert value(after, "ddns_queue_length") == 0
    assert value(after, "ddns_serial_lag", zone=ZONE) == 0  # answered good: served at the committed serial
    for component in ("db", "git", "named", "cluster"):
        assert value(after, "ddns_errors_total", component=component) == 0


def test_metrics_are_refused_to_networks_not_allowed(serve, instance: Instance):
    r = serve({"http.trusted_proxies": ["127.0.0.1"]})
    assert value(scrape(r.url), "ddns_queue_length") == 0  # loopback: allowed by default
    status, body, _ = http(r.url + "/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert (status, body) == (403, "forbidden\n")
    status, body, _ = http(r.url + "/metrics", headers={"X-Forwarded-For": "::1, 198.51.100.7"})
    assert status == 403 and "ddns_" not in body  # the rightmost hop not a trusted proxy is the client


def test_metrics_allow_and_metrics_enabled_are_obeyed(instance: Instance):
    with serving(instance, {"http.trusted_proxies": ["127.0.0.1"], "metrics.allow": ["198.51.100.0/24"]}) as r:
        assert http(r.url + "/metrics")[0] == 403  # loopback is no longer listed
        assert value(scrape(r.url, {"X-Forwarded-For": "198.51.100.7"}), "ddns_queue_length") == 0
    with serving(instance, {"metrics.enabled": False}) as r:
        assert http(r.url + "/metrics")[0] == 404
        assert http(r.url + "/healthz")[0] == 200


def stamps(instance: Instance) -> dict:
    """Every file of the instance with its modification time, and the database by its rows.

    SQLite's -wal and -shm come and go with connections, and the database file itself is written when
    the last connection of the set-up closes (a checkpoint, whenever the collector gets to it): none of
    that is a write by serve, so the database is compared by what it holds."""
    found = {p: p.stat().st_mtime_ns for p in instance.dir.rglob("*")
             if not p.name.endswith(("-wal", "-shm", ".sqlite3"))}
    with closing(sqlite3.connect(instance.dir / "ddns.sqlite3")) as db:
        found["rows"] = list(db.iterdump())
    return found


@pytest.mark.parametrize("overrides, message", [
    ({"metrics.allow": ["not-a-network"]}, "metrics.allow: 'not-a-network' is not an address or network"),
    ({"metrics.allow": ["10.0.0.0/33"]}, "metrics.allow: '10.0.0.0/33'"),
    ({"metrics.allow": ["127.0.0.1\nhttp.listen = 0.0.0.0"]}, "is not an address or network"),
    ({"metrics.allow": [""]}, "metrics.allow: ''"),
    ({"log.format": "xml"}, "log.format must be one of text, json, not 'xml'"),
    ({"log.format": "json\n"}, "log.format must be one of"),
    ({"log.level": "TRACE"}, "log.level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'TRACE'"),
    ({"log.level": "10"}, "log.level must be one of"),
    ({"metrics.serial_lag_seconds": -1.0}, "metrics.serial_lag_seconds must be a finite number of seconds, 0 or more"),
    ({"metrics.serial_lag_seconds": float("nan")}, "metrics.serial_lag_seconds must be a finite number"),
    ({"metrics.serial_lag_seconds": float("inf")}, "metrics.serial_lag_seconds must be a finite number"),
])
def test_unusable_settings_are_refused_before_anything_starts(instance: Instance, overrides, message):
    cfg = configmod.load(instance.config_path, environ={}, overrides=overrides)
    before = stamps(instance)
    stopped = threading.Event()
    stopped.set()  # were it not refused, serve would stop as soon as it runs
    with pytest.raises(ConfigError) as refused:
        cli_serve.serve(cfg, cli.Env(environ={}), stop_event=stopped)
    assert message in str(refused.value)
    assert stamps(instance) == before  # nothing written, nothing started


def test_a_non_finite_lag_from_the_environment_is_a_usage_error(instance: Instance, capsys):
    env = cli.Env(environ={"DDNS_METRICS_SERIAL_LAG_SECONDS": "nan"}, cwd=instance.dir)
    assert cli.main(["-c", str(instance.config_path), "serve"], env) == cli.Exit.USAGE
    assert "error: metrics.serial_lag_seconds must be a finite number of seconds, 0 or more, not 'nan'" in \
        capsys.readouterr().err


def test_an_unusable_setting_from_the_environment_is_a_usage_error(instance: Instance, capsys):
    env = cli.Env(environ={"DDNS_METRICS_ALLOW": "127.0.0.1,300.1.2.3"}, cwd=instance.dir)
    assert cli.main(["-c", str(instance.config_path), "serve"], env) == cli.Exit.USAGE
    assert "error: metrics.allow: '300.1.2.3' is not an address or network" in capsys.readouterr().err


def test_the_allow_check():
    metrics = Metrics(configmod.load(None, environ={}, overrides={"metrics.allow": ["192.0.2.0/24", "2001:db8::/32"]}))
    assert metrics.allows("192.0.2.200") and metrics.allows("2001:db8::1")
    assert not metrics.allows("192.0.3.1") and not metrics.allows("127.0.0.1") and not metrics.allows("::1")
    assert not metrics.allows("::ffff:192.0.2.1")  # another family: not in the IPv4 network
    assert not metrics.allows("") and not metrics.allows("192.0.2.1, 127.0.0.1") and not metrics.allows("x" * 5000)
    default = Metrics(configmod.load(None, environ={}))
    assert default.allows("127.0.0.1") and default.allows("::1") and not default.allows("127.0.0.2")
    assert allowed_networks([]) == ()
    with pytest.raises(ConfigError):
        allowed_networks([42])


def test_serial_lag_is_rfc_1982_arithmetic():
    assert serial_lag(5, 5) == 0
    assert serial_lag(1_700_000_010, 1_700_000_000) == 10
    assert serial_lag(3, 2**32 - 2) == 5  # across the wrap
    assert serial_lag(5, 10) == -5  # named serves a newer serial than committed
    assert serial_lag(5, None) == math.inf


# ---- a publisher against the in-memory named -----------------------------------------
ZONE_KEY = Identity(Actor("key:zone-admin", "127.0.0.1", "rfc2136"), "", (Grant(True, Match.ZONESUB),))


class _NoThread:
    publisher_thread = None


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def counted(instance: Instance, clock: Clock):
    """(metrics, publisher, named, updates): the publisher's observer and the updates' counts go to METRICS."""
    named = MemoryNamed(instance.repo)
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES],
                          PublishTarget(rndc=None, control=named, verify_timeout=0.5))
    publisher.load()
    publisher.reconcile()
    metrics = Metrics(configmod.load(None, environ={}), clock=clock)
    metrics.watch(publisher, _NoThread())
    updates = Updates(publisher, publisher.apply, ["A"], AddressPolicy(True, False), metrics.update)
    return metrics, publisher, named, updates


def set_a(address: str) -> list[Operation]:
    return Operation.replace(f"h1.{ZONE}", "A", [address])


def test_the_lag_is_what_named_is_behind_and_inf_when_it_serves_nothing(counted, clock):
    metrics, publisher, named, updates = counted
    keep = configmod.load(None, environ={})["metrics.serial_lag_seconds"]
    assert updates.update(ZONE_KEY, ZONE, set_a("192.0.2.1")).outcome is Outcome.PUBLISHED
    assert value(samples(metrics.exposition()[0].decode()), "ddns_serial_lag", zone=ZONE) == 0
    committed = publisher.zones[ZONE].serial
    named.served[ZONE] = committed - 7  # named fell behind (a lost update, a slow load)
    clock.now += keep
    assert value(samples(metrics.exposition()[0].decode()), "ddns_serial_lag", zone=ZONE) == 7
    named.down = True
    clock.now += keep
    assert value(samples(metrics.exposition()[0].decode()), "ddns_serial_lag", zone=ZONE) == math.inf


def test_scrapes_within_the_keep_time_ask_named_once(counted, clock, monkeypatch):
    metrics, publisher, named, updates = counted
    keep = configmod.load(None, environ={})["metrics.serial_lag_seconds"]
    assert keep > 0
    asked = []
    served_serial = publisher.named.served_serial
    monkeypatch.setattr(publisher.named, "served_serial", lambda zone: asked.append(zone) or served_serial(zone))
    for _ in range(5):
        assert value(samples(metrics.exposition()[0].decode()), "ddns_serial_lag", zone=ZONE) == 0
        clock.now += keep / 10
    assert asked == [ZONE]  # one question per zone for all five scrapes
    named.served[ZONE] = publisher.zones[ZONE].serial - 2
    clock.now += keep
    assert value(samples(metrics.exposition()[0].decode()), "ddns_serial_lag", zone=ZONE) == 2  # asked again
    assert asked == [ZONE, ZONE]


def test_named_and_git_failures_are_counted_by_component(counted, monkeypatch):
    metrics, publisher, named, updates = counted
    named.down = True
    assert updates.update(ZONE_KEY, ZONE, set_a("192.0.2.2")).outcome is Outcome.UNSERVED
    scraped = samples(metrics.exposition()[0].decode())
    assert value(scraped, "ddns_errors_total", component="named") >= 1
    assert value(scraped, "ddns_errors_total", component="git") == 0
    assert value(scraped, "ddns_updates_total", interface="rfc2136", outcome="unserved") == 1
    named.down = False

    def failing_commit(*args, **kwargs):
        raise OSError(28, os.strerror(28))  # ENOSPC

    monkeypatch.setattr(publisher.repo, "commit", failing_commit)
    assert updates.update(ZONE_KEY, ZONE, set_a("192.0.2.3")).outcome is Outcome.FAILED
    scraped = samples(metrics.exposition()[0].decode())
    assert value(scraped, "ddns_errors_total", component="git") == 1
    assert value(scraped, "ddns_updates_total", interface="rfc2136", outcome="failed") == 1
    assert value(scraped, "ddns_publish_stage_seconds_count", stage="git_commit") == 1  # the commit that was made


def test_a_request_refused_as_a_whole_is_counted_by_its_kind(counted):
    metrics, _, _, updates = counted
    with pytest.raises(Exception):
        updates.update(ZONE_KEY, ZONE, [Operation.replace(f"h1.{ZONE}", "A", ["not-an-address"])[1]])
    assert value(samples(metrics.exposition()[0].decode()), "ddns_updates_total",
                 interface="rfc2136", outcome="invalid") == 1


def test_two_services_in_one_process_count_apart(instance: Instance):
    first, second = (Metrics(configmod.load(None, environ={})) for _ in range(2))
    first.update("dyndns2", "published")
    first.auth_failure()
    assert value(samples(first.exposition()[0].decode()), "ddns_auth_failures_total") == 1
    assert value(samples(second.exposition()[0].decode()), "ddns_auth_failures_total") == 0
    assert value(samples(second.exposition()[0].decode()), "ddns_updates_total",
                 interface="dyndns2", outcome="published") is None


def test_cluster_and_database_failures_are_counted_once(pg_url):
    """The changes queue counts its hand-overs that failed; ``failure`` (the web app's) only the database's."""
    metrics = Metrics(configmod.load(None, environ={}))
    migrations.upgrade(db_connect(pg_url))
    queue = changes.ChangeQueue(pg_url, wait_seconds=0.2)
    queue.failed = lambda: metrics.error("cluster")  # as ddns.cluster.roles wires it
    queue.start()
    try:
        with pytest.raises(changes.Unanswered) as unanswered:  # no publisher consumes the table
            queue.publish([Update(ZONE, tuple(set_a("192.0.2.9")), actor=Actor("host:h1", interface="dyndns2"))])
    finally:
        queue.stop()
    away = changes.ChangeQueue(f"postgresql://postgres@127.0.0.1:{free_port()}/none", wait_seconds=1)
    with pytest.raises(dbmod.StoreUnavailable) as unreachable:
        away.publish([Update(ZONE, tuple(set_a("192.0.2.9")), actor=Actor("host:h1", interface="dyndns2"))])
    for exc in (unanswered.value, changes.QueueUnavailable("the cluster database failed"), unreachable.value,
                dbmod.Busy("the database is busy")):
        metrics.failure(exc)
    metrics.failure(errors.Invalid("a refusal of the request's own"))  # no component's failure
    scraped = samples(metrics.exposition()[0].decode())
    assert value(scraped, "ddns_errors_total", component="cluster") == 1  # the queue's, not again by failure
    assert value(scraped, "ddns_errors_total", component="db") == 2
