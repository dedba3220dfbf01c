"""TSIG keys in the portal and the JSON API, over the real app: made with a CSRF-protected POST,
the secret shown once on its own page, listed without it, revoked after a confirmation; another
user's keys are 404; admins' zone keys; hostile input refused with nothing changed.
"""
from __future__ import annotations

import base64
import html
import re

import pytest
import requests

from ddns.model import Actor

from conftest import serving
from test_portal import Browser, new_host

ZONE = "dyn.example.test"


@pytest.fixture
def portal(instance):
    instance.add_user("alice")
    instance.add_user("bob")
    instance.add_user("root", admin=True)
    with serving(instance, {"dyndns2.allow_loopback": True}) as r:
        yield r


def key_secret(page: str) -> str:
    match = re.search(r'<code id="key-secret">([^<]+)</code>', page)
    assert match, page
    return html.unescape(match[1])


def api_token(browser: Browser) -> dict:
    r = browser.post("/tokens", {"name": "keys"}, csrf_from="/tokens")
    return {"Authorization": "Bearer " + re.search(r'<code id="new-token">([^<]+)</code>', r.text)[1]}


def make_key(browser: Browser, fqdn: str, kind: str = "host", algorithm: str = "hmac-sha256") -> requests.Response:
    return browser.post(f"/hosts/{fqdn}/keys", {"kind": kind, "algorithm": algorithm}, csrf_from=f"/hosts/{fqdn}")


def keys_of(service, fqdn: str) -> list[str]:
    return [k.name for k in service.keys(None, fqdn)]


def test_a_host_key_is_made_shown_once_listed_and_deleted(portal):
    alice = Browser(portal.url)
    alice.login("alice", "pw-alice")
    fqdn, host_secret = new_host(alice, "keyed")
    assert 'id="no-keys"' in alice.get(f"/hosts/{fqdn}").text
    r = make_key(alice, fqdn)
    assert r.status_code == 200 and r.url.endswith(f"/hosts/{fqdn}/keys/{fqdn}/secret"), r.url  # POST, redirect, GET
    secret = key_secret(r.text)
    assert f'key "{fqdn}" {{' in html.unescape(r.text) and f'secret "{secret}";' in html.unescape(r.text)
    assert f"nsupdate -k /etc/ddns/{fqdn}.key" in html.unescape(r.text)
    assert portal.service.tsig_key(fqdn).secret.hex()  # the serving process knows it at once
    again = alice.get(f"/hosts/{fqdn}/keys/{fqdn}/secret")
    assert again.status_code == 200 and 'id="secret-gone"' in again.text and secret not in again.text
    page = alice.get(f"/hosts/{fqdn}").text
    assert f"<code>{fqdn}</code> host key" in page and secret not in page
    r = make_key(alice, fqdn, "acme", "hmac-sha512")
    acme = "_acme-challenge." + fqdn
    acme_secret = key_secret(r.text)
    text = html.unescape(r.text)
    assert "dns_rfc2136_algorithm = HMAC-SHA512" in text and f"dns_rfc2136_name = {acme}" in text
    assert f"RFC2136_TSIG_KEY={acme}. \\\n" in text and "lego --email" in text
    for path in ("/", f"/hosts/{fqdn}", f"/hosts/{fqdn}/keys/{acme}/secret", "/tokens"):
        shown = alice.get(path).text
        assert secret not in shown and acme_secret not in shown, path
    confirm = alice.get(f"/hosts/{fqdn}/keys/{acme}/delete")
    assert confirm.status_code == 200 and 'id="confirm-delete"' in confirm.text
    assert keys_of(portal.service, fqdn) == [acme, fqdn]  # asking is no deletion
    r = alice.post(f"/hosts/{fqdn}/keys/{acme}/delete", csrf_from=f"/hosts/{fqdn}/keys/{acme}/delete")
    assert r.status_code == 200 and "is revoked" in r.text
    assert keys_of(portal.service, fqdn) == [fqdn] and portal.service.tsig_key(acme) is None
    assert portal.update(fqdn, host_secret, "myip=192.0.2.51")[1] == "good 192.0.2.51\n"  # the host secret is untouched


def test_another_users_keys_are_not_found(portal):
    alice, bob = Browser(portal.url), Browser(portal.url)
    alice.login("alice", "pw-alice")
    bob.login("bob", "pw-bob")
    fqdn, _ = new_host(alice, "mine")
    make_key(alice, fqdn)
    bob_host, _ = new_host(bob, "bobs")
    token = bob.csrf(f"/hosts/{bob_host}")
    for path in (f"/hosts/{fqdn}/keys/{fqdn}/secret", f"/hosts/{fqdn}/keys/{fqdn}/delete",
                 f"/hosts/{bob_host}/keys/{fqdn}/delete", f"/hosts/{bob_host}/keys/{fqdn}/secret"):
        assert bob.get(path).status_code == 404, path
    for path in (f"/hosts/{fqdn}/keys", f"/hosts/{fqdn}/keys/{fqdn}/delete", f"/hosts/{bob_host}/keys/{fqdn}/delete"):
        r = bob.post(path, {"kind": "host"}, token=token)
        assert r.status_code == 404 and "Traceback" not in r.text, path
    assert keys_of(portal.service, fqdn) == [fqdn] and keys_of(portal.service, bob_host) == []
    bob_api, alice_api = api_token(bob), api_token(alice)
    api = portal.url + "/api/v1"
    assert requests.get(f"{api}/hosts/{fqdn}/keys", headers=bob_api, timeout=30).status_code == 404
    assert requests.post(f"{api}/hosts/{fqdn}/keys", json={}, headers=bob_api, timeout=30).status_code == 404
    assert requests.delete(f"{api}/hosts/{fqdn}/keys/{fqdn}", headers=bob_api, timeout=30).status_code == 404
    assert requests.delete(f"{api}/hosts/{bob_host}/keys/{fqdn}", headers=bob_api, timeout=30).status_code == 404
    assert requests.delete(f"{api}/hosts/{bob_host}/keys/{fqdn}", headers=alice_api, timeout=30).status_code == 404
    assert keys_of(portal.service, fqdn) == [fqdn]


def test_key_forms_need_the_csrf_token(portal):
    alice = Browser(portal.url)
    alice.login("alice", "pw-alice")
    fqdn, _ = new_host(alice, "csrf")
    assert alice.post(f"/hosts/{fqdn}/keys", {"kind": "host"}).status_code == 403
    assert alice.post(f"/hosts/{fqdn}/keys", {"kind": "host"}, token="forged").status_code == 403
    assert keys_of(portal.service, fqdn) == []
    make_key(alice, fqdn)
    assert alice.post(f"/hosts/{fqdn}/keys/{fqdn}/delete", token="forged").status_code == 403
    assert keys_of(portal.service, fqdn) == [fqdn]


@pytest.mark.parametrize("form, status", [({"kind": "host", "algorithm": "hmac-md5"}, 400), ({"kind": "zone"}, 400),
                                          ({"kind": "acme\u0000"}, 400),
                                          ({"kind": "host", "algorithm": "x" * 5000}, 400)])
def test_hostile_key_forms_change_nothing(portal, form, status):
    alice = Browser(portal.url)
    alice.login("alice", "pw-alice")
    fqdn, _ = new_host(alice, "hostile")
    r = alice.post(f"/hosts/{fqdn}/keys", form, csrf_from=f"/hosts/{fqdn}")
    assert r.status_code == status and "Traceback" not in r.text
    assert keys_of(portal.service, fqdn) == []


def test_a_second_key_of_the_same_kind_is_a_conflict(portal):
    alice = Browser(portal.url)
    alice.login("alice", "pw-alice")
    fqdn, _ = new_host(alice, "twice")
    first = key_secret(make_key(alice, fqdn).text)
    r = make_key(alice, fqdn)
    assert r.status_code == 409 and "exists" in r.text
    assert portal.service.tsig_key(fqdn).secret == base64.b64decode(first)


def test_admins_make_zone_keys_with_rules(portal):
    root, alice = Browser(portal.url), Browser(portal.url)
    root.login("root", "pw-root")
    alice.login("alice", "pw-alice")
    assert alice.get("/admin/keys").status_code == 403
    r = alice.post("/admin/keys", {"name": "sneaky", "zone": ZONE, "rules": "grant zonesub"}, csrf_from="/")
    assert r.status_code == 403 and portal.service.tsig_key("sneaky") is None
    rules = "deny name www.dyn.example.test A\r\ngrant zonesub TXT A\r\n"
    r = root.post("/admin/keys", {"name": "ACME-Proxy.example.org.", "zone": ZONE, "rules": rules,
                                  "algorithm": "hmac-sha384"}, csrf_from="/admin/keys")
    assert r.status_code == 200 and r.url.endswith("/admin/keys/acme-proxy.example.org/secret"), r.text
    secret = key_secret(r.text)
    assert 'key "acme-proxy.example.org" {' in html.unescape(r.text)
    listing = root.get("/admin/keys").text
    assert "<code>deny name www.dyn.example.test A</code>" in listing and "<code>grant zonesub A TXT</code>" in listing
    assert secret not in listing and secret not in root.get("/admin/keys/acme-proxy.example.org/secret").text
    identity = portal.service.key_identity("acme-proxy.example.org", Actor("key:x"))
    assert [g.allow for g in identity.grants] == [False, True]
    assert alice.get("/admin/keys/acme-proxy.example.org/delete").status_code == 403
    r = root.post("/admin/keys/acme-proxy.example.org/delete", csrf_from="/admin/keys/acme-proxy.example.org/delete")
    assert r.status_code == 200 and "is revoked" in r.text
    assert portal.service.tsig_key("acme-proxy.example.org") is None


@pytest.mark.parametrize("form, message", [
    ({"name": "ci", "zone": ZONE, "rules": ""}, "at least one rule"),
    ({"name": "ci", "zone": ZONE, "rules": "grant name www.example.org A"}, "not in the zone"),
    ({"name": "ci", "zone": "example.org", "rules": "grant zonesub TXT"}, "no domain"),
    ({"name": 'ci"; };', "zone": ZONE, "rules": "grant zonesub TXT"}, "not a key name"),
    ({"name": "ci", "zone": ZONE, "rules": "grant zonesub TXT\ngrant zonesub <script>"}, "not a record type"),
])
def test_hostile_zone_keys_are_refused_with_the_form_again(portal, form, message):
    root = Browser(portal.url)
    root.login("root", "pw-root")
    r = root.post("/admin/keys", form, csrf_from="/admin/keys")
    assert r.status_code in (400, 404) and message in html.unescape(r.text) and "<script>" not in r.text
    assert portal.service.keys(None, kind="zone") == []


def test_the_api_makes_lists_and_revokes_keys(portal):
    alice = Browser(portal.url)
    alice.login("alice", "pw-alice")
    fqdn, _ = new_host(alice, "apikeys")
    auth, api = api_token(alice), portal.url + "/api/v1"
    r = requests.post(f"{api}/hosts/{fqdn}/keys", json={"kind": "acme", "algorithm": "hmac-sha512"}, headers=auth,
                      timeout=30)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["name"] == "_acme-challenge." + fqdn and made["kind"] == "acme" and made["host"] == fqdn
    assert made["key_file"] == (f'key "{made["name"]}" {{\n\talgorithm hmac-sha512;\n\tsecret "{made["secret"]}";\n}};\n')
    r = requests.post(f"{api}/hosts/{fqdn}/keys", headers=auth, timeout=30)  # no body: a host key, hmac-sha256
    assert r.status_code == 201 and r.json()["name"] == fqdn and r.json()["algorithm"] == "hmac-sha256"
    listed = requests.get(f"{api}/hosts/{fqdn}/keys", headers=auth, timeout=30)
    assert [k["name"] for k in listed.json()] == ["_acme-challenge." + fqdn, fqdn]
    assert made["secret"] not in listed.text and r.json()["secret"] not in listed.text and "secret" not in listed.text
    assert requests.post(f"{api}/hosts/{fqdn}/keys", headers=auth, timeout=30).status_code == 409
    assert requests.delete(f"{api}/hosts/{fqdn}/keys/{made['name']}", headers=auth, timeout=30).status_code == 204
    assert requests.delete(f"{api}/hosts/{fqdn}/keys/{made['name']}", headers=auth, timeout=30).status_code == 404
    assert portal.service.tsig_key(made["name"]) is None
    spec = requests.get(f"{api}/openapi.json", timeout=30).json()
    assert {"get", "post"} <= set(spec["paths"]["/hosts/{fqdn}/keys"]) and "delete" in spec["paths"]["/hosts/{fqdn}/keys/{name}"]
    kinds = spec["paths"]["/hosts/{fqdn}/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert kinds["properties"]["kind"]["enum"] == ["host", "acme"]


@pytest.mark.parametrize("body", [b'{"kind": "zone"}', b'{"kind": "host", "algorithm": "hmac-md5"}', b'{"rules": []}',
                                  b'{"kind": 1}', b'[1]', b"not json", b'{"kind": "\\ud800"}', b'{"algorithm": null}',
                                  b"[" * 10000])
def test_hostile_api_bodies_change_nothing(portal, body):
    alice = Browser(portal.url)
    alice.login("alice", "pw-alice")
    fqdn, _ = new_host(alice, "apihostile")
    auth = {**api_token(alice), "Content-Type": "application/json"}
    r = requests.post(f"{portal.url}/api/v1/hosts/{fqdn}/keys", data=body, headers=auth, timeout=30)
    assert r.status_code == 400 and "error" in r.json(), r.text
    assert keys_of(portal.service, fqdn) == []


def test_without_the_update_listener_the_page_shows_the_key_file_only(instance):
    instance.add_user("alice")
    with serving(instance, {"dnsupdate.port": 0}) as running:
        alice = Browser(running.url)
        alice.login("alice", "pw-alice")
        fqdn, _ = new_host(alice, "nolistener")
        r = make_key(alice, fqdn)
        assert 'id="listener-off"' in r.text and 'id="cfg-keyfile"' in r.text and 'id="cfg-nsupdate"' not in r.text
        assert f'secret "{key_secret(r.text)}";' in html.unescape(r.text)
