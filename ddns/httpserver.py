"""The HTTP/1.1 front of the WSGI app: requests are read whole before a worker thread gets one.

A threaded WSGI server that hands a connection to a worker at accept time lets
a few hundred idle or slow clients (one header line every few seconds, a body
that never ends) hold every worker, and no update gets through. Here one
asyncio loop reads every connection: the TLS handshake, the request line,
headers and body, each request within ``request_timeout`` seconds and size
limits, parsed by h11. Only a complete request goes to the worker pool, so a
worker only ever runs the app. The process stays one process with in-process
threads (the publisher thread lives in it).

A request that the app's service can answer from memory alone (``answer_now``:
a ``nochg``) is answered on the loop thread itself; only what might block (the
database, bcrypt, a change to publish) goes to a worker.

A request costs the loop thread one h11 parse and one write: each connection
is an ``asyncio.Protocol`` (``Connection``) fed by the loop's callbacks, not a
stream reader and writer driven by a task (whose steps, futures and timeout
contexts cost the loop as much as the answer); the answer's head is written
here (``response_bytes``), not by h11's state machine; and the request goes to
the workers through one queue, not a ``ThreadPoolExecutor`` (whose futures,
locks and thread accounting cost the loop as much as h11's parse). The GIL runs the loop and the app one at a time, so what the loop
spends per request is what every request waits for.

Errors the server answers itself (malformed request, too large, too slow, too
many connections, a crashing app) carry the same security headers as the app's
answers, and never a stack trace.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Callable

import h11

from .httpwire import ClientError, Reply, call_app, error_bytes, keep_alive, response_bytes, wsgi_environ

log = logging.getLogger("ddns.http")


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server."""

    request_timeout: float = 10.0  # seconds to receive one whole request (and to wait for the next)
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    max_connections: int = 1000
    shutdown_timeout: float = 5.0  # seconds that requests in progress get to finish at stop


class HttpServer:
    """Serves APP on HOST:PORT (HTTPS with SSL_CONTEXT) with THREADS worker threads.

    Used like a threaded server: ``prepare()`` binds (errors surface in the
    caller), ``serve()`` runs in a thread until ``stop()`` is called from another.
    ANSWER_NOW, if given, is asked first, on the loop thread, for each request's
    whole answer: it must never block, and says None for what the app must run.
    """

    def __init__(self, app: Callable, host: str, port: int, threads: int, limits: Limits,
                 error_headers: dict[str, str], ssl_context: ssl.SSLContext | None = None,
                 answer_now: Callable[[dict], Reply | None] | None = None):
        self.app = app
        self.answer_now = answer_now
        self.host, self.port = host, port
        self.limits = limits
        self.error_headers = error_headers
        self.ssl_context = ssl_context
        self.threads = threads
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # (future, environ); None stops a worker
        self._workers: list[threading.Thread] = []
        self.sock: socket.socket | None = None
        self.connections = 0
        self.open: set[Connection] = set()  # the connections of the loop (closed at stop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()  # bound to the loop on first use, in serve()'s thread
        self._stop_requested = threading.Event()
        self._started = threading.Event()
        self._busy: set[asyncio.Future] = set()
        self._done = threading.Event()

    def prepare(self) -> None:
        """Bind and listen now, so a port in use fails ``serve`` before it reports ready."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.create_server((self.host, self.port), family=family, backlog=1024)
        self.port = self.sock.getsockname()[1]

    def serve(self) -> None:
        """Run the event loop in this thread until ``stop()``."""
        self._started.set()
        try:
            asyncio.run(self._main())
        finally:
            for _ in self._workers:
                self._queue.put(None)  # requests still queued are dropped: their clients are gone
            if self.sock is not None:
                self.sock.close()
            self._done.set()

    def stop(self) -> None:
        """Stop accepting, let requests in progress finish (bounded), close everything; returns when done."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop has closed already
                pass
        if self._started.is_set():
            self._done.wait(self.limits.shutdown_timeout + 5)
        elif self.sock is not None:
            self.sock.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._stop_requested.is_set():  # stop() came before the loop ran
            return
        for i in range(self.threads):
            worker = threading.Thread(target=self._work, name=f"http_{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        server = await self._loop.create_server(lambda: Connection(self), sock=self.sock, ssl=self.ssl_context,
                                                ssl_handshake_timeout=self.limits.request_timeout
                                                if self.ssl_context else None)
        await self._stopping.wait()
        server.close()
        for connection in list(self.open):
            connection.stop()  # idle ones close now, busy ones once answered
        if self._busy:
            await asyncio.wait(self._busy, timeout=self.limits.shutdown_timeout)
        for connection in list(self.open):
            connection.transport.abort()

    def refusal(self, conn: h11.Connection, exc: h11.RemoteProtocolError) -> tuple[int, str]:
        """Status and message for what h11 refused: a request line too long is 414, a head too large 431."""
        if exc.error_status_hint == 431:
            if b"\n" not in bytes(conn.trailing_data[0][:self.limits.max_header_bytes]):
                return 414, "request line too long"
            return 431, "request headers too large"
        return 400, "bad request: " + str(exc)

    def check_size(self, request: h11.Request) -> None:
        """Refuse what is too large before reading on (h11 bounds only a head that arrives in pieces)."""
        if len(request.target) > self.limits.max_header_bytes:
            raise ClientError(414, "request line too long")
        if len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw_items()) \
                > self.limits.max_header_bytes:
            raise ClientError(431, "request headers too large")
        for name, value in request.headers.raw_items():
            if name.lower() == b"content-length" and int(value) > self.limits.max_body_bytes:
                raise ClientError(413, "request body too large")

    def answer_here(self, environ: dict) -> Reply | None:
        """ANSWER_NOW's reply to ENVIRON, here on the loop thread; None: a worker runs the app.

        What it can answer from memory (a repeated ``nochg``) is spared the
        hand-over to a worker and back: the queue, two thread wake-ups, and the
        GIL changing hands, each costing the loop as much as the answer itself.
        """
        if self.answer_now is None:
            return None
        try:
            return self.answer_now(environ)
        except Exception:  # noqa: BLE001 -- the app decides it on a worker, as if never asked here
            log.exception("answering %s %s on the loop failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return None

    def _work(self) -> None:
        """A worker thread: runs the app for each queued request and hands the reply back to the loop."""
        while (item := self._queue.get()) is not None:
            future, environ = item
            if self._done.is_set() or future.cancelled():
                continue
            try:
                outcome = (future.set_result, call_app(self.app, environ))
            except Exception as exc:  # noqa: BLE001 -- answered 500 by _run_app, logged there
                outcome = (future.set_exception, exc)
            try:
                self._loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop has closed: nobody waits for this answer
                pass

    def run_app(self, environ: dict, then: Callable[[Reply], None]) -> None:
        """Queue ENVIRON for a worker; THEN(reply) runs on the loop with its answer (a 500 if the app failed)."""
        future = self._loop.create_future()
        self._busy.add(future)

        def done(future: asyncio.Future) -> None:
            self._busy.discard(future)
            if future.cancelled():
                return
            if future.exception() is None:
                then(future.result())
                return
            log.error("the web app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"],
                      exc_info=future.exception())
            headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Connection", b"close"),
                       *((k.encode(), v.encode()) for k, v in self.error_headers.items())]
            then(Reply(500, b"Internal Server Error", headers, b"911: something went wrong here; it is logged.\n"))

        future.add_done_callback(done)
        self._queue.put((future, environ))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()


def _settle(future: asyncio.Future, settle: Callable, value) -> None:
    """In the loop: FUTURE's result (or exception) VALUE, unless its request was cancelled meanwhile."""
    if not future.cancelled():
        settle(value)


class Connection(asyncio.Protocol):
    """One client's connection, in the loop: h11 fed with what arrives, one request at a time.

    A protocol, not a stream reader and writer with a task: a request costs
    the loop no task steps, futures or timeout contexts, only the callbacks
    of the bytes arriving. Reading pauses while a request is with the app
    (pipelined requests wait in h11's buffer and the socket's), and while the
    client does not read its answers; ``request_timeout`` bounds both the wait
    for each whole request and for a client to take its answer.
    """

    def __init__(self, server: HttpServer):
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.conn = self._parser()
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.busy = False      # a request is with the app
        self.closed = False
        self.blocked = False   # the client does not read: answers wait
        self.timer: asyncio.TimerHandle | None = None
        self.tls = server.ssl_context is not None

    def _parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)

    # ---- asyncio's callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        server = self.server
        server.connections += 1
        server.open.add(self)
        if server.connections > self.limits.max_connections:
            self._refuse(503, "too many connections; try again later")
            return
        self.peer = transport.get_extra_info("peername") or ("", 0)
        self.local = transport.get_extra_info("sockname") or (server.host, server.port)
        self._arm(self._request_late)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._next()

    def eof_received(self) -> bool:
        if self.closed:
            return False
        self.conn.receive_data(b"")  # a half-close: the request read so far still gets its answer
        self._next()
        return not self.tls  # keep writing; a TLS transport closes regardless (and warns of True)

    def pause_writing(self) -> None:
        self.blocked = True
        self._arm(self.transport.abort)  # a client that does not read its answer in time loses the connection

    def resume_writing(self) -> None:
        self.blocked = False
        self._disarm()
        if not self.closed:
            self._arm(self._request_late)
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self in self.server.open:
            self.server.open.discard(self)
            self.server.connections -= 1

    # ---- the requests ----------------------------------------------------------------------
    def _next(self) -> None:
        """Read on in h11's buffer: a whole request goes to the app; a refusal is answered and closes."""
        if self.busy or self.closed or self.blocked:
            return
        try:
            while True:
                try:
                    event = self.conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise ClientError(*self.server.refusal(self.conn, exc)) from None
                if event is h11.NEED_DATA:
                    if self.conn.they_are_waiting_for_100_continue:
                        self.transport.write(self.conn.send(
                            h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))
                    return
                if isinstance(event, h11.Request):
                    self.request = event
                    self.server.check_size(event)
                elif isinstance(event, h11.Data):
                    self.body += event.data
                    if len(self.body) > self.limits.max_body_bytes:
                        raise ClientError(413, "request body too large")
                elif isinstance(event, h11.EndOfMessage):
                    self._dispatch()
                    return
                else:  # ConnectionClosed, PAUSED: the client closed between requests
                    self._close()
                    return
        except ClientError as exc:
            self._refuse(exc.status, exc.message)

    def _dispatch(self) -> None:
        """The whole request: answered here if the server can, else by a worker."""
        self._disarm()
        self.busy = True
        self.transport.pause_reading()
        environ = wsgi_environ(self.request, bytes(self.body), self.peer, self.local, self.tls)
        reply = self.server.answer_here(environ)
        if reply is None:
            self.server.run_app(environ, self._respond)
        else:
            self._respond(reply)

    def _respond(self, reply: Reply) -> None:
        """Send REPLY; then read the next request, or close."""
        if self.closed:
            return
        request = self.request
        close = self.server.stopping or not keep_alive(request, reply)
        try:
            self.transport.write(response_bytes(reply, request.method == b"HEAD", close))
        except h11.LocalProtocolError:
            log.exception("the web app's answer is not valid HTTP")
            close = True
        if close:
            self._close()
            return
        data, eof = self.conn.trailing_data  # bytes of the next request(s) that came with this one
        self.conn, self.request, self.body, self.busy = self._parser(), None, bytearray(), False
        if data:
            self.conn.receive_data(bytes(data))
        if eof:
            self.conn.receive_data(b"")
        self.transport.resume_reading()
        if not self.blocked:
            self._arm(self._request_late)
        self._next()

    def stop(self) -> None:
        """The server stops: an idle connection closes now, a busy one after its answer."""
        if not self.busy:
            self._close()

    # ---- closing and timers ------------------------------------------------------------------
    def _request_late(self) -> None:
        """No whole request within request_timeout: an idle connection just closes, a started one gets 408."""
        self.timer = None
        if self.busy or self.closed:
            return
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._close()
        else:
            self._refuse(408, "request not received in time")

    def _refuse(self, status: int, message: str) -> None:
        self.transport.write(error_bytes(status, message, self.server.error_headers))
        self._close()

    def _close(self) -> None:
        """Close once the answer is out (a client that does not take it within request_timeout loses it)."""
        if self.closed:
            return
        self.closed = True
        self._disarm()
        if self.transport.get_write_buffer_size():
            self._arm(self.transport.abort)
        self.transport.close()

    def _arm(self, callback: Callable[[], None]) -> None:
        self._disarm()
        self.timer = self.server._loop.call_later(self.limits.request_timeout, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
