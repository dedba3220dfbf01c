"""TKEY (RFC 2930) for GSS-TSIG (RFC 3645): negotiate a context, delete it. Pure apart from the acceptor.

A client asks ``KEYNAME ANY TKEY`` over TCP with a TKEY record (in the
additional section, or the answer section as older Windows puts it) whose
key data is its GSS-API token:

- mode 3 (GSS-API negotiation), algorithm ``gss-tsig`` or ``gss.microsoft.com``:
  the token is accepted in one round and the answer, NOERROR, carries a TKEY
  record in the answer section (same name, algorithm and mode, the
  context's inception and expiration, the acceptor's token as key data),
  signed with the new context so the client knows it talks to the holder of
  the service key. A key name in use (a live context or a stored TSIG key),
  a token seen before, a token the acceptor refuses, and a mechanism that
  wants more rounds answer the TKEY error BADNAME or BADKEY; another
  algorithm BADALG. No context is made then.
- mode 5 (key deletion), signed by the context it names: answered (signed
  with it), then the context is gone.
- any other mode: BADMODE.

TKEY errors are NOERROR answers with the error in the TKEY record, as BIND
answers. Over UDP, or with no ``kerberos.keytab``, a TKEY query is REFUSED.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TKEY
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

from . import tsig
from .contexts import InUse
from .gss import AcceptFailed, Gss
from .wire import name_text

TKEY = dns.rdtypes.ANY.TKEY.TKEY
NEGOTIATE = TKEY.GSSAPI_NEGOTIATION  # 3
DELETE = TKEY.KEY_DELETION           # 5
FUDGE = 300


@dataclass(frozen=True)
class Reply:
    """The answer to a TKEY query: its rcode, answer section and how it is signed; REASON is for the log."""

    rcode: int
    reason: str
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    signing: tsig.Signing | None = None


def is_tkey(message: dns.message.Message) -> bool:
    """Whether MESSAGE asks a TKEY question."""
    return len(message.question) == 1 and message.question[0].rdtype == dns.rdatatype.TKEY


def answer(gss: Gss | None, message: dns.message.Message, signing: tsig.Signing | None, transport: str,
           stored_key: Callable[[str], object]) -> Reply:
    """The Reply to the TKEY query MESSAGE; STORED_KEY(name) is the TSIG key store's lookup (its names are taken)."""
    if transport != "tcp":
        return Reply(dns.rcode.REFUSED, "TKEY over UDP", signing=signing)
    if gss is None:
        return Reply(dns.rcode.REFUSED, "GSS-TSIG is off (no kerberos.keytab)", signing=signing)
    qname = message.question[0].name
    tkeyin = _tkey_record(message, qname)
    if tkeyin is None or tkeyin.error:
        return Reply(dns.rcode.FORMERR, "no TKEY record (without error) for the question's name", signing=signing)
    if tkeyin.mode == NEGOTIATE:
        return _negotiate(gss, message, qname, tkeyin, signing, stored_key)
    if tkeyin.mode == DELETE:
        return _delete(gss, qname, tkeyin, signing)
    return _error(qname, tkeyin, dns.rcode.BADMODE, f"TKEY mode {tkeyin.mode} is not supported", signing)


def _tkey_record(message: dns.message.Message, qname: dns.name.Name) -> TKEY | None:
    for section in (message.additional, message.answer):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.TKEY and rrset.name == qname and len(rrset):
                return rrset[0]
    return None


def _negotiate(gss: Gss, message: dns.message.Message, qname: dns.name.Name, tkeyin: TKEY,
               signing: tsig.Signing | None, stored_key: Callable[[str], object]) -> Reply:
    keyname, algorithm = name_text(qname), name_text(tkeyin.algorithm)
    if algorithm not in tsig.GSS:
        return _error(qname, tkeyin, dns.rcode.BADALG, f"algorithm {algorithm} is not GSS-TSIG", signing)
    if gss.contexts.in_use(keyname) or stored_key(keyname) is not None:
        return _error(qname, tkeyin, dns.rcode.BADNAME, "the key name is in use", signing)
    if not tkeyin.key:
        return _error(qname, tkeyin, dns.rcode.BADKEY, "no GSS-API token", signing)
    if not gss.contexts.first_sight(tkeyin.key):
        return _error(qname, tkeyin, dns.rcode.BADKEY, "a replayed GSS-API token", signing)
    try:
        accepted = gss.acceptor.accept(tkeyin.key)
        if not accepted.complete:
            raise AcceptFailed("the mechanism wants another round (GSS_S_CONTINUE_NEEDED); "
                               "multi-round negotiation is not supported")
        context = gss.contexts.add(keyname, algorithm, accepted.principal, accepted.security, accepted.lifetime)
    except AcceptFailed as exc:
        gss.contexts.forget(tkeyin.key)
        return _error(qname, tkeyin, dns.rcode.BADKEY, str(exc), signing)
    except InUse:
        return _error(qname, tkeyin, dns.rcode.BADNAME, "the key name is in use", signing)
    rdata = _tkey(tkeyin, int(context.inception), int(context.expiry), key=accepted.token)
    if signing is None:  # RFC 3645 4.1.3: the answer proves the server holds the service key
        request = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, tkeyin.algorithm, 0, FUDGE,
                                            b"", message.id, 0, b"")
        key = dns.tsig.Key(qname, context, tsig.GSS[algorithm])  # type: ignore[arg-type]
        signing = tsig.Signing(qname, request, key, principal=context.principal)
    return Reply(dns.rcode.NOERROR, f"context for {context.principal} ({algorithm}) until {int(context.expiry)}",
                 [_rrset(qname, rdata)], signing)


def _delete(gss: Gss, qname: dns.name.Name, tkeyin: TKEY, signing: tsig.Signing | None) -> Reply:
    if signing is None or not signing.principal or signing.keyname != qname:
        return Reply(dns.rcode.REFUSED, "a TKEY delete must be signed by the context it deletes", signing=signing)
    gss.contexts.remove(name_text(qname))
    rdata = _tkey(tkeyin, tkeyin.inception, tkeyin.expiration)
    return Reply(dns.rcode.NOERROR, f"context of {signing.principal} deleted", [_rrset(qname, rdata)], signing)


def _error(qname: dns.name.Name, tkeyin: TKEY, error: int, reason: str, signing: tsig.Signing | None) -> Reply:
    rdata = _tkey(tkeyin, tkeyin.inception, tkeyin.expiration, error=error)
    return Reply(dns.rcode.NOERROR, f"TKEY error {dns.rcode.to_text(error)}: {reason}", [_rrset(qname, rdata)],
                 signing)


def _tkey(tkeyin: TKEY, inception: int, expiration: int, error: int = 0, key: bytes = b"") -> TKEY:
    """The answer's TKEY rdata: the request's algorithm and mode, class ANY."""
    return TKEY(dns.rdataclass.ANY, dns.rdatatype.TKEY, tkeyin.algorithm, inception, expiration, tkeyin.mode,
                error, key)


def _rrset(qname: dns.name.Name, rdata: TKEY) -> dns.rrset.RRset:
    return dns.rrset.from_rdata(qname, 0, rdata)
