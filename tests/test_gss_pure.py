"""The pure parts of GSS-TSIG: the gss.microsoft.com digest, the context table, the per-context lock.

The digest test feeds the same message to dnspython's own GSS-TSIG code (a
context that records what it is asked to sign) and to ddns's adapter, and
compares the bytes: the two algorithm names may differ only in the name.
"""
from __future__ import annotations

import threading
import time

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.update
import pytest

from ddns.listener import gsstsig, tsig
from ddns.listener.contexts import Context, ContextTable, InUse

KEYNAME = dns.name.from_text("123.sig-client.")


class Recording:
    """A GSS context stand-in that records the data it signs; its MIC is a fixed value."""

    def __init__(self):
        self.signed: list[bytes] = []

    def get_signature(self, data: bytes) -> bytes:
        self.signed.append(data)
        return b"MIC"

    def verify_signature(self, data: bytes, mac: bytes) -> None:
        self.signed.append(data)
        if mac != b"MIC":
            raise ValueError("bad MIC")


def update() -> dns.update.UpdateMessage:
    message = dns.update.UpdateMessage("dyn.example.test.", id=4242)
    message.replace("vm1.dyn.example.test.", 60, "A", "192.0.2.1")
    return message


@pytest.mark.parametrize("request_mac", [b"", b"\x01" * 28])
def test_adapter_digest_is_byte_equal_to_dnspythons_gss_tsig(request_mac):
    ours, theirs = Recording(), Recording()
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, dns.tsig.GSS_TSIG, 1_800_000_000, 300,
                                      b"", 4242, 0, b"")
    wire = update().to_wire()
    dns.tsig.sign(wire, dns.tsig.Key(KEYNAME, theirs, dns.tsig.GSS_TSIG), rdata, 1_800_000_000, request_mac)
    gsstsig.sign(wire, dns.tsig.Key(KEYNAME, ours, dns.tsig.GSS_TSIG), rdata, request_mac)
    assert ours.signed == theirs.signed and len(ours.signed[0]) > len(wire)
    microsoft = Recording()
    gsstsig.sign(wire, dns.tsig.Key(KEYNAME, microsoft, gsstsig.MICROSOFT), rdata.replace(algorithm=gsstsig.MICROSOFT),
                 request_mac)
    assert microsoft.signed[0] == theirs.signed[0].replace(dns.tsig.GSS_TSIG.to_digestable(),
                                                           gsstsig.MICROSOFT.to_digestable())


def test_adapter_verifies_what_it_signed_and_refuses_other_macs():
    context = Recording()
    key = dns.tsig.Key(KEYNAME, context, gsstsig.MICROSOFT)
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, gsstsig.MICROSOFT, 0, 300, b"",
                                      4242, 0, b"")
    wire = tsig.append(update().to_wire(), tsig.Signing(KEYNAME, rdata, key))
    signed = dns.message.from_wire(wire, keyring=False)
    start = len(update().to_wire())
    gsstsig.verify(wire, key, signed.tsig[0], start)
    assert context.signed[0] == context.signed[1]  # signing and verifying digest the same bytes
    with pytest.raises(dns.tsig.BadSignature):
        gsstsig.verify(wire, key, signed.tsig[0].replace(mac=b"FORGED"), start)
    with pytest.raises(dns.tsig.BadAlgorithm):
        gsstsig.verify(wire, dns.tsig.Key(KEYNAME, context, dns.tsig.GSS_TSIG), signed.tsig[0], start)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_context_lives_for_the_ticket_capped_by_the_setting():
    clock = Clock()
    table = ContextTable(max_contexts=10, max_seconds=3600, clock=clock)
    short = table.add("short", "gss-tsig", "a@R", object(), lifetime=60)
    long = table.add("long", "gss-tsig", "b@R", object(), lifetime=86400)
    assert (short.expiry, long.expiry) == (1060, 4600)
    clock.now = 1060
    assert table.get("short") is None and table.get("long") is long
    clock.now = 4600
    assert table.get("long") is None and len(table) == 0


def test_a_live_key_name_cannot_be_taken_an_expired_one_can():
    clock = Clock()
    table = ContextTable(clock=clock)
    first = table.add("k", "gss-tsig", "a@R", object(), 60)
    with pytest.raises(InUse):
        table.add("k", "gss-tsig", "b@R", object(), 60)
    assert table.get("k") is first
    clock.now += 60
    assert table.add("k", "gss-tsig", "b@R", object(), 60).principal == "b@R"


def test_full_table_drops_expired_ones_first_then_the_one_nearest_its_expiry():
    clock = Clock()
    table = ContextTable(max_contexts=3, clock=clock)
    table.add("expired", "gss-tsig", "", object(), 10)
    table.add("soon", "gss-tsig", "", object(), 100)
    table.add("late", "gss-tsig", "", object(), 1000)
    clock.now += 10
    table.add("new1", "gss-tsig", "", object(), 500)  # the expired one goes
    assert {n for n in ("expired", "soon", "late", "new1") if table.in_use(n)} == {"soon", "late", "new1"}
    table.add("new2", "gss-tsig", "", object(), 500)  # none expired: the one nearest its expiry goes
    assert {n for n in ("soon", "late", "new1", "new2") if table.in_use(n)} == {"late", "new1", "new2"}
    assert len(table) == 3
    assert table.remove("late") and not table.remove("late")


def test_replayed_tokens_are_seen_within_the_window_and_memory_is_bounded():
    clock = Clock()
    table = ContextTable(max_contexts=5, clock=clock, replay_seconds=900)
    assert table.first_sight(b"token") and not table.first_sight(b"token")
    clock.now += 899
    assert not table.first_sight(b"token")
    clock.now += 1
    assert table.first_sight(b"token")  # the Kerberos acceptor refuses an authenticator that old anyway
    for i in range(100):
        table.first_sight(b"junk%d" % i)
    assert len(table._tokens) <= 10
    table.first_sight(b"bad")
    table.forget(b"bad")  # a token that opened nothing does not hold a place
    assert table.first_sight(b"bad")


def test_one_context_is_never_used_by_two_threads_at_once():
    class Exclusive:
        """Fails if entered by two threads at once; slow enough for them to meet."""

        def __init__(self):
            self.inside = 0
            self.overlaps = 0

        def get_signature(self, data: bytes, mac: bytes = b"") -> bytes:
            self.inside += 1
            if self.inside > 1:
                self.overlaps += 1
            time.sleep(0.001)
            self.inside -= 1
            return b"MIC"

        verify_signature = get_signature

    security = Exclusive()
    context = Context("k", "gss-tsig", "a@R", security, 0, 10)
    start = threading.Barrier(20)
    done: list[int] = []

    def use():
        start.wait()
        for _ in range(10):
            context.get_signature(b"x")
            context.verify_signature(b"x", b"MIC")
        done.append(1)

    threads = [threading.Thread(target=use) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(done) == 20 and security.overlaps == 0 and security.inside == 0
