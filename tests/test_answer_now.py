"""A nochg answered on the HTTP loop thread (``http.answer_on_loop``) is the worker's answer, or none at all.

The loop may only answer what memory decides: a secret verified lately
against the host's current hash, the address the served snapshot holds.
Everything else goes to a worker as before. These tests check that the
loop's answer is byte for byte the app's, that the loop declines what it
must (a new or wrong secret, a change, other hosts, a replaced secret), that
it never waits for the database's write lock, and that the server sends what
the loop answers without running the app.
"""
from __future__ import annotations

import logging
import socket
import threading

import h11
from test_http_hostile import HOST, basic, exchange, get

import pgserver
from conftest import read_reply, serving, write_lock_held
from ddns import httpserver, httpwire, web
from ddns.store import Store

pg_server, pg_url = pgserver.pg_server, pgserver.pg_url  # the fixtures: one PostgreSQL, a fresh database on it

NOCHG = get(b"/nic/update?myip=192.0.2.10", b"User-Agent: test/1.0")


def environ_of(data: bytes) -> dict:
    """The WSGI environ the server makes of the request bytes DATA."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request = conn.next_event()
    return httpwire.wsgi_environ(request, b"", ("127.0.0.1", 40000), ("127.0.0.1", 8080), False)


def with_auth(data: bytes, secret: str, user: str = HOST) -> bytes:
    return data.replace(b"\r\n\r\n", b"\r\nAuthorization: " + basic(user, secret) + b"\r\n\r\n", 1)


def loop_answer(running, data: bytes) -> httpwire.Reply | None:
    """What the loop thread would answer to DATA (None: a worker runs the app)."""
    answer = web.answer_now(running.service, web.security_headers(None))
    return answer(environ_of(data))


def test_the_loop_answers_a_nochg_with_the_bytes_the_app_writes(instance):
    secret = instance.add_host(HOST)
    request = with_auth(NOCHG, secret)
    with serving(instance, {"http.answer_on_loop": False}) as running:
        assert running.update(HOST, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
        by_worker = exchange(instance.http_port, request)
        assert loop_answer(running, request) is not None  # the secret is verified: the loop could answer
        raw_worker = raw_exchange(instance.http_port, request)
    with serving(instance) as running:
        assert loop_answer(running, request) is None  # a new process: the secret is not verified yet
        raw_exchange(instance.http_port, request)  # a worker verifies it (bcrypt)
        assert loop_answer(running, request) is not None
        raw_loop = raw_exchange(instance.http_port, request)
    assert (by_worker.status, by_worker.body) == (200, b"nochg 192.0.2.10\n")
    assert raw_loop == raw_worker


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        return read_reply(s)


def test_the_loop_declines_what_memory_cannot_decide(running):
    secret = running.instance.add_host(HOST)
    other = running.instance.add_host("other.dyn.example.test")
    assert running.update(HOST, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    assert running.update("other.dyn.example.test", other, "myip=192.0.2.20") == (200, "good 192.0.2.20\n")
    assert loop_answer(running, with_auth(NOCHG, secret)).body == b"nochg 192.0.2.10\n"
    declined = {
        "no credentials": NOCHG,
        "wrong secret": with_auth(NOCHG, secret + "x"),
        "a change": with_auth(get(b"/nic/update?myip=192.0.2.11"), secret),
        "another host's name": with_auth(get(b"/nic/update?hostname=other.dyn.example.test&myip=192.0.2.20"), secret),
        "two names": with_auth(get(b"/nic/update?hostname=" + HOST.encode() + b"," + HOST.encode()
                                   + b"&myip=192.0.2.10"), secret),
        "a bad address": with_auth(get(b"/nic/update?myip=192.0.2.999"), secret),
        "a user's credentials": with_auth(NOCHG, secret, user="alice"),
        "POST": with_auth(NOCHG.replace(b"GET ", b"POST ", 1), secret),
        "HEAD": with_auth(NOCHG.replace(b"GET ", b"HEAD ", 1), secret),
        "another path": with_auth(get(b"/nic/update/?myip=192.0.2.10"), secret),
        "credentials not UTF-8": NOCHG.replace(b"\r\n\r\n", b"\r\nAuthorization: Basic /w==\r\n\r\n", 1),
    }
    for what, data in declined.items():
        assert loop_answer(running, data) is None, what
    # and the app answers each of them as ever
    assert exchange(running.instance.http_port, with_auth(NOCHG, secret + "x")).body == b"badauth\n"
    assert exchange(running.instance.http_port, declined["another host's name"]).body == b"nohost\n"


def test_a_secret_replaced_by_another_process_is_never_answered_nochg(running):
    secret = running.instance.add_host(HOST)
    assert running.update(HOST, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    request = with_auth(NOCHG, secret)
    assert loop_answer(running, request) is not None
    r = running.instance.cli("host", "secret", HOST, "--json")  # its own service and connection: another process's
    assert r.code == 0, r.err
    assert loop_answer(running, request) is None
    answer = exchange(running.instance.http_port, request)
    assert (answer.status, answer.body) == (401, b"badauth\n")
    fresh = with_auth(NOCHG, r.json()["secret"])
    assert exchange(running.instance.http_port, fresh).body == b"nochg 192.0.2.10\n"
    assert loop_answer(running, fresh).body == b"nochg 192.0.2.10\n"


def test_the_loop_answers_while_another_process_holds_the_write_lock(running):
    """Its read takes no lock a writer holds (SQLite in WAL mode), and it waits for none."""
    secret = running.instance.add_host(HOST)
    assert running.update(HOST, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    with write_lock_held(running.instance.config.path("store.path")):
        assert loop_answer(running, with_auth(NOCHG, secret)).body == b"nochg 192.0.2.10\n"
        assert exchange(running.instance.http_port, with_auth(NOCHG, secret)).body == b"nochg 192.0.2.10\n"
    # the thread that answered (this one, here) waits for no lock at all, reads included
    assert running.service.store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 0


def test_a_database_server_is_never_read_on_the_loop(pg_url):
    """PostgreSQL is a round trip away: a thread that must not block may not read it."""
    assert Store(pg_url).read_without_waiting() is False


class Counting:
    """A WSGI app that answers its path and counts its calls, and an ANSWER_NOW for the server."""

    def __init__(self, now):
        self.calls = 0
        self.now = now

    def __call__(self, environ, start_response):
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app " + environ["PATH_INFO"].encode()]


def loop_server(instance, app: Counting):
    """APP behind an HttpServer whose loop asks APP.now first; (server, thread)."""
    from conftest import free_port

    server = httpserver.HttpServer(app, "127.0.0.1", free_port(), 4, httpserver.Limits(), web.security_headers(None),
                                   answer_now=app.now)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    return server, thread


def test_the_server_sends_what_the_loop_answers_and_runs_the_app_for_the_rest(instance, caplog):
    def now(environ):
        if environ["PATH_INFO"] == "/crash":
            raise RuntimeError("broken answer_now")
        if environ["PATH_INFO"] != "/now":
            return None
        return httpwire.Reply(200, b"OK", [(b"Content-Type", b"text/plain"), (b"Content-Length", b"3")], b"now")

    app = Counting(now)
    server, thread = loop_server(instance, app)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:  # keep-alive across both kinds
            s.sendall(b"GET /now HTTP/1.1\r\nHost: x\r\n\r\nGET /later HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"HEAD /now HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = read_reply(s)
        assert reply.count(b"HTTP/1.1 200 OK") == 3
        assert b"\r\n\r\nnow" in reply and b"app /later" in reply
        assert reply.rstrip().endswith(b"Connection: close")  # HEAD: the loop's head, no body
        assert app.calls == 1
        with caplog.at_level(logging.ERROR, logger="ddns.http"):
            answer = exchange(server.port, get(b"/crash"))
        assert (answer.status, answer.body) == (200, b"app /crash")  # the app answers what the loop failed on
        assert app.calls == 2 and "broken answer_now" in caplog.text
    finally:
        server.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_answer_on_loop_off_leaves_every_request_to_the_workers(instance):
    from ddns import config as configmod

    app = web.create_app(instance.open_service())
    on = web.make_server(app, configmod.load(instance.config_path, environ={}))
    off = web.make_server(app, configmod.load(instance.config_path, environ={}, overrides={"http.answer_on_loop": False}))
    plain = web.make_server(lambda environ, start_response: [], configmod.load(instance.config_path, environ={}))
    assert on.answer_now is app.config["ddns.answer_now"]
    assert off.answer_now is None and plain.answer_now is None
