"""Revoking a key stops it at once in a running ``ddns serve``, seen by the real nsupdate:
signed with a key deleted a moment ago (from the command line, the portal's API, or by
deleting its host), the next update is NOTAUTH(BADKEY) and changes nothing.
"""
from __future__ import annotations

import requests

from conftest import Instance
from test_portal import Browser
from test_rfc2136 import failed_with, make_key, nsupdate


def unchanged(inst: Instance, fqdn: str, run) -> str:
    """RUN()'s nsupdate failure; no commit, and BIND still serves what it did."""
    commits, served = inst.commit_count(), inst.dig(fqdn)
    failure = run()
    assert inst.commit_count() == commits and inst.dig(fqdn) == served
    return failure


def test_a_key_deleted_from_the_command_line_stops_at_once(instance, serve):
    fqdn = f"revoked.{instance.zone}"
    instance.add_host(fqdn)
    key = make_key(instance, fqdn)
    serve()
    assert failed_with(nsupdate(instance, [f"update add {fqdn} 300 A 192.0.2.21"], key.k)) == ""
    assert instance.dig(fqdn) == ["192.0.2.21"]
    assert instance.cli("key", "delete", fqdn).code == 0
    for args in (key.k, key.y):
        assert unchanged(instance, fqdn, lambda: failed_with(
            nsupdate(instance, [f"update delete {fqdn} A", f"update add {fqdn} 300 A 192.0.2.22"], args))) \
            == "NOTAUTH(BADKEY)"
    made_anew = make_key(instance, fqdn)  # a new key of the same name: a new secret; the old one stays dead
    assert unchanged(instance, fqdn, lambda: failed_with(
        nsupdate(instance, [f"update add {fqdn} 300 A 192.0.2.23"], key.y))) == "NOTAUTH(BADSIG)"
    assert failed_with(nsupdate(instance, [f"update delete {fqdn} A", f"update add {fqdn} 300 A 192.0.2.24"],
                                made_anew.k)) == ""
    assert instance.dig(fqdn) == ["192.0.2.24"]


def test_keys_deleted_through_the_api_or_with_their_host_stop_at_once(instance, serve):
    instance.add_user("alice")
    running = serve()
    alice = Browser(running.url)
    alice.login("alice", "pw-alice")
    token = alice.post("/tokens", {"name": "k"}, csrf_from="/tokens").text.split('<code id="new-token">')[1].split("<")[0]
    auth, api = {"Authorization": f"Bearer {token}"}, running.url + "/api/v1"
    assert requests.post(api + "/hosts", json={"name": "apikey", "domain": instance.zone}, headers=auth,
                         timeout=30).status_code == 201
    fqdn = f"apikey.{instance.zone}"
    acme = make_key(instance, fqdn, "--acme")
    host_key = make_key(instance, fqdn)
    txt = [f'update add {acme.name} 60 TXT "token-1"']
    assert failed_with(nsupdate(instance, txt, acme.k)) == ""
    assert requests.delete(f"{api}/hosts/{fqdn}/keys/{acme.name}", headers=auth, timeout=30).status_code == 204
    assert unchanged(instance, acme.name, lambda: failed_with(
        nsupdate(instance, [f"update delete {acme.name} TXT"], acme.k))) == "NOTAUTH(BADKEY)"
    assert failed_with(nsupdate(instance, [f"update add {fqdn} 300 A 192.0.2.31"], host_key.k)) == ""
    assert requests.delete(f"{api}/hosts/{fqdn}", headers=auth, timeout=30).status_code == 204
    assert instance.dig(fqdn) == []
    assert unchanged(instance, fqdn, lambda: failed_with(
        nsupdate(instance, [f"update add {fqdn} 300 A 192.0.2.32"], host_key.k))) == "NOTAUTH(BADKEY)"
