"""The catalog zone (RFC 9432): the list of zones a secondary serves, as a zone of its own.

A secondary that consumes the catalog (BIND 9.18: ``catalog-zones``) adds
and drops member zones as the catalog changes, so a zone added in ddns is
served by every secondary without editing its configuration. The catalog is
a plain zone file: SOA, ``NS invalid.``, ``version TXT "2"`` and one
``UNIQUE.zones PTR ZONE.`` per member. UNIQUE is the SHA-1 of the member's
name in wire format (lower case), the label BIND's own tools use: stable
for as long as the zone exists, so a secondary keeps a member across
catalog changes. Pure: names and serials in, text out.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import dns.exception
import dns.name

from .errors import Invalid

VERSION = "2"
# SOA timers of the catalog: consumers refresh it like any zone (NOTIFY makes them do it at once).
_SOA = "3600 600 2147483646 0"


class BadCatalogName(Invalid):
    """bind.catalog_zone is not a name a catalog zone can have."""


def catalog_name(value: str) -> str:
    """VALUE (the setting, with or without a final dot) as a zone name without one; "" stays "" (off).

    Lower case letters, digits and hyphens only, at least two labels: the
    name becomes a directory of the zones repository and a quoted name in
    named.conf.
    """
    name = value.strip().rstrip(".").lower()
    if not name:
        return ""
    labels = name.split(".")
    if len(labels) < 2 or not all(label and len(label) <= 63 and label.replace("-", "").isalnum()
                                  and label.isascii() and not label.startswith("-") for label in labels):
        raise BadCatalogName(f"bind.catalog_zone {value!r} is not a zone name like catalog.ddns.invalid")
    return name


def member_label(zone: str) -> str:
    """The stable unique label of member ZONE: SHA-1 of its wire-format name, lower case, in hex."""
    try:
        wire = dns.name.from_text(zone.rstrip(".") + ".").canonicalize().to_wire()
    except dns.exception.DNSException as exc:
        raise Invalid(f"{zone!r} is no zone name for the catalog: {exc}") from exc
    return hashlib.sha1(wire).hexdigest()


def render(catalog: str, members: Iterable[str], serial: int) -> str:
    """The catalog zone CATALOG listing MEMBERS (zone names, no final dot) at SERIAL, members sorted."""
    lines = [f"; {catalog} -- the catalog zone (RFC 9432) rendered by ddns: the zones it serves.",
             "; Do not edit: the service rewrites this file when zones are added or removed.",
             f"$ORIGIN {catalog}.", "$TTL 3600",
             f"@ IN SOA invalid. invalid. ( {serial} {_SOA} )", "@ IN NS invalid.", f'version IN TXT "{VERSION}"']
    for zone in sorted(set(members) - {catalog}):
        name = dns.name.from_text(zone.rstrip(".") + ".").to_text()
        lines.append(f"{member_label(zone)}.zones IN PTR {name}")
    return "\n".join(lines) + "\n"


def members(text: str) -> list[str]:
    """The member zones (no final dot) of a catalog zone file rendered by ``render``, sorted."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].endswith(".zones") and parts[1:3] == ["IN", "PTR"]:
            found.append(dns.name.from_text(parts[3]).to_text(omit_final_dot=True))
    return sorted(found)
