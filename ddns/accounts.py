"""People and their credentials: users, logins, account and API tokens, portal sessions.

The service composes this (``Service.accounts``) and answers its adapters
through it, so no adapter reaches the store for a user, a token or a session.
Host secrets and DNS changes are not here: they are the service's own.
"""
from __future__ import annotations

import hashlib
import time
from typing import Callable

from . import errors
from .auth import FailureLimiter, hash_secret, new_secret
from .config import Config
from .guard import Guard
from .oidc import Identity
from .sessions import Sessions
from .store import ApiToken, NotFound, Store, User

API_TOKEN_PREFIX = "ddns_"


class Accounts:
    def __init__(self, config: Config, store: Store, guard: Guard, clock: Callable[[], float],
                 monotonic: Callable[[], float]):
        self.config = config
        self.store = store
        self.clock = clock
        self.guard = guard  # passwords: failure counters per name and network
        self.secret_actions = FailureLimiter(config["portal.max_secret_actions"], config["security.failure_window"],
                                             clock=monotonic)

    def _hash(self, secret: str) -> str:
        return hash_secret(secret, self.config["security.bcrypt_rounds"])

    # ---- users -------------------------------------------------------------------
    def add_user(self, name: str, password: str | None = None, is_admin: bool = False) -> User:
        """A local user; errors.Conflict when the name is taken."""
        if not name or len(name) > 64 or not name.isascii() \
                or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise errors.Invalid("user names are 1-64 letters, digits, '.', '-' or '_'")
        return self.store.add_user(name, self._hash(password) if password else None, is_admin, self.clock())

    def users(self) -> list[User]:
        return self.store.users()

    def user(self, user_id: int) -> User | None:
        """The user a session or a cached bearer token names; None once the user is gone."""
        try:
            return self.store.user_by_id(user_id)
        except NotFound:
            return None

    def new_user_token(self, name: str) -> str:
        """An account token: updates any of the user's hosts (username = user name)."""
        token = new_secret()
        self.store.set_user_token(name, self._hash(token))
        return token

    # ---- logging in ----------------------------------------------------------------
    def check_password(self, name: str, password: str, client: str = "") -> User | None:
        """The local user NAME if PASSWORD is theirs, else None. Unknown names pay the same bcrypt cost.

        Raises TooMany while CLIENT's network failed too often for NAME, or too
        often in all: the guesser waits, not NAME's owner elsewhere nor others
        behind the same address.
        """
        try:
            user = self.store.user(name)
        except NotFound:
            user = None
        verdict = self.guard.check_password(name, user.password_hash if user else None, password, client)
        if verdict == "abuse":
            raise errors.TooMany("too many failed logins")
        return user if verdict == "ok" else None

    def login_oidc(self, identity: Identity) -> User:
        """The user behind an OpenID Connect login, created at the first one.

        With ``oidc.admin_groups`` set, the groups decide who is an admin at every
        login; without, the admin flag set by ``ddns user`` stays as it is.
        """
        admin_groups = set(self.config["oidc.admin_groups"])
        is_admin = bool(admin_groups & set(identity.groups)) if admin_groups else None
        return self.store.login_oidc_user(identity.sub, identity.username, identity.email, identity.name,
                                          list(identity.groups), is_admin, self.clock())

    def note_login(self, user: User) -> None:
        self.store.note_login(user.id, self.clock())

    def sessions(self, clock: Callable[[], float] = time.time) -> Sessions:
        """The portal's server-side sessions, with the configured idle and maximum ages."""
        return Sessions(self.store, self.config["portal.session_idle"], self.config["portal.session_max"], clock)

    # ---- secrets made by users -----------------------------------------------------
    def count_secret_action(self, user: User) -> None:
        """Count a new secret or token made by USER; refuse once they made too many lately."""
        key = f"user:{user.id}"
        if self.secret_actions.blocked(key):
            raise errors.TooMany("too many new secrets in a short time; wait a few minutes and try again")
        self.secret_actions.fail(key)

    def new_api_token(self, user: User, name: str) -> str:
        """A personal API token (shown once). Stored as SHA-256: it is 192 random bits, so no bcrypt is needed."""
        token = API_TOKEN_PREFIX + new_secret()
        self.store.add_api_token(user.id, name.strip()[:100] or "API token", _token_hash(token), self.clock())
        return token

    def api_token_user(self, token: str) -> User | None:
        if not token.startswith(API_TOKEN_PREFIX) or len(token) > 200:
            return None
        return self.store.api_token_owner(_token_hash(token), self.clock())

    def api_tokens(self, user: User) -> list[ApiToken]:
        return self.store.api_tokens(user.id)

    def delete_api_token(self, user: User, token_id: int) -> None:
        """Revoke one of USER's tokens; another user's is "no such token", exactly as a missing one."""
        try:
            self.store.delete_api_token(user.id, token_id)
        except NotFound as exc:
            raise errors.NotFound("no such token") from exc


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
