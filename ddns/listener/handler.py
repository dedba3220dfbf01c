"""One DNS message in, its answer out: ``handle_wire``. No sockets, no threads.

An UPDATE is checked in BIND's order: the zone section (FORMERR, NOTAUTH),
the signature (REFUSED when unsigned, unless the zone trusts the client's
network for registering its own address: ``ddns.trusted``), whether the key
may see the zone at all (NOTAUTH, the same answer as a zone that is not ours, so a key cannot
probe zones it has no rights in), the format of the prerequisite and update
sections (FORMERR, NOTZONE), then the service's ``update``: the key's
permissions for every operation (REFUSED) *before* the publisher evaluates
the prerequisites under its lock and applies the operations, all or nothing.

Queries are answered for what ``nsupdate``, certbot and lego ask before an
update: SOA and NS of names in our zones, authoritative, from the state the
publisher holds (so the serial is the current one). Any other query is
REFUSED, except TKEY, which negotiates and deletes GSS-TSIG contexts
(``tkey``); another opcode NOTIMP, a response or a runt dropped, a message that
does not parse FORMERR; whatever else goes wrong answers SERVFAIL.
"""
from __future__ import annotations

import logging
import secrets
import struct
import time
from typing import Any, Callable, Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .. import errors, policy
from ..model import Actor, Identity, Operation, Outcome, Prerequisite, Result, RRset, TsigKey
from . import tkey, tsig, updates
from .gss import Gss
from .updates import Failure
from .wire import HEADER, Record, name_text, sections

log = logging.getLogger("ddns.rfc2136")

UDP_DEFAULT = 512      # RFC 1035, without EDNS
UDP_MOST = 4096        # the largest answer we send over UDP whatever the client offers
EDNS_PAYLOAD = 1232
QUERY_TYPES = (dns.rdatatype.SOA, dns.rdatatype.NS)


class UpdateService(Protocol):
    """What the listener uses of ``ddns.service.Service``."""

    config: Any

    def find_zone(self, name: str) -> str | None: ...
    def rrsets(self, zone: str, name: str) -> list[RRset]: ...
    def tsig_key(self, name: str) -> TsigKey | None: ...
    def key_identity(self, name: str, actor: Actor) -> Identity | None: ...
    def principal_identity(self, principal: str, zone: str, actor: Actor) -> Identity | None: ...
    def unsigned_identity(self, zone: str, client: str, operations: tuple[Operation, ...], actor: Actor,
                          prerequisites: tuple[Prerequisite, ...] = ()) -> Identity | None: ...
    def update(self, identity: Identity, zone: str, operations: tuple[Operation, ...],
               prerequisites: tuple[Prerequisite, ...] = ()) -> Result: ...


def handle_wire(service: UpdateService, wire: bytes, client: str, transport: str = "udp",
                clock: Callable[[], float] = time.time, gss: Gss | None = None) -> bytes | None:
    """The answer to WIRE from CLIENT over TRANSPORT ("udp" or "tcp"); None: send nothing.

    GSS holds the GSS-TSIG acceptor and contexts across messages (None: GSS-TSIG off).
    """
    try:
        return _handle(service, wire, client, transport, clock, gss)
    except Exception:
        log.exception("internal failure answering a message from %s", client)
        return header_only(wire, dns.rcode.SERVFAIL)


def header_only(wire: bytes, rcode: int) -> bytes | None:
    """An answer of just a header (no sections) to WIRE, for what cannot be parsed further."""
    if len(wire) < HEADER.size:
        return None
    msg_id, flags = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    flags = dns.flags.QR | (flags & (0xF << 11)) | (flags & dns.flags.RD) | (rcode & 0xF)
    return struct.pack("!HHHHHH", msg_id, flags, 0, 0, 0, 0)


def _handle(service: UpdateService, wire: bytes, client: str, transport: str,
            clock: Callable[[], float], gss: Gss | None) -> bytes | None:
    if len(wire) < HEADER.size or struct.unpack("!H", wire[2:4])[0] & dns.flags.QR:
        return None  # a runt or a response: answering could start a loop
    opcode = dns.opcode.from_flags(struct.unpack("!H", wire[2:4])[0])
    if opcode not in (dns.opcode.QUERY, dns.opcode.UPDATE):
        return header_only(wire, dns.rcode.NOTIMP)
    keyring = tsig.Keyring(service.tsig_key, service.config["dnsupdate.allow_weak_tsig"],
                           gss.contexts if gss else None)
    try:
        message, signing = tsig.read(wire, keyring, service.config["dnsupdate.fudge"], clock)
        records = sections(wire)
    except tsig.Rejected as rejected:
        log.warning("%s from %s: NOTAUTH (%s, key %s)", dns.opcode.to_text(opcode), client, rejected,
                    rejected.signing.keyname)
        response = _skeleton(rejected.message, dns.rcode.NOTAUTH)
        return tsig.append(_render(response, rejected.message, transport), rejected.signing, clock)
    except tsig.LookupFailed:
        log.exception("%s from %s: SERVFAIL", dns.opcode.to_text(opcode), client)
        return header_only(wire, dns.rcode.SERVFAIL)
    except Exception:  # whatever dnspython refuses to read is not DNS to us
        return header_only(wire, dns.rcode.FORMERR)
    try:
        if message.edns > 0:
            response = _skeleton(message, dns.rcode.BADVERS)
        elif opcode == dns.opcode.QUERY and tkey.is_tkey(message):
            response, signing = _answer_tkey(service, gss, message, signing, client, transport)
        elif opcode == dns.opcode.QUERY:
            response = _answer_query(service, message)
        else:
            response = _skeleton(message, _update(service, records, signing, client))
    except Exception:  # our failure: a SERVFAIL the client can verify
        log.exception("internal failure answering a message from %s", client)
        response = _skeleton(message, dns.rcode.SERVFAIL)
    wire_out = _render(response, message, transport)
    return tsig.append(wire_out, signing, clock) if signing else wire_out


def _skeleton(message: dns.message.Message, rcode: int) -> dns.message.Message:
    """The answer to MESSAGE: its id, opcode, question (zone) section and EDNS, with RCODE."""
    response = dns.message.Message(id=message.id)
    response.flags = dns.flags.QR | (message.flags & dns.flags.RD)
    response.set_opcode(message.opcode())
    response.question = list(message.question)
    if message.edns >= 0:
        response.use_edns(0, 0, EDNS_PAYLOAD)
    response.set_rcode(rcode)
    return response


def _render(response: dns.message.Message, request: dns.message.Message, transport: str) -> bytes:
    """RESPONSE as wire, within what the client can take over UDP (TC when it does not fit)."""
    limit = 65535
    if transport == "udp":
        limit = min(UDP_MOST, max(UDP_DEFAULT, request.payload if request.edns >= 0 else UDP_DEFAULT))
    return response.to_wire(max_size=limit - tsig.RESERVE if request.had_tsig else limit,
                            prefer_truncation=True)


def _answer_query(service: UpdateService, message: dns.message.Message) -> dns.message.Message:
    """SOA and NS of a name in our zones (NODATA with the zone's SOA when there are none); else REFUSED."""
    if len(message.question) != 1:
        return _skeleton(message, dns.rcode.FORMERR)
    question = message.question[0]
    name = name_text(question.name)
    zone = service.find_zone(name) if question.rdclass == dns.rdataclass.IN else None
    if zone is None or question.rdtype not in QUERY_TYPES:
        return _skeleton(message, dns.rcode.REFUSED)
    response = _skeleton(message, dns.rcode.NOERROR)
    response.flags |= dns.flags.AA
    rtype = dns.rdatatype.to_text(question.rdtype)
    found = [r for r in service.rrsets(zone, name) if r.rtype == rtype]
    if found:
        response.answer = [_rrset(question.name, found[0])]
    else:
        response.authority = [_rrset(dns.name.from_text(zone), r) for r in service.rrsets(zone, zone)
                              if r.rtype == "SOA"]
    return response


def _answer_tkey(service: UpdateService, gss: Gss | None, message: dns.message.Message,
                 signing: tsig.Signing | None, client: str, transport: str
                 ) -> tuple[dns.message.Message, tsig.Signing | None]:
    """The answer to a TKEY query and how it is signed (a new context signs its own negotiation)."""
    reply = tkey.answer(gss, message, signing, transport, service.tsig_key)
    response = _skeleton(message, reply.rcode)
    response.answer = reply.answer
    log.info("TKEY from %s key %s: %s (%s)", client, message.question[0].name, dns.rcode.to_text(reply.rcode),
             reply.reason)
    return response, reply.signing


def _rrset(owner: dns.name.Name, rrset: RRset) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(owner, rrset.ttl, dns.rdataclass.IN, rrset.rtype, list(rrset.rdatas))


def _update(service: UpdateService, records: tuple[list[Record], ...], signing: tsig.Signing | None,
            client: str) -> int:
    """The rcode of the UPDATE whose RECORDS (as on the wire) are given, after running it if it is acceptable."""
    request = secrets.token_hex(6)
    keyname = name_text(signing.keyname) if signing else ""
    who = f"principal {signing.principal}" if signing and signing.principal else f"key {keyname or '-'}"
    zone = ""
    try:
        zone_name = updates.zone_name(records[0])
        zone = name_text(zone_name)
        if service.find_zone(zone) != zone:
            raise updates.NotAuth("not a zone of ours")
        if signing is None:
            identity = _unsigned(service, records, zone_name, client, request)
        elif signing.principal:
            identity = _principal(service, signing.principal, zone, client, request)
        else:
            identity = service.key_identity(keyname, Actor(f"key:{keyname}", client, "rfc2136", request=request))
        if identity is None:
            raise updates.Refused("the key has no rights")
        if not policy.may_see(identity, zone):
            raise updates.NotAuth("the key has no rights in this zone")
        prerequisites = updates.prerequisites(records[1], zone_name)
        operations = updates.operations(records[2], zone_name)
        result = service.update(identity, zone, operations, prerequisites)
        rcode, reason = updates.rcode_of(result), f"{result.outcome.value} {result.reason}".strip()
        # committed but not served (answered NOERROR) and failures are for the operator to see
        level = logging.WARNING if result.outcome in (Outcome.UNSERVED, Outcome.FAILED) else logging.INFO
    except Failure as failure:
        rcode, reason, level = failure.rcode, str(failure), logging.INFO
    except errors.DdnsError as error:
        rcode, reason, level = updates.rcode_of_error(error), str(error), logging.INFO
    log.log(level, "update %s from %s %s zone %s: %s (%s)", request, client, who, zone or "-",
            dns.rcode.to_text(rcode), reason)
    return rcode


def _unsigned(service: UpdateService, records: tuple[list[Record], ...], zone_name: dns.name.Name, client: str,
              request: str) -> Identity:
    """The identity of an unsigned update: a client of a trusted network registering itself; else REFUSED.

    Unsigned, any failure is REFUSED, a malformed section too: a client
    outside the trusted networks learns nothing but that.
    """
    try:
        operations = updates.operations(records[2], zone_name)
        prerequisites = updates.prerequisites(records[1], zone_name)
    except Failure as failure:
        raise updates.Refused(f"unsigned update ({failure})") from failure
    identity = service.unsigned_identity(name_text(zone_name), client, operations,
                                         Actor(f"client:{client}", client, "rfc2136", request=request), prerequisites)
    if identity is None:
        raise updates.Refused("unsigned update")
    return identity


def _principal(service: UpdateService, principal: str, zone: str, client: str, request: str) -> Identity | None:
    """The identity of an update signed with a GSS-TSIG context: its Kerberos principal's rights in ZONE."""
    return service.principal_identity(principal, zone, Actor(f"krb5:{principal}", client, "rfc2136", request=request))
