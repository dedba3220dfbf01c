"""The Windows DNS client's registration sequence against a real ``ddns serve``, byte for byte.

No Windows client can run here, so dnspython and python-gssapi send what a
domain-joined Windows machine sends (its records, in its order, its key
name form and both of its GSS-TSIG algorithm names), with a ticket for the
machine account ``WIN1$@EXAMPLE.TEST`` from a real MIT KDC:

1. an unsigned UPDATE over UDP: prerequisite "no CNAME at the name"
   (RRSET_NOT_EXISTS CNAME), delete A, delete AAAA, add A with TTL 1200 ->
   REFUSED (the default: no unsigned updates);
2. TKEY over TCP (GSS-API negotiation, SPNEGO) -> a context;
3. the same UPDATE signed with it -> NOERROR, committed as
   ``krb5:WIN1$@EXAMPLE.TEST`` under the zone rule
   ``grant EXAMPLE.TEST ms-self . A AAAA``, and served;
4. the PTR in a reverse zone managed by ddns (rule ``grant EXAMPLE.TEST
   ms-self . PTR``): its own name -> NOERROR; a PTR to another name -> REFUSED.
"""
from __future__ import annotations

import json

import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.update
import pytest

from testkit import gssclient
from conftest import query
from ddns.listener.wire import sections
from gss_fixtures import ZONE, Realm, realm  # noqa: F401 (fixture)

REVERSE = "2.0.192.in-addr.arpa"
MACHINE = "WIN1$"
FQDN = f"win1.{ZONE}"
ADDRESS = "192.0.2.77"
# Windows' key names: a number, "ms-7.1", a hex tag, and a GUID
KEYNAME = "1234567-ms-7.1-0a1b.01234567-89ab-cdef-0123-456789abcdef"


def windows_update(fqdn: str = FQDN, address: str = ADDRESS) -> dns.update.UpdateMessage:
    """What Windows sends to register its A record."""
    update = dns.update.UpdateMessage(ZONE + ".")
    update.flags = 0x2800  # opcode UPDATE, no other flag
    name = dns.name.from_text(fqdn)
    update.absent(name, "CNAME")
    update.delete(name, "A")
    update.delete(name, "AAAA")
    update.add(name, 1200, "A", address)
    return update


def windows_ptr(target: str, address: str = ADDRESS) -> dns.update.UpdateMessage:
    """What Windows sends to register its PTR record: replace the PTR set at the address's reverse name."""
    update = dns.update.UpdateMessage(REVERSE + ".")
    owner = dns.name.from_text(f"{address.split('.')[-1]}.{REVERSE}")
    update.delete(owner, "PTR")
    update.add(owner, 1200, "PTR", target + ".")
    return update


def set_rules(instance, zone: str, rules: list[str]) -> None:
    """Add a [kerberos] table to ZONE's zone.toml, as an admin's commit."""
    path = instance.repo / zone / "zone.toml"
    path.write_text(path.read_text() + "\n[kerberos]\nrules = " + json.dumps(rules) + "\n")
    instance.git("add", f"{zone}/zone.toml")
    instance.git("-c", "user.name=admin", "-c", "user.email=admin@example.test", "commit", "-q", "-m",
                 f"{zone}: Kerberos rules")


def start(realm: Realm, instance, serve, reverse: bool = False) -> tuple:
    """(instance, realm, port): ddns serve with GSS-TSIG and the ms-self rule (and the reverse zone with its own)."""
    if reverse:
        added = instance.cli("domain", "add", REVERSE, "--nameserver", f"ns1.{ZONE}")
        assert added.code in (0, 3), added.err  # 3: committed, served once ddns serve starts named
        set_rules(instance, REVERSE, [f"grant {realm.kdc.realm} ms-self . PTR"])
    set_rules(instance, ZONE, [f"grant {realm.kdc.realm} ms-self . A AAAA"])
    serve({"kerberos.keytab": str(realm.keytab), "kerberos.realm": realm.kdc.realm})
    return instance, realm, instance.update_port


@pytest.fixture
def windows(realm: Realm, instance, serve):
    return start(realm, instance, serve)


@pytest.fixture
def windows_reverse(realm: Realm, instance, serve):
    return start(realm, instance, serve, reverse=True)


def test_the_update_is_the_windows_sequence_on_the_wire():
    zone, prerequisites, updates, _ = sections(windows_update().to_wire())
    assert [(r.name.to_text(), r.rdtype, r.rdclass) for r in zone] == [(ZONE + ".", dns.rdatatype.SOA, dns.rdataclass.IN)]
    assert [(r.rdtype, r.rdclass, r.ttl, r.rdata) for r in prerequisites] == [
        (dns.rdatatype.CNAME, dns.rdataclass.NONE, 0, None)]
    assert [(r.name.to_text(), r.rdtype, r.rdclass, r.ttl, r.rdata and r.rdata.to_text()) for r in updates] == [
        (FQDN + ".", dns.rdatatype.A, dns.rdataclass.ANY, 0, None),
        (FQDN + ".", dns.rdatatype.AAAA, dns.rdataclass.ANY, 0, None),
        (FQDN + ".", dns.rdatatype.A, dns.rdataclass.IN, 1200, ADDRESS)]


@pytest.mark.parametrize("algorithm, section", [("gss.microsoft.com", "answer"), ("gss-tsig", "additional")])
def test_unsigned_is_refused_then_the_same_update_signed_as_the_machine_is_served(windows, algorithm, section):
    instance, realm, port = windows
    soa = dns.query.udp(dns.message.make_query(FQDN, "SOA"), "127.0.0.1", port=port, timeout=5)
    assert soa.rcode() == dns.rcode.NOERROR and soa.authority[0].name.to_text() == ZONE + "."
    before = instance.commit_count()
    unsigned = dns.query.udp(windows_update(), "127.0.0.1", port=port, timeout=5)
    assert unsigned.rcode() == dns.rcode.REFUSED and instance.commit_count() == before
    principal, ccache = realm.ticket(MACHINE)
    session = gssclient.negotiate(port, ccache, realm.target, keyname=dns.name.from_text(KEYNAME),
                                  algorithm=algorithm, section=section)
    signed = gssclient.send(port, windows_update(), session)
    assert signed.rcode() == dns.rcode.NOERROR and signed.had_tsig
    assert instance.dig(FQDN) == [ADDRESS]
    served = dns.query.udp(dns.message.make_query(FQDN, "A"), "127.0.0.1", port=instance.dns_port, timeout=5)
    assert served.answer[0].ttl == 1200
    trailer = json.loads(instance.git("log", "-1", "--format=%(trailers:key=Ddns-Change,valueonly)").strip())
    assert trailer["actor"] == f"krb5:{principal}" and trailer["host"] == FQDN
    other = gssclient.send(port, windows_update(f"win2.{ZONE}"), session)  # ms-self: its own name only
    assert other.rcode() == dns.rcode.REFUSED and instance.dig(f"win2.{ZONE}") == []


def test_the_machine_registers_its_own_ptr_and_no_other(windows_reverse):
    instance, realm, port = windows_reverse
    principal, ccache = realm.ticket(MACHINE)
    session = gssclient.negotiate(port, ccache, realm.target, algorithm="gss-tsig")
    reverse_name = f"77.{REVERSE}"
    before = instance.commit_count()
    foreign = gssclient.send(port, windows_ptr(f"win2.{ZONE}"), session)
    assert foreign.rcode() == dns.rcode.REFUSED and instance.commit_count() == before
    own = gssclient.send(port, windows_ptr(FQDN), session)
    assert own.rcode() == dns.rcode.NOERROR
    assert query(instance.dns_port, reverse_name, "PTR") == [FQDN + "."]
    trailer = json.loads(instance.git("log", "-1", "--format=%(trailers:key=Ddns-Change,valueonly)").strip())
    assert trailer["actor"] == f"krb5:{principal}"
