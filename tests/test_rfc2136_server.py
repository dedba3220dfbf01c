"""The listener's sockets: UDP and TCP on one port, several messages per connection, and the limits.

The handler here is a stand-in that answers each message with its own bytes
(or blocks until told), so what is tested is the server: framing, timeouts,
bounds, that a slow message holds no other client, that a UDP retry of a
message in work is not run twice.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import read_reply, wait_until
from ddns.listener.server import DnsServer, Limits, start


class Echo:
    """Answers a message with itself; messages starting with b'slow' wait for ``release``."""

    def __init__(self):
        self.release = threading.Event()
        self.seen: list[tuple[bytes, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, wire: bytes, client: str, transport: str) -> bytes | None:
        with self.lock:
            self.seen.append((wire, client, transport))
        if wire.startswith(b"slow"):
            self.release.wait(30)
        if wire.startswith(b"none"):
            return None
        if wire.startswith(b"boom"):
            raise RuntimeError("a bug")
        return wire


@pytest.fixture
def echo():
    handler = Echo()
    server = start(handler, "127.0.0.1", 0, Limits(idle_timeout=1.0, max_connections=3, max_udp_bytes=600,
                                                    max_tcp_bytes=1000, workers=4))
    yield handler, server
    handler.release.set()
    server.stop()


def udp(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, ("127.0.0.1", port))
        return sock.recv(65535)


def framed(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def tcp_exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(framed(data))
    head = read_reply(sock, 2, complete=lambda r: len(r) >= 2)
    length = int.from_bytes(head[:2], "big")
    body = head[2:]
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk
        body += chunk
    return body


def test_udp_and_tcp_on_one_port(echo):
    handler, server = echo
    assert udp(server.port, b"hello over udp") == b"hello over udp"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for i in range(5):  # several messages on one connection
            assert tcp_exchange(sock, b"message %d" % i) == b"message %d" % i
    assert [t for _, _, t in handler.seen] == ["udp"] + ["tcp"] * 5
    assert {c for _, c, _ in handler.seen} == {"127.0.0.1"}


def test_a_slow_message_holds_no_other_client(echo):
    handler, server = echo
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow.sendall(framed(b"slow one"))
    wait_until(lambda: any(w == b"slow one" for w, _, _ in handler.seen), 5, what="the slow message in work")
    assert udp(server.port, b"quick") == b"quick"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert tcp_exchange(sock, b"quick tcp") == b"quick tcp"
    handler.release.set()
    assert read_reply(slow, 10, complete=lambda r: len(r) >= 10) == framed(b"slow one")
    slow.close()


def test_a_udp_retry_of_a_message_in_work_runs_once(echo):
    handler, server = echo
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for _ in range(3):
            sock.sendto(b"slow retry", ("127.0.0.1", server.port))
        wait_until(lambda: any(w == b"slow retry" for w, _, _ in handler.seen), 5, what="the message in work")
        assert udp(server.port, b"a marker") == b"a marker"  # later datagrams were read meanwhile
        handler.release.set()
        assert sock.recv(65535) == b"slow retry"
    assert sum(1 for w, _, _ in handler.seen if w == b"slow retry") == 1


def nothing_more(sock: socket.socket, server: DnsServer) -> bool:
    """Once no message is in work, SOCK has nothing waiting: what was dropped got no answer."""
    wait_until(lambda: not server._in_work, 5, what="no message in work")
    sock.setblocking(False)
    try:
        sock.recv(65535)
    except BlockingIOError:
        return True
    return False


def test_oversized_datagram_is_dropped_unread(echo):
    handler, server = echo
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"x" * 601, ("127.0.0.1", server.port))
        sock.sendto(b"y" * 600, ("127.0.0.1", server.port))  # datagrams are read in order: the big one went first
        assert sock.recv(65535) == b"y" * 600
        assert nothing_more(sock, server)
    assert [len(w) for w, _, _ in handler.seen] == [600]


@pytest.mark.parametrize("prefix", [b"\x03\xe9", b"\x00\x00"])  # 1001 bytes (over the limit), 0 bytes
def test_bad_tcp_length_closes_the_connection(echo, prefix):
    handler, server = echo
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(prefix + b"z" * 10)
        assert read_reply(sock) == b""
    assert handler.seen == []


def test_idle_and_half_sent_connections_are_closed(echo):
    _, server = echo
    for data in (b"", b"\x00\x10half"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(data)
            started = time.monotonic()
            assert read_reply(sock) == b""
            assert time.monotonic() - started < 4


def test_connections_beyond_the_bound_are_closed_at_once(echo):
    _, server = echo
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    wait_until(lambda: server.connections == 3, 5, what="three connections")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
        assert read_reply(extra) == b""
    for sock in held:
        sock.close()
    wait_until(lambda: server.connections == 0, 5, what="connections closed")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert tcp_exchange(sock, b"after") == b"after"


def test_no_answer_and_handler_failure_keep_serving(echo):
    handler, server = echo
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"none please", ("127.0.0.1", server.port))
        sock.sendto(b"boom", ("127.0.0.1", server.port))
        wait_until(lambda: len(handler.seen) == 2, 5, what="both messages handled")
        assert nothing_more(sock, server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(framed(b"none here"))
        assert tcp_exchange(sock, b"next") == b"next"
    assert udp(server.port, b"still here") == b"still here"


def test_port_in_use_fails_prepare_and_stop_ends_serving():
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    with pytest.raises(OSError):
        DnsServer(Echo(), "127.0.0.1", port).prepare()
    holder.close()
    server = start(Echo(), "127.0.0.1", port)
    assert udp(port, b"up") == b"up"
    server.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
