"""A GSS-TSIG (RFC 3645) client of dnspython and python-gssapi, for the tests: what nsupdate -g and Windows do.

The process must see the KDC's krb5.conf (``KRB5_CONFIG`` of ``testkit/kdc.py``'s
``Kdc.env`` in ``os.environ``): the initiator asks the KDC for the service
ticket. The API:

    session = negotiate(port, ccache, target)           # TKEY over TCP -> a Session
    answer = send(port, update, session)                 # signed with the context, answer verified
    delete(port, session)                                # TKEY mode 5, signed
    tkey_query(keyname, algorithm, token, section)       # the raw query, for hostile tests

``negotiate`` takes ``keyname``, ``algorithm`` ("gss-tsig" or "gss.microsoft.com",
the Windows name) and ``section`` ("additional" as nsupdate puts the TKEY
record, "answer" as older Windows does). ``gss-tsig`` is signed and verified
by dnspython's own GSS code; ``gss.microsoft.com`` by ddns's adapter
(``ddns.listener.gsstsig``, proven byte-equal to dnspython's digest).
A refused negotiation raises ``Refused`` with the rcode and the TKEY error.
"""
from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TKEY
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import gssapi

from ddns.listener import gsstsig, tsig
from ddns.listener.wire import sections

SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
# what BIND's nsupdate asks for; no sequence flag (Windows DNS does not keep the order)
FLAGS = [gssapi.RequirementFlag.replay_detection, gssapi.RequirementFlag.mutual_authentication,
         gssapi.RequirementFlag.integrity]
ALGORITHMS = {"gss-tsig": dns.tsig.GSS_TSIG, "gss.microsoft.com": gsstsig.MICROSOFT}
TIMEOUT = 10.0


class Refused(Exception):
    """The server did not open a context: RCODE and the TKEY record's ERROR (0 when there was none)."""

    def __init__(self, rcode: int, error: int = 0):
        super().__init__(f"{dns.rcode.to_text(rcode)}/TKEY error {dns.rcode.to_text(error) if error else 0}")
        self.rcode, self.error = rcode, error


@dataclass
class Session:
    """A negotiated context: its key name, algorithm and the dnspython key whose secret is the GSS context."""

    keyname: dns.name.Name
    algorithm: str
    context: gssapi.SecurityContext
    key: dns.tsig.Key
    inception: int = 0
    expiration: int = 0


def initiator(ccache: Path, target: str, mech: gssapi.OID = SPNEGO) -> gssapi.SecurityContext:
    """A fresh initiating context for TARGET (``DNS/ns1.ZONE@REALM``) with the ticket in CCACHE."""
    creds = gssapi.Credentials(usage="initiate", store={"ccache": f"FILE:{ccache}"})
    name = gssapi.Name(target, gssapi.NameType.kerberos_principal)
    return gssapi.SecurityContext(name=name, creds=creds, usage="initiate", mech=mech, flags=FLAGS)


def new_keyname() -> dns.name.Name:
    """A key name as nsupdate makes them: random, one label under sig-client."""
    return dns.name.from_text(f"{secrets.randbelow(10**9)}.sig-client.")


def tkey_query(keyname: dns.name.Name, algorithm: str, token: bytes, section: str = "additional",
               mode: int = dns.rdtypes.ANY.TKEY.TKEY.GSSAPI_NEGOTIATION) -> dns.message.Message:
    """The TKEY query ``KEYNAME ANY TKEY`` carrying TOKEN in a TKEY record of SECTION."""
    query = dns.message.make_query(keyname, dns.rdatatype.TKEY, dns.rdataclass.ANY)
    query.flags = 0  # no RD: nsupdate and Windows send none
    now = int(time.time())
    rdata = dns.rdtypes.ANY.TKEY.TKEY(dns.rdataclass.ANY, dns.rdatatype.TKEY, dns.name.from_text(algorithm),
                                      now, now + 86400, mode, 0, token)
    getattr(query, section).append(dns.rrset.from_rdata(keyname, 0, rdata))
    return query


def negotiate(port: int, ccache: Path, target: str, keyname: dns.name.Name | None = None,
              algorithm: str = "gss-tsig", section: str = "additional", host: str = "127.0.0.1") -> Session:
    """A context negotiated by TKEY over TCP, the signed answer verified; raises Refused."""
    context = initiator(ccache, target)
    keyname = keyname or new_keyname()
    query = tkey_query(keyname, algorithm, context.step(), section)
    wire = exchange(port, query.to_wire(), host)
    session = Session(keyname, algorithm, context, dns.tsig.Key(keyname, context, ALGORITHMS.get(algorithm, algorithm)))  # type: ignore[arg-type]
    unverified = dns.message.from_wire(wire, keyring=False)
    record = _tkey_answer(unverified, keyname)
    if unverified.rcode() != dns.rcode.NOERROR or record is None or record.error:
        raise Refused(unverified.rcode(), record.error if record is not None else 0)
    if algorithm == "gss-tsig":  # dnspython steps the token into the context, then checks the MAC
        dns.message.from_wire(wire, keyring=dns.tsig.GSSTSigAdapter({keyname: session.key}))
    else:
        context.step(record.key)
        _verify_microsoft(wire, session.key, b"")
    if not context.complete:
        raise Refused(dns.rcode.NOERROR, 0)
    session.inception, session.expiration = record.inception, record.expiration
    return session


def sign(message: dns.message.Message, session: Session) -> tuple[bytes, bytes]:
    """MESSAGE as wire signed with SESSION's context, and the request MAC its answer is signed over."""
    if session.algorithm == "gss-tsig":
        message.use_tsig(session.key)
        wire = message.to_wire()
        return wire, message.mac
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, session.key.algorithm, 0, 300,
                                      b"", message.id, 0, b"")
    wire = tsig.append(message.to_wire(), tsig.Signing(session.keyname, rdata, session.key))
    return wire, dns.message.from_wire(wire, keyring=False).tsig[0].mac


def send(port: int, message: dns.message.Message, session: Session | None = None, host: str = "127.0.0.1",
         verify: bool = True) -> dns.message.Message:
    """MESSAGE (signed with SESSION when given) over TCP; the answer, its signature verified when VERIFY."""
    if session is None:
        return dns.message.from_wire(exchange(port, message.to_wire(), host), keyring=False)
    wire, mac = sign(message, session)
    answer = exchange(port, wire, host)
    if not verify:
        return dns.message.from_wire(answer, keyring=False)
    if session.algorithm == "gss-tsig":
        return dns.message.from_wire(answer, keyring=session.key, request_mac=mac)
    _verify_microsoft(answer, session.key, mac)
    return dns.message.from_wire(answer, keyring=False)


def delete(port: int, session: Session, host: str = "127.0.0.1") -> dns.message.Message:
    """TKEY mode 5 for SESSION's key name, signed with it; the verified answer."""
    query = tkey_query(session.keyname, session.algorithm, b"", mode=dns.rdtypes.ANY.TKEY.TKEY.KEY_DELETION)
    return send(port, query, session, host)


def exchange(port: int, wire: bytes, host: str = "127.0.0.1") -> bytes:
    """One message over a fresh TCP connection and its answer."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        length = int.from_bytes(_read(sock, 2), "big")
        return _read(sock, length)


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def _tkey_answer(message: dns.message.Message, keyname: dns.name.Name) -> dns.rdtypes.ANY.TKEY.TKEY | None:
    for rrset in message.answer:
        if rrset.rdtype == dns.rdatatype.TKEY and rrset.name == keyname:
            return rrset[0]
    return None


def _verify_microsoft(wire: bytes, key: dns.tsig.Key, request_mac: bytes) -> None:
    """The gss.microsoft.com MAC of the answer WIRE; raises dns.tsig.BadSignature (or PeerError for a TSIG error)."""
    message = dns.message.from_wire(wire, keyring=False)
    if not message.had_tsig:
        raise dns.tsig.BadSignature("the answer is not signed")
    rdata = message.tsig[0]
    if rdata.error:
        raise dns.tsig.PeerError(f"TSIG error {dns.rcode.to_text(rdata.error)}")
    gsstsig.verify(wire, key, rdata, sections(wire)[3][-1].start, request_mac)
