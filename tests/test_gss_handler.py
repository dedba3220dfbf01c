"""GSS-TSIG on the listener against a real KDC and real python-gssapi, with an in-memory service.

The listener's sockets and handler run in this process with an injected
clock for the contexts (expiry without waiting); the client is
testkit/gssclient.py (dnspython + python-gssapi) with tickets from a real MIT
KDC. Only the service behind the listener is a stand-in (``principal_identity``
grants a host principal its own name), as in test_rfc2136_pure.py.
"""
from __future__ import annotations

import logging
import struct

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TKEY
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.rrset
import dns.update
import pytest

from testkit import gssclient
from gss_fixtures import ZONE, realm  # noqa: F401 (fixture)
from ddns import errors, policy
from ddns.listener import handler, server, tsig
from ddns.listener.contexts import ContextTable
from ddns.listener.gss import Acceptor, Gss
from ddns.model import Actor, Grant, Identity, Match, Outcome, Result, RRset, TsigKey

SOA = RRset(ZONE, "SOA", 3600, (f"ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60",))


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Service:
    """The parts of Service the listener calls; a host principal host/NAME@REALM may change NAME."""

    def __init__(self):
        self.config = {"dnsupdate.allow_weak_tsig": False, "dnsupdate.fudge": 300}
        self.keys = {f"static.{ZONE}": TsigKey(f"static.{ZONE}", "hmac-sha256", b"0" * 32)}
        self.calls: list[tuple] = []

    def find_zone(self, name: str) -> str | None:
        return ZONE if policy.in_zone(name, ZONE) else None

    def rrsets(self, zone: str, name: str) -> list[RRset]:
        return [SOA] if name == zone else []

    def tsig_key(self, name: str) -> TsigKey | None:
        return self.keys.get(name)

    def key_identity(self, name: str, actor: Actor) -> Identity | None:
        return None

    def principal_identity(self, principal: str, zone: str, actor: Actor) -> Identity | None:
        if not principal.startswith("host/"):
            return None
        host = principal[len("host/"):].split("@")[0]
        return Identity(actor, host, (Grant(True, Match.SELF, types=frozenset({"A", "AAAA", "TXT"})),))

    def update(self, identity, zone, operations, prerequisites=()) -> Result:
        try:
            policy.authorize(identity, zone, operations)
        except errors.Refused as exc:
            return Result(Outcome.REFUSED, reason=str(exc))
        self.calls.append((identity, zone, tuple(operations)))
        return Result(Outcome.PUBLISHED)


def start_listener(service: Service, gss: Gss | None) -> server.DnsServer:
    """The listener's sockets on a free loopback port, answering with handle_wire over SERVICE and GSS."""
    return server.start(lambda wire, client, transport: handler.handle_wire(service, wire, client, transport, gss=gss),
                        "127.0.0.1", 0)


@pytest.fixture
def listener(realm):
    """(port, service, clock, gss): the listener on a free loopback port with GSS-TSIG over the realm's keytab."""
    service, clock = Service(), Clock()
    gss = Gss(Acceptor(realm.keytab), ContextTable(max_contexts=100, max_seconds=3600, clock=clock))
    dns_server = start_listener(service, gss)
    yield dns_server.port, service, clock, gss
    dns_server.stop()


def update_a(name: str = "vm1", address: str = "192.0.2.10") -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage(ZONE + ".")
    update.replace(f"{name}.{ZONE}.", 60, "A", address)
    return update


def tsig_error(message: dns.message.Message) -> int:
    return message.tsig[0].error


@pytest.mark.parametrize("algorithm", ["gss-tsig", "gss.microsoft.com"])
@pytest.mark.parametrize("section", ["additional", "answer"])
def test_negotiated_context_signs_an_update_as_the_principal(realm, listener, algorithm, section):
    port, service, clock, gss = listener
    principal, ccache = realm.ticket(f"host/vm1.{ZONE}")
    session = gssclient.negotiate(port, ccache, realm.target, algorithm=algorithm, section=section)
    assert session.expiration - session.inception == 3600  # capped by max_context_seconds
    answer = gssclient.send(port, update_a(), session)  # the answer verifies with the context
    assert answer.rcode() == dns.rcode.NOERROR and answer.had_tsig
    [(identity, zone, operations)] = service.calls
    assert identity.actor.name == f"krb5:{principal}" and identity.actor.interface == "rfc2136"
    assert [(o.name, o.rdata) for o in operations if o.rdata] == [(f"vm1.{ZONE}", "192.0.2.10")]
    refused = gssclient.send(port, update_a("vm2"), session)  # another host's name: REFUSED, signed
    assert refused.rcode() == dns.rcode.REFUSED and refused.had_tsig and len(service.calls) == 1


def test_context_expires_after_max_context_seconds(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    session = gssclient.negotiate(port, ccache, realm.target)
    assert gssclient.send(port, update_a(), session).rcode() == dns.rcode.NOERROR
    clock.now += 3600
    answer = gssclient.send(port, update_a(address="192.0.2.11"), session, verify=False)
    assert answer.rcode() == dns.rcode.NOTAUTH and tsig_error(answer) == dns.rcode.BADKEY
    assert answer.tsig[0].mac == b"" and len(service.calls) == 1 and len(gss.contexts) == 0


def test_deleted_context_is_an_unknown_key(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    session = gssclient.negotiate(port, ccache, realm.target)
    deleted = gssclient.delete(port, session)  # signed with the context, verified
    assert deleted.rcode() == dns.rcode.NOERROR
    assert deleted.answer[0][0].mode == dns.rdtypes.ANY.TKEY.TKEY.KEY_DELETION
    assert len(gss.contexts) == 0
    answer = gssclient.send(port, update_a(), session, verify=False)
    assert answer.rcode() == dns.rcode.NOTAUTH and tsig_error(answer) == dns.rcode.BADKEY and not service.calls


def test_delete_must_be_signed_by_the_context_it_names(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    _, other_cc = realm.ticket(f"host/vm2.{ZONE}")
    victim = gssclient.negotiate(port, ccache, realm.target)
    other = gssclient.negotiate(port, other_cc, realm.target)
    unsigned = gssclient.tkey_query(victim.keyname, "gss-tsig", b"", mode=5)
    assert gssclient.send(port, unsigned).rcode() == dns.rcode.REFUSED
    foreign = gssclient.tkey_query(victim.keyname, "gss-tsig", b"", mode=5)
    assert gssclient.send(port, foreign, other).rcode() == dns.rcode.REFUSED
    assert gss.contexts.in_use(victim.keyname.to_text(omit_final_dot=True))
    assert gssclient.send(port, update_a(), victim).rcode() == dns.rcode.NOERROR


def test_forged_mac_is_badsig_and_changes_nothing(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    session = gssclient.negotiate(port, ccache, realm.target)
    wire, _ = gssclient.sign(update_a(), session)
    mac = dns.message.from_wire(wire, keyring=False).tsig[0].mac
    at = wire.rindex(mac) + len(mac) // 2
    forged = wire[:at] + bytes([wire[at] ^ 0xFF]) + wire[at + 1:]
    answer = dns.message.from_wire(gssclient.exchange(port, forged), keyring=False)
    assert answer.rcode() == dns.rcode.NOTAUTH and tsig_error(answer) == dns.rcode.BADSIG
    assert answer.tsig[0].mac == b"" and not service.calls


def test_replayed_signed_update_is_badsig(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    session = gssclient.negotiate(port, ccache, realm.target)
    wire, _ = gssclient.sign(update_a(), session)
    assert dns.message.from_wire(gssclient.exchange(port, wire), keyring=False).rcode() == dns.rcode.NOERROR
    again = dns.message.from_wire(gssclient.exchange(port, wire), keyring=False)
    assert again.rcode() == dns.rcode.NOTAUTH and tsig_error(again) == dns.rcode.BADSIG
    assert len(service.calls) == 1


def tkey_error(message: dns.message.Message) -> int:
    assert message.rcode() == dns.rcode.NOERROR
    [rrset] = message.answer
    return rrset[0].error


def test_replayed_tkey_token_opens_no_context(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    token = gssclient.initiator(ccache, realm.target).step()
    first = gssclient.send(port, gssclient.tkey_query(gssclient.new_keyname(), "gss-tsig", token))
    assert tkey_error(first) == 0 and len(gss.contexts) == 1
    replay = gssclient.send(port, gssclient.tkey_query(gssclient.new_keyname(), "gss-tsig", token))
    assert tkey_error(replay) == dns.rcode.BADKEY and not replay.had_tsig and len(gss.contexts) == 1


def test_key_name_in_use_is_badname(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    session = gssclient.negotiate(port, ccache, realm.target)
    for keyname in (session.keyname, dns.name.from_text(f"static.{ZONE}")):  # a context's, a stored key's
        with pytest.raises(gssclient.Refused) as refused:
            gssclient.negotiate(port, ccache, realm.target, keyname=keyname)
        assert refused.value.error == dns.rcode.BADNAME
    assert len(gss.contexts) == 1
    assert gssclient.send(port, update_a(), session).rcode() == dns.rcode.NOERROR  # the owner keeps it
    clock.now += 3600  # expired: the name is free again
    assert gssclient.negotiate(port, ccache, realm.target, keyname=session.keyname)


def test_tkey_over_udp_is_refused(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    query = gssclient.tkey_query(gssclient.new_keyname(), "gss-tsig", gssclient.initiator(ccache, realm.target).step())
    answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
    assert answer.rcode() == dns.rcode.REFUSED and not answer.answer and len(gss.contexts) == 0


def test_unknown_algorithm_is_badalg(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    with pytest.raises(gssclient.Refused) as refused:
        gssclient.negotiate(port, ccache, realm.target, algorithm="hmac-sha256")
    assert refused.value.error == dns.rcode.BADALG and len(gss.contexts) == 0


@pytest.mark.parametrize("mode", [1, 2, 4, 6])
def test_other_modes_are_badmode(realm, listener, mode):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    token = gssclient.initiator(ccache, realm.target).step()
    answer = gssclient.send(port, gssclient.tkey_query(gssclient.new_keyname(), "gss-tsig", token, mode=mode))
    assert tkey_error(answer) == dns.rcode.BADMODE and len(gss.contexts) == 0


# A SPNEGO NegTokenInit offering Kerberos without an optimistic token: the acceptor
# answers with a mechanism choice and wants another round (GSS_S_CONTINUE_NEEDED).
KRB5_OID = bytes.fromhex("06092a864886f712010202")
SPNEGO_OID = bytes.fromhex("06062b0601050502")


def der(tag: int, body: bytes) -> bytes:
    return bytes([tag, len(body)]) + body


MULTI_ROUND = der(0x60, SPNEGO_OID + der(0xA0, der(0x30, der(0xA0, der(0x30, KRB5_OID)))))


@pytest.mark.parametrize("token", [MULTI_ROUND, b"\x60\x03junk", b""], ids=["multi-round", "garbage", "empty"])
def test_tokens_that_open_no_context_are_badkey(realm, listener, token, caplog):
    port, service, clock, gss = listener
    caplog.set_level(logging.INFO, "ddns.rfc2136")
    answer = gssclient.send(port, gssclient.tkey_query(gssclient.new_keyname(), "gss-tsig", token))
    assert tkey_error(answer) == dns.rcode.BADKEY and len(gss.contexts) == 0
    if token is MULTI_ROUND:
        assert "multi-round negotiation is not supported" in caplog.text


def test_a_ticket_for_a_service_principal_the_keytab_lacks_opens_no_context(realm, listener):
    """The client asked its KDC for DNS/<another MNAME>: a real ticket, but the keytab has no key to read it."""
    port, service, clock, gss = listener
    other = f"DNS/ns9.{ZONE}"
    realm.kdc.principal(other, realm.directory / "ns9.keytab")  # in the realm, not in the service's keytab
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    with pytest.raises(gssclient.Refused) as refused:
        gssclient.negotiate(port, ccache, f"{other}@{realm.kdc.realm}")
    assert (refused.value.rcode, refused.value.error) == (dns.rcode.NOERROR, dns.rcode.BADKEY)
    assert len(gss.contexts) == 0 and service.calls == []


def test_without_a_keytab_tkey_is_refused(realm):
    service = Service()
    dns_server = start_listener(service, None)
    try:
        _, ccache = realm.ticket(f"host/vm1.{ZONE}")
        with pytest.raises(gssclient.Refused) as refused:
            gssclient.negotiate(dns_server.port, ccache, realm.target)
        assert refused.value.rcode == dns.rcode.REFUSED
    finally:
        dns_server.stop()


def test_another_clients_key_name_with_ones_own_context_is_badsig(realm, listener):
    port, service, clock, gss = listener
    _, cc1 = realm.ticket(f"host/vm1.{ZONE}")
    _, cc2 = realm.ticket(f"host/vm2.{ZONE}")
    owner = gssclient.negotiate(port, cc1, realm.target)
    thief = gssclient.negotiate(port, cc2, realm.target)
    posing = gssclient.Session(owner.keyname, "gss-tsig", thief.context,
                               dns.tsig.Key(owner.keyname, thief.context, dns.tsig.GSS_TSIG))
    answer = gssclient.send(port, update_a("vm1"), posing, verify=False)
    assert answer.rcode() == dns.rcode.NOTAUTH and tsig_error(answer) == dns.rcode.BADSIG and not service.calls
    assert gssclient.send(port, update_a("vm1"), owner).rcode() == dns.rcode.NOERROR


def test_principal_without_rights_is_refused_signed(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket("alice")
    session = gssclient.negotiate(port, ccache, realm.target)
    answer = gssclient.send(port, update_a(), session)
    assert answer.rcode() == dns.rcode.REFUSED and answer.had_tsig and not service.calls


def test_stale_time_with_a_context_is_badtime_signed(realm, listener):
    port, service, clock, gss = listener
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")
    for algorithm in ("gss-tsig", "gss.microsoft.com"):
        session = gssclient.negotiate(port, ccache, realm.target, algorithm=algorithm)
        rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, session.key.algorithm, 0, 300,
                                          b"", 1, 0, b"")
        message = update_a()
        stale = tsig.append(message.to_wire(), tsig.Signing(session.keyname, rdata.replace(original_id=message.id),
                                                            session.key), clock=lambda: 1_000_000_000)
        answer = dns.message.from_wire(gssclient.exchange(port, stale), keyring=False)
        assert answer.rcode() == dns.rcode.NOTAUTH and tsig_error(answer) == dns.rcode.BADTIME
        assert answer.tsig[0].mac and struct.unpack("!Q", b"\0\0" + answer.tsig[0].other)[0] > 1_000_000_000
    assert not service.calls


def hostile_tkey(case: str) -> bytes:
    """TKEY queries that are not what RFC 3645 asks for."""
    keyname = gssclient.new_keyname()
    query = gssclient.tkey_query(keyname, "gss-tsig", b"\x60\x00")
    if case == "no TKEY record":
        query.additional = []
    elif case == "TKEY of another name":
        query.additional[0].name = dns.name.from_text("other.sig-client.")
    elif case == "TKEY with an error":
        rdata = query.additional[0][0]
        query.additional = [dns.rrset.from_rdata(keyname, 0, rdata.replace(error=dns.rcode.BADSIG))]
    elif case == "two questions":
        query.question.append(query.question[0].__class__(dns.name.from_text("x."), dns.rdataclass.ANY,
                                                          dns.rdatatype.TKEY))
    elif case == "truncated TKEY rdata":
        wire = query.to_wire()
        return wire[:-4]
    return query.to_wire()


@pytest.mark.parametrize("case, rcode", [
    ("no TKEY record", dns.rcode.FORMERR), ("TKEY of another name", dns.rcode.FORMERR),
    ("TKEY with an error", dns.rcode.FORMERR), ("two questions", dns.rcode.FORMERR),
    ("truncated TKEY rdata", dns.rcode.FORMERR)])
def test_hostile_tkey_queries_open_nothing(realm, listener, case, rcode):
    port, service, clock, gss = listener
    answer = dns.message.from_wire(gssclient.exchange(port, hostile_tkey(case)), keyring=False)
    assert answer.rcode() == rcode and not answer.answer and len(gss.contexts) == 0
    _, ccache = realm.ticket(f"host/vm1.{ZONE}")  # and the listener still negotiates
    assert gssclient.negotiate(port, ccache, realm.target) and len(gss.contexts) == 1


def test_full_table_evicts_the_context_nearest_its_expiry(realm):
    service, clock = Service(), Clock()
    gss = Gss(Acceptor(realm.keytab), ContextTable(max_contexts=2, max_seconds=3600, clock=clock))
    dns_server = start_listener(service, gss)
    try:
        _, ccache = realm.ticket(f"host/vm1.{ZONE}")
        sessions = []
        for _ in range(3):
            sessions.append(gssclient.negotiate(dns_server.port, ccache, realm.target))
            clock.now += 1  # the first one is nearest its expiry
        evicted = gssclient.send(dns_server.port, update_a(), sessions[0], verify=False)
        assert evicted.rcode() == dns.rcode.NOTAUTH and tsig_error(evicted) == dns.rcode.BADKEY
        assert [gssclient.send(dns_server.port, update_a(), s).rcode() for s in sessions[1:]] == [dns.rcode.NOERROR] * 2
    finally:
        dns_server.stop()


def test_a_missing_keytab_fails_each_negotiation_with_badkey(realm, tmp_path):
    service = Service()
    gss = Gss(Acceptor(tmp_path / "missing.keytab"), ContextTable())
    dns_server = start_listener(service, gss)
    try:
        _, ccache = realm.ticket(f"host/vm1.{ZONE}")
        with pytest.raises(gssclient.Refused) as refused:
            gssclient.negotiate(dns_server.port, ccache, realm.target)
        assert refused.value.error == dns.rcode.BADKEY and len(gss.contexts) == 0
    finally:
        dns_server.stop()
