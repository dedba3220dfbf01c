"""ddns.auth: secrets, bcrypt hashes, the cache of verified secrets and the
failure limiter.

bcrypt is never replaced: calls to bcrypt.checkpw are counted with a profile
hook (sys.setprofile sees every call of a C function), so a cache hit is
proven by "no bcrypt call" rather than by timing.
"""
import re
import sys
import threading
import tracemalloc
import urllib.parse
from contextlib import contextmanager

import bcrypt
import pytest

from ddns.auth import FailureLimiter, SecretVerifier, client_network, hash_secret, hash_tag, new_secret

ROUNDS = 4


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def counting_checkpw():
    """Count calls of bcrypt.checkpw made in this thread while inside the block."""
    calls = [0]

    def profile(frame, event, arg):
        if event == "c_call" and arg is bcrypt.checkpw:
            calls[0] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


def verify_counted(verifier: SecretVerifier, secret, stored) -> tuple[bool, int]:
    with counting_checkpw() as calls:
        ok = verifier.verify(secret, stored)
    return ok, calls[0]


@pytest.fixture(scope="module")
def pair() -> tuple[str, str]:
    secret = new_secret()
    return secret, hash_secret(secret, ROUNDS)


# ---------------------------------------------------------------- secrets and hashes


def test_new_secret_is_long_random_and_url_safe():
    secrets = [new_secret() for _ in range(2000)]
    assert len(set(secrets)) == len(secrets)
    for s in secrets:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", s), s
        assert len(s) * 6 >= 128  # 64 symbols: 6 bits each
        assert urllib.parse.quote(s, safe="") == s  # fits in https://FQDN:SECRET@host/ unchanged
        assert ":" not in s and "@" not in s
    # every symbol of the alphabet shows up: the charset is really 64 wide
    assert set("".join(secrets)) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_hash_and_verify(pair):
    secret, stored = pair
    assert stored.startswith("$2b$04$")
    assert secret not in stored
    assert bcrypt.checkpw(secret.encode(), stored.encode())
    assert not bcrypt.checkpw((secret + "x").encode(), stored.encode())


def test_hashes_are_salted():
    assert hash_secret("same", ROUNDS) != hash_secret("same", ROUNDS)


def test_hash_uses_the_requested_cost():
    assert hash_secret("s", 5).startswith("$2b$05$")


# ---------------------------------------------------------------- SecretVerifier


def test_verify_right_and_wrong(pair):
    secret, stored = pair
    v = SecretVerifier(ttl=60, clock=FakeClock())
    assert v.verify(secret, stored) is True
    assert v.verify(secret[:-1], stored) is False
    assert v.verify(secret + "x", stored) is False
    assert v.verify(secret.upper() if secret.upper() != secret else secret.lower(), stored) is False


def test_success_is_cached(pair):
    secret, stored = pair
    clock = FakeClock()
    v = SecretVerifier(ttl=60, clock=clock)
    assert verify_counted(v, secret, stored) == (True, 1)
    assert verify_counted(v, secret, stored) == (True, 0)
    clock.advance(59.9)
    assert verify_counted(v, secret, stored) == (True, 0)


def test_cache_expires_after_ttl_and_verify_still_works(pair):
    secret, stored = pair
    clock = FakeClock()
    v = SecretVerifier(ttl=60, clock=clock)
    assert verify_counted(v, secret, stored) == (True, 1)
    clock.advance(60)
    assert verify_counted(v, secret, stored) == (True, 1)  # expired: bcrypt again, still right
    assert verify_counted(v, secret, stored) == (True, 0)  # and cached anew
    clock.advance(1000)
    assert verify_counted(v, "wrong" + secret, stored) == (False, 1)


def test_cache_is_keyed_on_the_stored_hash(pair):
    secret, stored = pair
    v = SecretVerifier(ttl=600, clock=FakeClock())
    assert v.verify(secret, stored) is True
    # The secret was regenerated (by this or another process): a new stored hash.
    replacement = new_secret()
    new_stored = hash_secret(replacement, ROUNDS)
    assert verify_counted(v, secret, new_stored) == (False, 1)  # miss, and bcrypt says no
    assert verify_counted(v, replacement, new_stored) == (True, 1)
    # The same secret hashed again (another salt) is a different key: a miss that bcrypt accepts.
    rehashed = hash_secret(secret, ROUNDS)
    assert verify_counted(v, secret, rehashed) == (True, 1)


def test_failures_are_never_cached(pair):
    secret, stored = pair
    v = SecretVerifier(ttl=600, clock=FakeClock())
    for _ in range(3):
        assert verify_counted(v, "not-the-secret", stored) == (False, 1)
    # a failure does not poison the cache for the right secret either
    assert verify_counted(v, secret, stored) == (True, 1)
    assert verify_counted(v, "not-the-secret", stored) == (False, 1)


def test_cache_entry_lives_on_while_it_is_used(pair):
    """A client updating more often than the TTL never pays bcrypt again."""
    secret, stored = pair
    clock = FakeClock()
    v = SecretVerifier(ttl=60, clock=clock)
    assert verify_counted(v, secret, stored) == (True, 1)
    for _ in range(10):
        clock.advance(50)
        assert verify_counted(v, secret, stored) == (True, 0)
    clock.advance(60)  # unused for a whole TTL: forgotten
    assert v.cached(secret, stored) is False
    assert verify_counted(v, secret, stored) == (True, 1)


def test_cached_never_calls_bcrypt(pair):
    secret, stored = pair
    v = SecretVerifier(ttl=60, clock=FakeClock())
    with counting_checkpw() as calls:
        assert v.cached(secret, stored) is False
    assert calls[0] == 0
    v.verify(secret, stored)
    with counting_checkpw() as calls:
        assert v.cached(secret, stored) is True
        assert v.cached("wrong", stored) is False
        assert v.cached(secret, None) is False
    assert calls[0] == 0


def test_a_replaced_secret_is_known_as_such(pair):
    secret, stored = pair
    clock = FakeClock()
    v = SecretVerifier(ttl=60, clock=clock)
    new_stored = hash_secret(new_secret(), ROUNDS)
    assert v.replaced(secret, new_stored) is False  # never verified: could be a guess
    assert v.verify(secret, stored)
    assert v.replaced(secret, stored) is False  # still the current secret
    assert v.replaced(secret, new_stored) is True  # verified before, against another hash
    assert v.replaced("a guess", new_stored) is False
    clock.advance(59)
    assert v.replaced(secret, new_stored) is True  # a stale client keeps being recognised
    clock.advance(59)
    assert v.replaced(secret, new_stored) is True
    clock.advance(61)
    assert v.replaced(secret, new_stored) is False  # then forgotten


def test_ttl_zero_disables_the_cache(pair):
    secret, stored = pair
    v = SecretVerifier(ttl=0, clock=FakeClock())
    assert verify_counted(v, secret, stored) == (True, 1)
    assert verify_counted(v, secret, stored) == (True, 1)


def test_cache_is_bounded_by_max_entries():
    pairs = [(f"secret-{i}", hash_secret(f"secret-{i}", ROUNDS)) for i in range(4)]
    v = SecretVerifier(ttl=600, max_entries=2, clock=FakeClock())
    for secret, stored in pairs:
        assert v.verify(secret, stored)
    # the two newest are cached, the two oldest were evicted
    assert [verify_counted(v, *p)[1] for p in pairs[2:]] == [0, 0]
    assert verify_counted(v, *pairs[0]) == (True, 1)
    for i in range(12):
        v.verify(*pairs[i % 4])
    assert len(v._cache) <= 2


def test_the_lock_free_cache_stays_right_and_bounded_under_many_threads():
    """Hits slide expiries without the lock while other threads insert and evict: never a wrong answer."""
    pairs = [(f"secret-{i}", hash_secret(f"secret-{i}", ROUNDS)) for i in range(6)]
    v = SecretVerifier(ttl=600, max_entries=3, clock=FakeClock())
    wrong: list[tuple] = []

    def client(k: int) -> None:
        for i in range(150):
            secret, stored = pairs[(k + i) % len(pairs)]
            if not v.verify(secret, stored) or v.cached("not-" + secret, stored) or v.replaced(secret, stored):
                wrong.append((k, i))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not wrong and not any(t.is_alive() for t in threads)
    v.verify("one-more", hash_secret("one-more", ROUNDS))  # an insert trims what racing hits put back
    assert len(v._cache) <= 3 and len(v._known) <= 3


def test_blocked_reads_failures_while_others_fail():
    limiter = FailureLimiter(limit=3, window=60, clock=FakeClock(), max_keys=5)
    errors: list[BaseException] = []

    def failing(k: int) -> None:
        try:
            for i in range(300):
                limiter.fail(("net", (k * 7 + i) % 11))
                limiter.blocked(("net", i % 11))
        except BaseException as exc:  # a torn read would show up here
            errors.append(exc)

    threads = [threading.Thread(target=failing, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(limiter) <= 5
    limiter.fail("x")
    limiter.fail("x")
    assert not limiter.blocked("x")
    limiter.fail("x")
    assert limiter.blocked("x")


@pytest.mark.parametrize("secret, stored", [
    ("", "HASH"),
    ("x", None),
    ("x", ""),
    ("x" * 257, "HASH"),
])
def test_refused_without_bcrypt(pair, secret, stored):
    stored = pair[1] if stored == "HASH" else stored
    v = SecretVerifier(ttl=600, clock=FakeClock())
    assert verify_counted(v, secret, stored) == (False, 0)


@pytest.mark.parametrize("stored", ["not a bcrypt hash", "$2b$04$short", "$2b$99$" + "a" * 53])
def test_malformed_stored_hash_is_a_failure_not_an_error(stored):
    v = SecretVerifier(ttl=600, clock=FakeClock())
    assert v.verify("secret", stored) is False


def test_secret_longer_than_bcrypt_limit_is_a_failure_not_an_error(pair):
    v = SecretVerifier(ttl=600, clock=FakeClock())
    assert v.verify("x" * 200, pair[1]) is False
    assert v.verify(pair[0] + "x" * 100, pair[1]) is False  # not truncated to the right secret


def test_unicode_secret(pair):
    stored = hash_secret("pässwörd-€", ROUNDS)
    v = SecretVerifier(ttl=600, clock=FakeClock())
    assert v.verify("pässwörd-€", stored) is True
    assert v.verify("passwort-€", stored) is False


def test_verifier_is_thread_safe(pair):
    secret, stored = pair
    v = SecretVerifier(ttl=600, max_entries=1, clock=FakeClock())
    results = []

    def worker(i):
        results.append(v.verify(secret if i % 2 else "wrong", stored))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 8 + [True] * 8


# ---------------------------------------------------------------- FailureLimiter


def test_limiter_blocks_at_the_limit():
    clock = FakeClock()
    limiter = FailureLimiter(limit=3, window=60, clock=clock)
    assert not limiter.blocked("h")
    limiter.fail("h")
    limiter.fail("h")
    assert not limiter.blocked("h")
    limiter.fail("h")
    assert limiter.blocked("h")


def test_limiter_window_slides():
    clock = FakeClock(0)
    limiter = FailureLimiter(limit=3, window=10, clock=clock)
    for t in (0, 4, 8):
        clock.now = t
        limiter.fail("h")
    clock.now = 9.9
    assert limiter.blocked("h")
    clock.now = 10  # the failure at 0 leaves the window
    assert not limiter.blocked("h")
    limiter.fail("h")  # 4, 8, 10
    assert limiter.blocked("h")
    clock.now = 14  # 4 leaves
    assert not limiter.blocked("h")
    clock.now = 100
    assert not limiter.blocked("h")
    limiter.fail("h")
    assert not limiter.blocked("h")  # old failures do not count any more


def test_limiter_keys_are_independent_and_reset_clears():
    clock = FakeClock()
    limiter = FailureLimiter(limit=2, window=60, clock=clock)
    limiter.fail("a.dyn.example.test")
    limiter.fail("a.dyn.example.test")
    assert limiter.blocked("a.dyn.example.test")
    assert not limiter.blocked("b.dyn.example.test")
    limiter.reset("a.dyn.example.test")
    assert not limiter.blocked("a.dyn.example.test")
    limiter.reset("never-seen")  # no error


def test_limiter_counts_concurrent_failures():
    limiter = FailureLimiter(limit=400, window=600, clock=FakeClock())
    threads = [threading.Thread(target=lambda: [limiter.fail("h") for _ in range(50)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter.blocked("h")


def test_secrets_longer_than_bcrypts_72_bytes_are_verified_whole():
    long_secret = "p" * 100
    stored = hash_secret(long_secret, rounds=4)
    verifier = SecretVerifier(ttl=0)
    assert verifier.verify(long_secret, stored)
    assert not verifier.verify("p" * 99 + "q", stored)  # a difference past byte 72 counts


# ---------------------------------------------------------------- client networks


@pytest.mark.parametrize("address, network", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("", ""),
    ("unix-socket" + "x" * 100, "unix-socket" + "x" * 53),
])
def test_client_network(address, network):
    assert client_network(address) == network


def test_hash_tag_differs_per_stored_hash():
    a, b = hash_secret("s", ROUNDS), hash_secret("s", ROUNDS)
    assert hash_tag(a) != hash_tag(b) and len(hash_tag(a)) == 16
    assert hash_tag(a) == hash_tag(a)
    assert hash_tag(None) == "" == hash_tag("")


# ---------------------------------------------------------------- the limiter's table stays bounded


def test_checking_a_key_does_not_add_it():
    limiter = FailureLimiter(limit=3, window=60, clock=FakeClock())
    for i in range(1000):
        assert not limiter.blocked(f"never-failed-{i}")
    assert len(limiter) == 0


def test_expired_keys_are_pruned():
    clock = FakeClock(0)
    limiter = FailureLimiter(limit=3, window=10, clock=clock)
    for i in range(1000):
        limiter.fail(f"bad-{i}.dyn.example.test")
    assert len(limiter) == 1000
    clock.advance(5)
    limiter.fail("fresh-1")
    assert len(limiter) == 1001  # nothing expired yet
    clock.advance(5)  # the first 1000 leave the window
    limiter.fail("fresh-2")
    assert len(limiter) == 2
    assert not limiter.blocked("bad-0.dyn.example.test")


def test_table_is_bounded_and_forgets_the_oldest_first():
    clock = FakeClock(0)
    limiter = FailureLimiter(limit=2, window=600, clock=clock, max_keys=100)
    limiter.fail("old")
    limiter.fail("old")
    for i in range(10_000):
        clock.advance(0.01)
        limiter.fail(f"spray-{i}")
        limiter.fail(f"spray-{i}")
        assert len(limiter) <= 100
    assert not limiter.blocked("old")  # evicted
    assert limiter.blocked("spray-9999") and limiter.blocked("spray-9900")


def test_a_key_keeps_only_as_many_failures_as_the_limit():
    """A key hammered without end costs no more memory than one at the limit."""
    clock = FakeClock(0)
    limiter = FailureLimiter(limit=3, window=10_000, clock=clock)
    tracemalloc.start()
    try:
        for _ in range(3):
            limiter.fail("h")
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50_000):
            clock.advance(0.01)
            limiter.fail("h")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 10_000, grown
    assert limiter.blocked("h")


def test_memory_for_many_distinct_names_is_bounded():
    """30,000 distinct bad names in a table of 1,000 keys: well under a MiB."""
    limiter = FailureLimiter(limit=10, window=600, clock=FakeClock(), max_keys=1000)
    tracemalloc.start()
    try:
        for i in range(30_000):
            limiter.fail(("192.0.2.1", f"unknown:bad-{i}.dyn.example.test", ""))
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(limiter) == 1000
    assert used < 1024 * 1024, used
