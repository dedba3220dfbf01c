"""Portal sessions: random ids in a cookie, state on the server, stored under a hash.

The browser holds only a 256-bit random id; the store keeps its SHA-256, so a
copy of the database opens no session. Each session carries its own CSRF
token. Sessions end after ``idle`` seconds without a request or ``max_age``
seconds after they began, whichever comes first; logging in starts a new
session (a fixed id planted before login is worthless after it).

Only a login makes a row. An anonymous visitor's forms carry a token signed
for a random pre-session cookie (a signed double-submit token: a forged
request lacks the cookie, a planted cookie lacks the signature), and a
pending OpenID login travels in a signed cookie: a flood of anonymous page
loads writes nothing. A request notes ``seen`` at most once per
``SEEN_INTERVAL`` (or a tenth of the idle timeout, if that is shorter), so
idle timeouts are that much coarser and page loads of a logged-in user do
not write either. The signing key lives in this process:
after a restart an anonymous form or a login in flight is refused once
("reload the page and try again").
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .store import Busy, Session, Store

COOKIE = "ddns_session"
OIDC_COOKIE = "ddns_oidc"  # a login through OpenID Connect in flight: state, nonce, PKCE verifier, next (signed)
PRE_COOKIE = "ddns_pre"  # an anonymous visitor's random id: what its forms' CSRF tokens are signed for
SEEN_INTERVAL = 60.0  # a session's last request is written at most this often (a tenth of a shorter idle timeout)


def hash_id(raw_id: str) -> str:
    return hashlib.sha256(raw_id.encode()).hexdigest()


def csrf_ok(session: Session | None, token: str) -> bool:
    """The form's CSRF token is the session's (compared in constant time)."""
    return session is not None and bool(token) and hmac.compare_digest(session.csrf.encode(), token.encode())


def expired(session: Session, now: float, idle: float, max_age: float) -> bool:
    return now - session.seen > idle or now - session.created > max_age


class Signer:
    """HMAC-SHA256 for values that make a round trip through the browser, one purpose each."""

    def __init__(self, key: bytes | None = None):
        self.key = key or secrets.token_bytes(32)

    def mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def sign(self, purpose: str, data: dict[str, Any]) -> str:
        """DATA as a cookie value: base64url JSON, a dot, its MAC."""
        text = json.dumps(data, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") + "." + self.mac(purpose, text)

    def unsign(self, purpose: str, token: str | None) -> dict[str, Any] | None:
        """The data of a value ``sign`` made for PURPOSE, or None (missing, altered, another purpose)."""
        encoded, _, mac = (token or "").partition(".")
        try:
            text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not mac or not hmac.compare_digest(mac.encode(), self.mac(purpose, text).encode()):
            return None
        data = json.loads(text)
        return data if isinstance(data, dict) else None


@dataclass
class Sessions:
    store: Store
    idle: float
    max_age: float
    clock: Callable[[], float] = time.time
    signer: Signer = field(default_factory=Signer)
    _last_purge: float = field(default=0.0, repr=False)

    def start(self, user_id: int | None = None, data: dict | None = None) -> tuple[str, Session]:
        """A new session; returns the raw id for the cookie and the session."""
        now = self.clock()
        self._purge(now)
        raw = secrets.token_urlsafe(32)
        session = Session(hash_id(raw), user_id, secrets.token_urlsafe(32), now, now, dict(data or {}))
        self.store.add_session(session)
        return raw, session

    def load(self, raw_id: str | None) -> Session | None:
        """The live session for a cookie value, or None; notes the request if ``seen`` is SEEN_INTERVAL old."""
        if not raw_id or len(raw_id) > 100:
            return None
        session = self.store.session(hash_id(raw_id))
        if session is None:
            return None
        now = self.clock()
        try:
            if expired(session, now, self.idle, self.max_age):
                self.store.delete_session(session.id_hash)
                return None
            if now - session.seen >= min(SEEN_INTERVAL, self.idle / 10):
                self.store.touch_session(session.id_hash, now)
                session = replace(session, seen=now)
        except Busy:  # a busy database must not stop a read; the next request notes it (or the purge drops it)
            return None if expired(session, now, self.idle, self.max_age) else session
        return session

    def anonymous_csrf(self, pre_id: str) -> str:
        """The CSRF token of an anonymous visitor's forms: signed for its pre-session cookie, stored nowhere."""
        return self.signer.mac("csrf", pre_id)

    def anonymous_csrf_ok(self, pre_id: str | None, token: str) -> bool:
        return bool(pre_id) and bool(token) and hmac.compare_digest(self.anonymous_csrf(pre_id).encode(),
                                                                     token.encode())

    def save(self, session: Session) -> None:
        self.store.save_session(session.id_hash, session.seen, session.data)

    def end(self, session: Session) -> None:
        self.store.delete_session(session.id_hash)

    def _purge(self, now: float) -> None:
        """Drop expired sessions now and then (at most once a minute)."""
        if now - self._last_purge >= 60:
            self._last_purge = now
            self.store.purge_sessions(now - self.idle, now - self.max_age)
