"""OpenID Connect login to the portal against a real provider (tests/oidc, Keycloak's
paths), over real HTTP: the happy path and every way a login must fail.

A ``requests.Session`` is the browser (cookies for both sites); the provider's
login form is filled in by ``oidc_provider.login_with_form``.
"""
from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from keycloak import KeycloakOpenID

from conftest import OIDC_CLIENT, OIDC_OTHER_CLIENT, RESTRICTED_ZONE, oidc_portal
from ddns.oidc import LoginFailed, OidcLogin, pkce_pair
from oidc_provider import is_login_page, login_with_form, open_authorization

ZONE = "dyn.example.test"
OIDC_USERS_ALICE_SUB = "0a11ce00-0000-4000-8000-000000000001"


@pytest.fixture
def portal(instance, tmp_path):
    with oidc_portal(instance, tmp_path) as p:
        yield p


def start_login(browser: requests.Session, portal, query: str = "") -> str:
    """GET /login/oidc (with QUERY, e.g. a raw next=...); returns the provider URL the portal redirects to."""
    r = browser.get(portal.url + "/login/oidc" + query, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    location = r.headers["Location"]
    assert location.startswith(portal.idp.issuer + "/protocol/openid-connect/auth?")
    return location


def with_param(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def log_in(portal, username: str, password: str) -> requests.Session:
    browser = requests.Session()
    callback = login_with_form(browser, start_login(browser, portal), username, password)
    r = browser.get(callback, timeout=30)
    assert r.status_code == 200 and "Your hosts" in r.text, r.text
    return browser


def csrf(browser: requests.Session, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', browser.get(url, timeout=30).text)[1]


def test_login_creates_the_user_from_the_claims(portal):
    browser = requests.Session()
    provider_url = start_login(browser, portal)
    query = parse_qs(urlsplit(provider_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["openid email profile"]
    assert query["state"][0] and query["nonce"][0] and query["code_challenge"][0]
    callback = login_with_form(browser, provider_url, "alice", "alice-pw")
    r = browser.get(callback, timeout=30)
    assert "Alice Liddell" in r.text
    user = portal.running.service.store.user("alice")
    assert user.sub == OIDC_USERS_ALICE_SUB and user.email == "alice@example.org"
    assert user.groups == ("staff",) and not user.is_admin
    assert "/admin/domains" not in r.text


def test_groups_decide_which_domains_a_user_may_use(portal):
    alice, bob = log_in(portal, "alice", "alice-pw"), log_in(portal, "bob", "bob-pw")
    assert RESTRICTED_ZONE in alice.get(portal.url + "/hosts/new", timeout=30).text
    assert RESTRICTED_ZONE not in bob.get(portal.url + "/hosts/new", timeout=30).text
    r = bob.post(portal.url + "/hosts/new", data={"name": "bobvm", "domain": RESTRICTED_ZONE,
                                                  "csrf_token": csrf(bob, portal.url + "/hosts/new")}, timeout=30)
    assert r.status_code == 403 and "may not register" in r.text
    assert portal.running.service.store.find_host(f"bobvm.{RESTRICTED_ZONE}") is None
    r = alice.post(portal.url + "/hosts/new", data={"name": "alicevm", "domain": RESTRICTED_ZONE,
                                                    "csrf_token": csrf(alice, portal.url + "/hosts/new")}, timeout=30)
    assert r.status_code == 200 and 'id="secret"' in r.text


def test_admin_group_makes_an_admin(portal):
    carol = log_in(portal, "carol", "carol-pw")
    assert portal.running.service.store.user("carol").is_admin
    assert carol.get(portal.url + "/admin/status", timeout=30).status_code == 200


@pytest.mark.parametrize("raw_next", ["/%09/other.example/", "/%0a/other.example/", "/%5Cother.example/",
                                      "//other.example/", "/hosts%0d%0aSet-Cookie:%20x=1"])
def test_login_with_a_hostile_next_ends_on_the_portal(portal, raw_next):
    """next as an attacker's link carries it (percent-encoded, as typed): the login ends on the portal's origin."""
    browser = requests.Session()
    callback = login_with_form(browser, start_login(browser, portal, "?next=" + raw_next), "alice", "alice-pw")
    r = browser.get(callback, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"] in ("/", portal.url + "/"), (r.status_code, r.text)
    r = browser.get(urljoin(portal.url + "/login/callback", r.headers["Location"]), timeout=30)
    assert r.url == portal.url + "/" and "Alice Liddell" in r.text


def test_login_keeps_a_local_next(portal):
    browser = requests.Session()
    callback = login_with_form(browser, start_login(browser, portal, "?next=%2Ftokens"), "alice", "alice-pw")
    r = browser.get(callback, timeout=30)
    assert r.status_code == 200 and r.url == portal.url + "/tokens"


def test_started_logins_make_no_session_rows(portal):
    """A pending login travels in a signed cookie: a flood of started logins writes nothing."""
    for _ in range(20):
        start_login(requests.Session(), portal)
    assert portal.running.service.store.count("sessions") == 0
    log_in(portal, "alice", "alice-pw")
    assert portal.running.service.store.count("sessions") == 1


def test_wrong_state_is_refused(portal):
    browser = requests.Session()
    callback = login_with_form(browser, start_login(browser, portal), "alice", "alice-pw")
    r = browser.get(with_param(callback, state="forged-" + secrets.token_urlsafe(8)), timeout=30)
    assert r.status_code == 401 and "not started here" in r.text
    assert "Your hosts" not in browser.get(portal.url + "/", timeout=30).text


def test_callback_without_a_started_login_is_refused(portal):
    browser = requests.Session()
    callback = login_with_form(browser, start_login(browser, portal), "alice", "alice-pw")
    stranger = requests.Session()  # the code and state arrive in another browser (login CSRF)
    r = stranger.get(callback, timeout=30)
    assert r.status_code == 401
    assert "Your hosts" not in stranger.get(portal.url + "/", timeout=30).text


def test_replayed_code_is_refused(portal):
    first = requests.Session()
    callback = login_with_form(first, start_login(first, portal), "alice", "alice-pw")
    assert "Your hosts" in first.get(callback, timeout=30).text
    assert first.get(callback, timeout=30).status_code in (200, 401)  # logged in already; state used up
    # An attacker with the used code and a login of their own (so a valid state):
    attacker = requests.Session()
    own_state = parse_qs(urlsplit(start_login(attacker, portal)).query)["state"][0]
    r = attacker.get(with_param(callback, state=own_state), timeout=30)
    assert r.status_code == 401 and "refused the login" in r.text
    assert "Your hosts" not in attacker.get(portal.url + "/", timeout=30).text


def test_wrong_nonce_is_refused(portal):
    browser = requests.Session()
    provider_url = with_param(start_login(browser, portal), nonce="attacker-" + secrets.token_urlsafe(8))
    callback = login_with_form(browser, provider_url, "alice", "alice-pw")
    r = browser.get(callback, timeout=30)
    assert r.status_code == 401 and "ID token is not valid" in r.text
    assert portal.running.service.store.users() == []  # nobody was created


def test_code_for_another_client_is_refused(portal):
    browser = requests.Session()
    provider_url = with_param(start_login(browser, portal), client_id=OIDC_OTHER_CLIENT["client_id"])
    callback = login_with_form(browser, provider_url, "alice", "alice-pw")
    r = browser.get(callback, timeout=30)
    assert r.status_code == 401
    assert portal.running.service.store.users() == []


def provider_tokens(portal, client: dict, username: str, password: str, nonce: str) -> dict:
    """Tokens for CLIENT straight from the provider (python-keycloak's code flow, no portal)."""
    idp = portal.idp
    kc = KeycloakOpenID(server_url=idp.server_url, realm_name=idp.realm, client_id=client["client_id"],
                        client_secret_key=client["client_secret"])
    redirect = f"{portal.url}/login/callback"
    verifier, challenge = pkce_pair()
    url = kc.auth_url(redirect_uri=quote(redirect, safe=""), scope=quote("openid email profile"), state="s",
                      nonce=nonce, code_challenge=challenge, code_challenge_method="S256")
    code = parse_qs(urlsplit(login_with_form(requests.Session(), url, username, password)).query)["code"][0]
    return kc.token(grant_type="authorization_code", code=code, redirect_uri=redirect, code_verifier=verifier)


def test_id_token_for_another_audience_is_refused(portal):
    """An ID token the provider really signed, but for another client: the aud check refuses it."""
    idp = portal.idp
    nonce = secrets.token_urlsafe(16)
    id_token = provider_tokens(portal, OIDC_OTHER_CLIENT, "alice", "alice-pw", nonce)["id_token"]
    ours = OidcLogin(idp.server_url, idp.realm, OIDC_CLIENT["client_id"], OIDC_CLIENT["client_secret"])
    with pytest.raises(LoginFailed):
        ours.verify_id_token(id_token, nonce)
    theirs = OidcLogin(idp.server_url, idp.realm, OIDC_OTHER_CLIENT["client_id"], OIDC_OTHER_CLIENT["client_secret"])
    assert theirs.verify_id_token(id_token, nonce)["sub"]  # the same token is fine for its own audience
    with pytest.raises(LoginFailed):
        theirs.verify_id_token(id_token, "another-nonce")


def test_provider_error_is_a_readable_page(portal):
    browser = requests.Session()
    start_login(browser, portal)
    r = browser.get(portal.url + "/login/callback?error=access_denied&error_description=User+said+no", timeout=30)
    assert r.status_code == 401 and "User said no" in r.text and "Traceback" not in r.text


def test_logout_ends_the_provider_session_too(portal):
    browser = log_in(portal, "alice", "alice-pw")
    cookie = browser.cookies.get("ddns_session", domain="127.0.0.1")
    # while logged in at the provider, a new login needs no password (single sign-on)
    assert not is_login_page(open_authorization(browser, start_login(browser, portal)))
    r = browser.post(portal.url + "/logout", data={"csrf_token": csrf(browser, portal.url + "/")}, timeout=30)
    assert "You are logged out" in r.text
    assert is_login_page(open_authorization(browser, start_login(browser, portal)))  # password asked again
    replay = requests.Session()
    replay.cookies.set("ddns_session", cookie)
    assert replay.get(portal.url + "/hosts/new", timeout=30).url.endswith("/login?next=/hosts/new")


def test_api_accepts_the_providers_access_token(portal):
    access = provider_tokens(portal, OIDC_CLIENT, "alice", "alice-pw", "n")["access_token"]
    api = portal.url + "/api/v1"
    r = requests.post(api + "/hosts", json={"name": "ssovm", "domain": RESTRICTED_ZONE},
                      headers={"Authorization": f"Bearer {access}"}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["fqdn"] == f"ssovm.{RESTRICTED_ZONE}"
    assert portal.running.service.store.user("alice").sub == OIDC_USERS_ALICE_SUB
    # A character in the middle changed (the last base64url characters may carry unused bits, so a
    # changed ending can decode to the same token, and an ending of "xx" could be the token's own).
    middle = len(access) // 2
    forged = access[:middle] + ("A" if access[middle] != "A" else "B") + access[middle + 1:]
    r = requests.get(api + "/hosts", headers={"Authorization": "Bearer " + forged}, timeout=30)
    assert r.status_code == 401


def test_local_login_can_be_switched_off(instance, tmp_path):
    instance.add_user("local")
    with oidc_portal(instance, tmp_path, {"portal.local_login": False}) as p:
        browser = requests.Session()
        page = browser.get(p.url + "/login", timeout=30).text
        assert "Log in with Example SSO" in page and 'name="password"' not in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        data = {"username": "local", "password": "pw-local", "csrf_token": token[1] if token else ""}
        r = browser.post(p.url + "/login", data=data, timeout=30)
        assert r.status_code in (403, 404) and "Your hosts" not in r.text
