"""Kerberos principals as identities: what a GSS-TSIG signer may change, and principals linked to hosts.

A principal's grants in a zone are, in order:

1. the zone's ``[kerberos] rules`` (zone.toml) that apply to it (ddns.krbrules);
2. the grants of the registered host it stands for -- the host it is linked
   to (``ddns host principal``), or NAME for ``host/NAME@REALM`` when REALM is
   the setting ``kerberos.realm`` (krb5-self by default). These carry the
   host's guard "still registered" (for the whole update), so a host deleted
   meanwhile changes nothing.

No grant: None, and the listener answers REFUSED.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable

from . import hostrecords, krbrules
from .errors import Invalid
from .model import Actor, Identity
from .policy import reverse_zone
from .store import Host, Store


@functools.lru_cache(maxsize=256)
def _rules(texts: tuple[str, ...], zone: str) -> tuple[krbrules.Rule, ...]:
    """ZONE's parsed rules (checked when the zone loaded; parsed once per text)."""
    return krbrules.parse_rules(texts, zone)


class Principals:
    """The principals' use cases; RULES_OF gives a zone's ``[kerberos] rules``, ZONES our zones."""

    def __init__(self, store: Store, realm: str, rules_of: Callable[[str], tuple[str, ...]],
                 zones: Callable[[], Iterable[str]]):
        self.store = store
        self.realm = realm
        self.rules_of = rules_of
        self.zones = zones

    def identity(self, text: str, zone: str, actor: Actor) -> Identity | None:
        """What the principal TEXT may change in ZONE (see the module); None: nothing."""
        try:
            principal = krbrules.parse_principal(text)
        except Invalid:
            return None
        forward = [z for z in self.zones() if not reverse_zone(z)]
        grants = krbrules.compile_rules(_rules(self.rules_of(zone), zone), principal, zone, forward)
        host = self._host(principal)
        if host is None:
            return Identity(actor, "", grants) if grants else None
        own = hostrecords.host_identity(self.store, host, actor)
        return Identity(actor, own.signer, grants + own.grants, own.guard)

    def _host(self, principal: krbrules.Principal) -> Host | None:
        linked = self.store.host_of_principal(principal.text)
        if linked is not None:
            return linked
        if self.realm and principal.host and principal.realm == self.realm:
            return self.store.find_host(principal.host)
        return None

    def link(self, host: Host, text: str | None) -> None:
        """Link the principal TEXT to HOST (None: unlink); Invalid, or Conflict when another host has it."""
        principal = None if text is None else krbrules.parse_principal(text.strip()).text
        self.store.set_principal(host.fqdn, principal)  # NotFound when deleted meanwhile
