"""Hostile and malformed DNS messages for the RFC 2136 listener, and what each must get.

Each ``Case`` builds its bytes from a ``Context`` (the zone, a host and that
host's TSIG key) and names the answer RFC 1035 / 2136 / 6891 / 8945 require:
an rcode (a set where the RFCs allow a choice, said why beside it), ``DROP``
for messages without a usable header or that are responses themselves (never
answered: answering a response invites loops), or ``ANY_ERROR`` for byte
streams whose framing is a lie (whatever the server makes of the rest, no
answer may be NOERROR). The table is shared by the socket tests against a
real ``ddns serve`` and the unit test of the listener's bytes-in/bytes-out
entry point. ``mutations`` makes the seeded random variants of the fuzz run.

Names in the builders are wire-format by hand on purpose: dnspython refuses
to render most of these messages.
"""
from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass
from typing import Callable

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

DROP = "DROP"
ANY_ERROR = "ANY_ERROR"
ID = 0xBEEF

OP_QUERY, OP_IQUERY, OP_STATUS, OP_NOTIFY, OP_UPDATE, OP_DSO = 0, 1, 2, 4, 5, 6
IN, CH, HS, NONE, ANY = 1, 3, 4, 254, 255
T_A, T_NS, T_SOA, T_TXT, T_OPT, T_TSIG = 1, 2, 6, 16, 41, 250
T_IXFR, T_AXFR, T_MAILB, T_MAILA, T_ANY = 251, 252, 253, 254, 255


@dataclass(frozen=True)
class Context:
    """What the builders need: our zone, a registered host, its key, another host's name."""

    zone: str       # "dyn.example.test"
    host: str       # "myvm.dyn.example.test", the key's own name
    other: str      # a name in the zone the key may not touch
    key: dns.tsig.Key

    @property
    def algorithm(self) -> dns.name.Name:
        return self.key.algorithm


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Context], bytes]
    expect: str | frozenset[str]   # DROP, ANY_ERROR, or the rcodes allowed ("NOTAUTH/BADSIG": rcode/TSIG error)
    transports: tuple[str, ...] = ("udp", "tcp")
    framed: bool = True            # TCP: prefix the bytes with their true length (False: build() is the raw stream)
    sockets_only: bool = False     # the expectation is the socket layer's (a size limit), not handle_wire's
    why: str = ""


# ---- wire pieces -------------------------------------------------------------------------
def header(opcode: int = OP_UPDATE, counts: tuple[int, int, int, int] = (1, 0, 0, 0), qr: int = 0,
           ident: int = ID, flags: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, (qr << 15) | (opcode << 11) | flags, *counts)


def wname(name: str) -> bytes:
    """NAME uncompressed; labels are not checked (the hostile cases need bad ones)."""
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def rr(name: bytes | str, rtype: int, rclass: int = IN, ttl: int = 0, rdata: bytes = b"") -> bytes:
    owner = wname(name) if isinstance(name, str) else name
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def zone_rr(ctx: Context, rtype: int = T_SOA, rclass: int = IN, name: str | None = None) -> bytes:
    """A zone-section entry (a question: name, type, class; no TTL, no rdata)."""
    return wname(name or ctx.zone) + struct.pack("!HH", rtype, rclass)


def a(address: str = "192.0.2.99") -> bytes:
    return bytes(int(x) for x in address.split("."))


def message(ctx: Context, prereqs: list[bytes] = (), updates: list[bytes] = (), extra: list[bytes] = (),
            opcode: int = OP_UPDATE, zone: list[bytes] | None = None, qr: int = 0) -> bytes:
    zone = [zone_rr(ctx)] if zone is None else zone
    return (header(opcode, (len(zone), len(prereqs), len(updates), len(extra)), qr=qr)
            + b"".join(zone) + b"".join(prereqs) + b"".join(updates) + b"".join(extra))


def sign(wire: bytes, key: dns.tsig.Key, when: int | None = None, keyname: str | None = None) -> bytes:
    """WIRE with a TSIG RR appended, signed with KEY (RFC 8945 section 4.3), ARCOUNT raised by one."""
    when = int(time.time()) if when is None else when
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, 300, b"",
                                      struct.unpack("!H", wire[:2])[0], 0, b"")
    rdata, _ = dns.tsig.sign(wire, key, rdata, when)
    return add_tsig(wire, rdata, keyname or key.name.to_text())


def add_tsig(wire: bytes, rdata: dns.rdtypes.ANY.TSIG.TSIG, keyname: str) -> bytes:
    arcount = struct.unpack("!H", wire[10:12])[0]
    return wire[:10] + struct.pack("!H", arcount + 1) + wire[12:] + rr(keyname, T_TSIG, ANY, 0, rdata.to_wire())


def tsig_rdata(ctx: Context, mac: bytes, algorithm: str | None = None, when: int | None = None,
               error: int = 0) -> dns.rdtypes.ANY.TSIG.TSIG:
    return dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG,
                                     dns.name.from_text(algorithm) if algorithm else ctx.algorithm,
                                     int(time.time()) if when is None else when, 300, mac, ID, error, b"")


def own_update(ctx: Context) -> bytes:
    """The signed update the key may make: its host's A record replaced (unchanged if already so)."""
    return message(ctx, updates=[rr(ctx.host, T_A, ANY), rr(ctx.host, T_A, IN, 60, a())])


def signed(build: Callable[[Context], bytes]) -> Callable[[Context], bytes]:
    return lambda ctx: sign(build(ctx), ctx.key)


def opt(ttl: int = 0, rdata: bytes = b"", owner: bytes = b"\x00") -> bytes:
    """An OPT RR (class = UDP size 1232; TTL = extended rcode, version, flags)."""
    return owner + struct.pack("!HHIH", T_OPT, 1232, ttl, len(rdata)) + rdata


def soa_query(ctx: Context, ident: int = ID, extra: bytes = b"", counts: tuple[int, int, int, int] = (1, 0, 0, 0),
              opcode: int = OP_QUERY, qclass: int = IN, qtype: int = T_SOA, name: str | None = None) -> bytes:
    return header(opcode, counts, ident=ident) + zone_rr(ctx, qtype, qclass, name) + extra


def random_tail(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def padded(ctx: Context, size: int) -> bytes:
    """An UPDATE header and zone section, then junk up to SIZE bytes (more bytes than the counts say)."""
    head = message(ctx)
    return head + random_tail(size, size - len(head))


# ---- the table -----------------------------------------------------------------------------
_PERMISSION_FIRST = ("RFC 2136 checks permission (3.3) before the prescan (3.4.1): a server may refuse "
                     "the key before it looks at the record's form")

CASES: list[Case] = [
    # -- no usable header, or not a request: never answered
    Case("empty", lambda c: b"", DROP, why="no header"),
    Case("one-byte", lambda c: b"\x00", DROP, why="no header"),
    Case("header-11-bytes", lambda c: header()[:11], DROP, why="no header"),
    Case("qr-set-update", lambda c: sign(message(c, qr=1), c.key), DROP, why="a response; answering it invites loops"),
    Case("qr-set-query-response", lambda c: header(OP_QUERY, qr=1) + zone_rr(c), DROP, why="a response"),
    Case("all-ones-header", lambda c: b"\xff" * 12, DROP, why="QR set"),
    Case("random-with-qr", lambda c: b"\xbe\xef\x80" + random_tail(3, 200), DROP, why="QR set"),
    # -- the header is fine, the message is not
    Case("update-header-only", lambda c: header(counts=(0, 0, 0, 0)), frozenset({"FORMERR"}), why="ZOCOUNT 0 (2136 3.1.1)"),
    Case("zone-count-2", lambda c: message(c, zone=[zone_rr(c), zone_rr(c)]), frozenset({"FORMERR"}), why="ZOCOUNT 2"),
    Case("zone-name-truncated", lambda c: header() + wname(c.zone)[:5], frozenset({"FORMERR"})),
    Case("zone-type-class-missing", lambda c: header() + wname(c.zone), frozenset({"FORMERR"})),
    Case("zone-type-A", lambda c: signed(lambda c: message(c, zone=[zone_rr(c, T_A)]))(c), frozenset({"FORMERR"}),
         why="ZTYPE must be SOA (2136 3.1.1)"),
    Case("zone-class-CH", lambda c: sign(message(c, zone=[zone_rr(c, rclass=CH)]), c.key),
         frozenset({"NOTAUTH", "REFUSED"}), why="no zone of ours in class CH"),
    Case("zone-class-HS", lambda c: sign(message(c, zone=[zone_rr(c, rclass=HS)]), c.key),
         frozenset({"NOTAUTH", "REFUSED"}), why="no zone of ours in class HS"),
    Case("zone-class-NONE", lambda c: sign(message(c, zone=[zone_rr(c, rclass=NONE)]), c.key),
         frozenset({"FORMERR", "NOTAUTH", "REFUSED"}), why="a meta class names no zone"),
    Case("zone-class-ANY", lambda c: sign(message(c, zone=[zone_rr(c, rclass=ANY)]), c.key),
         frozenset({"FORMERR", "NOTAUTH", "REFUSED"}), why="a meta class names no zone"),
    Case("zone-not-ours", lambda c: sign(message(c, zone=[zone_rr(c, name="example.org")]), c.key),
         frozenset({"NOTAUTH"}), why="2136 3.1.2"),
    Case("zone-below-our-apex", lambda c: sign(message(c, zone=[zone_rr(c, name=c.host)]), c.key),
         frozenset({"NOTAUTH"}), why="a name in the zone is not a zone"),
    Case("prereq-ttl-nonzero", signed(lambda c: message(c, prereqs=[rr(c.host, T_A, ANY, ttl=5)])),
         frozenset({"FORMERR"}), why="2136 3.2.1: prerequisite TTL must be 0"),
    Case("prereq-any-with-rdata", signed(lambda c: message(c, prereqs=[rr(c.host, T_A, ANY, rdata=a())])),
         frozenset({"FORMERR"}), why="2136 3.2.1: class ANY has no rdata"),
    Case("prereq-class-CH", signed(lambda c: message(c, prereqs=[rr(c.host, T_TXT, CH, rdata=b"\x02hi")])),
         frozenset({"FORMERR"}), why="2136 3.2.4: class must be the zone's, ANY or NONE"),
    Case("prereq-outside-zone", signed(lambda c: message(c, prereqs=[rr("www.example.org", T_A, ANY)])),
         frozenset({"NOTZONE", "REFUSED"}), why="2136 3.2.1 NOTZONE; " + _PERMISSION_FIRST),
    Case("update-outside-zone", signed(lambda c: message(c, updates=[rr("www.example.org", T_A, IN, 60, a())])),
         frozenset({"NOTZONE", "REFUSED"}), why="2136 3.4.1.1 NOTZONE; " + _PERMISSION_FIRST),
    Case("update-type-ANY", signed(lambda c: message(c, updates=[rr(c.host, T_ANY, IN, 60, a())])),
         frozenset({"FORMERR", "REFUSED"}), why="meta type (2136 3.4.1.2); " + _PERMISSION_FIRST),
    Case("update-type-AXFR", signed(lambda c: message(c, updates=[rr(c.host, T_AXFR, IN, 60, a())])),
         frozenset({"FORMERR", "REFUSED"}), why="meta type; " + _PERMISSION_FIRST),
    Case("update-type-IXFR", signed(lambda c: message(c, updates=[rr(c.host, T_IXFR, IN, 60, a())])),
         frozenset({"FORMERR", "REFUSED"}), why="meta type; " + _PERMISSION_FIRST),
    Case("update-type-MAILA", signed(lambda c: message(c, updates=[rr(c.host, T_MAILA, IN, 60, a())])),
         frozenset({"FORMERR", "REFUSED"}), why="meta type; " + _PERMISSION_FIRST),
    Case("update-type-MAILB", signed(lambda c: message(c, updates=[rr(c.host, T_MAILB, IN, 60, a())])),
         frozenset({"FORMERR", "REFUSED"}), why="meta type; " + _PERMISSION_FIRST),
    Case("update-type-OPT", signed(lambda c: message(c, updates=[rr(c.host, T_OPT, IN, 60, b"")])),
         frozenset({"FORMERR"}), why="OPT only in the additional section (6891 6.1.1)"),
    Case("update-delete-rrset-ttl-nonzero", signed(lambda c: message(c, updates=[rr(c.host, T_A, ANY, ttl=5)])),
         frozenset({"FORMERR"}), why="2136 3.4.1.2: class ANY needs TTL 0"),
    Case("update-delete-rrset-with-rdata", signed(lambda c: message(c, updates=[rr(c.host, T_A, ANY, rdata=a())])),
         frozenset({"FORMERR"}), why="2136 3.4.1.2: class ANY has no rdata"),
    Case("update-delete-rr-ttl-nonzero", signed(lambda c: message(c, updates=[rr(c.host, T_A, NONE, 5, a())])),
         frozenset({"FORMERR"}), why="2136 3.4.1.2: class NONE needs TTL 0"),
    Case("update-class-CH", signed(lambda c: message(c, updates=[rr(c.host, T_TXT, CH, 60, b"\x02hi")])),
         frozenset({"FORMERR"}), why="2136 3.4.1.2: class must be the zone's, ANY or NONE"),
    Case("update-A-rdata-3-bytes", signed(lambda c: message(c, updates=[rr(c.host, T_A, IN, 60, b"\x01\x02\x03")])),
         frozenset({"FORMERR"}), why="an A record is 4 octets"),
    Case("update-unsigned", lambda c: own_update(c), frozenset({"REFUSED"}), why="unsigned updates are refused"),
    Case("update-other-host", signed(lambda c: message(c, updates=[rr(c.other, T_A, IN, 60, a())])),
         frozenset({"REFUSED"}), why="a host key changes its own name only"),
    # -- TSIG (RFC 8945)
    Case("tsig-not-last", lambda c: (lambda w: w[:10] + struct.pack("!H", 2) + w[12:] + rr(c.host, T_A, IN, 60, a()))(
        sign(own_update(c), c.key)), frozenset({"FORMERR"}), why="8945 5.1: TSIG must be the last record"),
    Case("tsig-twice", lambda c: (lambda w: add_tsig(w, tsig_rdata(c, b"\x00" * 32), c.host))(sign(own_update(c), c.key)),
         frozenset({"FORMERR"}), why="8945 5.1: one TSIG, last"),
    Case("tsig-in-update-section", lambda c: message(c, updates=[rr(c.host, T_TSIG, ANY, 0, tsig_rdata(c, b"\x00" * 32).to_wire())]),
         frozenset({"FORMERR"}), why="TSIG only in the additional section"),
    Case("tsig-garbage-mac", lambda c: add_tsig(own_update(c), tsig_rdata(c, random_tail(7, 32)), c.host),
         frozenset({"NOTAUTH/BADSIG"}), why="8945 5.2.3"),
    Case("tsig-unknown-key", lambda c: sign(own_update(c), dns.tsig.Key("nokey." + c.zone, b"\x01" * 32, c.algorithm)),
         frozenset({"NOTAUTH/BADKEY"}), why="8945 5.2.1"),
    Case("tsig-unknown-algorithm", lambda c: add_tsig(own_update(c), tsig_rdata(c, b"\x00" * 32, "hmac-whirlpool."), c.host),
         frozenset({"NOTAUTH/BADKEY"}), why="8945 5.2.1: an algorithm we do not know is a key we do not know"),
    Case("tsig-stale-time", lambda c: sign(own_update(c), c.key, when=int(time.time()) - 3600),
         frozenset({"NOTAUTH/BADTIME"}), why="8945 5.2.3: outside the fudge; the answer is signed"),
    Case("tsig-future-time", lambda c: sign(own_update(c), c.key, when=int(time.time()) + 3600),
         frozenset({"NOTAUTH/BADTIME"}), why="8945 5.2.3"),
    Case("tsig-rdata-truncated", lambda c: (lambda w: w[:-12])(sign(own_update(c), c.key)),
         frozenset({"FORMERR"}), why="the TSIG's rdata is shorter than its fields"),
    Case("tsig-mac-one-octet", lambda c: add_tsig(own_update(c), tsig_rdata(c, b"\x00"), c.host),
         frozenset({"FORMERR", "NOTAUTH/BADSIG", "NOTAUTH/BADTRUNC"}),
         why="8945 5.2.2.1: a MAC under 10 octets is FORMERR; some servers report it as a bad signature"),
    # -- EDNS (RFC 6891)
    Case("edns-two-opt", lambda c: sign(message(c, extra=[opt(), opt()]), c.key), frozenset({"FORMERR"}),
         why="6891 6.1.1: at most one OPT"),
    Case("edns-opt-not-root", lambda c: sign(message(c, extra=[opt(owner=wname(c.zone))]), c.key), frozenset({"FORMERR"}),
         why="6891 6.1.2: OPT's owner is the root"),
    Case("edns-option-overruns", lambda c: sign(message(c, extra=[opt(rdata=struct.pack("!HH", 10, 40) + b"\x00" * 4)]), c.key),
         frozenset({"FORMERR"}), why="an option longer than the OPT rdata"),
    Case("edns-version-1", lambda c: sign(message(c, extra=[opt(ttl=1 << 16)]), c.key), frozenset({"BADVERS"}),
         why="6891 6.1.3: an unsupported version gets BADVERS"),
    # -- names and compression (RFC 1035 3.1, 4.1.4)
    Case("name-over-255", signed(lambda c: message(c, updates=[rr(".".join(["a" * 60] * 5) + "." + c.host, T_A, IN, 60, a())])),
         frozenset({"FORMERR"}), why="a name is at most 255 octets"),
    Case("label-64", signed(lambda c: message(c, updates=[rr("b" * 64 + "." + c.zone, T_A, IN, 60, a())])),
         frozenset({"FORMERR"}), why="a label is at most 63 octets (64 is an unknown label type)"),
    Case("compression-loop", lambda c: message(c, zone=[b"\xc0\x0c" + struct.pack("!HH", T_SOA, IN)]),
         frozenset({"FORMERR"}), why="a pointer to itself"),
    Case("compression-forward-pointer", lambda c: message(c, zone=[b"\xc0\x12" + struct.pack("!HH", T_SOA, IN)]) + wname(c.zone),
         frozenset({"FORMERR"}), why="pointers point backwards only"),
    Case("compression-pointer-out-of-range", lambda c: message(c, zone=[b"\xff\xff" + struct.pack("!HH", T_SOA, IN)]),
         frozenset({"FORMERR"}), why="a pointer past the end"),
    Case("compression-two-hop-loop", lambda c: header() + b"\x01x\xc0\x11" + b"\x01y\xc0\x0c" + struct.pack("!HH", T_SOA, IN),
         frozenset({"FORMERR"}), why="x -> y -> x"),
    # -- counts
    Case("counts-too-high", lambda c: header(counts=(1, 0, 50, 0)) + zone_rr(c) + rr(c.host, T_A, IN, 60, a()),
         frozenset({"FORMERR"}), why="50 updates announced, one sent"),
    Case("counts-too-low", lambda c: header(counts=(1, 0, 0, 0)) + zone_rr(c) + rr(c.host, T_A, IN, 60, a()),
         frozenset({"FORMERR"}), why="a record beyond the counts is trailing junk"),
    Case("rr-truncated", lambda c: (header(counts=(1, 0, 1, 0)) + zone_rr(c) + rr(c.host, T_A, IN, 60, a()))[:-3],
         frozenset({"FORMERR"}), why="the record stops inside its rdata"),
    Case("rdlength-lies", lambda c: header(counts=(1, 0, 1, 0)) + zone_rr(c) + wname(c.host)
         + struct.pack("!HHIH", T_A, IN, 60, 400) + a(), frozenset({"FORMERR"}), why="RDLENGTH past the end"),
    Case("random-update", lambda c: header(counts=(1, 2, 3, 1)) + random_tail(11, 300), frozenset({"FORMERR"}),
         why="random sections"),
    Case("random-update-2", lambda c: header(counts=(1, 0, 1, 0)) + wname(c.zone) + random_tail(12, 40),
         frozenset({"FORMERR"}), why="random after the zone name"),
    # -- opcodes and queries
    Case("opcode-IQUERY", lambda c: soa_query(c, opcode=OP_IQUERY), frozenset({"NOTIMP"}), why="IQUERY is obsolete (3425)"),
    Case("opcode-STATUS", lambda c: soa_query(c, opcode=OP_STATUS), frozenset({"NOTIMP"})),
    Case("opcode-NOTIFY", lambda c: soa_query(c, opcode=OP_NOTIFY), frozenset({"NOTIMP", "REFUSED", "NOTAUTH"}),
         why="we are no secondary: BIND answers NOTAUTH or REFUSED, a server without NOTIFY NOTIMP"),
    Case("opcode-3", lambda c: soa_query(c, opcode=3), frozenset({"NOTIMP"}), why="unassigned"),
    Case("opcode-DSO", lambda c: header(OP_DSO, (0, 0, 0, 0)), frozenset({"NOTIMP"}), why="8490 5.1: DSO unsupported"),
    Case("opcode-15", lambda c: soa_query(c, opcode=15), frozenset({"NOTIMP"}), why="unassigned"),
    Case("query-with-updates", lambda c: soa_query(c, counts=(1, 0, 1, 0), extra=rr(c.host, T_A, IN, 60, a())),
         frozenset({"NOERROR", "FORMERR", "REFUSED"}), why="a QUERY never changes anything, whatever it carries"),
    Case("query-two-questions", lambda c: soa_query(c, counts=(2, 0, 0, 0), extra=zone_rr(c)),
         frozenset({"FORMERR", "REFUSED"})),
    Case("query-no-question", lambda c: header(OP_QUERY, (0, 0, 0, 0)), frozenset({"FORMERR", "REFUSED"})),
    Case("query-chaos-version", lambda c: soa_query(c, qclass=CH, qtype=T_TXT, name="version.bind"),
         frozenset({"REFUSED"}), why="only SOA and NS of our zones are answered"),
    Case("query-axfr", lambda c: soa_query(c, qtype=T_AXFR), frozenset({"REFUSED", "NOTAUTH", "NOTIMP"}),
         why="no zone transfers from the listener"),
    # -- sizes and framing
    Case("udp-4096-octets", lambda c: padded(c, 4096), frozenset({"FORMERR"}), ("udp",),
         why="the largest datagram the listener reads, junk after the zone"),
    Case("udp-4097-octets", lambda c: padded(c, 4097), DROP, ("udp",), sockets_only=True,
         why="larger than the listener reads: dropped unread"),
    Case("oversized-udp", lambda c: padded(c, 65507), DROP, ("udp",), sockets_only=True,
         why="the largest datagram: dropped unread"),
    Case("tcp-65535-octets", lambda c: padded(c, 65535), frozenset({"FORMERR"}), ("tcp",), why="the largest TCP message"),
    Case("tcp-length-zero", lambda c: b"\x00\x00", DROP, ("tcp",), framed=False, why="a message of no octets"),
    Case("tcp-length-one-octet", lambda c: b"\x00", DROP, ("tcp",), framed=False, why="half a length prefix, then EOF"),
    Case("tcp-length-longer-than-data", lambda c: struct.pack("!H", 400) + own_update(c), DROP, ("tcp",), framed=False,
         why="EOF inside the message"),
    Case("tcp-length-shorter-than-data", lambda c: struct.pack("!H", 8) + sign(own_update(c), c.key), ANY_ERROR, ("tcp",),
         framed=False, why="the rest is read as further messages"),
    Case("tcp-length-65535-short", lambda c: struct.pack("!H", 65535) + b"\x00" * 100, DROP, ("tcp",), framed=False,
         why="EOF long before the announced end"),
]


def by_name() -> dict[str, Case]:
    return {c.name: c for c in CASES}


# ---- seeded mutations of legitimate messages --------------------------------------------------
def harmless_updates(ctx: Context, when: int | None = None) -> list[bytes]:
    """Signed updates that change nothing even when they arrive intact (so no mutant may commit).

    Deleting an RRset the host does not have is a no-op (2136 3.4.2.3), and an
    update behind an unmet prerequisite (the host's name is in use) is refused
    whole.
    """
    not_there = message(ctx, updates=[rr(ctx.host, T_TXT, ANY)])
    unmet = message(ctx, prereqs=[rr(ctx.host, T_ANY, NONE)], updates=[rr(ctx.host, T_A, IN, 60, a("192.0.2.201"))])
    return [sign(not_there, ctx.key, when), sign(unmet, ctx.key, when), soa_query(ctx, ident=0x1234)]


def mutate(wire: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip, set, insert, delete, truncate, duplicate a slice."""
    data = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        pos = rng.randrange(len(data)) if data else 0
        if kind == 0 and data:
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == 1 and data:
            data[pos] = rng.choice((0x00, 0xFF, 0xC0, 0x3F, 0x40, rng.randrange(256)))
        elif kind == 2:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == 3 and data:
            del data[pos:pos + rng.randint(1, 16)]
        elif kind == 4:
            data = data[:pos]
        else:
            end = min(len(data), pos + rng.randint(1, 32))
            data[end:end] = data[pos:end]
    return bytes(data)


def mutations(ctx: Context, seed: int, count: int, when: int | None = None) -> list[bytes]:
    """COUNT mutants of the harmless updates (signed at WHEN, default now); the same for the same seed."""
    rng = random.Random(seed)
    bases = harmless_updates(ctx, when)
    return [mutate(rng.choice(bases), rng) for _ in range(count)]
