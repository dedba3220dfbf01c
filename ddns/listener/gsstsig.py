"""GSS-TSIG under its older name ``gss.microsoft.com``, which dnspython does not know. Pure.

Windows (and BIND 9.18's nsupdate as a fallback) negotiate and sign with the
algorithm name ``gss.microsoft.com``; the MAC is the same GSS MIC over the
same RFC 8945 digest as ``gss-tsig``, only the algorithm name in the digest
differs. dnspython's TSIG code maps only ``gss-tsig`` to a GSS context, so
for the other name this module builds the digest itself and hands it to the
context (a test proves it byte-equal to what dnspython feeds a context for
``gss-tsig``). Only single messages are signed (no multi-message TSIG).
"""
from __future__ import annotations

import struct

import dns.name
import dns.rdataclass
import dns.rdtypes.ANY.TSIG
import dns.tsig

MICROSOFT = dns.name.from_text("gss.microsoft.com")


def digest_data(wire: bytes, key: dns.tsig.Key, rdata: dns.rdtypes.ANY.TSIG.TSIG, request_mac: bytes = b"") -> bytes:
    """What the MAC covers (RFC 8945 section 4.3.3): WIRE is the message without its TSIG record."""
    prefix = struct.pack("!H", len(request_mac)) + request_mac if request_mac else b""
    when = rdata.time_signed
    return b"".join((
        prefix,
        struct.pack("!H", rdata.original_id), wire[2:],
        key.name.to_digestable(), struct.pack("!HI", dns.rdataclass.ANY, 0),
        key.algorithm.to_digestable(), struct.pack("!HIH", (when >> 32) & 0xFFFF, when & 0xFFFFFFFF, rdata.fudge),
        struct.pack("!HH", rdata.error, len(rdata.other)), rdata.other,
    ))


def sign(wire: bytes, key: dns.tsig.Key, rdata: dns.rdtypes.ANY.TSIG.TSIG, request_mac: bytes = b""
         ) -> dns.rdtypes.ANY.TSIG.TSIG:
    """RDATA with the MAC of WIRE by KEY, whose secret is the GSS context."""
    return rdata.replace(mac=key.secret.get_signature(digest_data(wire, key, rdata, request_mac)))


def verify(wire: bytes, key: dns.tsig.Key, rdata: dns.rdtypes.ANY.TSIG.TSIG, tsig_start: int,
           request_mac: bytes = b"") -> None:
    """Check the MAC of the signed message WIRE (its TSIG record at TSIG_START); raises dns.tsig.BadSignature."""
    if key.algorithm != rdata.algorithm:
        raise dns.tsig.BadAlgorithm
    arcount = struct.unpack("!H", wire[10:12])[0]
    unsigned = wire[:10] + struct.pack("!H", arcount - 1) + wire[12:tsig_start]
    try:
        key.secret.verify_signature(digest_data(unsigned, key, rdata, request_mac), rdata.mac)
    except Exception as exc:  # whatever the GSS library raises, the MAC is not right
        raise dns.tsig.BadSignature from exc
