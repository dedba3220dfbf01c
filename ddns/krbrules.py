"""What a Kerberos principal may change: principals and a zone's ``[kerberos] rules``. Pure.

The rules have BIND's ``update-policy`` syntax and order,
``grant|deny IDENTITY MATCH [NAME] [TYPES...]``, tried first to last:

- ``krb5-self``, ``krb5-selfsub``, ``krb5-subdomain`` take a realm as IDENTITY
  and apply to host principals ``host/MACHINE@REALM``: the first lets the
  principal change MACHINE, the second MACHINE and below, the third lets any
  host principal of the realm change NAME and below;
- ``ms-self``, ``ms-selfsub``, ``ms-subdomain`` likewise for Windows machine
  accounts ``MACHINE$@REALM``, whose name is ``MACHINE.<zone>``;
- ``name``, ``subdomain``, ``zonesub``, ``wildcard`` take one principal as
  IDENTITY (``alice@REALM``) and the NAME as the key rules do.

Realms and principals are compared exactly (case matters, as in Kerberos).
The self rules take ``.`` as an optional NAME placeholder; NAMEs lie inside
the zone. No types, or ``ANY``, is every type but SOA, NS and DNSSEC's. In a
reverse zone a krb5-self or ms-self rule becomes ``ptr-self``: the PTR
records that point at the principal's own name.

``compile_rules`` turns the rules that apply to one principal into
``model.Grant``s for ``ddns.policy``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .errors import Invalid
from .keyrules import MAX_RULES, rule_target, rule_types, rule_words
from .model import Grant, Match
from .policy import reverse_zone
from .validate import InvalidName, normalize_name

MAX_PRINCIPAL_LENGTH = 512
REALM_MATCHES = ("krb5-self", "krb5-selfsub", "krb5-subdomain", "ms-self", "ms-selfsub", "ms-subdomain")
PRINCIPAL_MATCHES = {"name": Match.NAME, "subdomain": Match.SUBDOMAIN, "zonesub": Match.ZONESUB,
                     "wildcard": Match.WILDCARD}
_SELF = ("krb5-self", "krb5-selfsub", "ms-self", "ms-selfsub")        # NAME: "." or none
_WITH_NAME = ("krb5-subdomain", "ms-subdomain", "name", "subdomain", "wildcard")

_COMPONENT = re.compile(r"[A-Za-z0-9._-]+\Z")   # one component of a principal's name
_REALM = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253}[A-Za-z0-9])?\Z")


@dataclass(frozen=True)
class Principal:
    """A Kerberos principal ``NAME[/INSTANCE...]@REALM``; MACHINE set for host and machine principals."""

    text: str
    realm: str
    host: str = ""      # host/MACHINE@REALM: MACHINE as a DNS name (lower-case, no trailing dot)
    machine: str = ""   # MACHINE$@REALM: MACHINE as one DNS label (lower-case)


def parse_principal(text: str) -> Principal:
    """TEXT as a principal; Invalid for empty parts, a second '@', escapes, non-printable or non-ASCII text.

    ``host/MACHINE`` needs MACHINE to be a DNS name and ``MACHINE$`` one DNS
    label, so every name a self rule derives is one a zone can hold.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_PRINCIPAL_LENGTH:
        raise Invalid(f"a principal is NAME@REALM of at most {MAX_PRINCIPAL_LENGTH} characters")
    if not text.isascii() or not text.isprintable() or any(c.isspace() or c == "\\" for c in text):
        raise Invalid(f"a principal is printable ASCII without blanks or escapes: {text[:100]!r}")
    name, at, realm = text.partition("@")
    if not at or "@" in realm or not _REALM.match(realm):
        raise Invalid(f"a principal is NAME@REALM with one '@' and a realm: {text[:100]!r}")
    components = name.split("/")
    if not all(_COMPONENT.match(c) for c in components[:-1]) or not _COMPONENT.match(components[-1].removesuffix("$")):
        raise Invalid(f"a principal's name is components of letters, digits, '.', '_', '-' between '/': {text[:100]!r}")
    if len(components) == 2 and components[0] == "host":
        return Principal(text, realm, host=_dns_name(components[1], text))
    if name.endswith("$"):
        machine = _dns_name(name[:-1], text)
        if len(components) > 1 or "." in machine:
            raise Invalid(f"a machine principal is MACHINE$@REALM with MACHINE one DNS label: {text[:100]!r}")
        return Principal(text, realm, machine=machine)
    return Principal(text, realm)


def _dns_name(text: str, principal: str) -> str:
    try:
        return normalize_name(text)
    except InvalidName as exc:
        raise Invalid(f"the machine of {principal[:100]!r} is not a DNS name: {exc}") from exc


@dataclass(frozen=True)
class Rule:
    """One parsed ``[kerberos]`` rule: MATCH is a REALM_MATCHES or PRINCIPAL_MATCHES word."""

    allow: bool
    identity: str       # a realm or a principal's text
    match: str
    target: str = ""    # krb5-subdomain, ms-subdomain, name, subdomain, wildcard; zonesub: the zone
    types: frozenset[str] = frozenset()


def parse_rule(text: str, zone: str) -> Rule:
    """One rule of ZONE (see the module); Invalid with the reason."""
    words = rule_words(text)
    if len(words) < 3 or words[0].lower() not in ("grant", "deny"):
        raise Invalid(f"a Kerberos rule is 'grant|deny IDENTITY MATCH [NAME] [TYPES...]': {text[:100]!r}")
    identity, match, rest = words[1], words[2].lower(), words[3:]
    if match in REALM_MATCHES:
        if not _REALM.match(identity):
            raise Invalid(f"a {match} rule takes a realm (e.g. EXAMPLE.ORG) as its identity: {text[:100]!r}")
    elif match in PRINCIPAL_MATCHES:
        parse_principal(identity)
    else:
        raise Invalid(f"the match of a Kerberos rule is one of {', '.join(REALM_MATCHES + tuple(PRINCIPAL_MATCHES))}: "
                      f"{text[:100]!r}")
    target = zone if match == "zonesub" else ""
    if match in _SELF and rest[:1] == ["."]:
        rest = rest[1:]
    elif match in _WITH_NAME:
        if not rest:
            raise Invalid(f"a {match} rule needs a name inside {zone}: {text[:100]!r}")
        kind = Match.WILDCARD if match == "wildcard" else Match.NAME
        target, rest = rule_target(kind, rest[0], zone), rest[1:]
    types = frozenset() if [w.upper() for w in rest] == ["ANY"] else rule_types(rest)
    return Rule(words[0].lower() == "grant", identity, match, target, types)


def parse_rules(texts: Iterable[str], zone: str) -> tuple[Rule, ...]:
    """ZONE's rules in order, at most MAX_RULES."""
    texts = list(texts)
    if len(texts) > MAX_RULES:
        raise Invalid(f"a zone has at most {MAX_RULES} Kerberos rules")
    return tuple(parse_rule(t, zone) for t in texts)


def compile_rules(rules: Iterable[Rule], principal: Principal, zone: str,
                  forward_zones: Iterable[str] = ()) -> tuple[Grant, ...]:
    """The grants RULES of ZONE give PRINCIPAL, in order (FORWARD_ZONES: ours, for ms-self's PTR targets)."""
    forward = tuple(forward_zones)
    return tuple(g for rule in rules for g in _grants(rule, principal, zone, forward))


def _grants(rule: Rule, principal: Principal, zone: str, forward: tuple[str, ...]) -> list[Grant]:
    if rule.match in PRINCIPAL_MATCHES:
        return [Grant(rule.allow, PRINCIPAL_MATCHES[rule.match], rule.target, rule.types)] \
            if rule.identity == principal.text else []
    if rule.identity != principal.realm:
        return []
    kind = "krb5" if principal.host else "ms" if principal.machine else ""
    family, _, how = rule.match.partition("-")
    if family != kind:
        return []
    if how == "subdomain":
        return [Grant(rule.allow, Match.SUBDOMAIN, rule.target, rule.types)]
    if how == "self" and reverse_zone(zone):
        if rule.types and "PTR" not in rule.types:
            return []
        targets = [principal.host] if kind == "krb5" else [f"{principal.machine}.{z}" for z in forward]
        return [Grant(rule.allow, Match.PTR_SELF, t, frozenset({"PTR"})) for t in targets]
    own = principal.host if kind == "krb5" else f"{principal.machine}.{zone}"
    return [Grant(rule.allow, Match.NAME if how == "self" else Match.SUBDOMAIN, own, rule.types)]
