"""Who may change what: BIND's update-policy semantics over ``model.Grant`` rules. Pure.

Rules are tried in order and the first one whose name and type match an
operation decides (grant or deny); when none matches, the operation is
refused. A rule without a type list covers every type but the ones that
belong to the zone itself (SOA, NS) and DNSSEC's (RRSIG, NSEC, NSEC3), as in
BIND.

``ptr-self`` (a registered host's grant) is ours: in a reverse zone it covers
the PTR records, at any name, whose data is the grant's target -- the host
may point an address at itself and at nothing else. Deleting a whole PTR
RRset (or a name) with it deletes only those records.
"""
from __future__ import annotations

from .errors import Refused
from .model import Grant, Identity, Match, Op, Operation

PROTECTED_TYPES = frozenset({"SOA", "NS", "RRSIG", "NSEC", "NSEC3"})
REVERSE_SUFFIXES = ("in-addr.arpa", "ip6.arpa")


def reverse_zone(zone: str) -> bool:
    """ZONE is below in-addr.arpa or ip6.arpa: it holds PTR records of addresses."""
    return any(zone.endswith("." + suffix) for suffix in REVERSE_SUFFIXES)


def ptr_target(rdata: str) -> str:
    """The name PTR RDATA (canonical, absolute) points at, as the model writes names."""
    return rdata.lower()[:-1] if rdata.endswith(".") else rdata.lower()


def in_zone(name: str, zone: str) -> bool:
    """NAME is ZONE's apex or below it."""
    return name == zone or name.endswith("." + zone)


def _at_or_below(name: str, base: str) -> bool:
    return bool(base) and in_zone(name, base)


def name_matches(grant: Grant, signer: str, zone: str, name: str) -> bool:
    """Whether GRANT's name part covers NAME (for an identity whose ``self`` is SIGNER)."""
    if not in_zone(name, zone):
        return False
    if grant.match is Match.SELF:
        return bool(signer) and name == signer
    if grant.match is Match.SELFSUB:
        return _at_or_below(name, signer)
    if grant.match is Match.NAME:
        return name == grant.target
    if grant.match is Match.SUBDOMAIN:
        return _at_or_below(name, grant.target)
    if grant.match is Match.ZONESUB:  # a target binds the rule to that one zone
        return not grant.target or grant.target == zone
    if grant.match is Match.WILDCARD:
        base = grant.target[2:] if grant.target.startswith("*.") else ""
        return bool(base) and name.endswith("." + base)
    if grant.match is Match.PTR_SELF:  # any name of a reverse zone; the rdata decides (permits)
        return reverse_zone(zone)
    return False


def type_matches(grant: Grant, rtype: str) -> bool:
    return rtype in grant.types if grant.types else rtype not in PROTECTED_TYPES


def permits(identity: Identity, zone: str, name: str, rtype: str, rdata: str | None = None) -> bool:
    """The first of IDENTITY's grants that matches NAME, RTYPE (and RDATA, for ptr-self) allows it.

    RDATA None (a whole RRset) is never covered by a ptr-self grant.
    """
    for grant in identity.grants:
        if grant.match is Match.PTR_SELF and (rdata is None or ptr_target(rdata) != grant.target):
            continue
        if name_matches(grant, identity.signer, zone, name) and type_matches(grant, rtype):
            return grant.allow
    return False


def _delete_rrset(identity: Identity, zone: str, name: str, rtype: str) -> list[Operation]:
    """Deleting NAME's RTYPE RRset as IDENTITY may: all of it, only its own PTR records (ptr-self), or nothing."""
    if permits(identity, zone, name, rtype):
        return [Operation(Op.DELETE_RRSET, name, rtype)]
    if rtype != "PTR":
        return []
    own = sorted({g.target + "." for g in identity.grants if g.match is Match.PTR_SELF and g.allow})
    return [Operation(Op.DELETE_RR, name, rtype, r) for r in own if permits(identity, zone, name, rtype, r)]


def _delete_name(identity: Identity, zone: str, operation: Operation) -> list[Operation]:
    """A DELETE_NAME narrowed to what IDENTITY may delete, or Refused.

    An identity whose matching rules all list types (a host key: A, AAAA, TXT)
    deletes exactly those RRsets of the name; one whose first matching rule
    covers every type keeps the whole-name deletion.
    """
    matching = [g for g in identity.grants if name_matches(g, identity.signer, zone, operation.name)]
    if not matching:
        raise Refused(f"may not change {operation.name}")
    if not matching[0].types and matching[0].allow:
        return [operation]
    if any(not g.types for g in matching):
        raise Refused(f"may not delete every record of {operation.name}")
    listed = sorted({t for g in matching for t in g.types})
    allowed = [op for t in listed for op in _delete_rrset(identity, zone, operation.name, t)]
    if not allowed:
        raise Refused(f"may not change {operation.name}")
    return allowed


def authorize(identity: Identity, zone: str, operations: tuple[Operation, ...] | list[Operation]) -> tuple[Operation, ...]:
    """OPERATIONS if IDENTITY may make every one of them in ZONE, else Refused.

    A DELETE_NAME is narrowed to the RRsets IDENTITY may delete, a DELETE_RRSET
    of PTR by a ptr-self grant to its own records.
    """
    allowed: list[Operation] = []
    for operation in operations:
        if operation.op is Op.DELETE_NAME:
            allowed += _delete_name(identity, zone, operation)
            continue
        if operation.op is Op.DELETE_RRSET:
            narrowed = _delete_rrset(identity, zone, operation.name, operation.rtype)
        else:
            narrowed = [operation] if permits(identity, zone, operation.name, operation.rtype, operation.rdata) else []
        if not narrowed:
            raise Refused(f"may not change {operation.rtype} records of {operation.name}")
        allowed += narrowed
    return tuple(allowed)


def may_see(identity: Identity, zone: str) -> bool:
    """Whether any of IDENTITY's allowing rules reaches into ZONE (checked before prerequisites are)."""
    for grant in identity.grants:
        if not grant.allow:
            continue
        if grant.match is Match.PTR_SELF:
            if reverse_zone(zone):
                return True
            continue
        if grant.match is Match.ZONESUB:
            if not grant.target or grant.target == zone:
                return True
            continue
        base = identity.signer if grant.match in (Match.SELF, Match.SELFSUB) else grant.target
        if grant.match is Match.WILDCARD:
            base = base[2:]
        if base and (in_zone(base, zone) or in_zone(zone, base)):
            return True
    return False
