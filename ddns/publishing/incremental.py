"""Incremental publishing: a commit's ``ZoneChange`` sent to named as one TSIG-signed RFC 2136 UPDATE.

named applies an update to the zone in memory (and its journal) in about a
millisecond whatever the zone's size, and answers once it serves it: NOERROR
is the proof, no serial needs polling. Reloading the zone file instead costs
named a re-read of the whole zone.

The message (``update_message``) holds, per changed RRset, a prerequisite that
named still has the set as our last commit left it (value-dependent, or "does
not exist"), a delete of the set and the new rdatas at their TTL; and the SOA
replaced with the commit's (named 9.18 keeps a serial an update sets, it does
not bump it again). A prerequisite that fails means named's zone diverged from
the committed one (someone else changed it): the caller falls back to a full
load, which repairs it.

``UpdateChannel`` keeps one TCP connection open (a connection per update costs
named and us a handshake each) and reconnects once when named closed it (its
TCP idle timeout). The publisher key is a ``tsig-keygen`` key file, never in Git.
"""
from __future__ import annotations

import functools
import socket
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update

from .. import bind, errors
from ..config import ConfigError
from ..rndc import RndcError, RndcKey
from .zonechange import ZoneChange

RELOAD, INCREMENTAL = "reload", "incremental"
T = TypeVar("T")
MODES = ("auto", RELOAD, INCREMENTAL)


class PublisherKeyError(errors.Invalid):
    """The publisher key file is missing or not a key statement."""


def read_key(path: Path) -> dns.tsig.Key:
    """The TSIG key in PATH (``tsig-keygen`` / ``rndc-confgen -a`` format); PublisherKeyError when unusable."""
    try:
        key = RndcKey.from_file(path)
    except OSError as exc:
        raise PublisherKeyError(f"publisher key {path}: {exc.strerror or exc}") from exc
    except (RndcError, ValueError) as exc:  # no key statement, a bad algorithm, a secret that is no base64
        raise PublisherKeyError(f"publisher key {path}: {exc}") from exc
    if not key.secret:
        raise PublisherKeyError(f"publisher key {path}: empty secret")
    return dns.tsig.Key(key.name, key.secret, key.algorithm)


def resolve_mode(mode: str, key: Path | None, zone_dir: Path | None) -> str:
    """The bind.publish setting MODE resolved to RELOAD or INCREMENTAL ("auto": incremental when KEY exists).

    Refused when MODE is unknown, or incremental is asked for (or the key
    file exists) and KEY cannot be used (PublisherKeyError) or there is no
    ZONE_DIR (ConfigError: named would journal into the Git working tree):
    an operator who configured updates gets no silent fall back to reloads.
    """
    if mode not in MODES:
        raise errors.Invalid(f"bind.publish must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        mode = INCREMENTAL if key is not None and key.exists() else RELOAD
    if mode == INCREMENTAL:
        if key is None:
            raise PublisherKeyError("bind.publish = incremental needs bind.publisher_key")
        if zone_dir is None:
            raise ConfigError("bind.publish = incremental needs bind.zone_dir: named keeps its own copies of the "
                              "zones there and journals the updates into them, never into the Git working tree")
        read_key(key)
    return mode


_IN = dns.rdataclass.IN
# The address types (nearly every set a commit changes): their rdata made from the address's bytes.
_ADDRESSES = {"A": (dns.rdatatype.A, socket.AF_INET), "AAAA": (dns.rdatatype.AAAA, socket.AF_INET6)}


def rdata(rtype: str, text: str, origin: dns.name.Name) -> dns.rdata.Rdata:
    """The committed rdata TEXT of RTYPE as a dnspython rdata, for the wire.

    An address is packed by the C library (its 4 or 16 bytes, what the wire
    carries): dnspython's parse of the text took ~13 us a record, and its A
    record parses its address again at every hash and every to_wire, ~2 ms
    of a 23-change update. Any other type is parsed from its text (relative
    names against ORIGIN). Raises OSError or dns.exception.SyntaxError for
    data that is none of RTYPE's (committed data never is).
    """
    address = _ADDRESSES.get(rtype)
    if address is not None:
        return dns.rdata.GenericRdata(_IN, address[0], socket.inet_pton(address[1], text))
    return dns.rdata.from_text(_IN, dns.rdatatype.from_text(rtype), text, origin=origin)


def owner(name: str, zone: str, origin: dns.name.Name) -> dns.name.Name:
    """NAME (absolute, no final dot) as a dnspython name: plain ASCII labels without escapes (what the service
    writes) put in front of ORIGIN (ZONE's name) as they are, anything else parsed by dnspython."""
    if name == zone:
        return origin
    if name.endswith(f".{zone}") and name.isascii() and "\\" not in name:
        return dns.name.Name([label.encode() for label in name[:-len(zone) - 1].split(".")] + list(origin.labels))
    return dns.name.from_text(name)


def _rdataset(rtype: str, rdatas: tuple[str, ...], ttl: int, origin: dns.name.Name) -> dns.rdataset.Rdataset:
    first = rdata(rtype, rdatas[0], origin)
    made = dns.rdataset.Rdataset(_IN, first.rdtype, ttl=ttl)
    made.add(first)
    for text in rdatas[1:]:
        made.add(rdata(rtype, text, origin))
    return made


def update_message(change: ZoneChange, key: dns.tsig.Key | None, probe: bool = False) -> dns.update.UpdateMessage:
    """CHANGE as one UPDATE of its zone, signed with KEY: its sets replaced, the SOA with its committed TTL.

    Each set's prerequisite is that named has it as our last commit left it
    (value-dependent: named compares the rdatas, not the TTL). PROBE: only
    prerequisites, of the new sets and the SOA, so named answers NOERROR
    when it serves CHANGE and changes nothing -- the proof that a full load
    finished when the serial cannot tell (a zone someone else changed may
    already serve our serial with other data).
    """
    origin = dns.name.from_text(change.zone)
    message = dns.update.UpdateMessage(origin, keyring=key, keyname=key.name if key else None)
    for rr in change.changes:
        name = owner(rr.name, change.zone, origin)
        expected = rr.new if probe else rr.old
        if expected is None:
            message.absent(name, rr.rtype)
        else:
            message.present(name, _rdataset(rr.rtype, expected.rdatas, 0, origin))
        if not probe:
            message.delete(name, rr.rtype)
            if rr.new is not None:
                message.add(name, _rdataset(rr.rtype, rr.new.rdatas, rr.ttl, origin))
    soa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, change.soa, origin=origin)
    if probe:
        message.present(origin, dns.rdataset.from_rdata(0, soa))
    else:
        message.replace(origin, change.soa_ttl, soa)
    return message


class UpdateChannel:
    """Sends UPDATE messages to one named over a kept-open TCP connection (thread-safe, one at a time)."""

    def __init__(self, server: str, port: int):
        self.server = server
        self.port = port
        self._sock: socket.socket | None = None
        self._pending: object | None = None  # the message sent whose answer is not read yet
        self._lock = threading.Lock()

    def send(self, message: dns.message.Message, timeout: float) -> Callable[[float], int]:
        """Send MESSAGE; the function returned waits (at most its TIMEOUT) for named's rcode.

        Meanwhile named applies the update while the caller does something
        else (the publisher: its git commit). A message sent before the
        answer was read (its caller failed) closes the connection first, with
        that answer in it: the function then raises EOFError. Raises (here or
        there) OSError / DNSException when named cannot be reached.

        A connection named closed meanwhile is opened again once; the message
        went unanswered then, so named did not take it (a resent one it had
        taken fails its prerequisites, which the caller repairs). A timeout is
        not retried: it would cost another timeout under the publisher's lock,
        and the caller loads the zone instead.
        """
        with self._lock:
            if self._pending is not None:  # an answer nobody will read: it goes with its connection
                self._close_locked()
            reused = self._sock is not None
            wire = message.to_wire()  # signs it: its MAC is what named's answer is checked against
            try:
                self._send_locked(wire, timeout)
            except (EOFError, ConnectionError):  # named closed the kept connection; a timeout is not retried
                if not reused:
                    raise
                reused = False
                self._send_locked(wire, timeout)
            exchange = self._pending = object()
        return functools.partial(self._answer, exchange, message, wire, reused)

    def _answer(self, exchange: object, message: dns.message.Message, wire: bytes, reused: bool,
                timeout: float) -> int:
        """named's rcode for MESSAGE (sent as WIRE); sent again once on a connection it had closed."""
        with self._lock:
            if self._pending is not exchange:
                raise EOFError("the connection was closed before the answer was read")
            self._pending = None
            try:
                return self._receive_locked(message, timeout)
            except (EOFError, ConnectionError):
                if not reused:
                    raise
            self._send_locked(wire, timeout)
            return self._receive_locked(message, timeout)

    def _send_locked(self, wire: bytes, timeout: float) -> None:
        try:
            if self._sock is None:
                self._sock = socket.create_connection((self.server, self.port), timeout=timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dns.query.send_tcp(self._sock, wire, time.time() + timeout)
        except BaseException:
            self._close_locked()
            raise

    def _receive_locked(self, message: dns.message.Message, timeout: float) -> int:
        try:
            answer, _ = dns.query.receive_tcp(self._sock, time.time() + timeout, keyring=message.keyring,
                                              request_mac=message.mac)
            if not message.is_response(answer):
                raise dns.query.BadResponse
            return answer.rcode()
        except BaseException:
            self._close_locked()
            raise

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        self._pending = None
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class IncrementalNamed:
    """A named that takes our updates: the channels and the key.

    Probes (``serves``, from a watcher) go over a connection of their own: on
    the updates' one, a probe sent between an update and the reading of its
    answer would close that exchange (EOFError) and cost a needless full load.
    """

    def __init__(self, server: str, port: int, key: dns.tsig.Key):
        self.server = server
        self.port = port
        self.key = key
        self.channel = UpdateChannel(server, port)
        self.probes = UpdateChannel(server, port)

    def close(self) -> None:
        """Close both kept-open connections (a later message opens its own again)."""
        self.channel.close()
        self.probes.close()

    def send_update(self, change: ZoneChange, timeout: float) -> Callable[[float], int]:
        """Send CHANGE; the function returned waits for named's rcode (``UpdateChannel.send``: call it at most once).
        BindError (from either) when named cannot be reached."""
        answer = self._guarded(change, lambda: self.channel.send(update_message(change, self.key), timeout))
        return lambda wait: self._guarded(change, lambda: answer(wait))

    def serves(self, change: ZoneChange, timeout: float) -> bool:
        """Whether named serves CHANGE's RRsets and SOA (``update_message``'s probe); BindError when it cannot be reached."""
        message = update_message(change, self.key, probe=True)
        return self._guarded(change, lambda: self.probes.send(message, timeout)(timeout)) == dns.rcode.NOERROR

    def _guarded(self, change: ZoneChange, call: Callable[[], T]) -> T:
        try:
            return call()
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise bind.BindError(f"update of {change.zone} at {self.server}:{self.port}: {exc or type(exc).__name__}") from exc
