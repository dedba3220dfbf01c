"""The RFC 2136 listener's pure part: bytes in, bytes out, against an in-memory service.

What the messages become (operations, prerequisites), which rcode every
failure gets and in which order the checks run, and TSIG: verified, signed,
and refused with the right TSIG error. The real listener with nsupdate and
dig is tested in test_rfc2136.py.
"""
from __future__ import annotations

import struct
import time

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.update
import pytest

from ddns import errors, policy
from ddns.listener import tsig as tsigmod
from ddns.listener.handler import handle_wire
from ddns.listener.updates import OUTCOME_RCODES, UNMET_RCODES, rcode_of
from ddns.model import (Actor, Grant, Identity, Match, Need, Op, Operation, Outcome, Prerequisite, Result, RRset,
                        TsigKey)

ZONE = "dyn.example.test"
HOST = "myvm." + ZONE
SECRET = b"0123456789abcdef0123456789abcdef"
KEY = dns.tsig.Key(HOST + ".", SECRET, dns.tsig.HMAC_SHA256)
SOA = RRset(ZONE, "SOA", 3600, ("ns1.dyn.example.test. hostmaster.dyn.example.test. 1764590000 3600 600 86400 60",))
NS = RRset(ZONE, "NS", 3600, ("ns1.dyn.example.test.",))


class FakeService:
    """The parts of Service the listener calls, in memory; ``update`` checks the policy as the real one does."""

    def __init__(self, allow_weak: bool = False):
        self.config = {"dnsupdate.allow_weak_tsig": allow_weak, "dnsupdate.fudge": 300}
        self.keys = {HOST: TsigKey(HOST, "hmac-sha256", SECRET)}
        self.grants = {HOST: (Grant(True, Match.SELF, types=frozenset({"A", "AAAA", "TXT"})),)}
        self.calls: list[tuple] = []
        self.result = Result(Outcome.PUBLISHED)
        self.fail: Exception | None = None

    def find_zone(self, name: str) -> str | None:
        return ZONE if policy.in_zone(name, ZONE) else None

    def rrsets(self, zone: str, name: str) -> list[RRset]:
        return [SOA, NS] if name == ZONE else []

    def tsig_key(self, name: str) -> TsigKey | None:
        return self.keys.get(name)

    def key_identity(self, name: str, actor: Actor) -> Identity | None:
        return Identity(actor, name, self.grants[name]) if name in self.grants else None

    def unsigned_identity(self, zone, client, operations, actor, prerequisites=()) -> Identity | None:
        return None  # no trusted networks

    def update(self, identity, zone, operations, prerequisites=()) -> Result:
        if self.fail:
            raise self.fail
        try:
            policy.authorize(identity, zone, operations)
        except errors.Refused as exc:
            return Result(Outcome.REFUSED, reason=str(exc))
        self.calls.append((identity, zone, tuple(operations), tuple(prerequisites)))
        return self.result


def ask(service: FakeService, message: dns.message.Message | bytes, transport: str = "udp",
        keyring=KEY, clock=time.time) -> dns.message.Message:
    """The answer to MESSAGE, its signature verified when it has one."""
    wire = message if isinstance(message, bytes) else message.to_wire()
    answer = handle_wire(service, wire, "192.0.2.7", transport, clock)
    assert answer is not None
    if not dns.message.from_wire(answer, keyring=False).had_tsig:
        return dns.message.from_wire(answer)
    request_mac = dns.message.from_wire(wire, keyring=False).mac
    return dns.message.from_wire(answer, keyring=keyring, request_mac=request_mac)


def signed_update(zone: str = ZONE, key: dns.tsig.Key = KEY) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage(zone + ".")
    update.use_tsig(key)
    return update


def rcode(message: dns.message.Message) -> str:
    return dns.rcode.to_text(message.rcode())


# ---- updates become operations and prerequisites -----------------------------------
def test_add_replace_delete_become_operations_in_order():
    service = FakeService()
    update = signed_update()
    update.add("myvm", 300, "A", "192.0.2.1")
    update.add("myvm", 300, "AAAA", "2001:db8::0:1")
    update.delete("myvm", "TXT")
    update.delete("myvm", "A", "192.0.2.9")
    update.add("myvm", 60, "TXT", '"hello world"')
    answer = ask(service, update)
    assert rcode(answer) == "NOERROR"
    identity, zone, ops, prereqs = service.calls[0]
    assert zone == ZONE and prereqs == ()
    assert ops == (Operation(Op.ADD, HOST, "A", "192.0.2.1", 300), Operation(Op.ADD, HOST, "AAAA", "2001:db8::1", 300),
                   Operation(Op.DELETE_RRSET, HOST, "TXT"), Operation(Op.DELETE_RR, HOST, "A", "192.0.2.9"),
                   Operation(Op.ADD, HOST, "TXT", '"hello world"', 60))
    assert identity.actor == Actor(f"key:{HOST}", "192.0.2.7", "rfc2136", request=identity.actor.request)
    assert identity.actor.request


def test_delete_name_is_one_operation():
    service = FakeService()
    update = signed_update()
    update.delete("MyVM")
    assert rcode(ask(service, update)) == "NOERROR"
    assert service.calls[0][2] == (Operation(Op.DELETE_NAME, HOST),)


def test_prerequisites_of_each_kind():
    service = FakeService()
    update = signed_update()
    update.present("myvm")                       # name in use
    update.absent("other")                       # name not in use
    update.present("myvm", "A")                  # RRset exists
    update.absent("myvm", "TXT")                 # RRset does not exist
    update.present("myvm", "AAAA", "2001:db8::1", "2001:db8::2")  # RRset equals
    update.add("myvm", 300, "A", "192.0.2.1")
    ask(service, update)
    assert service.calls[0][3] == (
        Prerequisite(Need.NAME_IN_USE, HOST), Prerequisite(Need.NAME_NOT_IN_USE, "other." + ZONE),
        Prerequisite(Need.RRSET_EXISTS, HOST, "A"), Prerequisite(Need.RRSET_NOT_EXISTS, HOST, "TXT"),
        Prerequisite(Need.RRSET_EQUALS, HOST, "AAAA", frozenset({"2001:db8::1", "2001:db8::2"})))


@pytest.mark.parametrize("need, expected", [(Need.NAME_IN_USE, "NXDOMAIN"), (Need.NAME_NOT_IN_USE, "YXDOMAIN"),
                                            (Need.RRSET_EXISTS, "NXRRSET"), (Need.RRSET_EQUALS, "NXRRSET"),
                                            (Need.RRSET_NOT_EXISTS, "YXRRSET")])
def test_unmet_prerequisite_answers_its_rcode(need, expected):
    service = FakeService()
    service.result = Result(Outcome.UNMET, Prerequisite(need, HOST, "A"))
    update = signed_update()
    update.present("myvm", "A")
    update.add("myvm", 300, "A", "192.0.2.1")
    assert rcode(ask(service, update)) == expected


def test_the_rcode_table_covers_every_outcome_and_need():
    assert set(OUTCOME_RCODES) == set(Outcome) - {Outcome.UNMET}
    assert set(UNMET_RCODES) == set(Need)
    assert dns.rcode.to_text(rcode_of(Result(Outcome.UNSERVED))) == "NOERROR"  # committed; the retry loop serves it
    assert dns.rcode.to_text(rcode_of(Result(Outcome.FAILED))) == "SERVFAIL"


def test_service_refusals_map_through_the_code_table():
    service = FakeService()
    service.fail = errors.Invalid("TTL out of range")
    update = signed_update()
    update.add("myvm", 300, "A", "192.0.2.1")
    assert rcode(ask(service, update)) == "FORMERR"
    service.fail = errors.Unavailable("zone held")
    assert rcode(ask(service, update)) == "SERVFAIL"


def test_internal_failure_answers_servfail_and_keeps_answering():
    service = FakeService()
    service.fail = RuntimeError("a bug")
    update = signed_update()
    update.add("myvm", 300, "A", "192.0.2.1")
    assert rcode(ask(service, update)) == "SERVFAIL"
    service.fail = None
    assert rcode(ask(service, update)) == "NOERROR"


# ---- refusals, in BIND's order --------------------------------------------------------
def raw_update(records: list[tuple[str, int, int, int, bytes]], prereqs=(), zone: str = ZONE,
               zone_class: int = dns.rdataclass.IN, zone_type: int = dns.rdatatype.SOA) -> bytes:
    """An UPDATE with records written as they are on the wire: (owner, type, class, ttl, rdata)."""
    def rr(owner: str, rdtype: int, rdclass: int, ttl: int, rdata: bytes) -> bytes:
        return dns.name.from_text(owner).to_wire() + struct.pack("!HHIH", rdtype, rdclass, ttl, len(rdata)) + rdata
    header = struct.pack("!HHHHHH", 4242, dns.opcode.to_flags(dns.opcode.UPDATE), 1, len(prereqs), len(records), 0)
    body = dns.name.from_text(zone).to_wire() + struct.pack("!HH", zone_type, zone_class)
    body += b"".join(rr(*p) for p in prereqs) + b"".join(rr(*r) for r in records)
    return header + body


def sign(wire: bytes, key: dns.tsig.Key = KEY, when: int | None = None) -> bytes:
    """WIRE, as it is, with a TSIG record signed by KEY at time WHEN (default now)."""
    when = int(time.time()) if when is None else when
    msg_id = struct.unpack("!H", wire[:2])[0]
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, when, 300, b"",
                                      msg_id, 0, b"")
    rdata, _ = dns.tsig.sign(wire, key, rdata, when, b"")
    body = rdata.to_wire()
    tsig_rr = key.name.to_wire() + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(body)) + body
    arcount = struct.unpack("!H", wire[10:12])[0] + 1
    return wire[:10] + struct.pack("!H", arcount) + wire[12:] + tsig_rr


A = dns.rdatatype.A
IN, ANY, NONE = dns.rdataclass.IN, dns.rdataclass.ANY, dns.rdataclass.NONE
ADDR = bytes([192, 0, 2, 1])


@pytest.mark.parametrize("records, prereqs, expected", [
    ([(HOST, A, IN, 300, ADDR)], [], "NOERROR"),
    ([("www.example.org", A, IN, 300, ADDR)], [], "NOTZONE"),                 # owner outside the zone
    ([(HOST, dns.rdatatype.ANY, IN, 300, b"")], [], "FORMERR"),               # meta type added
    ([(HOST, dns.rdatatype.AXFR, ANY, 0, b"")], [], "FORMERR"),
    ([(HOST, dns.rdatatype.IXFR, ANY, 0, b"")], [], "FORMERR"),
    ([(HOST, dns.rdatatype.MAILA, ANY, 0, b"")], [], "FORMERR"),
    ([(HOST, dns.rdatatype.MAILB, NONE, 0, ADDR)], [], "FORMERR"),
    ([(HOST, dns.rdatatype.TSIG, IN, 0, ADDR)], [], "FORMERR"),
    ([(HOST, dns.rdatatype.OPT, IN, 0, b"")], [], "FORMERR"),
    ([(HOST, dns.rdatatype.ANY, NONE, 0, b"")], [], "FORMERR"),               # delete RR of type ANY
    ([(HOST, A, ANY, 300, b"")], [], "FORMERR"),                              # ANY deletion with a TTL
    ([(HOST, A, NONE, 300, ADDR)], [], "FORMERR"),                            # NONE deletion with a TTL
    ([(HOST, A, ANY, 0, b"")], [], "NOERROR"),                                # class ANY, empty rdata: legal
    ([(HOST, dns.rdatatype.ANY, ANY, 0, b"")], [], "NOERROR"),
    ([(HOST, A, NONE, 0, ADDR)], [], "NOERROR"),
    ([(HOST, A, dns.rdataclass.CH, 300, ADDR)], [], "FORMERR"),               # a class of no zone here
    ([(HOST, A, IN, 300, ADDR)], [(HOST, A, ANY, 5, b"")], "FORMERR"),         # prerequisite TTL != 0
    ([(HOST, A, IN, 300, ADDR)], [("www.example.org", A, ANY, 0, b"")], "NOTZONE"),
    ([(HOST, A, IN, 300, ADDR)], [(HOST, dns.rdatatype.AXFR, ANY, 0, b"")], "FORMERR"),
    ([(HOST, A, IN, 300, ADDR)], [(HOST, dns.rdatatype.ANY, IN, 0, ADDR)], "FORMERR"),
    ([(HOST, A, IN, 300, ADDR)], [(HOST, A, dns.rdataclass.CH, 0, ADDR)], "FORMERR"),
    ([(HOST, A, IN, 300, ADDR)], [(HOST, A, NONE, 0, b"")], "NOERROR"),
])
def test_prescan_and_prerequisite_format(records, prereqs, expected):
    service = FakeService()
    answer = ask(service, sign(raw_update(records, prereqs)))
    assert rcode(answer) == expected
    assert bool(service.calls) == (expected == "NOERROR")


def test_zone_section_checks_come_first():
    service = FakeService()
    assert rcode(ask(service, sign(raw_update([], zone="example.org")))) == "NOTAUTH"
    assert rcode(ask(service, sign(raw_update([], zone="myvm." + ZONE)))) == "NOTAUTH"  # inside, but not a zone
    assert rcode(ask(service, sign(raw_update([], zone_type=dns.rdatatype.A)))) == "FORMERR"
    assert rcode(ask(service, raw_update([], zone="example.org"), keyring=None)) == "NOTAUTH"  # even unsigned
    no_zone = struct.pack("!HHHHHH", 7, dns.opcode.to_flags(dns.opcode.UPDATE), 0, 0, 0, 0)
    assert rcode(ask(service, sign(no_zone))) == "FORMERR"
    assert service.calls == []


def test_unsigned_update_is_refused():
    service = FakeService()
    update = dns.update.UpdateMessage(ZONE + ".")
    update.add("myvm", 300, "A", "192.0.2.1")
    answer = ask(service, update, keyring=None)
    assert rcode(answer) == "REFUSED" and not answer.had_tsig
    assert service.calls == []


def test_key_without_rights_in_the_zone_gets_notauth_before_its_prerequisites_are_looked_at():
    service = FakeService()
    other = "vm.other.test"
    service.keys[other] = TsigKey(other, "hmac-sha256", SECRET)
    service.grants[other] = (Grant(True, Match.SELF, types=frozenset({"A"})),)
    update = signed_update(key=dns.tsig.Key(other + ".", SECRET, dns.tsig.HMAC_SHA256))
    update.absent("secret-name")
    answer = ask(service, update, keyring=dns.tsig.Key(other + ".", SECRET, dns.tsig.HMAC_SHA256))
    assert rcode(answer) == "NOTAUTH" and service.calls == []


def test_host_key_touching_another_name_or_type_is_refused():
    service = FakeService()
    for owner, rtype, data in [("other", "A", "192.0.2.1"), ("myvm", "MX", "10 mail.example.org."),
                               ("myvm", "CNAME", "elsewhere.example.org.")]:
        update = signed_update()
        update.add(owner, 300, rtype, data)
        assert rcode(ask(service, update)) == "REFUSED", (owner, rtype)
    update = signed_update()
    update.delete(ZONE + ".", "NS")
    assert rcode(ask(service, update)) == "REFUSED"
    assert service.calls == []


def test_acme_key_touches_only_txt():
    service = FakeService()
    acme = "_acme-challenge." + HOST
    service.keys[acme] = TsigKey(acme, "hmac-sha512", SECRET)
    service.grants[acme] = (Grant(True, Match.SELF, types=frozenset({"TXT"})),)
    key = dns.tsig.Key(acme + ".", SECRET, dns.tsig.HMAC_SHA512)
    update = signed_update(key=key)
    update.add("_acme-challenge.myvm", 60, "TXT", '"token"')
    assert rcode(ask(service, update, keyring=key)) == "NOERROR"
    update = signed_update(key=key)
    update.add("_acme-challenge.myvm", 60, "A", "192.0.2.1")
    assert rcode(ask(service, update, keyring=key)) == "REFUSED"
    assert len(service.calls) == 1


# ---- TSIG -----------------------------------------------------------------------------
def tsig_of(answer_wire: bytes) -> dns.rdtypes.ANY.TSIG.TSIG:
    return dns.message.from_wire(answer_wire, keyring=False).tsig[0]


def test_answers_to_signed_requests_are_signed_and_verify():
    update = signed_update()
    update.add("myvm", 300, "A", "192.0.2.1")
    answer = ask(FakeService(), update)  # from_wire with the key verifies the MAC over the request's
    assert answer.had_tsig and answer.tsig_error == 0


@pytest.mark.parametrize("algorithm, weak", [(dns.tsig.HMAC_SHA384, False), (dns.tsig.HMAC_SHA512, False),
                                             (dns.tsig.HMAC_SHA1, True), (dns.tsig.HMAC_MD5, True)])
def test_algorithms(algorithm, weak):
    text = {dns.tsig.HMAC_MD5: "hmac-md5"}.get(algorithm, algorithm.to_text(omit_final_dot=True))
    key = dns.tsig.Key(HOST + ".", SECRET, algorithm)
    for allowed in (False, True):
        service = FakeService(allow_weak=allowed)
        service.keys[HOST] = TsigKey(HOST, text, SECRET)
        update = signed_update(key=key)
        update.add("myvm", 300, "A", "192.0.2.1")
        wire = handle_wire(service, update.to_wire(), "192.0.2.7")
        if weak and not allowed:
            assert dns.rcode.to_text(dns.message.from_wire(wire, keyring=False).rcode()) == "NOTAUTH"
            assert tsig_of(wire).error == dns.rcode.BADKEY and tsig_of(wire).mac == b""
        else:
            answer = dns.message.from_wire(wire, keyring=key, request_mac=update.mac)
            assert rcode(answer) == "NOERROR"


def test_unknown_key_answers_notauth_badkey_unsigned():
    service = FakeService()
    stranger = dns.tsig.Key("nobody." + ZONE + ".", SECRET, dns.tsig.HMAC_SHA256)
    update = signed_update(key=stranger)
    update.add("myvm", 300, "A", "192.0.2.1")
    wire = handle_wire(service, update.to_wire(), "192.0.2.7")
    assert dns.rcode.to_text(dns.message.from_wire(wire, keyring=False).rcode()) == "NOTAUTH"
    assert tsig_of(wire).error == dns.rcode.BADKEY and tsig_of(wire).mac == b""
    assert service.calls == []


def test_wrong_mac_answers_notauth_badsig_unsigned():
    service = FakeService()
    update = signed_update(key=dns.tsig.Key(HOST + ".", b"not the secret", dns.tsig.HMAC_SHA256))
    update.add("myvm", 300, "A", "192.0.2.1")
    wire = handle_wire(service, update.to_wire(), "192.0.2.7")
    assert dns.rcode.to_text(dns.message.from_wire(wire, keyring=False).rcode()) == "NOTAUTH"
    assert tsig_of(wire).error == dns.rcode.BADSIG and tsig_of(wire).mac == b""
    assert service.calls == []


def test_revoked_key_stops_at_the_next_message():
    service = FakeService()
    update = signed_update()
    update.add("myvm", 300, "A", "192.0.2.1")
    assert rcode(ask(service, update)) == "NOERROR"
    del service.keys[HOST]
    wire = handle_wire(service, update.to_wire(), "192.0.2.7")
    assert tsig_of(wire).error == dns.rcode.BADKEY


def verify_answer(wire: bytes, request_mac: bytes, key: dns.tsig.Key = KEY) -> None:
    """Check the answer's MAC by signing it again (dnspython refuses to verify an answer with a TSIG error)."""
    rdata = tsig_of(wire)
    start = len(wire) - len(key.name.to_wire()) - 10 - len(rdata.to_wire())
    arcount = struct.unpack("!H", wire[10:12])[0] - 1
    unsigned = wire[:10] + struct.pack("!H", arcount) + wire[12:start]
    again, _ = dns.tsig.sign(unsigned, key, rdata.replace(mac=b""), rdata.time_signed, request_mac)
    assert rdata.mac and again.mac == rdata.mac


@pytest.mark.parametrize("skew", [-301, 400, -100000])
def test_stale_time_answers_notauth_badtime_signed_with_our_time(skew):
    service = FakeService()
    now = 1_900_000_000
    request = sign(raw_update([(HOST, A, IN, 300, ADDR)]), when=now + skew)
    wire = handle_wire(service, request, "192.0.2.7", clock=lambda: now)
    assert dns.rcode.to_text(dns.message.from_wire(wire, keyring=False).rcode()) == "NOTAUTH"
    rdata = tsig_of(wire)
    assert rdata.error == dns.rcode.BADTIME and rdata.time_signed == now + skew
    assert int.from_bytes(rdata.other, "big") == now
    verify_answer(wire, dns.message.from_wire(request, keyring=False).mac)
    assert service.calls == []


def test_stale_time_with_a_wrong_mac_is_badsig_not_a_signed_answer():
    service = FakeService()
    bad = dns.tsig.Key(HOST + ".", b"not the secret", dns.tsig.HMAC_SHA256)
    request = sign(raw_update([(HOST, A, IN, 300, ADDR)]), key=bad, when=1_000_000_000)
    wire = handle_wire(service, request, "192.0.2.7")
    assert tsig_of(wire).error == dns.rcode.BADSIG and tsig_of(wire).mac == b""


def test_fudge_setting_narrows_the_window():
    service = FakeService()
    service.config["dnsupdate.fudge"] = 10
    now = int(time.time())
    request = sign(raw_update([(HOST, A, IN, 300, ADDR)]), when=now - 60)  # inside the request's 300
    wire = handle_wire(service, request, "192.0.2.7", clock=lambda: now)
    assert tsig_of(wire).error == dns.rcode.BADTIME
    assert service.calls == []


def test_keyring_is_a_fresh_lookup_per_message():
    looked_up = []
    keyring = tsigmod.Keyring(lambda name: looked_up.append(name) or TsigKey(name, "hmac-sha256", SECRET))
    assert keyring(None, dns.name.from_text("A.Example.")).secret == SECRET
    keyring(None, dns.name.from_text("a.example."))
    assert looked_up == ["a.example", "a.example"]
    assert tsigmod.Keyring(lambda name: TsigKey(name, "hmac-md5", SECRET))(None, dns.name.from_text("a.")) is None


# ---- queries ----------------------------------------------------------------------------
def query(name: str, rtype: str, signed: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rtype)
    if signed:
        q.use_tsig(KEY)
    return q


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_soa_and_ns_of_the_zone_are_answered_authoritatively(transport):
    service = FakeService()
    answer = ask(service, query(ZONE + ".", "SOA"), transport)
    assert rcode(answer) == "NOERROR" and answer.flags & dns.flags.AA
    assert answer.answer[0].rdtype == dns.rdatatype.SOA and answer.answer[0][0].serial == 1764590000
    answer = ask(service, query(ZONE + ".", "NS"), transport)
    assert [r.to_text() for r in answer.answer[0]] == ["ns1.dyn.example.test."]


def test_soa_below_the_apex_is_nodata_with_the_zone_soa():
    answer = ask(FakeService(), query(HOST + ".", "SOA", signed=True))
    assert rcode(answer) == "NOERROR" and answer.answer == [] and answer.had_tsig
    assert answer.authority[0].name == dns.name.from_text(ZONE + ".")
    assert answer.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("name, rtype", [(HOST + ".", "A"), (ZONE + ".", "AXFR"), ("example.org.", "SOA"),
                                         (ZONE + ".", "TXT")])
def test_other_queries_are_refused(name, rtype):
    assert rcode(ask(FakeService(), query(name, rtype))) == "REFUSED"


def test_wrong_opcodes_notimp_and_garbage_formerr_or_dropped():
    service = FakeService()
    notify = dns.message.make_query(ZONE + ".", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert rcode(ask(service, notify)) == "NOTIMP"
    assert handle_wire(service, b"\x01\x02\x03", "192.0.2.7") is None            # runt
    response = dns.message.make_response(query(ZONE + ".", "SOA"))
    assert handle_wire(service, response.to_wire(), "192.0.2.7") is None        # a response: never answered
    garbage = struct.pack("!HHHHHH", 99, 0, 5, 0, 0, 0) + b"\xc0\x0c" * 10     # compression loop
    answer = dns.message.from_wire(handle_wire(service, garbage, "192.0.2.7"))
    assert answer.id == 99 and rcode(answer) == "FORMERR"


def test_edns_version_above_zero_is_badvers():
    q = dns.message.make_query(ZONE + ".", "SOA", use_edns=1)
    assert rcode(ask(FakeService(), q)) == "BADVERS"


def test_internal_failure_of_a_signed_request_is_a_signed_servfail():
    service = FakeService()
    service.fail = RuntimeError("a bug")
    update = signed_update()
    update.add("myvm", 300, "A", "192.0.2.1")
    answer = ask(service, update)
    assert rcode(answer) == "SERVFAIL" and answer.had_tsig
    service.rrsets = None  # a query whose service call fails
    answer = ask(service, query(ZONE + ".", "SOA", signed=True))
    assert rcode(answer) == "SERVFAIL" and answer.had_tsig


def test_a_failing_key_store_is_servfail_not_formerr():
    service = FakeService()

    def broken(name: str):
        raise errors.Busy("database locked")
    service.tsig_key = broken
    update = signed_update()
    update.add("myvm", 300, "A", "192.0.2.1")
    assert rcode(ask(service, update)) == "SERVFAIL"
    assert service.calls == []
