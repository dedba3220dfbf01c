"""Raw HTTP over loopback for the hostile-input tests and the slowloris bench: exact bytes sent, one answer read.

``exchange`` sends exactly the bytes given on a new connection and reads one
answer; ``get`` and ``basic`` build a request and its Authorization value;
``Attack`` holds idle and slowly dripping connections open (bounded).
"""
from __future__ import annotations

import base64
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass

from .instance import read_reply


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


def exchange(port: int, data: bytes, half_close: bool = False, timeout: float = 30) -> Answer:
    """Send exactly DATA on a new connection and read one answer (to its Content-Length, or to EOF)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before everything was read: the answer is still there
        reply = read_reply(s, complete=complete)
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Answer(status, headers, body, time.monotonic() - started)


def complete(reply: bytes) -> bool:
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def get(target: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join([b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]) \
        + b"\r\n\r\n"


class Attack:
    """IDLE connections that send nothing, SLOW ones that send a header line or a body byte now and then.

    Bounded: at most ROUNDS rounds of drips, and everything is closed at the end.
    """

    def __init__(self, port: int, idle: int, slow_headers: int, slow_bodies: int, every: float = 1.0,
                 rounds: int = 120):
        self.stack = ExitStack()
        self.slow: list[socket.socket] = []
        self.stop = threading.Event()
        self.every, self.rounds = every, rounds
        for _ in range(idle):
            self.open(port)
        for _ in range(slow_headers):
            self.slow.append(self.open(port, b"GET /nic/update HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
        for _ in range(slow_bodies):
            self.slow.append(self.open(port, b"POST /nic/update HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                             b"Content-Type: application/x-www-form-urlencoded\r\n"
                                             b"Content-Length: 60000\r\n\r\nx"))
        self.thread = threading.Thread(target=self.drip, daemon=True)

    def open(self, port: int, first: bytes = b"") -> socket.socket:
        s = self.stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        if first:
            s.sendall(first)
        return s

    def drip(self) -> None:
        for n in range(self.rounds):
            if self.stop.wait(self.every):
                return
            for s in self.slow:
                try:
                    s.sendall(b"X-Slow-%d: y\r\n" % n if n % 2 == 0 else b"x")  # a line, or a body byte
                except OSError:
                    pass

    def __enter__(self) -> "Attack":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        self.stack.close()
