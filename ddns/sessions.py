"""Portal sessions: random ids in a cookie, state on the server, stored under a hash.

The browser holds only a 256-bit random id; the store keeps its SHA-256, so a
copy of the database opens no session. Each session carries its own CSRF
token. Sessions end after ``idle`` seconds without a request or ``max_age``
seconds after they began, whichever comes first; logging in starts a new
session (a fixed id planted before login is worthless after it).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from .store import Session, Store

COOKIE = "ddns_session"


def hash_id(raw_id: str) -> str:
    return hashlib.sha256(raw_id.encode()).hexdigest()


def csrf_ok(session: Session | None, token: str) -> bool:
    """The form's CSRF token is the session's (compared in constant time)."""
    return session is not None and bool(token) and hmac.compare_digest(session.csrf.encode(), token.encode())


def expired(session: Session, now: float, idle: float, max_age: float) -> bool:
    return now - session.seen > idle or now - session.created > max_age


@dataclass
class Sessions:
    store: Store
    idle: float
    max_age: float
    clock: Callable[[], float] = time.time
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
        """The live session for a cookie value (and note the request), or None."""
        if not raw_id or len(raw_id) > 100:
            return None
        session = self.store.session(hash_id(raw_id))
        if session is None:
            return None
        now = self.clock()
        if expired(session, now, self.idle, self.max_age):
            self.store.delete_session(session.id_hash)
            return None
        session = replace(session, seen=now)
        self.store.save_session(session.id_hash, now, session.data)
        return session

    def save(self, session: Session) -> None:
        self.store.save_session(session.id_hash, session.seen, session.data)

    def end(self, session: Session) -> None:
        self.store.delete_session(session.id_hash)

    def _purge(self, now: float) -> None:
        """Drop expired sessions now and then (at most once a minute)."""
        if now - self._last_purge >= 60:
            self._last_purge = now
            self.store.purge_sessions(now - self.idle, now - self.max_age)
