"""Unsigned updates from trusted networks: a client may register its own name and address. Pure.

Windows machines outside a domain send an unsigned DNS UPDATE at boot and
whenever their address changes: "no CNAME at NAME; delete NAME's A and AAAA;
add NAME A <my address>" (and a PTR at the reverse name of that address in
the reverse zone). A zone that lists networks in zone.toml's ``[unsigned]
networks`` accepts such updates from those networks, and nothing more:

- the client's source address (an IPv4-mapped IPv6 address counts as the
  IPv4 address; a scope is dropped) must be in one of the networks, else the
  update is treated as any unsigned one (``None``: the listener answers
  REFUSED);
- every operation is on A, AAAA or PTR of one name (deletions of those
  RRsets or of single records of them included, not the deletion of the
  whole name), and every prerequisite is about that name;
- every added A or AAAA is the client's own address, and PTR records live
  only at the client's own reverse name (``ipaddress``'s reverse pointer).

Anything else is ``errors.Refused`` with the reason. What passes becomes an
``Identity`` limited to that name and those types, whose actor is
``client:ADDRESS``, guarded (under the publisher's lock) by "the name is not
held by a registered host": an unsigned client never takes over a name whose
owner has credentials of its own.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Callable, Iterable

from .errors import Refused
from .model import Actor, Grant, Identity, Match, Op, Operation, Prerequisite
from .policy import in_zone
from .records import label_of

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

TYPES = frozenset({"A", "AAAA", "PTR"})


@dataclass(frozen=True)
class Permit:
    """What one unsigned update of a trusted client may change: NAME's records of TYPES."""

    name: str
    types: frozenset[str]
    address: str  # the client's address, canonical ("192.0.2.7")


def client_address(client: str) -> Address | None:
    """CLIENT's source address as compared with networks and records; None when it is no address."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def trusted(networks: Iterable[str], client: str) -> bool:
    """Whether CLIENT is in one of NETWORKS (an address is only ever in networks of its own family)."""
    address = client_address(client)
    return address is not None and any(address in ipaddress.ip_network(n) for n in networks)


def permit(networks: Iterable[str], client: str, operations: Iterable[Operation],
           prerequisites: Iterable[Prerequisite] = ()) -> Permit | None:
    """What the unsigned update of OPERATIONS from CLIENT may change; None: CLIENT is not trusted.

    Refused when the update is more than a client registering itself (see
    the module).
    """
    if not trusted(networks, client):
        return None
    address = client_address(client)
    operations = tuple(operations)
    if not operations:
        raise Refused("an unsigned update must change something")
    names = {_name(o.name) for o in operations}
    if len(names) > 1:
        raise Refused(f"an unsigned update changes one name, not {len(names)}")
    [name] = names
    for operation in operations:
        _check(operation, name, address)
    for prerequisite in prerequisites:
        if _name(prerequisite.name) != name:
            raise Refused(f"an unsigned update's prerequisites are about {name} only")
    return Permit(name, frozenset(o.rtype.upper() for o in operations), str(address))


def _check(operation: Operation, name: str, address: Address) -> None:
    """Refused unless OPERATION is one a client at ADDRESS may make at its NAME."""
    if operation.op is Op.DELETE_NAME:
        raise Refused(f"an unsigned update may delete A, AAAA or PTR records of {name}, not the whole name")
    rtype = operation.rtype.upper()
    if rtype not in TYPES:
        raise Refused(f"an unsigned update may change A, AAAA and PTR records, not {operation.rtype}")
    if rtype == "PTR":
        reverse = address.reverse_pointer
        if name != reverse:
            raise Refused(f"a client at {address} may set the PTR records of {reverse} only, not of {name}")
    elif operation.op is Op.ADD and _address(operation.rdata) != address:
        raise Refused(f"a client at {address} may register its own address only, not {operation.rdata}")


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _name(name: str) -> str:
    return name.lower().rstrip(".")


def unsigned_identity(networks: Iterable[str], zone: str, client: str, operations: Iterable[Operation],
                      prerequisites: Iterable[Prerequisite], actor: Actor, reserved: set[str] | frozenset[str],
                      held: Callable[[str], bool]) -> Identity | None:
    """Who the unsigned update from CLIENT to ZONE is (see the module); None: CLIENT is not trusted.

    Refused beyond ``permit``'s rules too: a name outside ZONE, a RESERVED
    label of it, a name a registered host HELD (asked again under the
    publisher's lock, as the identity's guard).
    """
    found = permit(networks, client, operations, prerequisites)
    if found is None:
        return None
    if not in_zone(found.name, zone):
        raise Refused(f"{found.name} is not in the zone {zone}")
    if label_of(found.name, zone) in reserved:
        raise Refused(f"the name {found.name} is reserved in {zone}")
    if held(found.name):
        raise Refused(f"{found.name} is a registered host: it updates with its own credentials")
    return identity(found, actor, held)


def identity(permit: Permit, actor: Actor, held: Callable[[str], bool]) -> Identity:
    """PERMIT as an identity: its name and types only, acting as ``client:ADDRESS``, guarded by "not HELD"."""
    grants = (Grant(True, Match.NAME, permit.name, permit.types),)
    actor = dataclasses.replace(actor, name=f"client:{permit.address}")
    return Identity(actor, permit.name, grants, guard=lambda: not held(permit.name))
