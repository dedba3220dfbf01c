"""Who may try a credential, so that guessing costs the guesser and nobody else.

The order of the checks is the point:

1. a credential the cache of verified secrets knows good is accepted at
   once: others' failures never lock its owner out;
2. a secret verified lately against a hash that has since been replaced is
   refused without counting (a client not yet given the new secret);
3. a client network (IPv4 address, IPv6 /64) that failed too often for this
   name -- keyed on a tag of the stored hash too, so a new secret made by
   any process starts afresh -- or too often in all, is refused without
   bcrypt (``abuse``); hosts whose last update came from that network are
   still checked, so a guesser behind a NAT does not lock out its neighbours;
4. otherwise bcrypt decides (unknown names pay it too), and a failure counts
   against the network and its (network, name, tag) key.

No store and no HTTP here: the service looks the name up and passes what it found.
"""
from __future__ import annotations

import time
from typing import Callable, Literal

from .auth import FailureLimiter, SecretVerifier, client_network, hash_secret, hash_tag, new_secret
from .config import Config

Verdict = Literal["ok", "badauth", "abuse"]


class Guard:
    def __init__(self, config: Config, monotonic: Callable[[], float] = time.monotonic,
                 on_failure: Callable[[], None] = lambda: None):
        self.on_failure = on_failure  # told of every refused credential (the metrics count them)
        window, table = config["security.failure_window"], config["security.failure_table_size"]
        self.rounds = config["security.bcrypt_rounds"]
        self.verifier = SecretVerifier(config["security.secret_cache_seconds"], clock=monotonic)
        self.passwords = SecretVerifier(ttl=0)  # login passwords: never cached
        self.failures = FailureLimiter(config["security.max_failures"], window, monotonic, table)
        self.login_failures = FailureLimiter(config["portal.max_login_failures"], window, monotonic, table)
        # failures per client network, any name: bounds the bcrypt work one network can cause
        self.client_failures = FailureLimiter(config["security.max_client_failures"], window, monotonic, table)
        self._dummy: str | None = None

    @property
    def dummy_hash(self) -> str:
        """A hash to check unknown names against, so a miss costs as much as a wrong secret."""
        if self._dummy is None:
            self._dummy = hash_secret(new_secret(), self.rounds)
        return self._dummy

    def size(self) -> int:
        """Keys held by the failure tables (each is bounded by security.failure_table_size)."""
        return sum(len(t) for t in (self.failures, self.login_failures, self.client_failures))

    def check_secret(self, name: str, stored: str | None, secret: str, client: str,
                     home: str | None = None) -> Verdict:
        """Check SECRET for NAME (a key: a host's FQDN, "user:..." or "unknown:...") whose stored
        hash is STORED (None: no such name); HOME is the client a host last updated from."""
        if self.known_good(stored, secret):
            return "ok"
        if self.verifier.replaced(secret, stored):
            self.on_failure()
            return "badauth"
        network = client_network(client)
        key = (network, name, hash_tag(stored))
        if self.failures.blocked(key) or not self._may_try(network, home):
            self.on_failure()
            return "abuse"
        if self.verifier.verify(secret, stored or self.dummy_hash) and stored:
            return "ok"
        self.client_failures.fail(network)
        self.failures.fail(key)
        self.on_failure()
        return "badauth"

    def known_good(self, stored: str | None, secret: str) -> bool:
        """SECRET was verified against STORED lately: ``check_secret``'s first step, the only one that needs no bcrypt."""
        return bool(stored) and self.verifier.cached(secret, stored)

    def check_password(self, name: str, stored: str | None, password: str, client: str) -> Verdict:
        """Check a portal login of NAME (STORED: its password hash, None: no such user)."""
        network = client_network(client)
        key = (network, "login:" + name.lower()[:100], hash_tag(stored))
        if self.login_failures.blocked(key) or self.client_failures.blocked(network):
            self.on_failure()
            return "abuse"
        if self.passwords.verify(password[:1024], stored or self.dummy_hash) and stored:
            self.login_failures.reset(key)  # a person who got in is not left near the limit
            return "ok"
        self.login_failures.fail(key)
        self.client_failures.fail(network)
        self.on_failure()
        return "badauth"

    def _may_try(self, network: str, home: str | None) -> bool:
        """NETWORK is under its budget of failures, or the host's last update came from it."""
        return not self.client_failures.blocked(network) or (bool(home) and client_network(home) == network)
