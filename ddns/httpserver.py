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

A request costs the loop thread one h11 parse and one write: the answer's head
is written here (``response_bytes``), not by h11's state machine, and the
request goes to the workers through one queue, not a ``ThreadPoolExecutor``
(whose futures, locks and thread accounting cost the loop as much as h11's
parse). The GIL runs the loop and the app one at a time, so what the loop
spends per request is what every request waits for.

Errors the server answers itself (malformed request, too large, too slow, too
many connections, a crashing app) carry the same security headers as the app's
answers, and never a stack trace.
"""
from __future__ import annotations

import asyncio
import io
import logging
import queue
import socket
import ssl
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Iterable
from urllib.parse import unquote_to_bytes

import h11

log = logging.getLogger("ddns.http")
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server."""

    request_timeout: float = 10.0  # seconds to receive one whole request (and to wait for the next)
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    max_connections: int = 1000
    shutdown_timeout: float = 5.0  # seconds that requests in progress get to finish at stop


class ClientError(Exception):
    """A request the server refuses itself, before the app sees it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Reply:
    """The app's whole answer, collected in the worker thread."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


def header_text(raw: bytes) -> str:
    """A header value for the WSGI environ: UTF-8, bad bytes as U+FFFD, in PEP 3333's latin-1 form.

    Frameworks decode header strings as UTF-8 (Bottle does, strictly); a byte
    that is not UTF-8 must not make every handler that reads the header crash,
    so it becomes U+FFFD here, the one place headers are decoded.
    """
    return raw.decode("utf-8", errors="replace").encode("utf-8").decode("latin-1")


def wsgi_environ(request: h11.Request, body: bytes, peer: tuple, local: tuple, tls: bool) -> dict:
    """The PEP 3333 environ of a complete request (the body already de-chunked)."""
    target = request.target
    path, _, query = target.partition(b"?")
    if path.startswith((b"http://", b"https://")):  # absolute form: keep only the path
        path = b"/" + path.split(b"/", 3)[-1] if path.count(b"/") >= 3 else b"/"
    environ = {
        "REQUEST_METHOD": request.method.decode("ascii", errors="replace"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": str(local[0]),
        "SERVER_PORT": str(local[1]),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
        "REMOTE_ADDR": str(peer[0]),
        "REMOTE_PORT": str(peer[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if tls else "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.raw_items():
        key = name.decode("latin-1").upper().replace("-", "_")
        if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING") or "\\" in key:
            continue  # the body is whole and de-chunked: its length is len(body)
        key = key if key == "CONTENT_TYPE" else "HTTP_" + key
        text = header_text(value)
        environ[key] = environ[key] + "," + text if key in environ else text
    return environ


def call_app(app: Callable, environ: dict) -> Reply:
    """Run the WSGI app for ENVIRON in this (worker) thread; its whole body is collected."""
    started: list[Reply] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
        code, _, reason = status.partition(" ")
        reply = Reply(int(code), reason.encode("latin-1"),
                      [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers])
        started[:] = [reply]
        return lambda data: None  # the legacy write() callable; the app returns its body

    result: Iterable[bytes] = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    reply = started[0]
    reply.body = body
    if not any(k.lower() == b"content-length" for k, _ in reply.headers):
        reply.headers.append((b"Content-Length", str(len(body)).encode()))
    return reply


def keep_alive(request: h11.Request, reply: Reply) -> bool:
    """Whether the connection may carry another request after REPLY (h11's rule: HTTP/1.1, nobody said close)."""
    if request.http_version != b"1.1":
        return False
    return not any(name.lower() == b"connection" and b"close" in value.lower()
                   for name, value in (*request.headers.raw_items(), *reply.headers))


def response_bytes(reply: Reply, head_only: bool, close: bool) -> bytes:
    """REPLY as HTTP/1.1 bytes (no body with HEAD_ONLY; ``Connection: close`` with CLOSE).

    The app's header names and values must not hold CR, LF or NUL (no header
    can be smuggled into the answer): that is h11.LocalProtocolError, as when
    h11 wrote the answer.
    """
    headers = reply.headers
    if close and not any(name.lower() == b"connection" for name, _ in headers):
        headers = [*headers, (b"Connection", b"close")]
    block = b"".join(b"%s: %s\r\n" % item for item in headers)
    if block.count(b"\n") != len(headers) or block.count(b"\r") != len(headers) or b"\0" in block \
            or not 100 <= reply.status <= 999 or b"\n" in reply.reason or b"\r" in reply.reason:
        raise h11.LocalProtocolError("the answer's status or headers hold CR, LF or NUL")
    head = b"HTTP/1.1 %d %s\r\n%s\r\n" % (reply.status, reply.reason, block)
    return head if head_only else head + reply.body


def error_bytes(status: int, message: str, headers: dict[str, str]) -> bytes:
    """A whole response, written without h11: it must go out whatever state the parser is in."""
    body = (message + "\n").encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


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
        server = await asyncio.start_server(self._connection, sock=self.sock, ssl=self.ssl_context,
                                            ssl_handshake_timeout=self.limits.request_timeout if self.ssl_context
                                            else None, limit=READ_SIZE)
        await self._stopping.wait()
        server.close()
        if self._busy:
            await asyncio.wait(self._busy, timeout=self.limits.shutdown_timeout)
        # asyncio.run cancels the connection tasks left (idle keep-alive ones) on return

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.connections > self.limits.max_connections:
                await self._send(writer, error_bytes(503, "too many connections; try again later", self.error_headers))
                return
            await self._serve_connection(reader, writer)
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            pass  # the client went away or stopped reading: nothing to answer
        except h11.LocalProtocolError:
            log.exception("the web app's answer is not valid HTTP")
        finally:
            self.connections -= 1
            writer.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        peer = writer.get_extra_info("peername") or ("", 0)
        local = writer.get_extra_info("sockname") or (self.host, self.port)
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self.limits.request_timeout):
                    request, body = await self._read_request(conn, reader, writer)
            except TimeoutError:
                if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                    return  # an idle keep-alive (or never used) connection: just close it
                await self._send(writer, error_bytes(408, "request not received in time", self.error_headers))
                return
            except ClientError as exc:
                await self._send(writer, error_bytes(exc.status, exc.message, self.error_headers))
                return
            if request is None:
                return
            environ = wsgi_environ(request, body, peer, local, self.ssl_context is not None)
            reply = self._answer_now(environ)
            if reply is None:
                reply = await self._run_app(environ)
            conn = await self._respond(conn, writer, request, reply)
            if conn is None:
                return

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> tuple[h11.Request | None, bytes]:
        """The next whole request on CONN, or (None, b"") when the client closed between requests."""
        request, body = None, bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ClientError(*self._refusal(conn, exc)) from None
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    go_on = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    await self._send(writer, conn.send(go_on))
                conn.receive_data(await reader.read(READ_SIZE))
            elif isinstance(event, h11.Request):
                request = event
                self._check_size(event)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.limits.max_body_bytes:
                    raise ClientError(413, "request body too large")
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed, PAUSED
                return None, b""

    def _refusal(self, conn: h11.Connection, exc: h11.RemoteProtocolError) -> tuple[int, str]:
        """Status and message for what h11 refused: a request line too long is 414, a head too large 431."""
        if exc.error_status_hint == 431:
            if b"\n" not in bytes(conn.trailing_data[0][:self.limits.max_header_bytes]):
                return 414, "request line too long"
            return 431, "request headers too large"
        return 400, "bad request: " + str(exc)

    def _check_size(self, request: h11.Request) -> None:
        """Refuse what is too large before reading on (h11 bounds only a head that arrives in pieces)."""
        if len(request.target) > self.limits.max_header_bytes:
            raise ClientError(414, "request line too long")
        if len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw_items()) \
                > self.limits.max_header_bytes:
            raise ClientError(431, "request headers too large")
        for name, value in request.headers.raw_items():
            if name.lower() == b"content-length" and int(value) > self.limits.max_body_bytes:
                raise ClientError(413, "request body too large")

    def _answer_now(self, environ: dict) -> Reply | None:
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

    async def _run_app(self, environ: dict) -> Reply:
        future = self._loop.create_future()
        self._busy.add(future)
        self._queue.put((future, environ))
        try:
            return await future
        except Exception:
            log.exception("the web app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Connection", b"close"),
                       *((k.encode(), v.encode()) for k, v in self.error_headers.items())]
            return Reply(500, b"Internal Server Error", headers, b"911: something went wrong here; it is logged.\n")
        finally:
            self._busy.discard(future)

    async def _respond(self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request,
                       reply: Reply) -> h11.Connection | None:
        """Send REPLY; the connection's parser for the next request, or None when it closes."""
        close = self._stopping.is_set() or not keep_alive(request, reply)
        await self._send(writer, response_bytes(reply, request.method == b"HEAD", close))
        if close:
            return None
        data, closed = conn.trailing_data  # bytes of the next request(s) that came with this one
        nxt = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        if data:
            nxt.receive_data(bytes(data))
        if closed:
            nxt.receive_data(b"")
        return nxt

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write DATA; a client that does not read it in time loses the connection.

        Most answers fit the socket's buffer whole: then there is nothing to
        wait for, and no timer to set.
        """
        writer.write(data)
        if writer.transport.get_write_buffer_size():
            async with asyncio.timeout(self.limits.request_timeout):
                await writer.drain()


def _settle(future: asyncio.Future, settle: Callable, value) -> None:
    """In the loop: FUTURE's result (or exception) VALUE, unless its request was cancelled meanwhile."""
    if not future.cancelled():
        settle(value)
