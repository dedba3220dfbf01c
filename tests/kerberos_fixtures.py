"""Session-wide MIT KDCs for the Kerberos tests: import the fixtures into a test module.

``from kerberos_fixtures import kdc, other_kdc  # noqa: F401`` gives a test
module the realm EXAMPLE.TEST (the one ddns's ``kerberos.realm`` names) and
OTHER.TEST (a second realm whose tickets GSS accepts when the service keytab
holds its key, but whose principals are outside ``kerberos.realm``). Each is
started once per test process, not per test; principals are created on
first use (``Kdc.principal``), so test modules may ask for the same one.
"""
from __future__ import annotations

import pytest

from testkit.kdc import REALM, Kdc, start_kdc, stop_kdc

OTHER_REALM = "OTHER.TEST"


@pytest.fixture(scope="session")
def kdc(tmp_path_factory) -> Kdc:
    """The KDC of EXAMPLE.TEST."""
    kdc = start_kdc(tmp_path_factory.mktemp("kdc"), REALM)
    yield kdc
    stop_kdc(kdc)


@pytest.fixture(scope="session")
def other_kdc(tmp_path_factory) -> Kdc:
    """The KDC of OTHER.TEST, beside the first one."""
    kdc = start_kdc(tmp_path_factory.mktemp("kdc-other"), OTHER_REALM)
    yield kdc
    stop_kdc(kdc)
