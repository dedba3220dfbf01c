"""The GSS-TSIG contexts negotiated by TKEY, in memory, by key name. Pure apart from the clock.

A context is the key of every message signed with its key name until it
expires (the ticket's remaining lifetime, at most ``kerberos.max_context_seconds``)
or its client deletes it (TKEY mode 5). The table is bounded: when it is
full, expired contexts go first, then the one nearest its expiry, so a flood
of negotiations costs the oldest clients a renegotiation, never memory. A
key name in use cannot be negotiated again (the second client would take
over the first one's name). The input tokens of negotiations are remembered
for a bounded time, so a captured TKEY query replayed cannot open a context.

A GSS-API context is not safe to use from two threads at once (its
sequence numbers change with every MIC), so each one has a lock that every
signature and verification takes.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

REPLAY_SECONDS = 900  # longer than Kerberos' clock skew (300 s): an older authenticator is refused by the acceptor


class InUse(Exception):
    """A live context holds the key name already."""


@dataclass(eq=False)
class Context:
    """One negotiated context: dnspython's GSS-TSIG code calls its get_signature/verify_signature."""

    keyname: str
    algorithm: str           # the TKEY algorithm it was negotiated with: gss-tsig or gss.microsoft.com
    principal: str           # the initiator, e.g. host/vm1.dyn.example.test@EXAMPLE.TEST
    security: Any            # the GSS-API security context (python-gssapi's SecurityContext)
    inception: float
    expiry: float
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_signature(self, data: bytes) -> bytes:
        with self.lock:
            return self.security.get_signature(data)

    def verify_signature(self, data: bytes, mac: bytes) -> None:
        with self.lock:
            self.security.verify_signature(data, mac)


class ContextTable:
    """Contexts by key name (lower-case, no trailing dot), at most MAX_CONTEXTS, none older than MAX_SECONDS."""

    def __init__(self, max_contexts: int = 10000, max_seconds: float = 3600,
                 clock: Callable[[], float] = time.time, replay_seconds: float = REPLAY_SECONDS):
        self.max_contexts = max(1, max_contexts)
        self.max_seconds = max_seconds
        self.clock = clock
        self.replay_seconds = replay_seconds
        self._contexts: dict[str, Context] = {}
        self._tokens: OrderedDict[bytes, float] = OrderedDict()  # token digest -> when it stops counting
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._contexts)

    def get(self, keyname: str) -> Context | None:
        """The live context of KEYNAME; None when there is none or it has expired (it is dropped then)."""
        with self._lock:
            context = self._contexts.get(keyname)
            if context is not None and context.expiry <= self.clock():
                del self._contexts[keyname]
                return None
            return context

    def in_use(self, keyname: str) -> bool:
        return self.get(keyname) is not None

    def add(self, keyname: str, algorithm: str, principal: str, security: Any, lifetime: float) -> Context:
        """A new context for KEYNAME living LIFETIME seconds (capped); raises InUse when a live one has the name."""
        with self._lock:
            now = self.clock()
            held = self._contexts.get(keyname)
            if held is not None and held.expiry > now:
                raise InUse(keyname)
            self._contexts.pop(keyname, None)
            self._make_room(now)
            context = Context(keyname, algorithm, principal, security, now,
                              now + max(0.0, min(lifetime, self.max_seconds)))
            self._contexts[keyname] = context
            return context

    def remove(self, keyname: str) -> bool:
        """Forget KEYNAME's context (TKEY delete); False when there was none."""
        with self._lock:
            return self._contexts.pop(keyname, None) is not None

    def first_sight(self, token: bytes) -> bool:
        """Whether TOKEN is new (it is remembered from now on); False for a replay within the window."""
        digest = hashlib.sha256(token).digest()
        with self._lock:
            now = self.clock()
            while self._tokens and next(iter(self._tokens.values())) <= now:
                self._tokens.popitem(last=False)
            if digest in self._tokens:
                return False
            while len(self._tokens) >= 2 * self.max_contexts:  # bounded whatever arrives
                self._tokens.popitem(last=False)
            self._tokens[digest] = now + self.replay_seconds
            return True

    def forget(self, token: bytes) -> None:
        """TOKEN did not open a context: it need not hold a place (junk cannot push out a real token)."""
        with self._lock:
            self._tokens.pop(hashlib.sha256(token).digest(), None)

    def _make_room(self, now: float) -> None:
        """Below the bound again: expired contexts go, then (if still full) the one nearest its expiry."""
        if len(self._contexts) < self.max_contexts:
            return
        for name in [n for n, c in self._contexts.items() if c.expiry <= now]:
            del self._contexts[name]
        while len(self._contexts) >= self.max_contexts:
            del self._contexts[min(self._contexts, key=lambda n: self._contexts[n].expiry)]
