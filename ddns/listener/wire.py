"""The records of a DNS message exactly as they are on the wire. Pure.

dnspython's message object merges records into RRsets (one TTL for all of
them) and drops the TTL of records without rdata, but RFC 2136 judges each
record by its own class, TTL and rdata length. This walk reads a message that
dnspython has already accepted and returns every record of every section.
"""
from __future__ import annotations

import inspect
import struct
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.wire

HEADER = struct.Struct("!HHHHHH")
NOT_PARSED = (dns.rdatatype.OPT, dns.rdatatype.TSIG)
# dnspython 2.7+ decompresses names only when asked; older versions always do.
_DECOMPRESS = {"decompress": True} if "decompress" in inspect.signature(dns.wire.Parser.get_name).parameters else {}


@dataclass(frozen=True)
class Record:
    """One record of a section (a question has ttl 0 and no rdata)."""

    name: dns.name.Name
    rdtype: int
    rdclass: int
    ttl: int = 0
    rdata: dns.rdata.Rdata | None = None  # None: rdata of length 0
    start: int = 0                         # offset of the record in the message


def name_text(name: dns.name.Name) -> str:
    """A name in the model's words: absolute, lower-case, no trailing dot."""
    return name.to_text(omit_final_dot=True).lower()


def sections(wire: bytes) -> tuple[list[Record], list[Record], list[Record], list[Record]]:
    """The four sections of WIRE (question/zone, answer/prerequisite, authority/update, additional).

    Rdata of class ANY or NONE is read as class IN (RFC 2136 deletions and
    prerequisites); OPT and TSIG rdata is skipped. Raises dns.exception.FormError.
    """
    parser = dns.wire.Parser(wire)
    counts = HEADER.unpack(parser.get_bytes(HEADER.size))[2:]
    question = []
    for _ in range(counts[0]):
        start = parser.current
        name = parser.get_name(**_DECOMPRESS)
        rdtype, rdclass = parser.get_struct("!HH")
        question.append(Record(name, rdtype, rdclass, start=start))
    out: list[list[Record]] = [question]
    for count in counts[1:]:
        records = []
        for _ in range(count):
            start = parser.current
            name = parser.get_name(**_DECOMPRESS)
            rdtype, rdclass, ttl, rdlen = parser.get_struct("!HHIH")
            rdata = None
            with parser.restrict_to(rdlen):
                if rdlen and rdtype not in NOT_PARSED:
                    read_class = dns.rdataclass.IN if rdclass in (dns.rdataclass.ANY, dns.rdataclass.NONE) else rdclass
                    rdata = dns.rdata.from_wire_parser(read_class, rdtype, parser)
                else:
                    parser.get_bytes(rdlen)
            records.append(Record(name, rdtype, rdclass, ttl, rdata, start))
        out.append(records)
    if parser.remaining():
        raise dns.exception.FormError("trailing data")
    return out[0], out[1], out[2], out[3]
