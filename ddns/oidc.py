"""OpenID Connect login through python-keycloak's ``KeycloakOpenID``.

Authorization code flow with PKCE (S256), ``state`` and ``nonce``. python-keycloak
checks only an ID token's signature and expiry, so ``iss``, ``aud`` and
``nonce`` are checked here. Claims become an :class:`Identity` by a pure
function, so the mapping (groups, admin) is testable without a provider.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

from .config import Config

SCOPE = "openid email profile"  # python-keycloak's default ("email") gets no ID token
PENDING_SECONDS = 600  # how long a started login may take at the provider


def _provider_errors() -> tuple[type[Exception], ...]:
    """python-keycloak's error and OSError. Imported on first use, like the client: importing
    python-keycloak (requests, jwcrypto, httpx) costs ``ddns serve`` a quarter of a second at
    start and 10 MiB, and most instances never log in through OpenID Connect."""
    from keycloak.exceptions import KeycloakError
    return KeycloakError, OSError


class LoginFailed(Exception):
    """The provider's answer cannot be trusted or used; the message is for the person logging in."""


@dataclass(frozen=True)
class Identity:
    """Who logged in, from the ID token's claims."""

    sub: str
    username: str
    email: str
    name: str
    groups: tuple[str, ...]


def identity_from_claims(claims: dict[str, Any], groups_claim: str) -> Identity:
    """The identity in CLAIMS; GROUPS_CLAIM may hold a list or a single string."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise LoginFailed("the provider sent no subject")
    groups = claims.get(groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    username = _printable(claims.get("preferred_username") or claims.get("email") or sub)[:64]
    return Identity(sub=sub, username=username or "user", email=_printable(claims.get("email") or "")[:200],
                    name=_printable(claims.get("name") or "")[:200],
                    groups=tuple(sorted({g for g in groups if isinstance(g, str)})))


def _printable(value: Any) -> str:
    return "".join(ch for ch in str(value) if ch.isprintable()).strip()


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) of RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass(frozen=True)
class Tokens:
    identity: Identity
    id_token: str
    refresh_token: str


class OidcLogin:
    """The service's side of the login: build the redirect, check the callback, end the session."""

    def __init__(self, server_url: str, realm: str, client_id: str, client_secret: str, verify: bool = True,
                 groups_claim: str = "groups", clock: Callable[[], float] = time.time):
        from keycloak import KeycloakOpenID  # only once configured (see _provider_errors)
        self.client = KeycloakOpenID(server_url=server_url.rstrip("/") + "/", realm_name=realm, client_id=client_id,
                                     client_secret_key=client_secret, verify=verify)
        self.issuer = f"{server_url.rstrip('/')}/realms/{realm}"
        self.client_id = client_id
        self.groups_claim = groups_claim
        self.clock = clock

    @classmethod
    def from_config(cls, config: Config) -> "OidcLogin | None":
        if not config["oidc.enabled"]:
            return None
        return cls(config["oidc.server_url"], config["oidc.realm"], config["oidc.client_id"],
                   config["oidc.client_secret"], config["oidc.verify_tls"], config["oidc.groups_claim"])

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the provider (for the portal's Content-Security-Policy)."""
        parts = urllib.parse.urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"

    def begin(self, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """The provider URL to send the browser to, and what the session must keep until the callback."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier, challenge = pkce_pair()
        try:
            url = self.client.auth_url(  # python-keycloak does not encode its parameters
                redirect_uri=urllib.parse.quote(redirect_uri, safe=""), scope=urllib.parse.quote(SCOPE),
                state=state, nonce=nonce, code_challenge=challenge, code_challenge_method="S256")
        except (*_provider_errors(), ValueError) as exc:
            raise LoginFailed("the login service cannot be reached; try again later") from exc
        return url, {"state": state, "nonce": nonce, "verifier": verifier, "started": self.clock()}

    def finish(self, pending: dict[str, Any] | None, state: str, code: str, redirect_uri: str) -> Tokens:
        """Exchange the callback's CODE for tokens and check them against the login the session began."""
        if not pending or not state or not secrets.compare_digest(str(pending.get("state", "")), state):
            raise LoginFailed("this login was not started here or was already used; please log in again")
        if self.clock() - pending.get("started", 0) > PENDING_SECONDS:
            raise LoginFailed("the login took too long; please log in again")
        if not code:
            raise LoginFailed("the login service sent no authorization code")
        try:
            tokens = self.client.token(grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                                       code_verifier=pending["verifier"])
        except _provider_errors() as exc:
            raise LoginFailed("the login service refused the login (the code may be used or expired)") from exc
        id_token = tokens.get("id_token")
        if not id_token:
            raise LoginFailed("the login service sent no ID token")
        claims = self.verify_id_token(id_token, pending["nonce"])
        return Tokens(identity_from_claims(claims, self.groups_claim), id_token, tokens.get("refresh_token", ""))

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims if its signature, expiry, issuer, audience and nonce are right."""
        try:
            return self.client.decode_token(id_token, check_claims={
                "iss": self.issuer, "aud": self.client_id, "nonce": nonce, "exp": None, "sub": None})
        except Exception as exc:  # jwcrypto raises several kinds for a bad token
            raise LoginFailed("the ID token is not valid for this service") from exc

    def userinfo(self, access_token: str) -> Identity:
        """The identity behind a bearer token, asked of the provider (access tokens may be opaque)."""
        try:
            return identity_from_claims(self.client.userinfo(access_token), self.groups_claim)
        except (*_provider_errors(), ValueError, TypeError) as exc:
            raise LoginFailed("the token is not valid") from exc

    def logout(self, refresh_token: str) -> bool:
        """End the provider's session too (Keycloak's logout with the refresh token); False if it failed."""
        if not refresh_token:
            return False
        try:
            self.client.logout(refresh_token)
            return True
        except (*_provider_errors(), TypeError):
            return False
