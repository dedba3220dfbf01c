"""Validation of everything that can end up in a zone file.

Pure functions: every hostname and address passes through here before it
reaches the store, the publisher or a template, which is what makes zone-file
injection impossible (only LDH labels and canonical addresses get through).
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
from typing import NamedTuple

import idna

from . import errors

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")  # \Z: "$" would accept a trailing newline
MAX_NAME_LENGTH = 253
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# An IPv4 address as its canonical text (no leading zeros): what A rdata and ipaddress print.
DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


class InvalidName(errors.Invalid):
    """A hostname or zone name that is not a valid DNS name."""


class InvalidAddress(errors.Invalid):
    """An address that is malformed or refused by policy."""


def normalize_name(name: str) -> str:
    """Return NAME lowercased, without a trailing dot, IDN labels as A-labels (punycode).

    Refuses anything that is not a sequence of LDH labels: wildcards, empty
    labels (``a..b``), underscores, spaces, control characters, zone-file
    syntax. International labels follow IDNA 2008 with UTS 46 mapping, as
    browsers do (``faß`` is ``xn--fa-hia``, not ``fass``), so one name has one
    spelling; an ``xn--`` label must be the A-label of a valid U-label.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("empty name")
    if len(name) > 2 * MAX_NAME_LENGTH:
        raise InvalidName("name too long")
    return _normalized(name)


# A request names its host and zone several times (credentials, hostname, the update's
# names, label by label): each distinct valid spelling is worked out once per few
# thousand. Only results are kept (a refusal raises, and is not cached); the C
# implementation takes no lock.
REPEATS = 4096


@functools.lru_cache(maxsize=REPEATS)
def _normalized(name: str) -> str:
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidName("empty name")
    labels = []
    for label in name.split("."):
        if not label:
            raise InvalidName("empty label in name")
        label = _a_label(label) if not label.isascii() else label.lower()
        if not _LABEL.match(label):
            raise InvalidName(f"invalid label {label!r}: use letters, digits and inner hyphens")
        if label.startswith(ACE_PREFIX):
            _check_a_label(label)
        labels.append(label)
    normalized = ".".join(labels)
    if len(normalized) > MAX_NAME_LENGTH:
        raise InvalidName("name longer than 253 characters")
    return normalized


ACE_PREFIX = "xn--"  # an A-label (punycode) starts so


def _a_label(label: str) -> str:
    """The A-label of a Unicode LABEL (IDNA 2008, UTS 46 mapping, non-transitional)."""
    try:
        return idna.encode(label, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidName(f"not a valid international label: {label!r}") from exc


def _check_a_label(label: str) -> None:
    """Refuse an ``xn--`` LABEL that is not exactly the A-label of a valid U-label (decode, encode, compare)."""
    try:
        valid = idna.encode(idna.decode(label)).decode("ascii") == label
    except (idna.IDNAError, UnicodeError):
        valid = False
    if not valid:
        raise InvalidName(f"invalid label {label!r}: not the A-label of a valid international name")


def split_host(fqdn: str, zones: "set[str] | frozenset[str]") -> tuple[str, str]:
    """Split a normalized FQDN into (label, zone) for the longest matching zone.

    Only one label below the zone is a host; deeper names and the apex are not.
    """
    best = ""
    for zone in zones:
        if fqdn.endswith("." + zone) and len(zone) > len(best):
            best = zone
    if not best:
        raise InvalidName(f"{fqdn} is not in a domain of this service")
    if fqdn in zones:
        raise InvalidName(f"{fqdn} is a zone apex, not a host")
    label = fqdn[: -len(best) - 1]
    if not label:  # ".zone": not normalized, and no host
        raise InvalidName(f"{fqdn}: empty label in name")
    if "." in label:
        raise InvalidName(f"{fqdn}: only one label below {best} is allowed")
    return label, best


class AddressPolicy(NamedTuple):
    """Which kinds of address a host may point to.

    A named tuple, not a frozen dataclass: loading a zone builds one per
    record (100,000 at start-up), at a fifth of the cost.
    """

    allow_private: bool = True
    allow_loopback: bool = False


def parse_address(text: str, policy: AddressPolicy = AddressPolicy()) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse one IPv4 or IPv6 address, refusing what must never be published.

    IPv4-mapped IPv6 (``::ffff:192.0.2.1``) becomes the IPv4 address; zone ids,
    prefixes, unspecified, multicast, link-local and reserved addresses are
    refused; private and loopback ranges follow POLICY.
    """
    # The common case first, without ipaddress's parser in Python: a zone's 100k records load at start-up.
    if isinstance(text, str) and DOTTED_QUAD.fullmatch(text):
        packed = socket.inet_aton(text)
        if packed[0] not in _SPECIAL_FIRST_OCTETS:  # none of the refused ranges holds it
            return _private_checked(ipaddress.IPv4Address(packed), policy)
    if not isinstance(text, str) or not text or len(text) > 45:
        raise InvalidAddress("not an IP address")
    if not isinstance(policy, AddressPolicy):
        raise TypeError("policy must be an AddressPolicy")
    return _parsed_address(text, policy)


@functools.lru_cache(maxsize=REPEATS)  # the interface and the use case both parse a request's address
def _parsed_address(text: str, policy: AddressPolicy) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text or "/" in text or text.strip() != text:
        raise InvalidAddress(f"not a plain IP address: {text!r}")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as exc:
        raise InvalidAddress(f"not an IP address: {text!r}") from exc
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_unspecified or (addr.version == 4 and addr in _THIS_NETWORK):
        raise InvalidAddress(f"{addr} is an unspecified address")
    if addr.is_multicast:
        raise InvalidAddress(f"{addr} is a multicast address")
    if addr.is_link_local or (addr.version == 6 and addr.is_site_local):
        raise InvalidAddress(f"{addr} is a link-local or site-local address")
    if addr.is_loopback:
        if not policy.allow_loopback:
            raise InvalidAddress(f"{addr} is a loopback address")
        return addr
    if addr.is_reserved or (isinstance(addr, ipaddress.IPv4Address) and addr == _BROADCAST):
        raise InvalidAddress(f"{addr} is a reserved address")
    return _private_checked(addr, policy)


def _private_checked(addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
                     policy: AddressPolicy) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """ADDR, unless it is private and POLICY refuses private addresses (the costly test only then)."""
    if not policy.allow_private and not addr.is_global and not _is_documentation(addr):
        raise InvalidAddress(f"{addr} is a private address")
    return addr


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# The first octets of every IPv4 range parse_address refuses whatever the policy (0/8, 127/8 loopback,
# 169.254/16, 224/4 multicast, 240/4 reserved, the broadcast address): an address outside skips those tests.
_SPECIAL_FIRST_OCTETS = frozenset({0, 127, 169, *range(224, 256)})
_DOCUMENTATION = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]


def _is_documentation(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Documentation ranges (RFC 5737, 3849) are allowed: examples must work."""
    return any(addr.version == net.version and addr in net for net in _DOCUMENTATION)


def record_type(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The DNS record type that holds ADDR."""
    return "A" if addr.version == 4 else "AAAA"
