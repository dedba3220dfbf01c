"""What a TSIG key may change: key names, algorithms and the rules of zone keys. Pure.

Three kinds of key, modelled on BIND's ``update-policy``:

- a **host key** is named exactly the host's fqdn and may change the host's
  own A, AAAA and TXT records (``grant self A AAAA TXT``) and, in reverse
  zones, the PTR records that name the host (``ptr-self``);
- an **ACME key** is named ``_acme-challenge.<fqdn>`` and may change only the
  TXT records of that name (``grant self TXT``), what DNS-01 needs;
- a **zone key** (made by admins) is bound to one zone and carries explicit
  rules, BIND-like: ``grant|deny MATCH [TARGET] [TYPES...]``, first match
  wins, e.g. ``grant zonesub TXT`` or ``deny name www.example.org A``.

Every name a zone key's rule can reach lies in its zone: targets outside it,
and ``self``/``selfsub`` for a key whose own name is outside it, are refused.
"""
from __future__ import annotations

import re

from .errors import Internal, Invalid
from .model import Grant, Match
from .policy import in_zone
from .records import canonical_type

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")
DEFAULT_ALGORITHM = "hmac-sha256"
SECRET_BYTES = {"hmac-sha256": 32, "hmac-sha384": 48, "hmac-sha512": 64}  # the digest's size, as tsig-keygen makes them
KINDS = ("host", "acme", "zone")
ACME_LABEL = "_acme-challenge"
ACME_PREFIX = ACME_LABEL + "."
HOST_TYPES = frozenset({"A", "AAAA", "TXT"})
ACME_TYPES = frozenset({"TXT"})
MAX_RULES = 32
MAX_RULE_LENGTH = 300
MAX_TYPES = 16

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_NEEDS_TARGET = (Match.NAME, Match.SUBDOMAIN, Match.WILDCARD)
_MATCHES = {m.value: m for m in Match if m is not Match.PTR_SELF}  # ptr-self: only registered hosts get it


def key_name(text: str) -> str:
    """TEXT as a key name: a domain name, lower-case, no trailing dot; labels of letters, digits, '-' and '_'."""
    if not isinstance(text, str) or not text.strip():
        raise Invalid("a key name is needed")
    name = text.strip().lower()
    name = name[:-1] if name.endswith(".") else name
    if len(name) > 253:
        raise Invalid("a key name has at most 253 characters")
    if not name or not all(_LABEL.match(label) for label in name.split(".")):
        raise Invalid(f"not a key name: {text[:100]!r} (labels of letters, digits, inner '-' and '_', dot-separated)")
    return name


def algorithm(text: str) -> str:
    """TEXT as one of ALGORITHMS (case and a trailing dot ignored)."""
    name = (text or "").strip().lower().rstrip(".")
    if name not in ALGORITHMS:
        raise Invalid(f"the algorithm must be one of {', '.join(ALGORITHMS)}")
    return name


def acme_key_name(fqdn: str) -> str:
    """The name of FQDN's ACME key."""
    return key_name(ACME_PREFIX + fqdn)


def rule_target(match: Match, text: str, zone: str) -> str:
    """TEXT as the target name of a MATCH rule (``*.NAME`` for a wildcard), Invalid unless inside ZONE."""
    if match is Match.WILDCARD:
        if not text.startswith("*."):
            raise Invalid(f"a wildcard target starts with '*.': {text[:100]!r}")
        base = key_name(text[2:])
        target = "*." + base
    else:
        base = target = key_name(text)
    if not in_zone(base, zone):
        raise Invalid(f"{target} is not in the zone {zone}")
    return target


def parse_rule(text: str, zone: str, key: str) -> Grant:
    """One rule of zone ZONE's key KEY, ``grant|deny MATCH [TARGET] [TYPES...]``, as a ``Grant``.

    MATCH is a ``model.Match`` value; name, subdomain and wildcard take a
    TARGET, the others none. No types: every type but the zone's own (SOA,
    NS) and DNSSEC's. A zonesub rule is bound to ZONE.
    """
    words = rule_words(text)
    if len(words) < 2 or words[0].lower() not in ("grant", "deny"):
        raise Invalid(f"a rule is 'grant|deny MATCH [TARGET] [TYPES...]': {text!r}")
    match = _MATCHES.get(words[1].lower())
    if match is None:
        raise Invalid(f"the match of a rule is one of {', '.join(_MATCHES)}: {text!r}")
    rest = words[2:]
    target = ""
    if match in _NEEDS_TARGET:
        if not rest:
            raise Invalid(f"a {match.value} rule needs a target name: {text!r}")
        target, rest = rule_target(match, rest[0], zone), rest[1:]
    elif match is Match.ZONESUB:
        target = zone
    elif not in_zone(key, zone):
        raise Invalid(f"a {match.value} rule needs a key named inside {zone}")
    return Grant(words[0].lower() == "grant", match, target, rule_types(rest))


def rule_words(text: str) -> list[str]:
    """The words of one rule; Invalid unless it is at most MAX_RULE_LENGTH printable ASCII characters."""
    if not isinstance(text, str) or len(text) > MAX_RULE_LENGTH or not text.isascii() or not text.isprintable():
        raise Invalid(f"a rule is at most {MAX_RULE_LENGTH} printable ASCII characters")
    return text.split()


def rule_types(words: list[str]) -> frozenset[str]:
    """The types a rule lists, canonical; none: every type but SOA, NS and DNSSEC's."""
    if len(words) > MAX_TYPES:
        raise Invalid(f"a rule names at most {MAX_TYPES} types")
    return frozenset(canonical_type(t) for t in words)


def format_rule(grant: Grant) -> str:
    """GRANT in the rule syntax ``parse_rule`` reads (zonesub's target is implied by the zone)."""
    words = ["grant" if grant.allow else "deny", grant.match.value]
    if grant.match in _NEEDS_TARGET:
        words.append(grant.target)
    return " ".join(words + sorted(grant.types))


def parse_rules(texts: list[str] | tuple[str, ...], zone: str, key: str) -> tuple[Grant, ...]:
    """The rules of a zone key, in order; at least one, at most MAX_RULES."""
    if not texts:
        raise Invalid("a zone key needs at least one rule, e.g. 'grant zonesub TXT'")
    if len(texts) > MAX_RULES:
        raise Invalid(f"a zone key has at most {MAX_RULES} rules")
    return tuple(parse_rule(t, zone, key) for t in texts)


def ptr_self(fqdn: str) -> Grant:
    """The grant of a registered host's identities in reverse zones: the PTR records naming FQDN."""
    return Grant(True, Match.PTR_SELF, fqdn, frozenset({"PTR"}))


def key_grants(kind: str, name: str, zone: str | None, rules: tuple[str, ...]) -> tuple[Grant, ...]:
    """What the key NAME of KIND may change (ZONE and RULES: a zone key's, as stored)."""
    if kind == "host":
        return (Grant(True, Match.SELF, types=HOST_TYPES), ptr_self(name))
    if kind == "acme":
        return (Grant(True, Match.SELF, types=ACME_TYPES),)
    if kind == "zone" and zone:
        return parse_rules(rules, zone, name)
    raise Internal(f"the key {name} has no kind ddns knows: {kind!r}")
