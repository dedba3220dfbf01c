"""PostgreSQL stopped under a running serve: retryable answers, nothing half-written, recovery by itself.

A private server for this test (stopped and started with pg_ctl; the
shared one stays up for the others), a real serve with ``store.url`` on it,
real HTTP clients, real named.
"""
from __future__ import annotations

import time

import pytest
import requests

from ddns.store import Store

from conftest import serving, wait_until
from pgserver import start_postgres, stop_postgres

ZONE = "dyn.example.test"
FQDN = f"vm.{ZONE}"
OUTAGE = 5.0  # seconds of requests while the server is down


@pytest.fixture
def private_pg():
    server = start_postgres()
    yield server
    stop_postgres(server)


def test_requests_while_postgresql_is_down_get_911_or_503_and_serve_recovers(instance, private_pg):
    url = private_pg.create_database()
    assert instance.cli("db", "copy", "--to", url).code == 0  # the instance's domain, as a move to PostgreSQL has it
    text = instance.config_path.read_text()
    instance.config_path.write_text(text.replace('# url = ""', f'url = "{url}"', 1))
    secret = instance.add_host(FQDN)  # the CLI writes into PostgreSQL
    with serving(instance, {"dyndns2.allow_loopback": True}) as running:
        token = running.service.accounts.new_api_token(running.service.store.user("alice"), "test")
        bearer = {"Authorization": f"Bearer {token}"}
        base = running.url
        r = requests.get(f"{base}/nic/update?myip=192.0.2.1", auth=(FQDN, secret), timeout=30)
        assert r.text == "good 192.0.2.1\n"
        commits = instance.commit_count()

        private_pg.stop()
        answers = set()
        deadline = time.monotonic() + OUTAGE
        while time.monotonic() < deadline:
            r = requests.get(f"{base}/nic/update?myip=192.0.2.2", auth=(FQDN, secret), timeout=30)
            answers.add((r.status_code, r.text))
            r = requests.get(f"{base}/nic/update?myip=192.0.2.3", auth=(f"new.{ZONE}", "guess"), timeout=30)
            answers.add((r.status_code, r.text))
            r = requests.post(f"{base}/api/v1/hosts", json={"name": "made", "domain": ZONE}, headers=bearer, timeout=30)
            assert r.status_code == 503 and "database is unavailable" in r.json()["error"], (r.status_code, r.text)
            r = requests.get(f"{base}/login", timeout=30)
            assert r.status_code == 200  # pages that need no database still answer
        assert answers == {(503, "911\n")}, answers
        assert instance.commit_count() == commits and instance.dig(FQDN) == ["192.0.2.1"]  # nothing half-written
        health = requests.get(f"{base}/healthz", timeout=30)
        assert health.status_code in (200, 503)

        private_pg.start()

        def good() -> bool:
            return requests.get(f"{base}/nic/update?myip=192.0.2.4", auth=(FQDN, secret),
                                timeout=30).text == "good 192.0.2.4\n"

        wait_until(good, 20, interval=0.2, what="an update answered good after PostgreSQL came back")
        assert instance.dig(FQDN) == ["192.0.2.4"]
        r = requests.post(f"{base}/api/v1/hosts", json={"name": "made", "domain": ZONE}, headers=bearer, timeout=30)
        assert r.status_code == 201, (r.status_code, r.text)
    store = Store(url)
    assert {h.fqdn for h in store.hosts()} == {FQDN, f"made.{ZONE}"}
    assert store.host(FQDN).last_update is not None
