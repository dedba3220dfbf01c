"""The keytab as the outside world: its bytes, and whether GSS-API accepts with a principal from it.

Thin on purpose: what the bytes mean and what to tell the operator is in
ddns.kerberos_check. ``holds`` asks python-gssapi exactly what the listener's
acceptor will ask, acceptor credentials for the principal from this keytab,
so "OK" means GSS-TSIG can use it.
"""
from __future__ import annotations

from pathlib import Path


def read(path: Path) -> bytes:
    """The keytab's bytes; OSError when it cannot be read."""
    return path.read_bytes()


def holds(path: Path, principal: str) -> str:
    """"" when GSS-API gets acceptor credentials for PRINCIPAL from the keytab at PATH, else why not."""
    import gssapi  # only the Kerberos parts need the library

    try:
        gssapi.Credentials(name=gssapi.Name(principal, gssapi.NameType.kerberos_principal), usage="accept",
                           store={"keytab": str(path)})
    except gssapi.exceptions.GSSError as exc:
        return _minor(exc)
    return ""


def _minor(exc: Exception) -> str:
    """The part of a GSS error that names the cause ("No key table entry found for ...")."""
    text = str(exc)
    return text.split("Minor (", 1)[1].split("): ", 1)[-1] if "Minor (" in text else text
