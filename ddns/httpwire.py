"""What HTTP requests and answers are as bytes and WSGI environs, for ddns.httpserver (no sockets, no threads).

Pure functions: the environ of a parsed request (header bytes decoded in one
place), the app run to a whole ``Reply``, the answer's bytes (CR, LF and NUL
refused), and the server's own error answers.
"""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Iterable
from urllib.parse import unquote_to_bytes

import h11


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
