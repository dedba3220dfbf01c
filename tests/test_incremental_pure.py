"""Incremental publishing without a named: the UPDATE message, the fall-back rules, the kept-open
connection, the served-versus-committed comparison and the mode setting."""
from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from ddns import bind
from ddns.config import ConfigError
from ddns.errors import Invalid
from ddns.publishing import servedcheck
from ddns.publishing.bindtarget import BindTarget, PublishTarget
from ddns.publishing.incremental import (IncrementalNamed, UpdateChannel, read_key, resolve_mode,
                                         update_message)
from ddns.publishing.serialfloor import SerialFloors
from ddns.publishing.zonechange import RRsetChange, ZoneChange
from ddns.records import RecordSet

ZONE = "dyn.example.test"
SOA = f"ns1.{ZONE}. hostmaster.{ZONE}. 1700000002 3600 600 86400 60"
KEY = dns.tsig.Key("ddns-publisher", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "hmac-sha256")


def change(serial: int = 1700000002) -> ZoneChange:
    return ZoneChange(ZONE, serial, SOA.replace("1700000002", str(serial)), 3600, (
        RRsetChange(f"new.{ZONE}", "A", None, RecordSet(("192.0.2.1",)), 60),
        RRsetChange(f"ttl.{ZONE}", "A", RecordSet(("192.0.2.2",)), RecordSet(("192.0.2.2",), 300), 300),
        RRsetChange(f"gone.{ZONE}", "TXT", RecordSet(('"a b"',)), None, 60),
        RRsetChange(f"alias.{ZONE}", "CNAME", RecordSet(("target",)), RecordSet(("other",)), 60),
    ))


def sections(message: dns.message.Message) -> tuple[list[str], list[str]]:
    wire = dns.message.from_wire(message.to_wire(), keyring=KEY)  # signed with KEY, or this raises
    return ([r.to_text() for r in wire.prerequisite], [r.to_text() for r in wire.update])


def test_update_message_checks_the_old_sets_replaces_each_set_and_the_soa():
    prereq, update = sections(update_message(change(), KEY))
    assert prereq == [f"new.{ZONE}. NONE A", f"ttl.{ZONE}. 0 IN A 192.0.2.2",
                      f'gone.{ZONE}. 0 IN TXT "a b"', f"alias.{ZONE}. 0 IN CNAME target.{ZONE}."]
    assert update == [f"new.{ZONE}. ANY A", f"new.{ZONE}. 60 IN A 192.0.2.1",
                      f"ttl.{ZONE}. ANY A", f"ttl.{ZONE}. 300 IN A 192.0.2.2",
                      f"gone.{ZONE}. ANY TXT",
                      f"alias.{ZONE}. ANY CNAME", f"alias.{ZONE}. 60 IN CNAME other.{ZONE}.",
                      f"{ZONE}. ANY SOA", f"{ZONE}. 3600 IN SOA {SOA}"]


def text_built(change: ZoneChange, probe: bool = False) -> dns.message.Message:
    """The UPDATE as dnspython builds it from the records' text (names and rdatas parsed): what update_message
    must equal."""
    origin = dns.name.from_text(change.zone)
    message = dns.update.UpdateMessage(origin)

    def rdataset(rtype, rdatas, ttl):
        return dns.rdataset.from_text_list("IN", rtype, ttl, list(rdatas), origin=origin)

    for rr in change.changes:
        name, expected = dns.name.from_text(rr.name), rr.new if probe else rr.old
        if expected is None:
            message.absent(name, rr.rtype)
        else:
            message.present(name, rdataset(rr.rtype, expected.rdatas, 0))
        if not probe:
            message.delete(name, rr.rtype)
            if rr.new is not None:
                message.add(name, rdataset(rr.rtype, rr.new.rdatas, rr.ttl))
    soa = dns.rdata.from_text("IN", "SOA", change.soa, origin=origin)
    if probe:
        message.present(origin, dns.rdataset.from_rdata(0, soa))
    else:
        message.replace(origin, change.soa_ttl, soa)
    return message


HOSTILE = ZoneChange(ZONE, 1700000003, SOA.replace("1700000002", "1700000003"), 3600, (
    RRsetChange(f"txt.{ZONE}", "TXT", RecordSet(('"a;b"',)),
                RecordSet(('"say \\"hi\\"; rm -rf \\\\ ok"', '"v=spf1 -all" "second string"'), 120), 120),
    RRsetChange(f"long.{ZONE}", "TXT", None, RecordSet(('"' + "x" * 255 + '" "' + "y" * 200 + '"',)), 60),
    RRsetChange(f"xn--bcher-kva.{ZONE}", "A", None, RecordSet(("192.0.2.7", "198.51.100.1")), 60),
    RRsetChange(f"v6.{ZONE}", "AAAA", RecordSet(("2001:db8::1",)), RecordSet(("::ffff:192.0.2.1", "2001:db8:0:1::2")), 60),
    RRsetChange(f"a.b-c.{ZONE}", "AAAA", RecordSet(("2001:db8::5",)), None, 60),
    RRsetChange(f"_acme-challenge.x.{ZONE}", "TXT", RecordSet(('"token-1"',)), None, 60),
    RRsetChange(f"*.w.{ZONE}", "CNAME", None, RecordSet(("target.example.",)), 60),
    RRsetChange(f"mx.{ZONE}", "MX", RecordSet(("10 mail",)), RecordSet(("20 mail.example.",)), 60),
    RRsetChange(ZONE, "TXT", RecordSet(('"apex"',)), RecordSet(('"apex 2"',)), 60),
))


@pytest.mark.parametrize("probe", [False, True])
@pytest.mark.parametrize("made", [change(), HOSTILE], ids=["plain", "hostile"])
def test_the_update_built_from_rdata_objects_is_the_one_built_from_text(made, probe):
    """Quotes, semicolons and backslashes in TXT, a TXT of several strings, IDN and wildcard labels,
    AAAA (mapped and compressed forms), whole sets deleted, the apex: byte for byte dnspython's own."""
    ours, theirs = update_message(made, None, probe), text_built(made, probe)
    theirs.id = ours.id
    assert ours.to_wire() == theirs.to_wire()


def test_an_address_that_is_not_one_is_refused_by_the_message():
    bad = ZoneChange(ZONE, 1700000003, SOA, 3600, (RRsetChange(f"x.{ZONE}", "A", None, RecordSet(("192.0.2",)), 60),))
    with pytest.raises(OSError):
        update_message(bad, None)


def test_a_probe_asks_for_the_new_sets_and_the_soa_and_changes_nothing():
    prereq, update = sections(update_message(change(), KEY, probe=True))
    assert update == []
    assert prereq == [f"new.{ZONE}. 0 IN A 192.0.2.1", f"ttl.{ZONE}. 0 IN A 192.0.2.2",
                      f"gone.{ZONE}. NONE TXT", f"alias.{ZONE}. 0 IN CNAME other.{ZONE}.",
                      f"{ZONE}. 0 IN SOA {SOA}"]


# ---- BindTarget's rules, with the in-memory named ------------------------------------
class Named:
    """Takes updates (answering RCODE), loads on thaw / reload; counts what it is asked."""

    def __init__(self):
        self.rcode = dns.rcode.NOERROR
        self.served: int | None = 1
        self.file_serial = 1
        self.calls: list[str] = []
        self.down = False

    def _call(self, what: str) -> None:
        if self.down:
            raise bind.BindError(f"{what}: connection refused")
        self.calls.append(what)

    def send_update(self, change: ZoneChange, timeout: float):
        self._call("update")
        if self.rcode == dns.rcode.NOERROR:
            self.served = change.serial
        rcode = self.rcode
        return lambda wait: rcode

    def serves(self, change: ZoneChange, timeout: float) -> bool:
        self._call("serves")
        return self.served == change.serial and self.rcode == dns.rcode.NOERROR

    def freeze(self, zone, timeout):
        self._call("freeze")

    def thaw(self, zone, timeout):
        self._call("thaw")
        self.served = self.file_serial

    def reload(self, zone, timeout):
        self._call("reload")
        self.served = self.file_serial

    def reconfig(self, timeout):
        self._call("reconfig")

    def served_serial(self, zone, timeout):
        self._call("query")
        return self.served


def target(tmp_path: Path, mode: str = "incremental"):
    named = Named()
    written = []
    newest = {ZONE: 1}

    def committed(zone: str) -> str:
        written.append(newest[zone])
        named.file_serial = newest[zone]
        return f"; serial {newest[zone]}\n"
    bt = BindTarget(PublishTarget(rndc=None, control=named, zone_dir=tmp_path, mode=mode, verify_timeout=0.5, fsync=False),
                    newest=newest.get, on_error=lambda m: None, committed=committed)
    return named, bt, newest, written


def commit(bt: BindTarget, newest: dict, serial: int) -> tuple[bool, set[str]]:
    newest[ZONE] = serial
    taken = bt.publish(change(serial), bt.deadline())
    return taken, bt.wait_served({ZONE: serial}) if taken else set()


def test_an_update_named_takes_is_served_at_once_without_a_query(tmp_path):
    named, bt, newest, written = target(tmp_path)
    assert commit(bt, newest, 2) == (True, {ZONE})
    assert named.calls == ["update"] and written == []


def test_a_refused_update_falls_back_to_a_full_load_proven_by_the_change_s_data(tmp_path):
    named, bt, newest, written = target(tmp_path)
    named.rcode = dns.rcode.NXRRSET  # named's zone diverged
    newest[ZONE] = 2
    assert bt.publish(change(2), bt.deadline())
    assert named.calls == ["update", "freeze", "thaw"] and written == [2]
    assert (tmp_path / f"{ZONE}.zone").read_text() == "; serial 2\n"
    named.rcode = dns.rcode.NOERROR  # after the load named serves our data
    assert bt.wait_served({ZONE: 2}) == {ZONE}
    assert named.calls[3:] == ["query", "serves"]
    named.calls.clear()
    assert commit(bt, newest, 3) == (True, {ZONE})  # in sync again: the next commit is an update
    assert named.calls == ["update"]


def test_a_serial_named_shows_with_other_data_does_not_count_as_served(tmp_path):
    named, bt, newest, _ = target(tmp_path)
    named.rcode = dns.rcode.NXRRSET
    newest[ZONE] = 2
    assert bt.publish(change(2), bt.deadline())
    assert bt.wait_served({ZONE: 2}, timeout=0.05) == set()  # serial 2 served, the data is not ours
    assert ZONE in bt.unserved


def test_after_a_lost_change_the_next_commit_is_a_full_load(tmp_path):
    named, bt, newest, written = target(tmp_path)
    named.down = True
    newest[ZONE] = 2
    assert not bt.publish(change(2), bt.deadline())
    bt.unserved.add(ZONE)  # as the committer does
    named.down = False
    assert commit(bt, newest, 3) == (True, {ZONE})
    assert named.calls[:2] == ["freeze", "thaw"] and written == [3]  # not an update on top of a gap


def test_unreachable_named_for_an_update_falls_back_to_a_load(tmp_path):
    named, bt, newest, written = target(tmp_path)

    def unreachable(change, timeout):
        raise bind.BindError("update of zone: connection refused")
    named.send_update = unreachable
    assert commit(bt, newest, 2) == (True, {ZONE})
    assert named.calls[:2] == ["freeze", "thaw"] and written == [2]


def test_an_update_sent_ahead_of_a_failed_commit_is_withdrawn_by_a_proven_load(tmp_path):
    named, bt, newest, written = target(tmp_path)
    assert commit(bt, newest, 2) == (True, {ZONE})
    sent = bt.send(change(3), bt.deadline())  # the commit of serial 3 then fails: newest stays 2
    assert named.served == 3
    assert bt.withdraw(change(3), sent, change(2), bt.deadline())
    assert named.calls[-5:] == ["update", "freeze", "thaw", "query", "serves"]  # loaded, then proven by its data
    assert named.served == 2 and written[-1] == 2 and ZONE not in bt.unserved
    assert (bt.serial_floor(ZONE, 2), bt.serial_floor(ZONE, 4)) == (3, 4)  # the next commit's serial passes 3
    assert commit(bt, newest, 4) == (True, {ZONE})
    assert named.calls[-1] == "update"  # named serves the last commit again: updates go on


def test_a_withdrawn_update_named_does_not_give_up_leaves_the_zone_unserved(tmp_path):
    named, bt, newest, written = target(tmp_path)
    assert commit(bt, newest, 2) == (True, {ZONE})
    sent = bt.send(change(3), bt.deadline())
    named.file_serial = 3  # a load that does not take: named keeps serving the withdrawn update
    bt._committed = lambda zone: f"; serial {newest[zone]}\n"
    assert not bt.withdraw(change(3), sent, change(2), bt.deadline())
    assert ZONE in bt.unserved  # the retry loop loads it again, proven the same way


def test_reload_mode_writes_the_copy_and_reloads(tmp_path):
    named, bt, newest, written = target(tmp_path, mode="reload")
    assert commit(bt, newest, 2) == (True, {ZONE})
    assert named.calls == ["reload", "query"] and written == [2]


def test_missing_copies_are_written_and_copies_of_removed_zones_go(tmp_path):
    named, bt, newest, written = target(tmp_path, mode="reload")
    (tmp_path / "old.example.zone").write_text("x")
    (tmp_path / "old.example.zone.jnl").write_text("x")
    (tmp_path / f"{ZONE}.zone.jnl").write_text("a journal of an older copy")
    bt.write_zones_conf({ZONE: Path("/tree") / ZONE / f"{ZONE}.zone"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{ZONE}.zone"]
    bt.write_zones_conf({ZONE: Path("/tree") / ZONE / f"{ZONE}.zone"})
    assert written == [1]  # an existing copy is named's: not rewritten


# ---- the kept-open connection ---------------------------------------------------------
def answer_one(conn: socket.socket, keyring: dns.tsig.Key | None = None) -> bool:
    """Read one DNS message from CONN and answer it NOERROR (signed with KEYRING when it is); False when the
    peer closed it instead."""
    head = conn.recv(2)
    if len(head) < 2:
        return False
    (length,) = struct.unpack(">H", head)
    data = b""
    while len(data) < length:
        data += conn.recv(length - len(data))
    reply = dns.message.make_response(dns.message.from_wire(data, keyring=keyring)).to_wire()
    conn.sendall(struct.pack(">H", len(reply)) + reply)
    return True


def fake_named(handle) -> tuple[socket.socket, list[socket.socket], threading.Thread]:
    """A loopback server that takes two connections one after the other, each HANDLEd, then closed."""
    server = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []

    def run() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            connections.append(conn)
            handle(conn)
            conn.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server, connections, thread


def test_the_channel_reconnects_once_when_named_closed_the_connection():
    server, connections, thread = fake_named(answer_one)  # one answer, then closed: as named's idle timeout does
    channel = UpdateChannel("127.0.0.1", server.getsockname()[1])
    assert channel.send(update_message(change(), None), 2.0)(2.0) == dns.rcode.NOERROR
    answer = channel.send(update_message(change(3), None), 2.0)  # sent on the closed connection: no answer there
    assert answer(2.0) == dns.rcode.NOERROR
    thread.join(5)
    assert len(connections) == 2
    channel.close()
    server.close()
    with pytest.raises(OSError):  # nobody listens: the error reaches the caller (a full load follows)
        channel.send(update_message(change(), None), 1.0)
    with pytest.raises(OSError):  # and the channel is free again after it
        channel.send(update_message(change(), None), 1.0)


def test_an_answer_nobody_read_goes_with_its_connection_and_the_next_message_is_answered():
    """A caller that failed between sending and reading must not leave the channel to the next one."""
    def answer_everything(conn: socket.socket) -> None:
        try:
            while answer_one(conn):
                pass
        except ConnectionResetError:  # the channel closed it with an answer unread: a reset
            pass
    server, connections, thread = fake_named(answer_everything)
    channel = UpdateChannel("127.0.0.1", server.getsockname()[1])
    unread = channel.send(update_message(change(), None), 2.0)
    assert channel.send(update_message(change(3), None), 2.0)(2.0) == dns.rcode.NOERROR
    with pytest.raises(EOFError):
        unread(2.0)
    assert channel.send(update_message(change(4), None), 2.0)(2.0) == dns.rcode.NOERROR  # on the second connection
    channel.close()
    thread.join(5)
    assert len(connections) == 2
    server.close()


# ---- served == committed ---------------------------------------------------------------
COMMITTED = f"""$ORIGIN {ZONE}.
$TTL 3600
@ IN SOA {SOA}
@ IN NS ns1
ns1 IN A 127.0.0.1
web 60 IN A 192.0.2.9
web 60 IN A 192.0.2.8
txt 60 IN TXT "a b"
"""


def test_equal_zones_written_differently_have_no_differences():
    other = COMMITTED.replace("web 60 IN A 192.0.2.9\nweb 60 IN A 192.0.2.8",
                              f"WEB.{ZONE}. 60 IN A 192.0.2.8\nweb 60 A 192.0.2.9").replace("ns1 IN", f"ns1.{ZONE}. 3600 IN")
    assert servedcheck.differences(servedcheck.text_rrsets(ZONE, COMMITTED), servedcheck.text_rrsets(ZONE, other)) == []


def test_differences_name_each_rrset_once():
    served = COMMITTED.replace("192.0.2.9", "192.0.2.7").replace('txt 60 IN TXT "a b"', "extra 30 IN A 192.0.2.1")
    served = served.replace("1700000002", "1700000003")
    lines = servedcheck.differences(servedcheck.text_rrsets(ZONE, COMMITTED), servedcheck.text_rrsets(ZONE, served))
    assert lines == [
        f"~ {ZONE}. SOA: committed 3600 {SOA}; served 3600 {SOA.replace('1700000002', '1700000003')}",
        f"+ extra.{ZONE}. 30 A 192.0.2.1   (served, not committed)",
        f'- txt.{ZONE}. 60 TXT "a b"   (committed, not served)',
        f"~ web.{ZONE}. A: committed 60 192.0.2.8 | 192.0.2.9; served 60 192.0.2.7 | 192.0.2.8",
    ]


def test_a_committed_zone_that_does_not_parse_is_invalid():
    with pytest.raises(Invalid, match="does not parse"):
        servedcheck.text_rrsets(ZONE, "@ IN SOA broken\n")


# ---- the setting -------------------------------------------------------------------------
def test_mode_resolution_and_refusals(tmp_path):
    key = tmp_path / "publisher.key"
    assert resolve_mode("auto", key, tmp_path) == "reload"  # no key: reloads
    assert resolve_mode("reload", key, tmp_path) == "reload"
    with pytest.raises(Invalid, match="No such file"):
        resolve_mode("incremental", key, tmp_path)
    bind.create_publisher_key(key)
    assert resolve_mode("auto", key, tmp_path) == "incremental"
    assert read_key(key).name.to_text() == "ddns-publisher."
    assert key.stat().st_mode & 0o077 == 0
    key.write_text('key "ddns-publisher" { algorithm hmac-sha256; secret "not base64!"; };\n')
    with pytest.raises(Invalid, match="publisher key"):
        resolve_mode("auto", key, tmp_path)  # a key that exists but is garbled is refused, not ignored
    with pytest.raises(Invalid, match="must be one of"):
        resolve_mode("always", key, tmp_path)


def test_incremental_without_a_zone_dir_is_refused_at_the_start(tmp_path):
    key = bind.create_publisher_key(tmp_path / "publisher.key")
    for mode in ("incremental", "auto"):  # a key that exists asks for updates too
        with pytest.raises(ConfigError, match="bind.zone_dir"):
            resolve_mode(mode, key, None)
    assert resolve_mode("reload", key, None) == "reload"


def test_a_zone_named_has_not_loaded_is_written_without_its_journal_and_reloaded(tmp_path):
    named, bt, newest, written = target(tmp_path)
    (tmp_path / f"{ZONE}.zone.jnl").write_text("a journal that does not fit")

    def not_loaded(zone, timeout):
        raise bind.BindError("rndc freeze: zone not loaded")
    named.freeze = not_loaded
    named.served = None
    newest[ZONE] = 2
    assert bt.reload(ZONE, bt.deadline())
    assert named.calls == ["query", "reload"] and written == [2]
    assert not (tmp_path / f"{ZONE}.zone.jnl").exists()
    named.calls.clear()
    named.served = 1  # named serves the zone: its copy is not written under it
    assert not bt.reload(ZONE, bt.deadline())
    assert named.calls == ["query"] and written == [2]


def test_a_zone_asked_again_while_waiting_is_written_and_loaded_under_the_lock(tmp_path):
    named, _, newest, written = target(tmp_path)
    held = []

    @contextlib.contextmanager
    def lock():
        held.append(True)
        try:
            yield
        finally:
            held.pop()
    locked_calls = []
    for name in ("freeze", "thaw", "reload"):
        def call(zone, timeout, name=name, real=getattr(named, name)):
            locked_calls.append((name, bool(held)))
            real(zone, timeout)
        setattr(named, name, call)
    bt = BindTarget(PublishTarget(rndc=None, control=named, zone_dir=tmp_path, mode="incremental", verify_timeout=0.5,
                                  fsync=False), newest=newest.get, on_error=lambda m: None,
                    committed=lambda zone: written.append(newest[zone]) or "; x\n", lock=lock,
                    monotonic=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + seconds))
    now = [0.0]
    newest[ZONE] = 2
    named.file_serial = 1  # named keeps serving 1: the wait asks again
    assert bt.wait_served({ZONE: 2}, timeout=0.45) == set()
    assert locked_calls and all(locked for _, locked in locked_calls), locked_calls
    assert written  # the re-asks wrote named's copy
    locked_calls.clear()
    assert bt.reload_and_verify([ZONE], {ZONE: 2}) == set()  # the retry loop's path, called without the lock
    assert locked_calls and all(locked for _, locked in locked_calls), locked_calls


def test_an_update_carries_the_committed_soa_ttl_and_asks_named_nothing_first():
    """The SOA TTL is the committed zone's (a human's change reaches named), never one read back from named."""
    server = socket.create_server(("127.0.0.1", 0))  # TCP only: a query for the served SOA would go unanswered
    received = []

    def answer_one():
        conn, _ = server.accept()
        with conn:
            (length,) = struct.unpack(">H", conn.recv(2))
            data = b""
            while len(data) < length:
                data += conn.recv(length - len(data))
            query = dns.message.from_wire(data, keyring=KEY)
            received.append(query)
            reply = dns.message.make_response(query).to_wire()
            conn.sendall(struct.pack(">H", len(reply)) + reply)
    thread = threading.Thread(target=answer_one, daemon=True)
    thread.start()
    named = IncrementalNamed("127.0.0.1", server.getsockname()[1], KEY)
    changed = dataclasses.replace(change(), soa_ttl=1234)
    assert named.send_update(changed, 2.0)(2.0) == dns.rcode.NOERROR
    thread.join(5)
    named.channel.close()
    server.close()
    [soa] = [rrset for rrset in received[0].update if rrset.rdtype == dns.rdatatype.SOA and rrset]
    assert soa.ttl == 1234


def test_the_kept_open_update_connection_is_closed_when_the_publisher_closes(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    ended = threading.Event()

    def answer_then_wait_for_the_close():
        conn, _ = server.accept()
        conn.settimeout(5)
        with conn:
            (length,) = struct.unpack(">H", conn.recv(2))
            data = b""
            while len(data) < length:
                data += conn.recv(length - len(data))
            reply = dns.message.make_response(dns.message.from_wire(data, keyring=read_key(key))).to_wire()
            conn.sendall(struct.pack(">H", len(reply)) + reply)
            if conn.recv(1) == b"":  # EOF: the publisher closed it (a timeout raises instead)
                ended.set()
    key = bind.create_publisher_key(tmp_path / "publisher.key")
    thread = threading.Thread(target=answer_then_wait_for_the_close, daemon=True)
    thread.start()
    settings = PublishTarget(rndc=bind.Rndc("127.0.0.1", 1, tmp_path / "unused.key"), dns_port=server.getsockname()[1],
                             zone_dir=tmp_path, mode="incremental", update_key=key, verify_timeout=2.0, fsync=False)
    bt = BindTarget(settings, newest=lambda zone: 2, on_error=lambda m: None, committed=lambda zone: "")
    assert bt.publish(change(2), bt.deadline())  # NOERROR: served, the connection kept open
    assert not ended.is_set()
    bt.close()
    thread.join(5)
    server.close()
    assert ended.is_set()


def test_withdrawn_serials_are_read_back_by_the_next_process_and_a_garbled_file_counts_as_none(tmp_path):
    path = tmp_path / "floors.json"
    SerialFloors(path).withdrawn(ZONE, 7)
    again = SerialFloors(path)  # as after a restart
    assert (again.floor(ZONE, 5), again.floor(ZONE, 9), again.floor("other.test", 5)) == (7, 9, 5)
    for garbled in ("{", "[1, 2]", '{"a": "x"}'):
        path.write_text(garbled)
        assert SerialFloors(path).floor(ZONE, 5) == 5  # logged; the clock still moves serials on


def test_a_probe_between_an_update_and_its_answer_leaves_the_update_s_answer_to_be_read():
    """A watcher's serves() probe goes over its own connection: the pending update's answer is still read."""
    server, connections, thread = fake_named(lambda conn: answer_one(conn, KEY))  # the update's, then the probe's
    named = IncrementalNamed("127.0.0.1", server.getsockname()[1], KEY)
    answer = named.send_update(change(), 2.0)
    assert named.serves(change(), 2.0)
    assert answer(2.0) == dns.rcode.NOERROR  # not EOFError (then: a full load)
    thread.join(5)
    assert len(connections) == 2
    named.close()
    server.close()
