"""The changes table, the consumer and the election on a real PostgreSQL (no publisher: fakes stand in)."""
import threading
import time
from concurrent.futures import Future

import psycopg
import pytest

from conftest import free_port
from ddns import errors
from ddns.cluster import changes, codec
from ddns.cluster.consumer import Consumer
from ddns.cluster.election import Elector
from ddns.db import StoreUnavailable, connect as db_connect, migrations
from ddns.model import Actor, Op, Operation, Outcome, Result, Update
from pgserver import pg_server, pg_url  # noqa: F401

ZONE = "dyn.example.test"


def _update(n: int, guard=None) -> Update:
    return Update(ZONE, (Operation(Op.ADD, f"h{n}.{ZONE}", "A", f"192.0.2.{n % 250 + 1}"),),
                  actor=Actor(f"host:h{n}.{ZONE}", interface="dyndns2"), guard=guard)


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def db(pg_url):
    migrations.upgrade(db_connect(pg_url))
    return pg_url


def _rows(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, state, outcome FROM changes ORDER BY id").fetchall()


class FakePublisher:
    """Answers every submitted update PUBLISHED (records what it got, in order)."""

    def __init__(self):
        self.got: list[Update] = []
        self.pushes = 0

    def submit(self, updates):
        self.got += updates
        futures = [Future() for _ in updates]
        for f in futures:
            f.set_result(Result(Outcome.PUBLISHED))
        return futures

    def push(self):
        self.pushes += 1


def test_updates_through_the_table_are_applied_and_answered_once_each(db):
    fake = FakePublisher()
    consumer = Consumer(db, fake.submit, fake.push, lambda: True)
    queue = changes.ChangeQueue(db, wait_seconds=10)
    consumer.start()
    queue.start()
    try:
        results = []
        threads = [threading.Thread(target=lambda n=n: results.extend(queue.publish([_update(n), _update(n + 100)])))
                   for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        queue.stop()
        consumer.stop()
    assert len(results) == 40 and all(r.outcome is Outcome.PUBLISHED for r in results)
    ids = [u.change_id for u in fake.got]
    assert sorted(ids) == list(range(1, 41))  # concurrent hand-overs may commit out of id order
    first = {u.operations[0].name: u.change_id for u in fake.got}
    assert all(first[f"h{n}.{ZONE}"] < first[f"h{n + 100}.{ZONE}"] for n in range(20))  # one request's in order
    assert [state for _, state, _ in _rows(db)] == ["done"] * 40
    assert fake.pushes >= 1


def test_no_outcome_in_time_is_a_retryable_error_and_the_row_stays_queued(db):
    queue = changes.ChangeQueue(db, wait_seconds=0.3)
    queue.start()
    try:
        with pytest.raises(changes.Unanswered) as caught:
            queue.publish([_update(1)])
    finally:
        queue.stop()
    assert isinstance(caught.value, errors.Busy) and "retry" in str(caught.value)
    assert errors.codes(caught.value).http == 503
    assert [state for _, state, _ in _rows(db)] == ["queued"]


def test_a_guard_that_fails_at_the_hand_over_queues_nothing(db):
    queue = changes.ChangeQueue(db, wait_seconds=1)
    assert queue.publish([_update(1, guard=lambda: False)])[0].outcome is Outcome.REFUSED
    assert _rows(db) == []


def test_an_unreachable_database_is_unavailable():
    queue = changes.ChangeQueue(f"postgresql://postgres@127.0.0.1:{free_port()}/none", wait_seconds=1)
    with pytest.raises(StoreUnavailable) as caught:
        queue.publish([_update(1)])
    assert isinstance(caught.value, errors.Unavailable)


def test_a_garbled_row_is_answered_failed_and_the_next_one_applied(db):
    fake = FakePublisher()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO changes (payload) VALUES ('{\"v\": 1, \"zone\": 3}'::jsonb)")
        conn.execute("INSERT INTO changes (payload) VALUES (%s::jsonb)", (codec.encode_update(_update(2)),))
    consumer = Consumer(db, fake.submit, fake.push, lambda: True)
    consumer.start()
    try:
        assert _wait(lambda: consumer.answered == 2)
    finally:
        consumer.stop()
    (first, _, garbled), (second, _, good) = _rows(db)
    assert codec.decode_result(garbled).outcome is Outcome.FAILED and "zone" in codec.decode_result(garbled).reason
    assert codec.decode_result(good).outcome is Outcome.PUBLISHED and [u.change_id for u in fake.got] == [second]


def test_a_garbled_outcome_is_answered_failed(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO changes (payload, state, outcome) VALUES ('{}'::jsonb, 'done', '[1]'::jsonb)")
        assert changes.outcomes(conn, [1])[1].outcome is Outcome.FAILED


def test_a_consumer_that_lost_the_lock_answers_nothing(db):
    fake = FakePublisher()
    consumer = Consumer(db, fake.submit, fake.push, lambda: False)
    consumer.start()
    queue = changes.ChangeQueue(db, wait_seconds=0.5)
    queue.start()
    try:
        with pytest.raises(changes.Unanswered):
            queue.publish([_update(1)])
        assert _wait(lambda: len(fake.got) == 1)
    finally:
        queue.stop()
        consumer.stop()
    assert fake.pushes == 0 and [state for _, state, _ in _rows(db)] == ["queued"]


# ---- the election ---------------------------------------------------------------------
class Node:
    def __init__(self, url, lock_id=4242):
        self.elected = threading.Event()
        self.lost = threading.Event()
        self.elector = Elector(url, lock_id, self.elected.set, lambda reason: self.lost.set(), poll_seconds=0.1)


def _holder_pid(url, lock_id=4242):
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
                           (lock_id,)).fetchone()
    return row and row[0]


def test_exactly_one_elector_is_active_and_the_other_takes_over_when_its_connection_dies(pg_url):
    a, b = Node(pg_url), Node(pg_url)
    a.elector.start()
    assert a.elected.wait(10)
    b.elector.start()
    try:
        assert _wait(lambda: b.elector.polls >= 5)  # the standby has tried, and tried again
        assert not b.elected.is_set() and a.elector.confirm()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (_holder_pid(pg_url),))
        started = time.monotonic()
        assert b.elected.wait(5) and a.lost.wait(5)
        assert time.monotonic() - started < 5
        assert not a.elector.confirm() and b.elector.confirm()
    finally:
        a.elector.stop()
        b.elector.stop()


def test_a_stopped_elector_releases_the_lock(pg_url):
    a, b = Node(pg_url), Node(pg_url)
    a.elector.start()
    assert a.elected.wait(10)
    b.elector.start()
    try:
        a.elector.stop()
        assert b.elected.wait(5)
    finally:
        b.elector.stop()


def test_electors_of_different_lock_ids_are_both_active(pg_url):
    a, b = Node(pg_url, 1), Node(pg_url, 2)
    a.elector.start()
    b.elector.start()
    try:
        assert a.elected.wait(10) and b.elected.wait(10)
    finally:
        a.elector.stop()
        b.elector.stop()
