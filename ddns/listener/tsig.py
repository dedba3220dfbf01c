"""TSIG (RFC 8945) for the listener: verify a request, sign its answer, answer a bad signature.

Keys come from a lookup (``service.tsig_key``) called for every message, so a
key revoked a moment ago is unknown to the next message. hmac-sha256, -384
and -512 are always accepted; hmac-sha1 and hmac-md5 only when
``dnsupdate.allow_weak_tsig`` is set. An unknown key or algorithm answers
NOTAUTH with TSIG error BADKEY and a wrong MAC NOTAUTH/BADSIG, both unsigned
(we cannot sign with a key we do not have or the client may not hold); a
request whose MAC is right but whose time is off by more than the fudge
answers NOTAUTH/BADTIME, signed, with our time in the other data so the
client can see the skew.

A key name that is a GSS-TSIG context negotiated by TKEY (``contexts``) is
looked up there first: its messages are verified and answered with the
context (a GSS MIC, RFC 3645), ``gss-tsig`` through dnspython's own GSS
code and ``gss.microsoft.com`` through ``gsstsig``; the answer's ``Signing``
then names the Kerberos principal. An expired or deleted context is an
unknown key.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Callable

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from ..model import TsigKey
from . import gsstsig
from .contexts import Context, ContextTable
from .wire import name_text, sections

STRONG = {"hmac-sha256": dns.tsig.HMAC_SHA256, "hmac-sha384": dns.tsig.HMAC_SHA384,
          "hmac-sha512": dns.tsig.HMAC_SHA512}
WEAK = {"hmac-sha1": dns.tsig.HMAC_SHA1, "hmac-md5": dns.tsig.HMAC_MD5}
GSS = {"gss-tsig": dns.tsig.GSS_TSIG, "gss.microsoft.com": gsstsig.MICROSOFT}
RESERVE = 512  # room left for the TSIG record when an answer is rendered


class LookupFailed(Exception):
    """The key store could not be asked (SERVFAIL, not a TSIG error)."""


class Deferred(Exception):
    """Raised through dnspython for a key it cannot verify (gss.microsoft.com); ``read`` verifies it."""

    def __init__(self, key: dns.tsig.Key):
        super().__init__("verified by gsstsig")
        self.key = key


class Keyring:
    """dnspython's callable keyring, ``(message, keyname) -> dns.tsig.Key | None``, over a fresh lookup."""

    def __init__(self, lookup: Callable[[str], TsigKey | None], allow_weak: bool = False,
                 contexts: ContextTable | None = None):
        self.lookup = lookup
        self.algorithms = {**STRONG, **(WEAK if allow_weak else {})}
        self.contexts = contexts

    def __call__(self, message: dns.message.Message | None, keyname: dns.name.Name) -> dns.tsig.Key | None:
        key = self.key(keyname)
        if key is not None and key.algorithm == gsstsig.MICROSOFT:
            raise Deferred(key)
        return key

    def key(self, keyname: dns.name.Name) -> dns.tsig.Key | None:
        """KEYNAME's key: its GSS context if it has a live one (the secret is the Context), else the stored key."""
        context = self.contexts.get(name_text(keyname)) if self.contexts is not None else None
        if context is not None:
            return dns.tsig.Key(keyname, context, GSS[context.algorithm])  # type: ignore[arg-type]
        try:
            key = self.lookup(name_text(keyname))
        except Exception as exc:  # the database, not the client: must not read as a bad message
            raise LookupFailed(f"looking up the key {keyname} failed") from exc
        if key is None or key.algorithm.lower() not in self.algorithms:
            return None
        return dns.tsig.Key(keyname, key.secret, self.algorithms[key.algorithm.lower()])


@dataclass(frozen=True)
class Signing:
    """How an answer carries its TSIG record: signed with KEY, or (key None) unsigned with an error."""

    keyname: dns.name.Name
    request: dns.rdtypes.ANY.TSIG.TSIG  # the request's TSIG rdata (algorithm, MAC, time, fudge)
    key: dns.tsig.Key | None
    error: int = 0
    other: bytes = b""
    echo_time: bool = False  # BADTIME: sign with the request's time, so the client can verify the answer
    principal: str = ""      # the Kerberos principal when KEY is a GSS-TSIG context


def principal_of(key: dns.tsig.Key | None) -> str:
    """The initiator of KEY's GSS context; "" for a shared-secret key."""
    return key.secret.principal if key is not None and isinstance(key.secret, Context) else ""


class Rejected(Exception):
    """A signed request whose signature we do not accept; MESSAGE is its unverified parse."""

    def __init__(self, message: dns.message.Message, signing: Signing, reason: str):
        super().__init__(reason)
        self.message = message
        self.signing = signing


def read(wire: bytes, keyring: Keyring, fudge: int, clock: Callable[[], float] = time.time
         ) -> tuple[dns.message.Message, Signing | None]:
    """WIRE parsed and, if signed, verified; with how its answer is to be signed (None: unsigned request).

    Raises Rejected for a signature we do not accept and dns.exception.DNSException
    (or another parse error) for a message that is not DNS.
    """
    try:
        message = dns.message.from_wire(wire, keyring=keyring)
    except Deferred as deferred:
        message = _verified_by_gsstsig(wire, deferred.key)
    except dns.message.UnknownTSIGKey:
        raise _rejected(wire, None, dns.rcode.BADKEY, "unknown key or algorithm not allowed")
    except (dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        raise _rejected(wire, None, dns.rcode.BADKEY, "the key's algorithm differs from the request's")
    except dns.tsig.BadSignature:
        raise _rejected(wire, None, dns.rcode.BADSIG, "wrong MAC")
    except dns.tsig.BadTime:  # dnspython checks the time only after the MAC
        raise _bad_time(wire, keyring, clock)
    if not message.had_tsig:
        return message, None
    request = message.tsig[0]
    signing = Signing(message.keyname, request, message.keyring, principal=principal_of(message.keyring))
    if abs(request.time_signed - clock()) > fudge:
        raise _bad_time(wire, keyring, clock)
    return message, signing


def _verified_by_gsstsig(wire: bytes, key: dns.tsig.Key) -> dns.message.Message:
    """WIRE parsed, its gss.microsoft.com MAC checked by KEY's context; raises Rejected."""
    message = dns.message.from_wire(wire, keyring=False)
    try:
        gsstsig.verify(wire, key, message.tsig[0], sections(wire)[3][-1].start)
    except dns.tsig.BadAlgorithm:
        raise _rejected(wire, None, dns.rcode.BADKEY, "the key's algorithm differs from the request's")
    except dns.tsig.BadSignature:
        raise _rejected(wire, None, dns.rcode.BADSIG, "wrong MAC")
    message.keyring = key
    return message


def _rejected(wire: bytes, key: dns.tsig.Key | None, error: int, reason: str, other: bytes = b"") -> Rejected:
    """The Rejected of WIRE, parsed a second time without verification (the first parse raised)."""
    message = dns.message.from_wire(wire, keyring=False)
    signing = Signing(message.keyname, message.tsig[0], key, error, other, echo_time=key is not None,
                      principal=principal_of(key))
    return Rejected(message, signing, reason)


def _bad_time(wire: bytes, keyring: Keyring, clock: Callable[[], float]) -> Rejected:
    unverified = dns.message.from_wire(wire, keyring=False)
    key = keyring.key(unverified.keyname)
    if key is None:  # revoked between the two lookups
        return _rejected(wire, None, dns.rcode.BADKEY, "unknown key")
    now = struct.pack("!Q", int(clock()))[2:]  # 48-bit seconds
    return _rejected(wire, key, dns.rcode.BADTIME, "time outside the fudge", now)


def append(wire: bytes, signing: Signing, clock: Callable[[], float] = time.time) -> bytes:
    """WIRE (an answer rendered without TSIG) with its TSIG record: signed over the request's MAC, or unsigned."""
    request = signing.request
    when = request.time_signed if signing.echo_time else int(clock())
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, request.algorithm, when,
                                      request.fudge, b"", request.original_id, signing.error, signing.other)
    if signing.key is not None and signing.key.algorithm == gsstsig.MICROSOFT:
        rdata = gsstsig.sign(wire, signing.key, rdata, request.mac)
    elif signing.key is not None:
        rdata, _ = dns.tsig.sign(wire, signing.key, rdata, when, request.mac)
    rdata_wire = rdata.to_wire()
    record = signing.keyname.to_wire() + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0,
                                                     len(rdata_wire)) + rdata_wire
    arcount = struct.unpack("!H", wire[10:12])[0] + 1
    return wire[:10] + struct.pack("!H", arcount) + wire[12:] + record
