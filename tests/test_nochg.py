"""An update that changes nothing is answered from what is committed and served, without the publisher.

The snapshot (``ddns.publishing.servedview``) may only ever send an update
the slow way; these tests try to make it answer ``UNCHANGED`` for an address
that is not the committed and served one: before named serves it, after
another process changed the zone, under many threads changing and repeating
the same names, and while the host is being deleted.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Instance, http, wait_until
from ddns.gitrepo import ZonesRepo, parse_trailers
from ddns.model import Actor, Grant, Identity, Match, Operation, Outcome, Result, Update
from ddns.publishing.bindtarget import PublishTarget
from ddns.publishing.memtarget import MemoryNamed
from ddns.publishing.publish_queue import PublisherThread
from ddns.publishing.publisher import Publisher
from ddns.wiring import ZONE_TEMPLATES
from ddns.updates import Updates
from ddns.validate import AddressPolicy

ZONE = "dyn.example.test"
ZONE_KEY = Identity(Actor("key:zone-admin", "127.0.0.1", "test"), "", (Grant(True, Match.ZONESUB),))


def set_a(label: str, address: str, guard=None) -> Update:
    return Update(ZONE, tuple(Operation.replace(f"{label}.{ZONE}", "A", [address])), guard=guard)


class Recorder:
    """The publish callable of an ``Updates``: counts what reaches the publisher."""

    def __init__(self, publish):
        self.publish = publish
        self.calls = 0

    def __call__(self, updates: list[Update]) -> list[Result]:
        self.calls += len(updates)
        return self.publish(updates)


class SlowNamed(MemoryNamed):
    """A named that takes a few milliseconds to answer a query: the time between a commit and the
    proof that it is served grows, and with it the window a stale snapshot would be used in."""

    def served_serial(self, zone: str, timeout: float) -> int | None:
        time.sleep(0.003)
        return super().served_serial(zone, timeout)


def make_publisher(instance: Instance, named: MemoryNamed) -> Publisher:
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES],
                          PublishTarget(rndc=None, control=named, verify_timeout=0.5))
    publisher.load()
    return publisher


@pytest.fixture
def named(instance: Instance) -> MemoryNamed:
    return MemoryNamed(instance.repo)


@pytest.fixture
def publisher(instance: Instance, named: MemoryNamed) -> Publisher:
    return make_publisher(instance, named)


def updates_of(publisher: Publisher, publish=None) -> tuple[Updates, Recorder]:
    recorder = Recorder(publish or publisher.apply)
    return Updates(publisher, recorder, ["A", "AAAA", "TXT"], AddressPolicy(True, False)), recorder


def test_a_repeated_address_is_answered_from_memory_and_a_change_still_goes_to_the_publisher(instance, publisher):
    updates, sent = updates_of(publisher)
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.PUBLISHED
    commits = instance.commit_count()
    for _ in range(3):
        assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.UNCHANGED
    assert sent.calls == 1 and instance.commit_count() == commits
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.2").operations).outcome is Outcome.PUBLISHED
    # the address before is no longer what is served: a change, published
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.PUBLISHED
    assert sent.calls == 3
    assert instance.records(ZONE) == "h1 A 192.0.2.1\n"


def test_nothing_is_answered_from_memory_before_named_serves_it(instance, publisher, named):
    updates, sent = updates_of(publisher)
    named.frozen = True  # takes reloads, loads nothing
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.UNSERVED
    assert publisher.served(ZONE) is None
    updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations)
    assert sent.calls == 2  # committed but not served: the publisher decides
    named.frozen = False
    publisher.retry()  # named loads it now
    assert named.served[ZONE] == publisher.zones[ZONE].serial
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.UNCHANGED
    assert sent.calls == 2


def test_a_change_by_another_process_is_never_answered_from_the_old_snapshot(instance, publisher, named):
    updates, sent = updates_of(publisher)
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.PUBLISHED
    assert publisher.served(ZONE) is not None
    other = make_publisher(instance, named)  # a CLI command, say, with its own memory
    assert other.apply([set_a("h1", "192.0.2.9")])[0].outcome is Outcome.PUBLISHED
    assert publisher.served(ZONE) is None  # the files are not the ones the snapshot was taken with
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.PUBLISHED
    assert instance.records(ZONE) == "h1 A 192.0.2.1\n"
    assert sent.calls == 2


def test_a_change_named_does_not_serve_yet_ends_the_old_snapshot(instance, publisher, named):
    updates, sent = updates_of(publisher)
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.PUBLISHED
    named.frozen = True
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.2").operations).outcome is Outcome.UNSERVED
    assert publisher.served(ZONE) is None
    # 192.0.2.1 is what named serves, but no longer what is committed: a change
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.UNSERVED
    assert instance.records(ZONE) == "h1 A 192.0.2.1\n"
    assert sent.calls == 3


def test_a_failed_guard_is_decided_by_the_publisher_and_refused(instance, publisher):
    updates, sent = updates_of(publisher)
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.PUBLISHED
    [result] = updates.update_many(ZONE_KEY, [set_a("h1", "192.0.2.1", guard=lambda: False)])
    assert result.outcome is Outcome.REFUSED and sent.calls == 2


def test_a_broken_zone_is_not_answered_from_memory(instance, publisher):
    updates, sent = updates_of(publisher)
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.PUBLISHED
    publisher.zones[ZONE].broken = "a human broke it"
    assert publisher.served(ZONE) is None
    assert updates.update(ZONE_KEY, ZONE, set_a("h1", "192.0.2.1").operations).outcome is Outcome.FAILED


def test_under_many_threads_no_unchanged_for_an_address_that_is_not_committed(instance):
    """Threads change and repeat the same names; every answer is checked against the commits' order."""
    named = SlowNamed(instance.repo)
    publisher = make_publisher(instance, named)
    labels = ["a", "b", "c"]
    history: list[tuple[float, float, dict[str, str | None]]] = []  # per commit: start, end, the names after it
    commit = publisher.commit

    def recording_commit(group):
        start = time.monotonic()
        batch = commit(group)  # only the publisher thread commits: nothing interleaves here
        history.append((start, time.monotonic(), {l: publisher.current(ZONE, l, "A") for l in labels}))
        return batch

    publisher.commit = recording_commit
    queue = PublisherThread(publisher, group_wait=0.002)
    queue.start()

    def publish(group: list[Update]) -> list[Result]:
        return [f.result(30) for f in queue.submit(group)]

    updates, sent = updates_of(publisher, publish)
    answers: list[tuple[str, str, Outcome, float, float]] = []

    def client(k: int) -> None:
        for i in range(12):
            # even clients change a name and repeat it; odd ones keep repeating one address per name
            label, address = labels[(k + i) % len(labels)], f"10.{k}.{i if k % 2 == 0 else 0}.1"
            for _ in range(2 if k % 2 == 0 else 4):
                t0 = time.monotonic()
                [result] = updates.update_many(ZONE_KEY, [set_a(label, address)])
                answers.append((label, address, result.outcome, t0, time.monotonic()))

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(8)))
        for label in labels:  # quiet now: the last committed address of each name is served and repeated from memory
            calls = sent.calls
            current = publisher.current(ZONE, label, "A")
            assert updates.update(ZONE_KEY, ZONE, set_a(label, current).operations).outcome is Outcome.UNCHANGED
            assert sent.calls == calls
    finally:
        queue.stop()

    assert {o for *_, o, _, _ in answers} <= {Outcome.PUBLISHED, Outcome.UNCHANGED}
    committed = {(r.host, r.new) for r in parse_trailers(instance.git("log", "--format=%B"))}
    for label, address, outcome, t0, t1 in answers:
        if outcome is Outcome.PUBLISHED:
            assert (f"{label}.{ZONE}", address) in committed
        else:  # the address was the committed one at some moment while the request was on its way
            assert any(names[label] == address and start <= t1 and (k + 1 == len(history) or history[k + 1][1] >= t0)
                       for k, (start, _, names) in enumerate(history)), (label, address)
    assert named.served[ZONE] == publisher.zones[ZONE].serial
    served_file = instance.tree_records(ZONE)
    assert served_file == "".join(f"{l} A {publisher.current(ZONE, l, 'A')}\n" for l in labels)


def test_a_host_deleted_while_its_nochg_requests_come_in(running):
    instance = running.instance
    fqdn = f"gone.{ZONE}"
    secret = instance.add_host(fqdn)
    url = f"{running.url}/nic/update?hostname={fqdn}&myip=192.0.2.7"
    assert http(url, (fqdn, secret))[:2] == (200, "good 192.0.2.7\n")
    assert http(url, (fqdn, secret))[:2] == (200, "nochg 192.0.2.7\n")
    deleted = threading.Event()
    answers: list[tuple[bool, int, str]] = []

    def client() -> None:
        deadline = time.monotonic() + 60  # bounded; each client ends with one request sent after the delete
        while time.monotonic() < deadline:
            after = deleted.is_set()
            status, body, _ = http(url, (fqdn, secret))
            answers.append((after, status, body))
            if after:
                return

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client) for _ in range(4)]
        wait_until(lambda: answers, 30, 0.01, "a first nochg")
        running.service.delete_host(fqdn, "test")
        deleted.set()
        for f in futures:
            f.result(60)
    assert {(s, b) for _, s, b in answers} <= {(200, "nochg 192.0.2.7\n"), (200, "nohost\n"), (401, "badauth\n")}
    assert sum(after for after, _, _ in answers) == 4  # every client asked again once the host was gone
    assert all((s, b) == (401, "badauth\n") for after, s, b in answers if after)
    assert instance.dig(fqdn) == []
    assert "gone" not in instance.records(ZONE)


@pytest.mark.parametrize("value, answer", [("192.0.2.7 ", "badip"), ("192.0.2.7,192.0.2.8", "badip"),
                                           ("::ffff:192.0.2.7", "nochg 192.0.2.7"), ("0192.0.2.7", "badip"),
                                           ("224.0.0.1", "badip")])
def test_hostile_addresses_beside_a_served_snapshot_are_answered_as_before(running, value, answer):
    fqdn = f"h1.{ZONE}"
    secret = running.instance.add_host(fqdn)
    assert running.update(fqdn, secret, "myip=192.0.2.7") == (200, "good 192.0.2.7\n")
    commits = running.instance.commit_count()
    assert running.update(fqdn, secret, "myip=" + value.replace(" ", "%20")) == (200, answer + "\n")
    assert running.instance.commit_count() == commits
    assert running.instance.dig(fqdn) == ["192.0.2.7"]
