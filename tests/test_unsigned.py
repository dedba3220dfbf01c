"""Unsigned updates from trusted networks, for real: dnspython against ddns serve, dig against its named, git log.

A zone whose zone.toml lists 127.0.0.0/8 under [unsigned] (set with ``ddns
domain unsigned`` while ``ddns serve`` runs) takes an unsigned update that
registers the client's own address, over UDP and TCP; the commit names
``client:127.0.0.x`` and BIND serves it when the answer comes. The client's
source address is varied by binding its socket to 127.0.0.2, 127.0.0.3, ...
(all loopback). The Windows sequence (no CNAME at the name; delete A, delete
AAAA; add A with TTL 1200) is built byte for byte with dnspython: no Windows
client runs here. Everything else is REFUSED and commits nothing: another
address, two names, TXT, CNAME, a registered host's name, a client outside
the networks, and every unsigned update of a zone without networks.
"""
from __future__ import annotations

import dns.message
import dns.query
import dns.rcode
import dns.update
import pytest

from conftest import Instance
from ddns import errors
from ddns.model import Actor, Op, Operation, Outcome
from test_rfc2136 import trailers

OVERRIDES = {"dyndns2.allow_loopback": True, "updates.types": ["A", "AAAA", "TXT", "CNAME", "PTR"]}
CLOSED = "closed.example.test"      # networks that do not hold the clients below
REVERSE = "0.0.127.in-addr.arpa"    # the clients' reverse zone


def rcode_of(inst: Instance, update: dns.message.Message, source: str, tcp: bool = False) -> str:
    """Send UPDATE unsigned from SOURCE (a loopback address) to the listener; the answer's rcode."""
    send = dns.query.tcp if tcp else dns.query.udp
    answer = send(update, "127.0.0.1", timeout=20, port=inst.update_port, source=source)
    assert not answer.had_tsig
    return dns.rcode.to_text(answer.rcode())


def windows(zone: str, label: str, address: str) -> dns.update.UpdateMessage:
    """A non-domain-joined Windows client's registration: prerequisite no CNAME, delete A and AAAA, add A 1200."""
    update = dns.update.UpdateMessage(zone + ".")
    update.absent(label, "CNAME")
    update.delete(label, "A")
    update.delete(label, "AAAA")
    update.add(label, 1200, "A", address)
    return update


def ok(result) -> None:
    assert result.code == 0, result.err


@pytest.fixture
def lan(instance: Instance, serve):
    """Served: the instance's zone and REVERSE trust 127.0.0.0/8, CLOSED only 192.0.2.0/24; host 'taken' exists."""
    running = serve(OVERRIDES)
    inst = instance
    for zone, network in ((inst.zone, "127.0.0.0/8"), (CLOSED, "192.0.2.0/24"), (REVERSE, "127.0.0.0/8")):
        if zone != inst.zone:  # a reverse zone is served by the forward zone's name server
            ok(inst.cli("domain", "add", zone, *(("--ns", f"ns1.{inst.zone}") if zone == REVERSE else ())))
        ok(inst.cli("domain", "unsigned", zone, "--network", network))
    inst.add_host(f"taken.{inst.zone}")
    return inst, running


@pytest.mark.parametrize("tcp", [False, True])
def test_a_trusted_client_registers_its_own_address(lan, tcp):
    inst, _ = lan
    fqdn = f"pc1.{inst.zone}"
    before = inst.commit_count()
    update = dns.update.UpdateMessage(inst.zone + ".")
    update.add("pc1", 300, "A", "127.0.0.2")
    assert rcode_of(inst, update, "127.0.0.2", tcp) == "NOERROR"
    assert inst.dig(fqdn) == ["127.0.0.2"]
    assert inst.commit_count() == before + 1
    [change] = trailers(inst)
    assert (change["actor"], change["client"], change["interface"]) == ("client:127.0.0.2", "127.0.0.2", "rfc2136")
    history = inst.cli("history", fqdn, "--json")
    ok(history)
    assert [h["actor"] for h in history.json()] == ["client:127.0.0.2"]


def test_the_windows_sequence_registers_and_moves_the_name(lan):
    inst, _ = lan
    fqdn = f"win1.{inst.zone}"
    assert rcode_of(inst, windows(inst.zone, "win1", "127.0.0.5"), "127.0.0.5") == "NOERROR"
    assert inst.dig(fqdn) == ["127.0.0.5"]
    assert "win1 1200 A 127.0.0.5\n" in inst.tree_records(inst.zone)
    # the address changed (DHCP): the same sequence from the new address replaces it
    assert rcode_of(inst, windows(inst.zone, "win1", "127.0.0.6"), "127.0.0.6", tcp=True) == "NOERROR"
    assert inst.dig(fqdn) == ["127.0.0.6"]
    assert {c["actor"] for c in trailers(inst)} == {"client:127.0.0.6"}


def test_a_trusted_client_sets_the_ptr_of_its_own_address(lan):
    inst, _ = lan
    update = dns.update.UpdateMessage(REVERSE + ".")
    update.delete("7", "PTR")
    update.add("7", 1200, "PTR", f"pc7.{inst.zone}.")
    assert rcode_of(inst, update, "127.0.0.7") == "NOERROR"
    assert inst.dig(f"7.{REVERSE}", "PTR") == [f"pc7.{inst.zone}."]
    assert {c["actor"] for c in trailers(inst)} == {"client:127.0.0.7"}
    other = dns.update.UpdateMessage(REVERSE + ".")
    other.add("8", 1200, "PTR", f"pc7.{inst.zone}.")  # the reverse name of another address
    assert unchanged(inst, lambda: rcode_of(inst, other, "127.0.0.7")) == "REFUSED"


def unchanged(inst: Instance, run) -> str:
    """RUN() (returning an rcode); nothing was committed and BIND serves the same serial."""
    head, serial = inst.git("rev-parse", "HEAD"), inst.served_serial()
    rcode = run()
    assert inst.git("rev-parse", "HEAD") == head and inst.served_serial() == serial
    return rcode


def _update(zone: str, *records: tuple) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage(zone + ".")
    for label, rtype, rdata in records:
        update.add(label, 300, rtype, rdata)
    return update


@pytest.mark.parametrize("case, source, records", [
    ("another address", "127.0.0.2", [("pc2", "A", "127.0.0.9")]),
    ("another family", "127.0.0.2", [("pc2", "AAAA", "::1")]),
    ("two names", "127.0.0.2", [("pc2", "A", "127.0.0.2"), ("pc3", "A", "127.0.0.2")]),
    ("a TXT", "127.0.0.2", [("pc2", "TXT", '"hello"')]),
    ("a CNAME", "127.0.0.2", [("pc2", "CNAME", "www.example.test.")]),
    ("an address and a TXT", "127.0.0.2", [("pc2", "A", "127.0.0.2"), ("pc2", "TXT", '"hello"')]),
    ("a registered host", "127.0.0.2", [("taken", "A", "127.0.0.2")]),
    ("a reserved name", "127.0.0.2", [("www", "A", "127.0.0.2")]),
    ("a PTR in the forward zone", "127.0.0.2", [("pc2", "PTR", "pc2.example.test.")]),
])
@pytest.mark.parametrize("tcp", [False, True])
def test_anything_but_registering_itself_is_refused(lan, case, source, records, tcp):
    inst, _ = lan
    assert unchanged(inst, lambda: rcode_of(inst, _update(inst.zone, *records), source, tcp)) == "REFUSED", case
    assert inst.dig(f"{records[0][0]}.{inst.zone}", records[0][1]) == []


def test_a_zone_whose_networks_do_not_hold_the_client_refuses(lan):
    inst, _ = lan
    assert unchanged(inst, lambda: rcode_of(inst, windows(CLOSED, "pc1", "127.0.0.2"), "127.0.0.2")) == "REFUSED"
    assert unchanged(inst, lambda: rcode_of(inst, windows(CLOSED, "pc1", "127.0.0.2"), "127.0.0.2", tcp=True)) \
        == "REFUSED"
    assert inst.dig(f"pc1.{CLOSED}") == []


def test_only_the_listed_network_is_trusted(lan):
    inst, _ = lan
    ok(inst.cli("domain", "unsigned", inst.zone, "--network", "127.0.0.3/32"))
    assert unchanged(inst, lambda: rcode_of(inst, windows(inst.zone, "pc2", "127.0.0.2"), "127.0.0.2")) == "REFUSED"
    assert rcode_of(inst, windows(inst.zone, "pc3", "127.0.0.3"), "127.0.0.3") == "NOERROR"
    assert inst.dig(f"pc3.{inst.zone}") == ["127.0.0.3"]


def test_off_by_default_and_after_clear(instance: Instance, serve):
    serve(OVERRIDES)
    inst = instance
    assert "unsigned" not in (inst.repo / inst.zone / "zone.toml").read_text()
    for tcp in (False, True):
        assert unchanged(inst, lambda: rcode_of(inst, windows(inst.zone, "pc1", "127.0.0.1"), "127.0.0.1", tcp)) \
            == "REFUSED"
    ok(inst.cli("domain", "unsigned", inst.zone, "--network", "127.0.0.0/8"))
    assert rcode_of(inst, windows(inst.zone, "pc1", "127.0.0.1"), "127.0.0.1") == "NOERROR"
    ok(inst.cli("domain", "unsigned", inst.zone, "--clear"))
    assert unchanged(inst, lambda: rcode_of(inst, windows(inst.zone, "pc1", "127.0.0.2"), "127.0.0.2")) == "REFUSED"
    assert inst.dig(f"pc1.{inst.zone}") == ["127.0.0.1"]


def test_a_malformed_unsigned_update_from_outside_learns_only_refused(lan):
    inst, _ = lan
    update = dns.update.UpdateMessage(CLOSED + ".")
    update.add("pc1.example.org.", 300, "A", "127.0.0.2")  # outside the zone: NOTZONE when signed
    assert unchanged(inst, lambda: rcode_of(inst, update, "127.0.0.2")) == "REFUSED"


def test_the_listener_keeps_answering_after_refusals(lan):
    inst, _ = lan
    for n in range(3):
        assert rcode_of(inst, _update(inst.zone, ("pc9", "TXT", f'"{n}"')), "127.0.0.9") == "REFUSED"
    assert rcode_of(inst, windows(inst.zone, "pc9", "127.0.0.9"), "127.0.0.9") == "NOERROR"
    assert inst.dig(f"pc9.{inst.zone}") == ["127.0.0.9"]


def test_a_name_registered_meanwhile_is_not_taken_over(lan):
    """The guard runs under the publisher's lock: a host registered after the check, before the publish, wins."""
    inst, running = lan
    service, actor = running.service, Actor("client:127.0.0.2", "127.0.0.2", "rfc2136")
    operations = (Operation(Op.DELETE_RRSET, f"late.{inst.zone}", "A"), Operation(Op.ADD, f"late.{inst.zone}", "A",
                                                                                  "127.0.0.2", 1200))
    early = service.unsigned_identity(inst.zone, "127.0.0.2", operations, actor)
    assert service.update(early, inst.zone, operations).outcome is Outcome.PUBLISHED  # the guard can pass
    identity = service.unsigned_identity(inst.zone, "127.0.0.2", operations, actor)
    inst.add_host(f"late.{inst.zone}")
    head = inst.git("rev-parse", "HEAD")
    assert service.update(identity, inst.zone, operations).outcome is Outcome.REFUSED
    assert inst.git("rev-parse", "HEAD") == head
    with pytest.raises(errors.Refused, match="registered host"):
        service.unsigned_identity(inst.zone, "127.0.0.2", operations, actor)
