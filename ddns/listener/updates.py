"""An RFC 2136 UPDATE in the neutral words of ``ddns.model``, and the one table back to rcodes. Pure.

The zone section names the zone (section 3.1), the prerequisite section
becomes ``Prerequisite``s (3.2, format only: the publisher evaluates them
under its lock against the state it is about to change), and the update
section passes the prescan of 3.4.1 and becomes ``Operation``s. Each failure
is a ``Failure`` carrying the rcode the client gets.
"""
from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from .. import errors
from ..model import Need, Op, Operation, Outcome, Prerequisite, Result
from .wire import Record, name_text

ANY, NONE, IN = dns.rdataclass.ANY, dns.rdataclass.NONE, dns.rdataclass.IN


class Failure(Exception):
    """A request refused with RCODE; the message is for the log, never for the wire."""

    rcode: int = dns.rcode.SERVFAIL


class FormErr(Failure):
    rcode = dns.rcode.FORMERR


class NotAuth(Failure):
    rcode = dns.rcode.NOTAUTH


class NotZone(Failure):
    rcode = dns.rcode.NOTZONE


class Refused(Failure):
    rcode = dns.rcode.REFUSED


class NotImp(Failure):
    rcode = dns.rcode.NOTIMP


def rcode_of_error(error: errors.DdnsError) -> int:
    """The rcode of a refusal of the service, from the one code table."""
    return dns.rcode.from_text(errors.codes(error).rcode)


# The one table: what became of an update, in rcodes. UNSERVED is committed
# (the retry loop makes BIND serve it), so it is not an error to the client.
OUTCOME_RCODES: dict[Outcome, int] = {
    Outcome.PUBLISHED: dns.rcode.NOERROR,
    Outcome.UNCHANGED: dns.rcode.NOERROR,
    Outcome.UNSERVED: dns.rcode.NOERROR,
    Outcome.REFUSED: dns.rcode.REFUSED,
    Outcome.FAILED: dns.rcode.SERVFAIL,
}
UNMET_RCODES: dict[Need, int] = {
    Need.NAME_IN_USE: dns.rcode.NXDOMAIN,
    Need.NAME_NOT_IN_USE: dns.rcode.YXDOMAIN,
    Need.RRSET_EXISTS: dns.rcode.NXRRSET,
    Need.RRSET_EQUALS: dns.rcode.NXRRSET,
    Need.RRSET_NOT_EXISTS: dns.rcode.YXRRSET,
}


def rcode_of(result: Result) -> int:
    """The rcode that answers RESULT."""
    if result.outcome is Outcome.UNMET:
        return UNMET_RCODES[result.unmet.need] if result.unmet else dns.rcode.SERVFAIL
    return OUTCOME_RCODES[result.outcome]


def zone_name(zone_section: list[Record]) -> dns.name.Name:
    """The zone an UPDATE names: exactly one SOA record (FORMERR), of class IN (NOTAUTH: we have no other)."""
    if len(zone_section) != 1 or zone_section[0].rdtype != dns.rdatatype.SOA:
        raise FormErr("the zone section must hold exactly one SOA record")
    if zone_section[0].rdclass != IN:
        raise NotAuth(f"no zones of class {dns.rdataclass.to_text(zone_section[0].rdclass)}")
    return zone_section[0].name


def _in_zone(record: Record, zone: dns.name.Name) -> str:
    if not record.name.is_subdomain(zone):
        raise NotZone(f"{record.name} is outside the zone {zone}")
    return name_text(record.name)


def _type_text(rdtype: int) -> str:
    return dns.rdatatype.to_text(rdtype)


def prerequisites(section: list[Record], zone: dns.name.Name) -> tuple[Prerequisite, ...]:
    """The prerequisites of RFC 2136 section 3.2 (records of one name and type in class IN form one RRSET_EQUALS)."""
    needs: list[Prerequisite] = []
    sets: dict[tuple[str, str], set[str]] = {}
    for record in section:
        if record.ttl != 0:
            raise FormErr("a prerequisite's TTL must be 0")
        name = _in_zone(record, zone)
        meta = dns.rdatatype.is_metatype(record.rdtype)
        if record.rdclass in (ANY, NONE):
            if record.rdata is not None or (meta and record.rdtype != dns.rdatatype.ANY):
                raise FormErr("a prerequisite of class ANY or NONE has no rdata and a real type or ANY")
            if record.rdtype == dns.rdatatype.ANY:
                need = Need.NAME_IN_USE if record.rdclass == ANY else Need.NAME_NOT_IN_USE
                needs.append(Prerequisite(need, name))
            else:
                need = Need.RRSET_EXISTS if record.rdclass == ANY else Need.RRSET_NOT_EXISTS
                needs.append(Prerequisite(need, name, _type_text(record.rdtype)))
        elif record.rdclass == IN and not meta and record.rdata is not None:
            sets.setdefault((name, _type_text(record.rdtype)), set()).add(record.rdata.to_text())
        else:
            raise FormErr("a prerequisite of class IN needs a real type and rdata")
    needs += [Prerequisite(Need.RRSET_EQUALS, name, rtype, frozenset(rdatas)) for (name, rtype), rdatas in sets.items()]
    return tuple(needs)


def operations(section: list[Record], zone: dns.name.Name) -> tuple[Operation, ...]:
    """The update section after the prescan of RFC 2136 section 3.4.1, as operations in their order."""
    ops: list[Operation] = []
    for record in section:
        name = _in_zone(record, zone)
        meta = dns.rdatatype.is_metatype(record.rdtype)
        rtype = _type_text(record.rdtype)
        if record.rdclass == IN:
            if meta or record.rdata is None:
                raise FormErr(f"cannot add a record of type {rtype} without rdata")
            ops.append(Operation(Op.ADD, name, rtype, record.rdata.to_text(), record.ttl))
        elif record.rdclass == ANY:
            if record.ttl != 0 or record.rdata is not None or (meta and record.rdtype != dns.rdatatype.ANY):
                raise FormErr("a deletion of class ANY has TTL 0, no rdata and a real type or ANY")
            if record.rdtype == dns.rdatatype.ANY:
                ops.append(Operation(Op.DELETE_NAME, name))
            else:
                ops.append(Operation(Op.DELETE_RRSET, name, rtype))
        elif record.rdclass == NONE:
            if record.ttl != 0 or meta or record.rdata is None:
                raise FormErr("a deletion of class NONE has TTL 0, a real type and rdata")
            ops.append(Operation(Op.DELETE_RR, name, rtype, record.rdata.to_text()))
        else:
            raise FormErr(f"no records of class {dns.rdataclass.to_text(record.rdclass)} in this zone")
    return tuple(ops)
