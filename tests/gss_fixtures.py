"""Fixtures of the GSS-TSIG tests: a real KDC for the module, its krb5.conf in this process, tickets.

``realm`` starts one MIT KDC per test module (testkit/kdc.py) and points this
process's Kerberos library at it (``KRB5_CONFIG``, ``KRB5RCACHEDIR``), so the
initiators of testkit/gssclient.py and an in-process acceptor find it; the
environment is restored afterwards. ``Realm.ticket(name)`` makes a principal
and a ccache holding its ticket.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.kdc import Kdc, start_kdc, stop_kdc

ZONE = "dyn.example.test"
SERVICE = f"DNS/ns1.{ZONE}"
KRB5_VARS = ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5RCACHEDIR")


@dataclass
class Realm:
    kdc: Kdc
    directory: Path
    keytab: Path  # holds the service principal SERVICE

    @property
    def target(self) -> str:
        return f"{SERVICE}@{self.kdc.realm}"

    def ticket(self, name: str) -> tuple[str, Path]:
        """PRINCIPAL (NAME@REALM, made once) and a ccache with its ticket, fresh per call."""
        safe = name.replace("/", "_").replace("$", "_")
        keytab = self.directory / f"{safe}.keytab"
        principal = f"{name}@{self.kdc.realm}"
        if not keytab.exists():
            self.kdc.principal(name, keytab)
        ccache = self.directory / f"{safe}.{os.urandom(4).hex()}.cc"
        self.kdc.kinit(keytab, principal, ccache)
        return principal, ccache


@pytest.fixture(scope="module")
def realm(tmp_path_factory) -> Realm:
    directory = tmp_path_factory.mktemp("gss")
    kdc = start_kdc(directory / "kdc")
    saved = {name: os.environ.get(name) for name in KRB5_VARS}
    os.environ.update({name: kdc.env[name] for name in KRB5_VARS})
    try:
        keytab = directory / "dns.keytab"
        kdc.principal(SERVICE, keytab)
        yield Realm(kdc, directory, keytab)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stop_kdc(kdc)
