"""The GSS-API acceptor of TKEY negotiations: a thin wrapper of python-gssapi over the service keytab.

One call takes the client's token (SPNEGO or raw Kerberos, as the client
chose) and returns what the TKEY answer needs. The keytab is read at every
negotiation, so a keytab replaced on disk takes effect at the next one. The
context must give message integrity (every signature is a GSS MIC), as
BIND's acceptor demands too. python-gssapi is imported at the first
negotiation: a listener without a keytab never loads it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contexts import ContextTable

log = logging.getLogger("ddns.rfc2136")


class AcceptFailed(Exception):
    """The token was not accepted; the message says why (for the log, never the wire)."""


@dataclass(frozen=True)
class Accepted:
    """One accepted token: the context, the token to send back, and (once complete) who the client is."""

    security: Any         # gssapi.SecurityContext
    token: bytes          # the acceptor's output token (b"" when there is none)
    complete: bool        # False: the mechanism wants another round
    principal: str        # the initiator, "" until complete
    lifetime: float       # seconds the context stays valid (the ticket's remaining lifetime)


class Acceptor:
    """Accepts initiators' tokens for any service principal in KEYTAB."""

    def __init__(self, keytab: Path):
        self.keytab = keytab

    def accept(self, token: bytes) -> Accepted:
        """The context one step on TOKEN opens; raises AcceptFailed."""
        # imported only here: with GSS-TSIG off (no keytab) serve never loads the Kerberos libraries (~3 MiB)
        import gssapi
        import gssapi.exceptions
        try:
            creds = gssapi.Credentials(usage="accept", store={"keytab": str(self.keytab)})
            security = gssapi.SecurityContext(creds=creds, usage="accept")
            out = security.step(token) or b""
            if not security.complete:
                return Accepted(security, out, False, "", 0.0)
            if gssapi.RequirementFlag.integrity not in security.actual_flags:
                raise AcceptFailed("the context gives no message integrity")
            return Accepted(security, out, True, str(security.initiator_name), float(security.lifetime))
        except gssapi.exceptions.GSSError as exc:
            raise AcceptFailed(f"GSS-API: {exc}") from exc


@dataclass
class Gss:
    """What GSS-TSIG needs across messages: the acceptor and the negotiated contexts."""

    acceptor: Acceptor
    contexts: ContextTable


def from_config(config: Any) -> Gss | None:
    """GSS-TSIG as CONFIG sets it up; None when ``kerberos.keytab`` is empty (TKEY is refused then)."""
    keytab = config.path("kerberos.keytab")
    if keytab is None:
        return None
    if not keytab.is_file():
        log.warning("kerberos.keytab %s is not a readable file: every TKEY negotiation will fail", keytab)
    return Gss(Acceptor(keytab), ContextTable(config["kerberos.max_contexts"], config["kerberos.max_context_seconds"]))
