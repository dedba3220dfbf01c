"""Host secrets and account tokens: generation, bcrypt hashing, verification.

bcrypt costs ~0.25 s, so a verified secret is remembered for a while, keyed
on (stored hash, SHA-256 of the secret): a secret replaced by any process
changes the stored hash and stops working at once. Failed attempts are never
cached -- they always pay bcrypt -- and are counted per host so that a
brute-force attempt gets ``abuse`` before it gets far.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

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


class SecretVerifier:
    """bcrypt verification with a bounded, expiring cache of successes."""

    def __init__(self, ttl: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._cache: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, secret: str, stored_hash: str | None) -> bool:
        if not stored_hash or not secret or len(secret) > 256:
            return False
        key = (stored_hash, hashlib.sha256(secret.encode()).digest())
        now = self.clock()
        with self._lock:
            expires = self._cache.get(key)
            if expires is not None and expires > now:
                return True
        try:
            ok = bcrypt.checkpw(_bcrypt_input(secret), stored_hash.encode())
        except ValueError:
            ok = False
        if ok and self.ttl > 0:
            with self._lock:
                self._cache[key] = now + self.ttl
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return ok


class FailureLimiter:
    """Counts failures per key in a sliding window; over the limit means blocked."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key, self.clock())) >= self.limit

    def fail(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            self._recent(key, now).append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
