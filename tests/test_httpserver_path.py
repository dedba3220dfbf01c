"""The request path as the HTTP server runs it: answers written without h11, keep-alive, the worker queue.

Real sockets against ddns's own server (``make_server``): a plain WSGI app
where the test needs to control the answer, the real app and ``ddns serve``
for dyndns2. Hostile answers (an app putting CR/LF in a header) must not
reach the wire.
"""
from __future__ import annotations

import socket
import threading

import pytest
from test_http_hostile import HOST, served
from testkit.hostile import basic, complete, exchange, get

from conftest import read_reply, write_lock_held
from ddns import records, validate


def echo_app(environ, start_response):
    """Answers the request's path (and how many times it was called), so order and count are visible."""
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def answers(data: bytes, count: int) -> list[tuple[bytes, bytes]]:
    """(head, body) of COUNT whole answers in DATA, in order."""
    out = []
    for _ in range(count):
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")[1:]
                      if line.lower().startswith(b"content-length:"))
        out.append((head, rest[:length]))
        data = rest[length:]
    assert data == b"", data
    return out


def test_pipelined_requests_on_one_connection_are_answered_in_order(running):
    with served(echo_app, running.instance) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = answers(read_reply(s), 3)  # the third asked to close: the server closes after it
    assert [body for _, body in got] == [b"/one", b"/two", b"/three"]
    assert all(head.startswith(b"HTTP/1.1 200 OK\r\n") for head, _ in got)
    assert b"connection: close" not in got[0][0].lower() and b"Connection: close" in got[2][0]


def test_a_keep_alive_connection_serves_requests_one_after_another(running):
    with served(echo_app, running.instance) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for path in (b"/a", b"/b"):
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = answers(read_reply(s, complete=complete), 1)[0]
            assert body == path and b"close" not in head.lower()


def test_http_1_0_gets_its_answer_and_the_connection_closes(running):
    with served(echo_app, running.instance) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        head, body = answers(read_reply(s), 1)[0]  # read_reply returns at EOF: the server closed
    assert body == b"/old" and b"Connection: close" in head


def test_head_gets_the_headers_without_the_body(running):
    with served(echo_app, running.instance) as port, socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"HEAD /quiet HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_reply(s)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 6" in head and body == b""


@pytest.mark.parametrize("header", [("X-Evil", "a\r\nSet-Cookie: owned=1"), ("X-Evil", "a\nb"), ("X-Evil\r\nA", "b"),
                                    ("X-Nul", "a\0b")])
def test_an_app_header_with_cr_lf_or_nul_never_reaches_the_wire(running, header):
    """Such an answer is not sent at all (logged, connection closed); the next request is served."""
    def smuggler(environ, start_response):
        if environ["PATH_INFO"] != "/evil":
            return echo_app(environ, start_response)
        start_response("200 OK", [header, ("Content-Length", "2")])
        return [b"ok"]

    with served(smuggler, running.instance) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(get(b"/evil"))
            assert read_reply(s) == b""
        assert exchange(port, get(b"/alive")).body == b"/alive"


def test_many_concurrent_requests_each_get_their_own_answer(running):
    """The worker queue hands each reply back to its own connection, whatever the order they finish in."""
    results: dict[int, bytes] = {}

    with served(echo_app, running.instance) as port:
        def client(i: int) -> None:
            results[i] = exchange(port, get(b"/c%d" % i)).body

        threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert results == {i: b"/c%d" % i for i in range(60)}


def test_dyndns2_good_nochg_badauth_over_a_real_socket(running):
    secret = running.instance.add_host(HOST)
    port = running.instance.http_port
    auth = b"Authorization: " + basic(HOST, secret)
    first = exchange(port, get(b"/nic/update?myip=192.0.2.33", auth))
    assert (first.status, first.body) == (200, b"good 192.0.2.33\n")
    again = exchange(port, get(b"/nic/update?myip=192.0.2.33", auth))
    assert (again.status, again.body) == (200, b"nochg 192.0.2.33\n")
    wrong = exchange(port, get(b"/nic/update?myip=192.0.2.33", b"Authorization: " + basic(HOST, secret + "x")))
    assert (wrong.status, wrong.body) == (401, b"badauth\n")
    assert wrong.headers["www-authenticate"].startswith("Basic realm=")


def test_x_forwarded_proto_from_an_untrusted_client_is_not_tls(running):
    """Only a trusted proxy may say the client used HTTPS (Bottle's urlparts believed anyone)."""
    secret = running.instance.add_host(HOST)
    answer = exchange(running.instance.http_port, get(b"/nic/update?myip=192.0.2.44",
                                                      b"Authorization: " + basic(HOST, secret),
                                                      b"X-Forwarded-Proto: https"))
    assert answer.body == b"good 192.0.2.44\n"
    running.service.flush_seen()
    assert running.service.host(HOST).last_tls is False


def test_the_remembered_names_and_addresses_never_cross_rules():
    """A result is kept per input and policy; a refusal is never kept, so it is refused every time."""
    permissive, strict = validate.AddressPolicy(allow_private=True), validate.AddressPolicy(allow_private=False)
    assert str(validate.parse_address("10.9.8.7", permissive)) == "10.9.8.7"
    with pytest.raises(validate.InvalidAddress):
        validate.parse_address("10.9.8.7", strict)
    for _ in range(2):
        with pytest.raises(validate.InvalidName):
            validate.normalize_name("bad_name.example.test")
        with pytest.raises(records.Invalid):
            records.record_name("a..b.example.test")
    assert validate.normalize_name("Vm.Example.TEST.") == "vm.example.test"
    assert records.record_name("_ACME-challenge.Vm.example.test") == "_acme-challenge.vm.example.test"
    for junk in (None, 5, ["vm.example.test"], b"vm.example.test"):
        with pytest.raises(validate.InvalidName):
            validate.normalize_name(junk)
        with pytest.raises(records.Invalid):
            records.record_name(junk)
        with pytest.raises(records.Invalid):
            records.canonical_type(junk)
        with pytest.raises(validate.InvalidAddress):
            validate.parse_address(junk)


def test_last_seen_survives_a_busy_database_and_the_newest_entry_wins(running):
    """Requests append their last-seen entry without a lock; a flush that finds the write lock taken keeps the
    batch, in front of newer entries, so the host's newest entry is what is finally stored."""
    running.instance.add_host(HOST)
    service = running.service
    service.begin_web_request()  # this thread's writes wait 1 s for the lock, then Busy
    with write_lock_held(running.instance.config.path("store.path")):
        service.note_update(HOST, "192.0.2.1", "first/1.0", False)
        service.flush_seen()  # Busy: kept
        service.note_update(HOST, "192.0.2.2", "second/1.0", True)
    service.flush_seen()
    host = service.host(HOST)
    assert (host.last_client, host.last_agent, host.last_tls) == ("192.0.2.2", "second/1.0", True)
    service.note_update(HOST, "192.0.2.3", "third/1.0", False)
    service.flush_seen()
    assert service.host(HOST).last_agent == "third/1.0"


# ---- the connection as a protocol: backpressure, stop, 100-continue ----------------------------------------------
def plain_server(app, request_timeout: float = 10.0):
    """APP behind an HttpServer of its own on a free port, running in a thread: (server, thread)."""
    from conftest import free_port
    from ddns.httpserver import HttpServer, Limits

    server = HttpServer(app, "127.0.0.1", free_port(), 4, Limits(request_timeout=request_timeout, shutdown_timeout=30),
                        {"X-Frame-Options": "DENY"})
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    return server, thread


def test_a_client_that_does_not_read_its_answer_loses_the_connection():
    """The answer waits in the server's buffer for request_timeout at most, then the connection is aborted."""
    from conftest import wait_until

    big = b"x" * (32 << 20)

    called = []

    def bulky(environ, start_response):
        called.append(True)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [big]

    server, thread = plain_server(bulky, request_timeout=0.5)
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", server.port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: called, 30, what="the app to answer")
            wait_until(lambda: server.connections == 0, 30, what="the server to drop the connection")
            s.settimeout(30)
            got = 0
            try:
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
            except ConnectionResetError:
                pass
        assert 0 < got < len(big)
    finally:
        server.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_stop_closes_an_idle_connection_and_answers_a_busy_one_first():
    release = threading.Event()
    entered = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            release.wait(30)
        return echo_app(environ, start_response)

    server, thread = plain_server(app)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as idle, \
            socket.create_connection(("127.0.0.1", server.port), timeout=30) as busy:
        idle.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answers(read_reply(idle, complete=complete), 1)[0][1] == b"/first"
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert entered.wait(30)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        assert idle.recv(100) == b""  # closed by the stop, without an answer
        release.set()
        head, body = answers(read_reply(busy), 1)[0]  # read_reply returns at EOF: closed after its answer
        stopper.join(30)
    assert body == b"/slow" and b"Connection: close" in head
    assert not stopper.is_alive()
    thread.join(30)
    assert not thread.is_alive()


def test_expect_100_continue_gets_its_go_ahead_before_the_body():
    def body_app(environ, start_response):
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [data]

    server, thread = plain_server(body_app)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(b"POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            assert read_reply(s, complete=lambda r: r.endswith(b"\r\n\r\n")) == b"HTTP/1.1 100 Continue\r\n\r\n"
            s.sendall(b"hello")
            head, body = answers(read_reply(s, complete=complete), 1)[0]
        assert head.startswith(b"HTTP/1.1 200") and body == b"hello"
    finally:
        server.stop()
        thread.join(30)
    assert not thread.is_alive()
