"""Nobody is locked out by someone else's wrong guesses (the real app over HTTP).

Several client addresses are simulated on loopback: the service trusts
127.0.0.1 as a proxy, so X-Forwarded-For names the client. The guessing
client gets ``abuse`` (429 on the portal); the owner of the name elsewhere,
other hosts behind the guesser's address, a client still sending a replaced
secret and the new secret's client are not refused.
"""
from __future__ import annotations

import re

import pytest
import requests

from test_portal import Browser

ZONE = "dyn.example.test"
H1, H2, H3 = f"h1.{ZONE}", f"h2.{ZONE}", f"h3.{ZONE}"
GUESSER = "198.51.100.66"
OWNER = "203.0.113.5"
TRUSTED = {"http.trusted_proxies": ["127.0.0.1"], "security.max_failures": 10,
           "security.max_client_failures": 50, "portal.max_login_failures": 5}


@pytest.fixture
def serve(serve):
    """serve(overrides) -> Running, trusting 127.0.0.1 as a proxy (conftest's serve, stopped at the end)."""
    return lambda overrides=None: serve({**TRUSTED, **(overrides or {})})


def stop(running) -> None:
    running.stop.set()
    running.thread.join(30)
    assert not running.thread.is_alive()


def update_from(running, client: str, fqdn: str, secret: str, myip: str) -> tuple[int, str]:
    return running.update(fqdn, secret, f"myip={myip}", **{"X-Forwarded-For": client})


def guess(running, client: str, fqdn: str, times: int) -> list[str]:
    """TIMES wrong secrets for FQDN from CLIENT; the answers' bodies."""
    return [update_from(running, client, fqdn, f"wrong-{i}", "192.0.2.99")[1] for i in range(times)]


# ---- dyndns2 ---------------------------------------------------------------------------
def test_wrong_secrets_from_another_address_do_not_lock_the_owner_out(instance, serve):
    running = serve()
    secret = instance.add_host(H1)
    answers = guess(running, GUESSER, H1, 20)
    assert answers == ["badauth\n"] * 10 + ["abuse\n"] * 10  # the guesser is stopped
    # the owner, whose secret was never verified before, is not refused
    assert update_from(running, OWNER, H1, secret, "192.0.2.10") == (200, "good 192.0.2.10\n")
    assert instance.dig(H1) == ["192.0.2.10"]
    assert guess(running, GUESSER, H1, 1) == ["abuse\n"]  # and the guesser still is
    # the guesser's network is an IPv4 address: its neighbour is another client
    assert guess(running, "198.51.100.67", H1, 1) == ["badauth\n"]


def test_an_ipv6_guesser_is_counted_by_its_64(instance, serve):
    running = serve()
    secret = instance.add_host(H1)
    answers = [update_from(running, f"2001:db8:66:1::{i:x}", H1, f"wrong-{i}", "192.0.2.99")[1] for i in range(1, 13)]
    assert answers == ["badauth\n"] * 10 + ["abuse\n"] * 2  # a new address per guess does not help
    assert update_from(running, "2001:db8:66:2::1", H1, secret, "192.0.2.11") == (200, "good 192.0.2.11\n")


def test_many_failures_from_one_address_do_not_lock_out_the_hosts_behind_it(instance, serve):
    nat = "198.51.100.7"
    s1, s2, s3 = instance.add_host(H1), instance.add_host(H2), instance.add_host(H3)
    # H2 updated from behind the NAT before a restart: its secret is not in the new process's cache
    running = serve()
    assert update_from(running, nat, H2, s2, "192.0.2.2") == (200, "good 192.0.2.2\n")
    stop(running)
    running = serve()
    # H1 last updated from elsewhere: only the cache of verified secrets knows it
    assert update_from(running, OWNER, H1, s1, "192.0.2.1") == (200, "good 192.0.2.1\n")
    # someone behind the same NAT guesses: 60 failures for other names
    answers = [update_from(running, nat, f"x{i}.{ZONE}", "wrong", "192.0.2.99")[1] for i in range(60)]
    assert answers == ["badauth\n"] * 50 + ["abuse\n"] * 10
    assert update_from(running, nat, H1, s1, "192.0.2.1") == (200, "nochg 192.0.2.1\n")  # a known-good secret
    assert update_from(running, nat, H2, s2, "192.0.2.2") == (200, "nochg 192.0.2.2\n")  # last updated from here
    assert update_from(running, nat, H2, s2, "192.0.2.3") == (200, "good 192.0.2.3\n")
    assert instance.dig(H2) == ["192.0.2.3"]
    # a new, never verified host behind the guessing NAT waits with the guesser; from elsewhere it works
    assert update_from(running, nat, H3, s3, "192.0.2.4") == (200, "abuse\n")
    assert update_from(running, OWNER, H3, s3, "192.0.2.4") == (200, "good 192.0.2.4\n")
    assert update_from(running, nat, H3, s3, "192.0.2.4") == (200, "nochg 192.0.2.4\n")  # known good now
    assert update_from(running, nat, f"x0.{ZONE}", "wrong", "192.0.2.99") == (200, "abuse\n")


def test_a_client_with_a_replaced_secret_does_not_lock_out_the_new_one(running):
    """`ddns host secret` in another process while serve runs; the old client keeps sending the old secret."""
    inst = running.instance
    fqdn = f"vm5.{ZONE}"
    old = inst.add_host(fqdn)
    assert running.update(fqdn, old, "myip=192.0.2.50") == (200, "good 192.0.2.50\n")
    result = inst.cli("host", "secret", fqdn, "--json")
    assert result.code == 0, result
    new = result.json()["secret"]
    limit = running.service.config["security.max_failures"]
    for _ in range(2 * limit):
        assert running.update(fqdn, old, "myip=192.0.2.51") == (401, "badauth\n")
    assert running.update(fqdn, new, "myip=192.0.2.51") == (200, "good 192.0.2.51\n")
    assert inst.dig(fqdn) == ["192.0.2.51"]


def test_a_new_secret_made_by_the_cli_starts_with_fresh_counters(instance, serve):
    """Failures before the new secret was made (in another process) do not block it."""
    running = serve()
    fqdn = f"vm6.{ZONE}"
    instance.add_host(fqdn)
    assert guess(running, GUESSER, fqdn, 11)[-1] == "abuse\n"
    result = instance.cli("host", "secret", fqdn, "--json")
    assert result.code == 0, result
    new = result.json()["secret"]
    assert update_from(running, GUESSER, fqdn, new, "192.0.2.60") == (200, "good 192.0.2.60\n")


def test_many_distinct_bad_names_keep_the_failure_tables_bounded(instance, serve):
    running = serve({"security.failure_table_size": 40, "security.max_client_failures": 100_000})
    instance.add_user("root", admin=True)
    clients = [f"198.51.100.{i}" for i in range(1, 6)] + [f"2001:db8:{i}::1" for i in range(1, 6)]
    for i in range(300):
        assert update_from(running, clients[i % len(clients)], f"bad-{i}.{ZONE}", "wrong", "192.0.2.9")[1] == \
            "badauth\n"
    browser = Browser(running.url)
    browser.login("root", "pw-root")
    page = browser.get("/admin/status").text
    match = re.search(r"<dt>Failed-login counters</dt><dd>(\d+) keys \(at most (\d+) per table\)</dd>", page)
    assert match, page
    assert int(match[2]) == 40 and 0 < int(match[1]) <= 3 * 40


# ---- portal ----------------------------------------------------------------------------
def browser_at(running, client: str) -> Browser:
    browser = Browser(running.url)
    browser.http.headers["X-Forwarded-For"] = client
    return browser


def test_failed_portal_logins_do_not_lock_out_the_user_elsewhere_nor_others_here(instance, serve):
    instance.add_user("alice")
    instance.add_user("bob")
    running = serve()
    guesser = browser_at(running, GUESSER)
    codes = [guesser.login("alice", f"wrong-{i}").status_code for i in range(7)]
    assert codes == [401] * 5 + [429] * 2
    assert guesser.login("alice", "pw-alice").status_code == 429  # the guesser waits, right password or not
    alice = browser_at(running, OWNER)
    r = alice.login("alice", "pw-alice")
    assert r.status_code == 200 and "Your hosts" in r.text
    bob = browser_at(running, GUESSER)  # same address as the guesser
    r = bob.login("bob", "pw-bob")
    assert r.status_code == 200 and "Your hosts" in r.text


# ---- JSON API --------------------------------------------------------------------------
def test_failed_api_tokens_do_not_lock_out_valid_tokens_behind_the_same_address(instance, serve):
    instance.add_user("alice")
    running = serve()
    token = running.service.accounts.new_api_token(running.service.store.user("alice"), "test")
    api = running.url + "/api/v1/hosts"

    def status(bearer: str) -> int:
        return requests.get(api, headers={"Authorization": f"Bearer {bearer}", "X-Forwarded-For": GUESSER},
                            timeout=30).status_code

    codes = [status(f"ddns_wrong-{i}") for i in range(55)]
    assert codes == [401] * 50 + [429] * 5
    assert status(token) == 200
    assert status("ddns_wrong") == 429
