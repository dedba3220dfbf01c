"""TSIG keys: making, listing and revoking them, and what a signed update may change.

The service's use cases for keys (``Service`` delegates to ``Keys``). Who may
do what:

- a user manages the keys of their own hosts (admins those of every host);
  another user's host or key is "not found", exactly as a missing one;
- only admins (and the command line) make zone keys, and only they see them.

Every use of a key reads it from the database afresh: a deleted key fails the
next request at once, also in a running ``ddns serve``, and an update signed
with it that is still queued is refused by its guard under the publisher's
lock. The secret leaves this module once, as ``add``'s answer.
"""
from __future__ import annotations

import base64
import binascii
import functools
import logging
import secrets
import time
from typing import Callable

from . import keyrules
from .errors import Conflict, Invalid, NotFound, Refused
from .keystore import KeyConflict, KeyHostGone, KeyInfo
from .model import Actor, Identity, TsigKey
from .store import Host, Store, User
from .validate import InvalidName, normalize_name

log = logging.getLogger("ddns.keys")


class Keys:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    # ---- what the DNS listener asks, per request -------------------------------
    def tsig_key(self, name: str) -> TsigKey | None:
        """The key NAME to verify and sign with, read now; None when unknown or revoked."""
        found = self._row(name)
        if found is None:
            return None
        info, secret = found
        try:
            return TsigKey(info.name, info.algorithm, base64.b64decode(secret, validate=True))
        except binascii.Error:
            log.error("the secret of key %s is not base64; the key is unusable", info.name)
            return None

    def key_identity(self, name: str, actor: Actor) -> Identity | None:
        """Who signed with the key NAME and what they may change; None when unknown or revoked.

        The guard (evaluated by the publisher under its lock) is "this key is
        still the one that signed" and, for host and ACME keys, "its host is
        still registered".
        """
        found = self._row(name)
        if found is None:
            return None
        info = found[0]
        host = self.store.find_host(info.host) if info.host else None
        if info.kind != "zone" and host is None:
            return None
        grants = keyrules.key_grants(info.kind, info.name, info.zone, info.rules)
        return Identity(actor, info.name, grants, guard=functools.partial(self._current, info, host))

    def _row(self, name: str) -> tuple[KeyInfo, str] | None:
        try:
            return self.store.tsig_key_row(keyrules.key_name(name))
        except Invalid:
            return None

    def _current(self, info: KeyInfo, host: Host | None) -> bool:
        if not self.store.tsig_key_current(info.name, info.created):
            return False
        return host is None or self.store.host_registered(host.fqdn, host.created, host.owner_id)

    # ---- managing keys ---------------------------------------------------------------
    def add(self, user: User | None, name: str, acme: bool = False, zone: str | None = None,
            rules: list[str] | tuple[str, ...] = (), algorithm: str = keyrules.DEFAULT_ALGORITHM) -> tuple[KeyInfo, str]:
        """Make a key; returns it and its secret (base64), which is shown this once.

        Without ZONE: the host key of the host NAME (``acme``: its ACME key).
        With ZONE: a zone key named NAME with RULES (admins and the command line only).
        USER None is the command line.
        """
        alg = keyrules.algorithm(algorithm)
        if zone is None:
            if rules:
                raise Invalid("only zone keys have rules")
            host = self._host_of(user, name)
            info = KeyInfo(keyrules.acme_key_name(host.fqdn) if acme else host.fqdn, alg,
                           "acme" if acme else "host", host.fqdn, None, (), user.id if user else None, self.clock())
        else:
            info = self._zone_key(user, name, zone, rules, alg, acme)
        secret = base64.b64encode(secrets.token_bytes(keyrules.SECRET_BYTES[alg])).decode("ascii")
        try:
            self.store.add_tsig_key(info, secret)
        except KeyConflict as exc:
            raise Conflict(str(exc)) from exc
        except KeyHostGone as exc:
            raise NotFound(str(exc)) from exc
        log.info("key %s (%s, %s) made by %s", info.name, info.kind, info.algorithm, _who(user))
        return info, secret

    def _zone_key(self, user: User | None, name: str, zone: str, rules: list[str] | tuple[str, ...],
                  alg: str, acme: bool) -> KeyInfo:
        if user is not None and not user.is_admin:
            raise Refused("only admins make zone keys")
        if acme:
            raise Invalid("a key is an ACME key or a zone key, not both")
        zone = self._zone(zone)
        key = keyrules.key_name(name)
        grants = keyrules.parse_rules(list(rules), zone, key)
        return KeyInfo(key, alg, "zone", None, zone, tuple(keyrules.format_rule(g) for g in grants),
                       user.id if user else None, self.clock())

    def keys(self, user: User | None, host: str | None = None, kind: str | None = None) -> list[KeyInfo]:
        """The keys USER may see (without secrets): HOST's only, and only of KIND, when given."""
        if kind is not None and kind not in keyrules.KINDS:
            raise Invalid(f"the kind of a key is one of {', '.join(keyrules.KINDS)}")
        if host is not None:
            return self.store.tsig_keys(host=self._host_of(user, host).fqdn, kind=kind)
        found = self.store.tsig_keys(kind=kind)
        if user is None or user.is_admin:
            return found
        mine = {h.fqdn for h in self.store.hosts(user.id)}
        return [k for k in found if k.host in mine]

    def delete(self, user: User | None, name: str, host: str | None = None) -> KeyInfo:
        """Revoke the key NAME (HOST's, when given): the next request signed with it fails."""
        found = self._row(name)
        info = found[0] if found else None
        if info is None or not self._may_manage(user, info) or (host is not None and info.host != _name(host)):
            raise NotFound(f"no key {name[:253]}")
        if not self.store.delete_tsig_key(info.name):
            raise NotFound(f"no key {info.name}")  # revoked by a concurrent request
        log.info("key %s (%s) revoked by %s", info.name, info.kind, _who(user))
        return info

    # ---- who may manage what -------------------------------------------------------
    def _host_of(self, user: User | None, fqdn: str) -> Host:
        """The host FQDN if USER may manage it; another user's host is "no host", as a missing one."""
        host = self.store.find_host(_name(fqdn))
        if host is None or (user is not None and not user.is_admin and host.owner_id != user.id):
            raise NotFound(f"no host {fqdn[:253]}")
        return host

    def _may_manage(self, user: User | None, info: KeyInfo) -> bool:
        if user is None or user.is_admin:
            return True
        if info.kind == "zone" or info.host is None:
            return False
        host = self.store.find_host(info.host)
        return host is not None and host.owner_id == user.id

    def _zone(self, zone: str) -> str:
        name = _name(zone)
        if name not in self.store.domains():
            raise NotFound(f"no domain {zone[:253]}")
        return name


def _name(text: str) -> str:
    """TEXT as a host or zone name ("" when it is none: it then matches nothing)."""
    try:
        return normalize_name(text)
    except InvalidName:
        return ""


def _who(user: User | None) -> str:
    return f"user {user.name}" if user else "the command line"
