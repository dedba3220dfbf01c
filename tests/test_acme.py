"""Certificates through DNS-01, for real: Pebble issues, certbot and lego prove the name.

Pebble asks the instance's named for ``_acme-challenge.myvm.<zone> TXT``, so a
certificate is issued only when the TXT the client set through ddns (RFC 2136
with the host's ACME key, or lego's httpreq with the host's secret) was
committed and served. Each test then checks the certificate, the audit trail
of the add and the removal, and that the TXT is gone from BIND.

The floor first: the same clients against a zone that BIND updates itself
(update-policy), so a failure below it is ddns's, not the harness's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from acme import (Tsig, certbot_rfc2136, dns_names, lego_httpreq, lego_rfc2136, pebbles,  # noqa: F401
                  start_plain_named, stop, verify_chain)
from conftest import REQUIRED_TOOLS, Instance, free_port, query, require, serving
from ddns import cli, httpreq
from ddns.gitrepo import parse_trailers

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


# ------------------------------------------------------------------ ddns

@dataclass
class AcmeSite:
    """One served instance with the host myvm.<zone> and its secret."""

    inst: Instance
    host: str
    secret: str

    @property
    def challenge(self) -> str:
        return "_acme-challenge." + self.host


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A ddns instance served for the module (named, web, RFC 2136 listener); Pebble asks its named."""
    require(*REQUIRED_TOOLS)
    http_port, dns_port, rndc_port, update_port = free_port(), free_port(), free_port(), free_port()
    directory = tmp_path_factory.mktemp("acme-ddns") / "inst"
    cli.init_instance(directory, http_port, dns_port, rndc_port, update_port=update_port,
                      extra={"security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False})
    inst = Instance(directory, directory / "ddns.toml", http_port, dns_port, rndc_port, update_port=update_port)
    host = "myvm." + inst.zone
    secret = inst.add_host(host)
    with serving(inst):
        yield AcmeSite(inst, host, secret)


@pytest.fixture(scope="module")
def acme_key(site) -> Tsig:
    """The host's ACME key, as `ddns key add FQDN --acme --json` prints it."""
    made = site.inst.cli("key", "add", site.host, "--acme", "--json")
    assert made.code == 0, made.err
    key = made.json()
    assert key["name"] == site.challenge
    return Tsig(key["name"], key["secret"], key["algorithm"])


def challenge_changes(site: AcmeSite, since: str) -> list:
    """The audit records of commits after SINCE that touched the host's _acme-challenge name."""
    records = []
    for sha in site.inst.git("rev-list", "--reverse", f"{since}..HEAD").split():
        records += [r for r in parse_trailers(site.inst.git("log", "-1", "--format=%B", sha))
                    if r.host == site.challenge]
    return records


def _values(rdatas: str | None) -> set[str]:
    """The TXT strings in an audit record's old or new RRset text."""
    return set(re.findall(r'"([^"]*)"', rdatas or ""))


def check_issued(site: AcmeSite, pebble, cert, since: str, actor: str, interface: str, tmp_path,
                 names: set[str] | None = None) -> None:
    """CERT is Pebble's for NAMES (default: the host); one challenge value per name was added, then
    removed, by ACTOR via INTERFACE from loopback; BIND serves no challenge TXT now."""
    names = names or {site.host}
    assert dns_names(cert) == names
    verify_chain(cert, pebble.root(tmp_path))
    changes = challenge_changes(site, since)
    assert changes and {r.type for r in changes} == {"TXT"}, changes
    added = {v: i for i, r in enumerate(changes) for v in _values(r.new) - _values(r.old)}
    removed = {v: i for i, r in enumerate(changes) for v in _values(r.old) - _values(r.new)}
    assert len(added) == len(names) and set(removed) == set(added), changes
    assert all(added[v] < removed[v] for v in added), changes
    assert changes[-1].new is None, changes
    assert {(r.actor, r.interface, r.client) for r in changes} == {(actor, interface, "127.0.0.1")}
    assert site.inst.dig(site.challenge, "TXT") == []


def head(site: AcmeSite) -> str:
    return site.inst.git("rev-parse", "HEAD").strip()


def test_certbot_dns_rfc2136_with_the_acme_key(site, acme_key, pebbles, tmp_path):
    pebble, since = pebbles(site.inst.dns_port), head(site)
    cert = certbot_rfc2136(pebble, site.host, tmp_path, acme_key, site.inst.update_port)
    check_issued(site, pebble, cert, since, f"key:{acme_key.name}", "rfc2136", tmp_path)


def test_lego_rfc2136_with_the_acme_key(site, acme_key, pebbles, tmp_path):
    pebble, since = pebbles(site.inst.dns_port), head(site)
    cert = lego_rfc2136(pebble, site.host, tmp_path, acme_key, site.inst.update_port, site.inst.dns_port)
    check_issued(site, pebble, cert, since, f"key:{acme_key.name}", "rfc2136", tmp_path)


def test_lego_httpreq_with_the_host_secret_for_the_name_and_its_wildcard(site, pebbles, tmp_path):
    """The name and its wildcard: two challenge values at one name, present together, removed one by one."""
    pebble, since = pebbles(site.inst.dns_port), head(site)
    endpoint = site.inst.url + httpreq.PREFIX
    names = [site.host, "*." + site.host]
    cert = lego_httpreq(pebble, names, tmp_path, endpoint, site.host, site.secret, site.inst.dns_port)
    check_issued(site, pebble, cert, since, f"host:{site.host}", "httpreq", tmp_path, set(names))
