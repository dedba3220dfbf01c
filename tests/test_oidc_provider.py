"""The test OpenID Connect provider is real, and python-keycloak works with it
unchanged: discovery, authorization code flow with PKCE (S256), state and
nonce through the HTML login form, ID token validation against the JWKS,
userinfo, introspection, single use codes, logout (python-keycloak's
back-channel logout and the browser's RP-initiated logout)."""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from keycloak import KeycloakOpenID
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakPostError

from conftest import free_port
from oidc_provider import (
    LOGIN_ERROR,
    LoginFailed,
    OidcProvider,
    follow_within_provider,
    is_login_page,
    login_form,
    login_with_form,
    open_authorization,
    redirect_location,
)

CLIENT_ID = "ddns-web"
CLIENT_SECRET = "ddns-web-secret"
OTHER_ID = "ddns-other"
OTHER_SECRET = "ddns-other-secret"
SCOPE = "openid email profile"

ALICE = {
    "sub": "2f1c6a52-0b7e-4f3a-9d1e-a11ce0000001",
    "username": "alice",
    "password": "alice-pw",
    "email": "alice@example.org",
    "name": "Alice Example",
    "groups": ["ddns-admins", "ddns-users"],
    "eduperson_entitlement": ["urn:mace:example.org:ddns:zone:example.org"],
}
BOB = {
    "sub": "2f1c6a52-0b7e-4f3a-9d1e-b0b000000002",
    "username": "bob",
    "password": "bob-pw",
    "email": "bob@example.org",
    "name": "Bob Example",
    "groups": [],
    "eduperson_entitlement": [],
}


@pytest.fixture(scope="module")
def client_base():
    # Never contacted: the flow stops at the redirect to the client.
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def idp(tmp_path_factory, client_base):
    provider = OidcProvider()
    provider.start(
        tmp_path_factory.mktemp("oidc"),
        free_port(),
        clients=[
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{client_base}/auth/callback"],
                "post_logout_redirect_uris": [f"{client_base}/"],
            },
            {
                "client_id": OTHER_ID,
                "client_secret": OTHER_SECRET,
                "redirect_uris": [f"{client_base}/other/callback"],
                "post_logout_redirect_uris": [],
            },
        ],
        users=[ALICE, BOB],
    )
    yield provider
    provider.stop()


@pytest.fixture
def kc(idp):
    return KeycloakOpenID(
        server_url=idp.server_url,
        realm_name=idp.realm,
        client_id=CLIENT_ID,
        client_secret_key=CLIENT_SECRET,
    )


@pytest.fixture
def redirect_uri(client_base):
    return f"{client_base}/auth/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Flow:
    """One authorization request as python-keycloak builds it."""

    def __init__(self, kc: KeycloakOpenID, redirect_uri: str):
        self.kc = kc
        self.redirect_uri = redirect_uri
        self.state = secrets.token_urlsafe(16)
        self.nonce = secrets.token_urlsafe(16)
        self.verifier, self.challenge = pkce_pair()
        # auth_url does not URL-encode its arguments: pass them encoded.
        self.url = kc.auth_url(
            redirect_uri=quote(redirect_uri, safe=""),
            scope=quote(SCOPE),
            state=self.state,
            nonce=self.nonce,
            code_challenge=self.challenge,
            code_challenge_method="S256",
        )

    def code_from(self, location: str) -> str:
        parts = urlsplit(location)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == self.redirect_uri, location
        query = parse_qs(parts.query)
        assert "error" not in query, location
        assert query["state"] == [self.state]
        return query["code"][0]

    def exchange(self, code: str) -> dict:
        return self.kc.token(
            grant_type="authorization_code",
            code=code,
            redirect_uri=self.redirect_uri,
            code_verifier=self.verifier,
        )

    def login(self, session: requests.Session, user: dict) -> dict:
        location = login_with_form(session, self.url, user["username"], user["password"])
        return self.exchange(self.code_from(location))


def test_well_known(idp, kc):
    wk = kc.well_known()
    assert wk["issuer"] == idp.issuer
    base = f"{idp.issuer}/protocol/openid-connect"
    assert wk["authorization_endpoint"] == f"{base}/auth"
    assert wk["token_endpoint"] == f"{base}/token"
    assert wk["userinfo_endpoint"] == f"{base}/userinfo"
    assert wk["jwks_uri"] == f"{base}/certs"
    assert wk["end_session_endpoint"] == f"{base}/logout"
    assert wk["introspection_endpoint"] == f"{base}/token/introspect"
    assert "S256" in wk["code_challenge_methods_supported"]
    assert "client_secret_post" in wk["token_endpoint_auth_methods_supported"]
    keys = kc.certs()["keys"]
    assert keys and all(k["kty"] == "RSA" and "d" not in k for k in keys)


def test_login_page_is_a_form(idp, kc, redirect_uri):
    flow = Flow(kc, redirect_uri)
    page = open_authorization(requests.Session(), flow.url)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    form = login_form(page.text)
    assert form is not None and form["attrs"]["method"] == "post"
    assert form["attrs"]["action"].startswith(f"/realms/{idp.realm}/")
    by_name = {a.get("name"): (tag, a) for tag, a in form["inputs"]}
    assert by_name["username"][1]["id"] == "username"
    assert by_name["password"][1]["type"] == "password" and by_name["password"][1]["id"] == "password"
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    assert 'id="kc-login"' in page.text and "Sign In" in page.text
    assert "<script" not in page.text


def test_code_flow_with_pkce_state_and_nonce(idp, kc, redirect_uri):
    flow = Flow(kc, redirect_uri)
    session = requests.Session()
    location = login_with_form(session, flow.url, ALICE["username"], ALICE["password"])
    code = flow.code_from(location)
    assert parse_qs(urlsplit(location).query).get("iss") == [idp.issuer]

    tokens = flow.exchange(code)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] <= 300
    assert {"access_token", "id_token", "refresh_token"} <= tokens.keys()
    assert set(tokens["scope"].split()) == set(SCOPE.split())
    # Opaque access token; the ID token is a signed JWT.
    assert tokens["access_token"].count(".") == 0
    assert tokens["id_token"].count(".") == 2

    claims = kc.decode_token(
        tokens["id_token"],
        check_claims={"iss": idp.issuer, "aud": CLIENT_ID, "nonce": flow.nonce, "exp": None},
    )
    expected = {
        "sub": ALICE["sub"],
        "email": ALICE["email"],
        "email_verified": True,
        "name": ALICE["name"],
        "preferred_username": ALICE["username"],
        "groups": ALICE["groups"],
        "eduperson_entitlement": ALICE["eduperson_entitlement"],
    }
    assert {k: claims.get(k) for k in expected} == expected

    info = kc.userinfo(tokens["access_token"])
    assert {k: info.get(k) for k in expected} == expected

    intro = kc.introspect(tokens["access_token"])
    assert intro["active"] is True
    assert intro["sub"] == ALICE["sub"]
    assert intro["client_id"] == CLIENT_ID
    assert intro["token_type"] == "Bearer"
    assert intro["iss"] == idp.issuer
    assert kc.introspect("not-a-token") == {"active": False}

    # The refresh token works.
    refreshed = kc.refresh_token(tokens["refresh_token"])
    assert kc.userinfo(refreshed["access_token"])["sub"] == ALICE["sub"]

    # A code is good once; its second use also revokes what it gave.
    with pytest.raises(KeycloakPostError) as err:
        flow.exchange(code)
    assert err.value.response_code == 400
    assert b"invalid_grant" in err.value.response_body
    assert kc.introspect(tokens["access_token"]) == {"active": False}


def test_sso_session_skips_the_form(kc, redirect_uri):
    session = requests.Session()
    Flow(kc, redirect_uri).login(session, ALICE)
    again = Flow(kc, redirect_uri)
    response = open_authorization(session, again.url)
    assert response.is_redirect
    tokens = again.exchange(again.code_from(redirect_location(response)))
    claims = kc.decode_token(tokens["id_token"], check_claims={"nonce": again.nonce})
    assert claims["sub"] == ALICE["sub"]


def test_pkce_is_checked_and_required(idp, kc, redirect_uri):
    flow = Flow(kc, redirect_uri)
    code = flow.code_from(login_with_form(requests.Session(), flow.url, "bob", "bob-pw"))
    with pytest.raises(KeycloakPostError) as err:
        kc.token(grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                 code_verifier=pkce_pair()[0])
    assert b"invalid_grant" in err.value.response_body

    # Without a code_challenge the request is refused (redirected with an error).
    url = kc.auth_url(redirect_uri=quote(redirect_uri, safe=""), scope=quote(SCOPE), state="s1", nonce="n1")
    response = open_authorization(requests.Session(), url)
    query = parse_qs(urlsplit(redirect_location(response)).query)
    assert query["error"] == ["invalid_request"]
    assert "PKCE" in query["error_description"][0]


def test_unknown_redirect_uri_is_refused(kc, client_base):
    url = kc.auth_url(redirect_uri=quote(f"{client_base}/elsewhere", safe=""), scope=quote(SCOPE),
                      state="s", nonce="n", code_challenge=pkce_pair()[1], code_challenge_method="S256")
    response = requests.get(url, allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "redirect_uri" in response.text


def test_wrong_password_shows_the_form_again(kc, redirect_uri):
    flow = Flow(kc, redirect_uri)
    session = requests.Session()
    with pytest.raises(LoginFailed, match="Invalid username or password"):
        login_with_form(session, flow.url, ALICE["username"], "wrong")
    with pytest.raises(LoginFailed):
        login_with_form(requests.Session(), flow.url, "nobody", "x")

    # Explicitly: HTTP 200, the error text, and the same form to try again.
    page = open_authorization(session, flow.url)
    form = login_form(page.text)
    response = session.post(
        requests.compat.urljoin(page.url, form["attrs"]["action"]),
        data={"username": ALICE["username"], "password": "wrong"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 200
    assert LOGIN_ERROR in response.text
    assert is_login_page(response)
    assert f'value="{ALICE["username"]}"' in response.text
    # The right password then works in the same browser.
    retry = session.post(
        requests.compat.urljoin(page.url, form["attrs"]["action"]),
        data={"username": ALICE["username"], "password": ALICE["password"]},
        allow_redirects=False,
        timeout=10,
    )
    assert retry.is_redirect
    final = follow_within_provider(session, retry, flow.url)
    tokens = flow.exchange(flow.code_from(redirect_location(final)))
    assert kc.userinfo(tokens["access_token"])["sub"] == ALICE["sub"]


def test_backchannel_logout_ends_the_session(idp, kc, redirect_uri):
    session = requests.Session()
    tokens = Flow(kc, redirect_uri).login(session, ALICE)
    # The SSO session is there: no form.
    assert open_authorization(session, Flow(kc, redirect_uri).url).is_redirect

    assert kc.logout(tokens["refresh_token"]) == {}  # HTTP 204

    # Its tokens are gone…
    with pytest.raises(KeycloakPostError):
        kc.refresh_token(tokens["refresh_token"])
    with pytest.raises(KeycloakAuthenticationError):
        kc.userinfo(tokens["access_token"])
    assert kc.introspect(tokens["access_token"]) == {"active": False}
    # …and so is the browser's session: the next authorization shows the form.
    assert is_login_page(open_authorization(session, Flow(kc, redirect_uri).url))

    # Once more with the same refresh token: 400 with a JSON error.
    with pytest.raises(KeycloakPostError) as err:
        kc.logout(tokens["refresh_token"])
    assert err.value.response_code == 400
    assert b"invalid_grant" in err.value.response_body


def test_backchannel_logout_checks_the_client(idp, kc, redirect_uri):
    tokens = Flow(kc, redirect_uri).login(requests.Session(), BOB)
    bad_secret = KeycloakOpenID(server_url=idp.server_url, realm_name=idp.realm,
                                client_id=CLIENT_ID, client_secret_key="wrong")
    with pytest.raises(KeycloakPostError) as err:
        bad_secret.logout(tokens["refresh_token"])
    assert err.value.response_code == 400
    other = KeycloakOpenID(server_url=idp.server_url, realm_name=idp.realm,
                           client_id=OTHER_ID, client_secret_key=OTHER_SECRET)
    with pytest.raises(KeycloakPostError):
        other.logout(tokens["refresh_token"])
    with pytest.raises(KeycloakPostError):
        kc.logout("garbage")
    # Nothing was logged out by those.
    assert kc.userinfo(tokens["access_token"])["sub"] == BOB["sub"]
    assert kc.logout(tokens["refresh_token"]) == {}


def test_browser_logout_redirects_without_confirmation(idp, kc, redirect_uri, client_base):
    session = requests.Session()
    tokens = Flow(kc, redirect_uri).login(session, ALICE)
    query = urlencode({
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": f"{client_base}/",
        "client_id": CLIENT_ID,
        "state": "bye-1",
    })
    response = session.get(f"{idp.end_session_endpoint}?{query}", allow_redirects=False, timeout=10)
    assert response.status_code in (302, 303)
    assert redirect_location(response) == f"{client_base}/?state=bye-1"

    assert is_login_page(open_authorization(session, Flow(kc, redirect_uri).url))
    with pytest.raises(KeycloakPostError):
        kc.refresh_token(tokens["refresh_token"])

    # An unregistered post_logout_redirect_uri is refused.
    tokens = Flow(kc, redirect_uri).login(session, ALICE)
    query = urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:1/x"})
    response = session.get(f"{idp.end_session_endpoint}?{query}", allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert open_authorization(session, Flow(kc, redirect_uri).url).is_redirect  # still logged in

    # The same as a POSTed form (no confirmation page either).
    response = session.post(idp.end_session_endpoint, data={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": f"{client_base}/",
    }, allow_redirects=False, timeout=10)
    assert redirect_location(response) == f"{client_base}/"
    assert is_login_page(open_authorization(session, Flow(kc, redirect_uri).url))


def test_second_instance_runs_in_parallel_and_stops_cleanly(tmp_path, idp, kc, redirect_uri):
    second = OidcProvider()
    port = free_port()
    second.start(tmp_path, port, clients=[{
        "client_id": "c2", "client_secret": "s2",
        "redirect_uris": ["http://127.0.0.1:9/cb"], "post_logout_redirect_uris": [],
    }], users=[BOB])
    try:
        assert second.startup_seconds < 10
        kc2 = KeycloakOpenID(server_url=second.server_url, realm_name="ddns",
                             client_id="c2", client_secret_key="s2")
        assert kc2.well_known()["issuer"] == f"http://127.0.0.1:{port}/realms/ddns"
        assert kc.well_known()["issuer"] == idp.issuer
        # Keys differ per instance.
        assert kc2.certs()["keys"][0]["n"] != kc.certs()["keys"][0]["n"]
        pid = second.proc.pid
    finally:
        second.stop()
    assert not second.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/realms/ddns/.well-known/openid-configuration", timeout=2)
    # The first one is untouched.
    assert Flow(kc, redirect_uri).login(requests.Session(), BOB)["access_token"]


def test_provider_exits_when_stdin_closes(tmp_path):
    provider = OidcProvider().start(tmp_path, free_port(), clients=[], users=[])
    proc = provider.proc
    proc.stdin.close()
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is not None
    provider.stop()
