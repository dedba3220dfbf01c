"""Host secrets and account tokens: generation, bcrypt hashing, verification,
and the bounded tables that limit guessing.

bcrypt costs ~0.25 s, so a verified secret is remembered while it is in use,
keyed on (stored hash, SHA-256 of the secret): a secret replaced by any
process changes the stored hash and stops working at once. Failed attempts
are never cached -- they always pay bcrypt. The failure limiter, the client
networks and the hash tags here are what ``ddns.guard`` counts failures by.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable, Iterable

import bcrypt

SECRET_BYTES = 24  # 192 bits


def new_secret() -> str:
    """A fresh secret: 192 random bits, URL-safe so it fits in a URL's userinfo."""
    return secrets.token_urlsafe(SECRET_BYTES)


def _bcrypt_input(secret: str) -> bytes:
    """bcrypt takes at most 72 bytes: longer secrets (passwords) are pre-hashed."""
    data = secret.encode()
    return data if len(data) <= 72 else base64.b64encode(hashlib.sha256(data).digest())


def hash_secret(secret: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_bcrypt_input(secret), bcrypt.gensalt(rounds)).decode()


def client_network(address: str) -> str:
    """The network a client is counted by: its IPv4 address, or its IPv6 /64.

    One IPv6 host picks new addresses within its /64 at will, so counting
    single IPv6 addresses would neither stop it nor bound the tables.
    """
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def hash_tag(stored_hash: str | None) -> str:
    """A short digest of a stored hash, for failure keys: a new secret (a new hash,
    made by any process) starts with fresh counters, without telling the others."""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16] if stored_hash else ""


class SecretVerifier:
    """bcrypt verification with a bounded cache of successes.

    A success is remembered for ``ttl`` seconds after its last use, so a client
    that updates more often than that never pays bcrypt again (and is never
    refused because of someone else's failures). The cache also knows the
    secrets it verified against a hash that has since been replaced, so a
    client still sending one is told ``badauth`` without counting as a guesser.

    The warm path takes no lock: every request thread checks the cache, and a
    lock there made them queue behind each other (a thread holding it while
    the interpreter switched threads stalled all the others). A hit is one
    dictionary read and, to slide its expiry, one store to an existing key,
    each atomic in the interpreter; only a bcrypt success inserts, under the
    lock, and evicts from the front (the oldest verified first). A hit that
    races an eviction may put its key back, so the tables can hold a few
    entries more than ``max_entries`` until the next insert trims them.
    """

    def __init__(self, ttl: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._cache: OrderedDict[tuple[str, bytes], float] = OrderedDict()  # (stored hash, digest) -> expiry
        self._known: OrderedDict[bytes, float] = OrderedDict()  # digest -> expiry, whatever hash it matched
        self._lock = threading.Lock()

    @staticmethod
    def _digest(secret: str) -> bytes:
        return hashlib.sha256(secret.encode()).digest()

    def _remember(self, table: OrderedDict, key: Hashable, expires: float) -> None:
        """Insert KEY (under the lock) and trim TABLE to max_entries from the front."""
        table[key] = expires
        table.move_to_end(key)
        while len(table) > self.max_entries:
            try:
                table.popitem(last=False)
            except KeyError:  # emptied meanwhile
                return

    def _fresh(self, table: OrderedDict, key: Hashable, now: float) -> bool:
        """KEY is in TABLE and not expired; its expiry then moves to NOW + ttl (no lock: see the class)."""
        expires = table.get(key)
        if expires is None or expires <= now:
            return False
        table[key] = now + self.ttl
        return True

    def cached(self, secret: str, stored_hash: str | None) -> bool:
        """SECRET was verified against STORED_HASH lately (no bcrypt)."""
        if not stored_hash or not secret or len(secret) > 256:
            return False
        digest, now = self._digest(secret), self.clock()
        if not self._fresh(self._cache, (stored_hash, digest), now):
            return False
        self._fresh(self._known, digest, now)
        return True

    def replaced(self, secret: str, stored_hash: str | None) -> bool:
        """SECRET was verified lately, but against another hash than STORED_HASH:
        its owner was given a new secret, so it is stale, not a guess."""
        if not secret or len(secret) > 256 or self.cached(secret, stored_hash):
            return False
        return self._fresh(self._known, self._digest(secret), self.clock())

    def verify(self, secret: str, stored_hash: str | None) -> bool:
        if self.cached(secret, stored_hash):
            return True
        if not stored_hash or not secret or len(secret) > 256:
            return False
        now = self.clock()
        try:
            ok = bcrypt.checkpw(_bcrypt_input(secret), stored_hash.encode())
        except ValueError:
            ok = False
        if ok and self.ttl > 0:
            digest = self._digest(secret)
            with self._lock:
                self._remember(self._cache, (stored_hash, digest), now + self.ttl)
                self._remember(self._known, digest, now + self.ttl)
        return ok


class FailureLimiter:
    """Counts failures per key in a sliding window; LIMIT of them within WINDOW means blocked.

    The table stays small whatever the traffic: a key keeps only its last LIMIT
    failure times, keys are kept in the order of their last failure, so the
    ones whose failures all left the window are pruned from the front as new
    failures come (amortised O(1)), and beyond MAX_KEYS the keys that failed
    longest ago are forgotten first. Checking a key never adds it, nor takes
    the lock: a key's list of times is replaced, never changed once stored.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 20_000):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys the table holds now."""
        with self._lock:
            return len(self._failures)

    def _recent(self, times: Iterable[float], now: float) -> list[float]:
        cutoff = now - self.window
        return [t for t in times if t > cutoff]

    def _prune(self, now: float) -> None:
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if len(self._failures) <= self.max_keys and times[-1] > now - self.window:
                return
            del self._failures[key]

    def blocked(self, key: Hashable) -> bool:
        return len(self._recent(self._failures.get(key, ()), self.clock())) >= self.limit

    def fail(self, key: Hashable) -> None:
        now = self.clock()
        with self._lock:
            times = self._recent(self._failures.get(key, ()), now) + [now]
            self._failures[key] = times[-max(self.limit, 1):]  # never absent meanwhile: blocked() reads without the lock
            self._failures.move_to_end(key)
            self._prune(now)

    def reset(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)
