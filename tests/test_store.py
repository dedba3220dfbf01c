"""The store, the same tests on both engines: SQLite (a temp file) and PostgreSQL (a fresh database on a real server).

Every public method of ``Store`` (its keystore part included) and the
portal sessions on top of it; the refusals (Conflict, NotFound, Busy) and
what the engines could make differ: the order of text, float equality,
booleans, ids, a read-then-write transaction under concurrent writers.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from ddns import errors
from ddns.keystore import KeyConflict, KeyHostGone, KeyInfo
from ddns.sessions import Sessions
from ddns.store import Busy, LastSeen, Session, Store

from pgserver import pg_server, pg_url  # noqa: F401

ZONE = "dyn.example.test"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """Where a store of the engine under test lives: an SQLite path or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url) -> Store:
    return Store(store_url)


@pytest.fixture
def alice(store):
    store.add_domain(ZONE, 1.0)
    return store.add_user("alice", "hash-a", False, 1.0)


def key(name: str, host: str | None = None, kind: str = "host", created: float = 1.0) -> KeyInfo:
    return KeyInfo(name, "hmac-sha256", kind, host, ZONE if kind == "zone" else None,
                   ("grant zonesub TXT",) if kind == "zone" else (), None, created)


# ---- users -------------------------------------------------------------------------------------------------------
def test_users_add_look_up_and_refuse_a_second_of_a_name(store):
    alice = store.add_user("alice", "hash-a", True, 1.5)
    assert (alice.name, alice.password_hash, alice.is_admin, alice.groups) == ("alice", "hash-a", True, ())
    assert store.user_by_id(alice.id) == alice == store.user("alice")
    with pytest.raises(errors.Conflict, match="user alice exists"):
        store.add_user("alice", None, False, 2.0)
    bob = store.add_user("bob", None, False, 2.0)
    assert bob.id != alice.id and bob.password_hash is None and bob.is_admin is False
    with pytest.raises(errors.NotFound):
        store.user("carol")
    with pytest.raises(errors.NotFound):
        store.user_by_id(10_000)
    assert store.count("users") == 2


def test_text_sorts_bytewise_on_both_engines(store):
    for name in ("b", "B", "a", "_x", "A-1", "a.b", "\u00e9"):
        store.add_user(name, None, False, 1.0)
    assert [u.name for u in store.users()] == ["A-1", "B", "_x", "a", "a.b", "b", "\u00e9"]


def test_password_and_token_of_a_user(store, alice):
    store.set_user_password("alice", "hash-b")
    store.set_user_token("alice", "token-hash")
    assert (store.user("alice").password_hash, store.user("alice").token_hash) == ("hash-b", "token-hash")
    for change in (store.set_user_password, store.set_user_token):
        with pytest.raises(errors.NotFound):
            change("nobody", "x")


def test_openid_logins_create_then_refresh_a_user_keyed_by_subject(store, alice):
    user = store.login_oidc_user("sub-1", "alice", "a@example.org", "Alice A", ["staff"], None, 5.0)
    assert user.name == "alice-2" and user.sub == "sub-1" and not user.is_admin  # the local alice keeps her name
    again = store.login_oidc_user("sub-1", "renamed", "new@example.org", "Alice", ["staff", "ops"], True, 6.0)
    assert again.id == user.id and again.name == "alice-2" and again.is_admin and again.groups == ("staff", "ops")
    kept = store.login_oidc_user("sub-1", "alice", "new@example.org", "Alice", [], None, 7.0)
    assert kept.is_admin  # None keeps the flag
    other = store.login_oidc_user("sub-2", "alice", "", "", [], None, 8.0)
    assert other.name == "alice-3"
    store.note_login(other.id, 9.0)
    assert store.count("users") == 3
    with pytest.raises(ValueError):
        store.count("users; DROP TABLE users")


def test_concurrent_first_logins_of_one_subject_make_one_user(store_url):
    """A read-then-write transaction: writers are serialised on both engines, so no duplicate and no error."""
    Store(store_url)
    results, failures = [], []

    def login(i: int) -> None:
        try:
            results.append(Store(store_url).login_oidc_user("sub-x", "x", "", "", [], None, float(i)).id)
        except Exception as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=login, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == [] and len(set(results)) == 1 and len(results) == 8
    assert [u.name for u in Store(store_url).users()] == ["x"]


# ---- domains -----------------------------------------------------------------------------------------------------
def test_domains_open_close_and_reopen(store):
    store.add_domain(ZONE, 1.0)
    with pytest.raises(errors.Conflict):
        store.add_domain(ZONE, 2.0)
    store.add_domain("b.example.test", 1.0)
    assert store.domains() == ["b.example.test", ZONE]
    store.deactivate_domain(ZONE)
    assert store.domains() == ["b.example.test"]
    with pytest.raises(errors.NotFound):
        store.domain(ZONE)
    store.add_domain(ZONE, 3.0)  # back (a merge brought it back)
    assert store.domains() == ["b.example.test", ZONE]
    assert store.count("domains") == 2


def test_domain_access(store):
    store.add_domain(ZONE, 1.0)
    assert store.domain(ZONE).public is True and store.domain(ZONE).groups == ()
    store.set_domain_access(ZONE, False, ["staff", "ops"])
    assert store.domain(ZONE).public is False and store.domain(ZONE).groups == ("staff", "ops")
    assert [d.zone for d in store.domain_list()] == [ZONE]
    with pytest.raises(errors.NotFound):
        store.set_domain_access("none.example.test", True, [])


# ---- hosts -------------------------------------------------------------------------------------------------------
def test_hosts_add_look_up_and_delete(store, alice):
    created = time.time()  # a float with all its digits: host_registered compares it exactly
    host = store.add_host(f"vm.{ZONE}", ZONE, alice.id, "secret-hash", created, comment="caf\u00e9")
    assert (host.label, host.comment, host.created, host.blocked, host.last_tls) == ("vm", "caf\u00e9", created, False, None)
    assert store.host(f"vm.{ZONE}") == host == store.find_host(f"vm.{ZONE}")
    assert store.host_registered(f"vm.{ZONE}", created, alice.id)
    assert not store.host_registered(f"vm.{ZONE}", created + 1e-6, alice.id)
    with pytest.raises(errors.Conflict):
        store.add_host(f"vm.{ZONE}", ZONE, alice.id, "x", 2.0)
    with pytest.raises(errors.Conflict):  # no such zone: refused by its reference, as a conflict
        store.add_host("vm.other.test", "other.test", alice.id, "x", 2.0)
    assert store.find_host("nope." + ZONE) is None
    store.delete_host(f"vm.{ZONE}")
    with pytest.raises(errors.NotFound):
        store.delete_host(f"vm.{ZONE}")
    with pytest.raises(errors.NotFound):
        store.host(f"vm.{ZONE}")


def test_many_hosts_in_one_transaction_all_or_none(store, alice):
    bob = store.add_user("bob", None, False, 1.0)
    rows = [(f"h{i}.{ZONE}", ZONE, alice.id if i % 2 else bob.id, f"hash{i}") for i in range(500)]
    assert store.add_hosts(rows, 3.0) == 500
    with pytest.raises(errors.Conflict):
        store.add_hosts([(f"new.{ZONE}", ZONE, alice.id, "x"), (f"h1.{ZONE}", ZONE, alice.id, "x")], 4.0)
    assert store.find_host(f"new.{ZONE}") is None  # none of them
    assert store.count("hosts") == 500 and store.host_counts() == {ZONE: 500}
    assert len(store.hosts(alice.id)) == 250 and len(store.hosts()) == 500
    assert [h.fqdn for h in store.hosts()] == sorted(r[0] for r in rows)


def test_host_secret_faults_blocking_comment_and_last_seen(store, alice):
    fqdn = f"vm.{ZONE}"
    store.add_host(fqdn, ZONE, alice.id, "h1", 1.0)
    store.count_fault(fqdn, "auth")
    store.count_fault(fqdn, "auth")
    store.count_fault(fqdn, "client")
    store.set_blocked(fqdn, True)
    host = store.host(fqdn)
    assert (host.auth_faults, host.client_faults, host.blocked) == (2, 1, True)
    store.set_secret_hash(fqdn, "h2")  # a new secret unblocks and forgets the failures
    host = store.host(fqdn)
    assert (host.secret_hash, host.auth_faults, host.client_faults, host.blocked) == ("h2", 0, 1, False)
    store.set_comment(fqdn, "rack 4")
    store.record_updates({fqdn: LastSeen(9.25, "192.0.2.1", "ddclient/3.10", True)})
    host = store.host(fqdn)
    assert (host.comment, host.last_update, host.last_client, host.last_agent, host.last_tls) == \
        ("rack 4", 9.25, "192.0.2.1", "ddclient/3.10", True)
    for change in (lambda: store.set_secret_hash("x." + ZONE, "h"), lambda: store.set_comment("x." + ZONE, ""),
                   lambda: store.set_blocked("x." + ZONE, True)):
        with pytest.raises(errors.NotFound):
            change()


def test_a_principal_belongs_to_one_host_at_most(store, alice):
    for name in ("vm1", "vm2"):
        store.add_host(f"{name}.{ZONE}", ZONE, alice.id, "h", 1.0)
    store.set_principal(f"vm1.{ZONE}", "host/vm1@EXAMPLE.TEST")
    assert store.host_of_principal("host/vm1@EXAMPLE.TEST").fqdn == f"vm1.{ZONE}"
    with pytest.raises(errors.Conflict):
        store.set_principal(f"vm2.{ZONE}", "host/vm1@EXAMPLE.TEST")
    store.set_principal(f"vm2.{ZONE}", None)
    store.set_principal(f"vm1.{ZONE}", None)  # many hosts without one
    assert store.host_of_principal("host/vm1@EXAMPLE.TEST") is None
    with pytest.raises(errors.NotFound):
        store.set_principal(f"vm3.{ZONE}", "p@EXAMPLE.TEST")


# ---- portal sessions and API tokens ------------------------------------------------------------------------------
def test_session_rows(store, alice):
    store.add_session(Session("id1", alice.id, "csrf", 10.0, 10.0, {"next": "/x", "n": 1}))
    store.add_session(Session("id2", None, "csrf2", 1.0, 1.0, {}))
    assert store.session("id1") == Session("id1", alice.id, "csrf", 10.0, 10.0, {"next": "/x", "n": 1})
    store.save_session("id1", 11.0, {"flash": "saved"})
    store.touch_session("id1", 12.0)
    assert (store.session("id1").seen, store.session("id1").data) == (12.0, {"flash": "saved"})
    assert store.purge_sessions(seen_before=5.0, created_before=0.0) == 1  # id2
    assert store.session("id2") is None and store.count("sessions") == 1
    store.delete_session("id1")
    assert store.session("id1") is None


def test_sessions_start_load_expire_and_end(store, alice):
    now = [1000.0]
    sessions = Sessions(store, idle=100, max_age=1000, clock=lambda: now[0])
    raw, session = sessions.start(alice.id, {"k": "v"})
    assert sessions.load(raw) == session and sessions.load("other") is None and sessions.load(None) is None
    now[0] += 50
    assert sessions.load(raw).seen == 1050.0  # noted: a tenth of idle passed
    sessions.save(replace(session, seen=1050.0, data={"k": "w"}))
    assert store.session(session.id_hash).data == {"k": "w"}
    now[0] += 101
    assert sessions.load(raw) is None and store.session(session.id_hash) is None  # idle too long: gone
    raw, session = sessions.start(alice.id)
    sessions.end(session)
    assert sessions.load(raw) is None


def test_api_tokens(store, alice):
    bob = store.add_user("bob", None, False, 1.0)
    first = store.add_api_token(alice.id, "laptop", "th1", 5.0)
    second = store.add_api_token(alice.id, "ci", "th2", 6.0)
    assert second.id > first.id and [t.name for t in store.api_tokens(alice.id)] == ["laptop", "ci"]
    assert store.api_token_owner("th1", 100.0) == alice
    assert store.api_tokens(alice.id)[0].last_used == 100.0
    assert store.api_token_owner("th1", 130.0) == alice
    assert store.api_tokens(alice.id)[0].last_used == 100.0  # noted at most once a minute
    assert store.api_token_owner("unknown", 100.0) is None
    with pytest.raises(errors.NotFound):
        store.delete_api_token(bob.id, first.id)  # not bob's
    store.delete_api_token(alice.id, first.id)
    assert [t.name for t in store.api_tokens(alice.id)] == ["ci"] and store.count("api_tokens") == 1


# ---- TSIG keys ---------------------------------------------------------------------------------------------------
def test_tsig_keys(store, alice):
    store.add_host(f"vm.{ZONE}", ZONE, alice.id, "h", 1.0)
    host_key, zone_key = key(f"vm.{ZONE}", f"vm.{ZONE}"), key("ops", kind="zone", created=2.5)
    store.add_tsig_key(host_key, "c2VjcmV0")
    store.add_tsig_key(zone_key, "b3Rogh==")
    assert store.tsig_key_row(f"vm.{ZONE}") == (host_key, "c2VjcmV0") and store.tsig_key_row("none") is None
    assert store.tsig_keys() == [zone_key, host_key]
    assert store.tsig_keys(host=f"vm.{ZONE}") == [host_key] and store.tsig_keys(kind="zone") == [zone_key]
    assert store.tsig_keys(host=f"vm.{ZONE}", kind="zone") == []
    assert store.tsig_key_current("ops", 2.5) and not store.tsig_key_current("ops", 2.0)
    with pytest.raises(KeyConflict):
        store.add_tsig_key(zone_key, "x")
    with pytest.raises(KeyHostGone):
        store.add_tsig_key(key("gone", "gone." + ZONE), "x")
    store.delete_host(f"vm.{ZONE}")  # its keys go with it
    assert store.tsig_keys() == [zone_key]
    assert store.delete_tsig_key("ops") is True and store.delete_tsig_key("ops") is False


# ---- waiting writers ---------------------------------------------------------------------------------------------
def test_a_writer_that_waits_too_long_gets_busy_and_reads_go_on(store_url):
    holder, waiter = Store(store_url), Store(store_url)
    waiter.add_user("alice", None, False, 1.0)
    waiter.wait_at_most(0.3)
    with holder.db.tx() as conn:
        conn.execute("UPDATE users SET email='held' WHERE name='alice'")
        start = time.monotonic()
        with pytest.raises(Busy, match="busy"):
            waiter.add_user("bob", None, False, 2.0)
        assert time.monotonic() - start < 5
        assert [u.email for u in waiter.users()] == [""]  # a read does not wait, nor see the uncommitted
    assert [u.name for u in waiter.users()] == ["alice"] and waiter.user("alice").email == "held"
    waiter.add_user("bob", None, False, 3.0)  # the lock is free again
