"""Hostile and malformed DNS messages against the RFC 2136 listener of a real ``ddns serve``.

Every case of tests/rfc2136_packets.py goes over UDP and/or TCP to the
listener; the assertions for each:

- the answer is the one the RFCs require (rcode, and the TSIG error for
  NOTAUTH), to the request's id and opcode, well formed; or no answer at all
  for messages without a usable header and for responses (a TCP connection
  carrying one is closed or goes on answering);
- nothing is committed (the zones repository's HEAD is unchanged);
- no exception is logged, serve keeps running, and the listener answers a
  valid SOA query right after, over the same transport.

Then a seeded random run: mutations of signed updates that would change
nothing even intact, with the same assertions. CI sends a few hundred with a
fixed seed; a developer runs it long with ``DDNS_FUZZ_EXAMPLES=20000
DDNS_FUZZ_SEED=$RANDOM``. A failure names the seed and the packet.
"""
from __future__ import annotations

import base64
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass

import dns.message
import dns.opcode
import dns.rcode
import dns.tsig
import pytest

import rfc2136_packets as packets
from conftest import REQUIRED_TOOLS, Crashes, Instance, Running, free_port, read_reply, require, start_serving
from ddns import cli

ZONE = "dyn.example.test"
HOST = "myvm." + ZONE
OTHER = "other." + ZONE
PROBE_ID = 0x5AFE
TIMEOUT = 10.0
SEED = int(os.environ.get("DDNS_FUZZ_SEED", "20261201"))
EXAMPLES = int(os.environ.get("DDNS_FUZZ_EXAMPLES", "300"))


@dataclass
class Listener:
    instance: Instance
    running: Running
    port: int
    ctx: packets.Context
    crashes: Crashes

    def head(self) -> str:
        return self.instance.git("rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def listener(tmp_path_factory):
    """One serve for the module: HOST (with an A record and its key) and OTHER registered."""
    require(*REQUIRED_TOOLS)
    directory = tmp_path_factory.mktemp("hostile") / "inst"
    http_port, dns_port, rndc_port, update_port = free_port(), free_port(), free_port(), free_port()
    cli.init_instance(directory, http_port, dns_port, rndc_port, update_port=update_port,
                      extra={"security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False})
    inst = Instance(directory, directory / "ddns.toml", http_port, dns_port, rndc_port, update_port=update_port)
    secret = inst.add_host(HOST)
    inst.add_host(OTHER)
    r = inst.cli("key", "add", HOST, "--json")
    assert r.code == 0, r.err
    key = r.json()
    crashes = Crashes()
    logging.getLogger().addHandler(crashes)
    running = start_serving(inst)
    try:
        status, body = running.update(HOST, secret, "myip=198.51.100.7")
        assert (status, body.strip()) == (200, "good 198.51.100.7")
        tsig = dns.tsig.Key(key["name"], base64.b64decode(key["secret"]), key["algorithm"])
        yield Listener(inst, running, inst.update_port, packets.Context(ZONE, HOST, OTHER, tsig), crashes)
    finally:
        running.stop.set()
        running.thread.join(30)
        logging.getLogger().removeHandler(crashes)
    assert not running.thread.is_alive(), "serve did not stop"


# ---- talking to the listener -----------------------------------------------------------------
def probe(ctx: packets.Context) -> bytes:
    return packets.soa_query(ctx, ident=PROBE_ID)


def ident(wire: bytes) -> int | None:
    return struct.unpack("!H", wire[:2])[0] if len(wire) >= 2 else None


def udp_exchange(port: int, wire: bytes, ctx: packets.Context, want_answer: bool) -> tuple[list[bytes], bytes]:
    """Send WIRE, then the SOA probe; (replies other than the probe's, the probe's answer).

    Waits for the probe's answer, and for an answer to WIRE when WANT_ANSWER.
    """
    replies, answer = [], b""
    deadline = time.monotonic() + TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(wire, ("127.0.0.1", port))
        sock.sendto(probe(ctx), ("127.0.0.1", port))
        while not answer or (want_answer and not replies):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65535)
            except socket.timeout:
                break
            if ident(data) == PROBE_ID and not answer:
                answer = data
            else:
                replies.append(data)
    return replies, answer


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def split_frames(stream: bytes) -> list[bytes]:
    out = []
    while len(stream) >= 2:
        n = struct.unpack("!H", stream[:2])[0]
        if len(stream) < 2 + n:
            out.append(stream)  # a cut answer: reported as unparseable
            break
        out.append(stream[2:2 + n])
        stream = stream[2 + n:]
    return out


def has_frames(count: int):
    return lambda data: len(split_frames(data)) >= count and all(len(f) >= 12 for f in split_frames(data)[:count])


def tcp_exchange(port: int, stream: bytes, half_close: bool, then: bytes = b"", frames: int = 1) -> list[bytes]:
    """Send STREAM (and THEN, when the server still reads); the messages it answers until FRAMES or EOF.

    HALF_CLOSE: end our side after STREAM, so a server waiting for the rest of a message sees EOF.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(stream)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        elif then:
            try:
                sock.sendall(then)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed after the hostile message: that is a drop
        return split_frames(read_reply(sock, complete=lambda data: not half_close and has_frames(frames)(data)))


def tcp_probe(port: int, ctx: packets.Context) -> bytes:
    replies = tcp_exchange(port, frame(probe(ctx)), half_close=False)
    return replies[0] if replies else b""


def parse(wire: bytes) -> dns.message.Message:
    """An answer as dnspython reads it, the TSIG parsed but not verified (BADSIG answers carry no MAC)."""
    return dns.message.from_wire(wire, keyring=lambda message, name: False)


TSIG_ERRORS = {16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}  # RFC 8945 (16 is BADVERS as an rcode)


def rcode_text(reply: dns.message.Message) -> str:
    """The rcode's name, with the TSIG error after a slash when there is one: "NOTAUTH/BADSIG"."""
    text = dns.rcode.to_text(reply.rcode())
    if reply.tsig is not None and reply.tsig[0].error:
        error = reply.tsig[0].error
        text += "/" + TSIG_ERRORS.get(error, str(error))
    return text


def check_answer(case: packets.Case, request: bytes, replies: list[bytes]) -> None:
    if case.expect == packets.DROP:
        assert replies == [], f"{case.name}: a message without a usable header or a response was answered: {replies[:2]}"
        return
    parsed = []
    for wire in replies:
        try:
            parsed.append(parse(wire))
        except Exception as exc:  # noqa: BLE001 -- any parse failure is the finding
            pytest.fail(f"{case.name}: the answer is not a well-formed message ({exc!r}): {wire[:64]!r}")
    for reply in parsed:
        assert reply.flags & 0x8000, f"{case.name}: an answer without QR"
    if case.expect == packets.ANY_ERROR:
        assert all(r.rcode() != dns.rcode.NOERROR for r in parsed), [rcode_text(r) for r in parsed]
        return
    assert len(parsed) == 1, f"{case.name}: {len(parsed)} answers, expected one"
    reply = parsed[0]
    assert reply.id == ident(request), f"{case.name}: answer id {reply.id:#x}"
    assert reply.opcode() == (struct.unpack("!H", request[2:4])[0] >> 11) & 0xF, f"{case.name}: answer opcode"
    got = rcode_text(reply)
    assert got in case.expect, f"{case.name}: {got}, expected one of {sorted(case.expect)} ({case.why})"
    if got in ("NOTAUTH/BADSIG", "NOTAUTH/BADKEY"):
        assert reply.tsig[0].mac == b"", f"{case.name}: {got} must be answered unsigned (RFC 8945 5.3.2)"
    if got == "NOTAUTH/BADTIME":
        assert reply.tsig[0].mac != b"", f"{case.name}: BADTIME is answered signed (RFC 8945 5.2.3)"


def check_alive(listener: Listener, probe_answer: bytes, head: str, what: str) -> None:
    assert probe_answer, f"{what}: the listener did not answer the SOA query after it"
    reply = parse(probe_answer)
    assert reply.rcode() == dns.rcode.NOERROR and any(rrset.rdtype == 6 for rrset in reply.answer), \
        f"{what}: SOA query answered {dns.rcode.to_text(reply.rcode())}"
    assert listener.running.thread.is_alive(), f"{what}: serve stopped"
    assert listener.head() == head, f"{what}: a commit was made"
    assert not listener.crashes.records, f"{what}: exceptions logged: {listener.crashes.records[:5]}"


def send_case(listener: Listener, case: packets.Case, transport: str) -> None:
    ctx, head = listener.ctx, listener.head()
    wire = case.build(ctx)
    answer_expected = case.expect not in (packets.DROP, packets.ANY_ERROR)
    if transport == "udp":
        replies, answer = udp_exchange(listener.port, wire, ctx, answer_expected)
    elif not case.framed:
        replies = tcp_exchange(listener.port, wire, half_close=True)
        answer = tcp_probe(listener.port, ctx)
    elif case.expect == packets.DROP:
        # The probe on the same connection: answered (the bad message ignored) or never read (closed).
        replies = tcp_exchange(listener.port, frame(wire), half_close=False, then=frame(probe(ctx)))
        answers = [r for r in replies if ident(r) == PROBE_ID]
        replies = [r for r in replies if ident(r) != PROBE_ID]
        answer = answers[0] if answers else tcp_probe(listener.port, ctx)
    else:
        replies = tcp_exchange(listener.port, frame(wire), half_close=False)
        answer = tcp_probe(listener.port, ctx)
    check_answer(case, wire, replies)
    check_alive(listener, answer, head, f"{case.name} over {transport}")


CASE_IDS = [(c, t) for c in packets.CASES for t in c.transports]


def test_the_table_is_big_enough():
    assert len(packets.CASES) >= 40 and len(packets.by_name()) == len(packets.CASES)


@pytest.mark.parametrize("case,transport", CASE_IDS, ids=[f"{c.name}-{t}" for c, t in CASE_IDS])
def test_hostile_packet(listener, case, transport):
    send_case(listener, case, transport)


def test_random_mutations_break_nothing(listener):
    ctx, head = listener.ctx, listener.head()
    failures = []
    for k, wire in enumerate(packets.mutations(ctx, SEED, EXAMPLES)):
        transport = "tcp" if k % 5 == 4 else "udp"
        try:
            if transport == "udp":
                replies, answer = udp_exchange(listener.port, wire, ctx, want_answer=False)
            else:
                replies = tcp_exchange(listener.port, frame(wire), half_close=True)
                answer = tcp_probe(listener.port, ctx)
            for reply in replies:
                assert parse(reply).flags & 0x8000, "an answer without QR"
            check_alive(listener, answer, head, f"mutation {k}")
        except Exception as exc:  # noqa: BLE001 -- collected with the packet that caused it
            failures.append(f"#{k} {transport} {wire[:80].hex()}: {exc}")
            if len(failures) >= 5:
                break
    assert not failures, f"DDNS_FUZZ_SEED={SEED} DDNS_FUZZ_EXAMPLES={EXAMPLES}:\n" + "\n".join(failures)


def test_mutations_are_seeded():
    key = dns.tsig.Key(HOST, b"\x01" * 32, "hmac-sha256")
    ctx = packets.Context(ZONE, HOST, OTHER, key)
    first = packets.mutations(ctx, 7, 50, when=1_800_000_000)
    assert first == packets.mutations(ctx, 7, 50, when=1_800_000_000)
    assert first != packets.mutations(ctx, 8, 50, when=1_800_000_000) and len(set(first)) > 40


# ---- the same table against the bytes-in/bytes-out entry point ---------------------------------
PURE_IDS = [(c, t) for c in packets.CASES if c.framed and not c.sockets_only for t in c.transports]


@pytest.mark.parametrize("case,transport", PURE_IDS, ids=[f"{c.name}-{t}" for c, t in PURE_IDS])
def test_hostile_packet_pure(case, transport):
    """handle_wire answers as over the sockets, and no hostile message reaches the update use case."""
    from test_rfc2136_pure import HOST as PURE_HOST, KEY, ZONE as PURE_ZONE, FakeService

    from ddns.listener.handler import handle_wire

    service = FakeService()
    wire = case.build(packets.Context(PURE_ZONE, PURE_HOST, "other." + PURE_ZONE, KEY))
    answer = handle_wire(service, wire, "192.0.2.7", transport)
    check_answer(case, wire, [] if answer is None else [answer])
    assert service.calls == [], f"{case.name} reached the update use case: {service.calls}"
