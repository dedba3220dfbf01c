"""The sockets of the listener: DNS over UDP and TCP on one port, one asyncio loop in its own thread.

The loop only moves bytes. Every message is answered by ``handle_wire`` in a
worker thread, because an update waits until BIND serves it (up to
``bind.verify_timeout``) and must not hold other clients meanwhile. What one
client may cost is bounded: the size of a message, the TCP connections open
at once, how long a TCP connection may stay idle, and the messages in work
at once (beyond that, UDP messages are dropped and TCP connections wait). A
UDP retry of a message still in work is dropped: the first one's answer
will come.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("ddns.rfc2136")

Handler = Callable[[bytes, str, str], "bytes | None"]  # (wire, client address, "udp" | "tcp") -> answer


@dataclass(frozen=True)
class Limits:
    """What one client may cost the listener."""

    max_udp_bytes: int = 4096        # a larger datagram is dropped unread
    max_tcp_bytes: int = 65535       # a larger length prefix closes the connection
    idle_timeout: float = 10.0       # seconds a TCP connection may wait for its next message (or its rest)
    max_connections: int = 200       # TCP connections open at once; one more is closed at once
    workers: int = 128               # threads running handle_wire (an update holds one until BIND serves it)
    max_in_work: int = 1000          # messages in work at once (queued for a worker included)
    shutdown_timeout: float = 5.0    # seconds that messages in work get at stop


class DnsServer:
    """Serves HANDLER on HOST:PORT over UDP and TCP; ``prepare()`` binds, ``serve()`` runs, ``stop()`` ends it."""

    def __init__(self, handler: Handler, host: str, port: int, limits: Limits = Limits()):
        self.handler = handler
        self.host, self.port = host, port
        self.limits = limits
        self.pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="rfc2136")
        self.udp_sock: socket.socket | None = None
        self.tcp_sock: socket.socket | None = None
        self.connections = 0
        self._in_work: set[asyncio.Future] = set()
        self._udp_pending: set[tuple[tuple, bytes]] = set()
        self._tasks: set[asyncio.Task] = set()
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._started = threading.Event()
        self._done = threading.Event()

    def prepare(self) -> None:
        """Bind both sockets now (the TCP one first picks the port when PORT is 0), so errors surface in the caller."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.tcp_sock = socket.create_server((self.host, self.port), family=family, backlog=256)
        self.port = self.tcp_sock.getsockname()[1]
        self.udp_sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.udp_sock.bind((self.host, self.port))
        except OSError:
            self.tcp_sock.close()
            self.udp_sock.close()
            raise

    def serve(self) -> None:
        """Run the event loop in this thread until ``stop()``."""
        self._started.set()
        try:
            asyncio.run(self._main())
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            for sock in (self.udp_sock, self.tcp_sock):
                if sock is not None:
                    sock.close()
            self._done.set()

    def stop(self) -> None:
        """Stop taking messages, let those in work finish (bounded), close; returns when done."""
        self._stop_requested.set()
        if self._loop is not None and self._stopping is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop has closed already
                pass
        if self._started.is_set():
            self._done.wait(self.limits.shutdown_timeout + 5)
        else:
            for sock in (self.udp_sock, self.tcp_sock):
                if sock is not None:
                    sock.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.limits.max_in_work)
        if self._stop_requested.is_set():
            return
        udp, _ = await self._loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=self.udp_sock)
        tcp = await asyncio.start_server(self._connection, sock=self.tcp_sock)
        await self._stopping.wait()
        udp.close()
        tcp.close()
        if self._in_work:
            await asyncio.wait(self._in_work, timeout=self.limits.shutdown_timeout)

    async def answer(self, wire: bytes, client: str, transport: str) -> bytes | None:
        """HANDLER's answer, computed in a worker thread."""
        future = self._loop.run_in_executor(self.pool, self.handler, wire, client, transport)
        self._in_work.add(future)
        try:
            return await future
        except Exception:  # handle_wire answers its own failures; this is a bug or a stopped pool
            log.exception("no answer to a message from %s", client)
            return None
        finally:
            self._in_work.discard(future)

    def udp_received(self, transport: asyncio.DatagramTransport, wire: bytes, addr: tuple) -> None:
        if len(wire) > self.limits.max_udp_bytes or self._stopping.is_set():
            return
        key = (addr, wire)
        if key in self._udp_pending or len(self._in_work) >= self.limits.max_in_work:
            return  # a retry of a message in work, or too much in work: drop
        self._udp_pending.add(key)
        task = asyncio.ensure_future(self._answer_udp(transport, wire, addr, key))
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _answer_udp(self, transport: asyncio.DatagramTransport, wire: bytes, addr: tuple, key) -> None:
        try:
            reply = await self.answer(wire, addr[0], "udp")
            if reply is not None and not transport.is_closing():
                transport.sendto(reply, addr)
        finally:
            self._udp_pending.discard(key)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        client = (writer.get_extra_info("peername") or ("",))[0]
        try:
            if self.connections > self.limits.max_connections:
                return
            while not self._stopping.is_set():
                async with asyncio.timeout(self.limits.idle_timeout):
                    length = int.from_bytes(await reader.readexactly(2), "big")
                    if length > self.limits.max_tcp_bytes or length == 0:
                        return
                    wire = await reader.readexactly(length)
                async with self._slots:
                    reply = await self.answer(wire, client, "tcp")
                if reply is None:
                    continue
                writer.write(len(reply).to_bytes(2, "big") + reply)
                async with asyncio.timeout(self.limits.idle_timeout):
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, OSError):
            pass  # the client closed, went quiet or stopped reading
        finally:
            self.connections -= 1
            writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.server.udp_received(self.transport, data, addr)

    def error_received(self, exc: Exception) -> None:  # an ICMP error for an earlier answer: nothing to do
        pass


def start(handler: Handler, host: str, port: int, limits: Limits = Limits()) -> DnsServer:
    """A DnsServer bound on HOST:PORT and serving from a thread of its own."""
    server = DnsServer(handler, host, port, limits)
    server.prepare()
    threading.Thread(target=server.serve, name="rfc2136", daemon=True).start()
    return server
