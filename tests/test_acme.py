"""Certificates through DNS-01, for real: Pebble issues, certbot and lego prove the name.

The floor first: the same clients against a zone that BIND updates itself
(update-policy), so a failure below is ddns's, not the harness's.
"""
from __future__ import annotations

import pytest

from acme import certbot_rfc2136, dns_names, lego_rfc2136, pebbles, start_plain_named, stop, verify_chain  # noqa: F401
from conftest import query

PLAIN_ZONE = "acme.test"
PLAIN_HOST = "myvm.acme.test"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    zone = start_plain_named(tmp_path_factory.mktemp("plain-named"), PLAIN_ZONE, PLAIN_HOST)
    yield zone
    stop(zone.process)


@pytest.mark.parametrize("client", ["certbot", "lego"])
def test_the_harness_gets_a_certificate_from_a_plain_bind_zone(plain, pebbles, tmp_path, client):
    pebble = pebbles(plain.port)
    if client == "certbot":
        cert = certbot_rfc2136(pebble, PLAIN_HOST, tmp_path / "certbot", plain.key, plain.port)
    else:
        cert = lego_rfc2136(pebble, PLAIN_HOST, tmp_path / "lego", plain.key, plain.port, plain.port)
    assert dns_names(cert) == {PLAIN_HOST}
    verify_chain(cert, pebble.root(tmp_path))
    assert query(plain.port, "_acme-challenge." + PLAIN_HOST, "TXT") == []
