"""The RFC 2136 listener of ``ddns serve``: DNS UPDATE signed with TSIG, and the SOA/NS queries clients ask first.

The parts, from the wire inwards:

- ``server``: asyncio UDP and TCP sockets; each message goes to a worker thread,
  so a slow publish never holds the event loop or another client.
- ``handler``: bytes in, bytes out (``handle_wire``): parse, verify the
  signature, answer a query or run an update through the service, sign the
  answer. Nothing that arrives makes it raise; internal failures answer SERVFAIL.
- ``tsig``: RFC 8945 verification and signing with dnspython, keys looked up
  fresh per message so a revoked key stops at once.
- ``updates``: pure translation of an UPDATE's zone, prerequisite and update
  sections into the neutral ``ddns.model`` words (RFC 2136 sections 3.1-3.4.1),
  and the one table from outcomes to rcodes.
- ``wire``: a walk over a message's records as they are on the wire (TTLs and
  empty rdata included, which dnspython's message object merges away).

GSS-TSIG (RFC 3645, Kerberos), on when ``kerberos.keytab`` is set:

- ``tkey``: TKEY queries over TCP: negotiate a context in one round (mode 3,
  ``gss-tsig`` or ``gss.microsoft.com``), delete one (mode 5); pure apart
  from the acceptor.
- ``gss``: the thin wrapper of python-gssapi: the acceptor over the keytab.
- ``contexts``: the negotiated contexts by key name, with expiry, a bound, a
  replay memory of negotiation tokens and a lock per context.
- ``gsstsig``: the RFC 8945 digest for ``gss.microsoft.com``, which dnspython
  signs only under the name ``gss-tsig``.

A message signed with a context's key name is verified with it in ``tsig``;
its update runs with the identity of the Kerberos principal
(``service.principal_identity``), audited as ``krb5:PRINCIPAL``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config
    from .handler import UpdateService
    from .server import DnsServer


def start(service: "UpdateService", config: "Config") -> "DnsServer | None":
    """The listener of SERVICE bound on ``dnsupdate.listen``/``dnsupdate.port`` and serving; None when the port is 0."""
    from . import gss, handler, server

    if not config["dnsupdate.port"]:
        return None
    kerberos = gss.from_config(config)
    return server.start(lambda wire, client, transport: handler.handle_wire(service, wire, client, transport,
                                                                            gss=kerberos),
                        config["dnsupdate.listen"], config["dnsupdate.port"])
