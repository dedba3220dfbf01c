"""ddns.guard: the order of the checks that keeps guessing from locking out others.

Pure logic with real bcrypt (cost 4) and an injected clock; the same cases over
real HTTP are in test_lockout.py.
"""
import pytest

from ddns import config as configmod
from ddns.auth import hash_secret, new_secret
from ddns.guard import Guard

from test_auth import ROUNDS, FakeClock, counting_checkpw

GUESSER, OWNER, NAT = "198.51.100.66", "203.0.113.5", "198.51.100.7"
H1, H2 = "h1.dyn.example.test", "h2.dyn.example.test"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def guard(clock) -> Guard:
    cfg = configmod.load(None, environ={}, overrides={
        "security.bcrypt_rounds": ROUNDS, "security.max_failures": 3, "security.max_client_failures": 5,
        "portal.max_login_failures": 2, "security.failure_window": 60, "security.secret_cache_seconds": 30})
    return Guard(cfg, clock)


@pytest.fixture
def host() -> tuple[str, str]:
    secret = new_secret()
    return secret, hash_secret(secret, ROUNDS)


def guess(guard: Guard, client: str, name: str, stored, times: int) -> list[str]:
    return [guard.check_secret(name, stored, f"wrong-{i}", client) for i in range(times)]


def test_the_guesser_is_blocked_for_that_name_at_its_network_only(guard, host):
    secret, stored = host
    assert guess(guard, GUESSER, H1, stored, 5) == ["badauth"] * 3 + ["abuse"] * 2
    assert guard.check_secret(H1, stored, secret, GUESSER) == "abuse"  # not known good: no bcrypt for the guesser
    assert guard.check_secret(H1, stored, secret, OWNER) == "ok"
    assert guess(guard, GUESSER, H2, hash_secret("other", ROUNDS), 1) == ["badauth"]  # other names: not blocked


def test_a_known_good_secret_is_accepted_before_any_block_and_without_bcrypt(guard, host):
    secret, stored = host
    assert guard.check_secret(H1, stored, secret, NAT) == "ok"
    guess(guard, NAT, H1, stored, 10)
    with counting_checkpw() as calls:
        assert guard.check_secret(H1, stored, secret, NAT) == "ok"
    assert calls[0] == 0


def test_the_block_ends_when_the_window_passes(guard, host, clock):
    secret, stored = host
    guess(guard, GUESSER, H1, stored, 3)
    clock.advance(59)
    assert guard.check_secret(H1, stored, "wrong", GUESSER) == "abuse"
    clock.advance(1)
    assert guard.check_secret(H1, stored, "wrong", GUESSER) == "badauth"


def test_a_replaced_secret_is_refused_without_counting(guard, host):
    old, old_stored = host
    assert guard.check_secret(H1, old_stored, old, NAT) == "ok"
    new = new_secret()
    new_stored = hash_secret(new, ROUNDS)  # `ddns host secret`, in any process
    with counting_checkpw() as calls:
        assert [guard.check_secret(H1, new_stored, old, NAT) for _ in range(10)] == ["badauth"] * 10
    assert calls[0] == 0
    assert guard.check_secret(H1, new_stored, new, NAT) == "ok"


def test_a_new_stored_hash_starts_with_fresh_counters(guard, host):
    guess(guard, GUESSER, H1, host[1], 3)
    new = new_secret()
    assert guard.check_secret(H1, hash_secret(new, ROUNDS), new, GUESSER) == "ok"


def test_the_network_budget_spares_known_secrets_and_hosts_homed_there(guard, host):
    secret, stored = host
    other = new_secret()
    other_stored = hash_secret(other, ROUNDS)
    assert guard.check_secret(H1, stored, secret, OWNER) == "ok"  # known good (verified elsewhere)
    answers = [guard.check_secret(f"unknown:x{i}", None, "wrong", NAT) for i in range(7)]
    assert answers == ["badauth"] * 5 + ["abuse"] * 2
    assert guard.check_secret(H1, stored, secret, NAT) == "ok"
    assert guard.check_secret(H2, other_stored, other, NAT) == "abuse"  # not known, last updated elsewhere
    assert guard.check_secret(H2, other_stored, other, NAT, home="192.0.2.200") == "abuse"
    assert guard.check_secret(H2, other_stored, other, NAT, home=NAT) == "ok"  # last updated from here


def test_ipv6_clients_are_counted_by_their_64(guard, host):
    _, stored = host
    answers = [guard.check_secret(H1, stored, "wrong", f"2001:db8:1:2::{i}") for i in range(1, 5)]
    assert answers == ["badauth"] * 3 + ["abuse"]
    assert guard.check_secret(H1, stored, "wrong", "2001:db8:1:3::1") == "badauth"


def test_unknown_names_pay_bcrypt_too(guard):
    with counting_checkpw() as calls:
        assert guard.check_secret("unknown:nobody", None, "whatever", GUESSER) == "badauth"
    assert calls[0] == 1


def test_portal_logins_are_limited_per_network_and_name(guard):
    alice = hash_secret("pw-alice", ROUNDS)
    bob = hash_secret("pw-bob", ROUNDS)
    assert [guard.check_password("alice", alice, "wrong", GUESSER) for _ in range(3)] == ["badauth"] * 2 + ["abuse"]
    assert guard.check_password("alice", alice, "pw-alice", GUESSER) == "abuse"
    assert guard.check_password("alice", alice, "pw-alice", OWNER) == "ok"
    assert guard.check_password("bob", bob, "pw-bob", GUESSER) == "ok"
    # the network's budget (5 failures in all) is spent by spraying names; then every login from it waits
    assert [guard.check_password(f"u{i}", None, "x", GUESSER) for i in range(4)] == ["badauth"] * 3 + ["abuse"]
    assert guard.check_password("bob", bob, "pw-bob", GUESSER) == "abuse"
    assert guard.check_password("bob", bob, "pw-bob", OWNER) == "ok"


def test_a_successful_login_clears_its_own_count(guard):
    alice = hash_secret("pw-alice", ROUNDS)
    assert guard.check_password("alice", alice, "typo", OWNER) == "badauth"
    assert guard.check_password("alice", alice, "pw-alice", OWNER) == "ok"
    assert guard.check_password("alice", alice, "typo", OWNER) == "badauth"
    assert guard.check_password("alice", alice, "pw-alice", OWNER) == "ok"
