"""The portal over real HTTP (no browser): local login, sessions, CSRF, ownership,
secrets shown once, domains and status for admins, the JSON API with personal tokens.

A ``requests.Session`` plays the browser: it keeps cookies and posts the forms
the pages contain, CSRF token included (read from the page, as a browser would).
"""
from __future__ import annotations

import re
import subprocess

import pytest
import requests

from conftest import serving, wait_until, write_lock_held
from ddns import errors

ZONE = "dyn.example.test"


class Browser:
    """Cookies plus form posting with the page's own CSRF token."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        self.last: requests.Response | None = None

    def get(self, path: str, **kw) -> requests.Response:
        self.last = self.http.get(self.base + path, timeout=30, **kw)
        return self.last

    def csrf(self, path: str = "/login") -> str:
        page = self.get(path).text
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, page
        return match[1]

    def post(self, path: str, data: dict | None = None, csrf_from: str | None = None, token: str | None = None,
             **kw) -> requests.Response:
        data = dict(data or {})
        if token is not None:
            data["csrf_token"] = token
        elif csrf_from is not None:
            data["csrf_token"] = self.csrf(csrf_from)
        self.last = self.http.post(self.base + path, data=data, timeout=60, allow_redirects=kw.pop("follow", True), **kw)
        return self.last

    def login(self, name: str, password: str) -> requests.Response:
        return self.post("/login", {"username": name, "password": password, "next": "/"}, csrf_from="/login")


def new_host(browser: Browser, label: str, zone: str = ZONE) -> tuple[str, str]:
    """Create LABEL.ZONE through the form; returns (fqdn, secret read from the page)."""
    r = browser.post("/hosts/new", {"name": label, "domain": zone}, csrf_from="/hosts/new")
    assert r.status_code == 200, r.text
    match = re.search(r'<code id="secret">([^<]+)</code>', r.text)
    assert match, r.text
    return f"{label}.{zone}", match[1]


@pytest.fixture
def portal(instance):
    instance.add_user("alice")
    instance.add_user("bob")
    instance.add_user("root", admin=True)
    with serving(instance, {"dyndns2.allow_loopback": True, "portal.max_login_failures": 3}) as r:
        yield r


def test_local_login_creates_a_host_whose_secret_updates_dns(portal):
    inst = portal.instance
    b = Browser(portal.url)
    assert b.get("/").url.endswith("/login")  # anonymous: sent to the login page
    r = b.login("alice", "pw-alice")
    assert r.status_code == 200 and "Your hosts" in r.text
    fqdn, secret = new_host(b, "laptop")
    page = b.last.text
    for title in ("curl", "cloud-init", "ddclient", "inadyn", "dhclient", "Router"):
        assert title in page
    out = subprocess.run(["curl", "-fsS", "-u", f"{fqdn}:{secret}",
                          f"{portal.url}/nic/update?hostname={fqdn}&myip=192.0.2.31"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "good 192.0.2.31\n", out
    assert inst.dig(fqdn) == ["192.0.2.31"]
    assert "192.0.2.31" in b.get("/").text  # the overview shows what BIND serves


def test_the_secret_page_shows_the_secret_once(portal):
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    fqdn, secret = new_host(b, "once")
    again = b.get(f"/hosts/{fqdn}/secret")
    assert again.status_code == 200
    assert secret not in again.text and 'id="secret-gone"' in again.text


def test_regenerating_replaces_the_secret(portal):
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    fqdn, old = new_host(b, "regen")
    r = b.post(f"/hosts/{fqdn}/secret", csrf_from=f"/hosts/{fqdn}")
    new = re.search(r'<code id="secret">([^<]+)</code>', r.text)[1]
    assert new != old
    assert portal.update(fqdn, old, "myip=192.0.2.32")[1] == "badauth\n"
    assert portal.update(fqdn, new, "myip=192.0.2.32")[1] == "good 192.0.2.32\n"


def test_wrong_password_and_rate_limit(portal):
    b = Browser(portal.url)
    for _ in range(3):
        r = b.login("alice", "wrong")
        assert r.status_code == 401 and "Wrong user name or password" in r.text
    r = b.login("alice", "pw-alice")  # blocked now, even with the right password
    assert r.status_code == 429 and "Too many failed logins" in r.text
    assert "Your hosts" not in b.get("/").text


def test_unknown_user_gets_the_same_answer(portal):
    r = Browser(portal.url).login("nobody", "whatever")
    assert r.status_code == 401 and "Wrong user name or password" in r.text


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_post_without_the_right_csrf_token_changes_nothing(portal, token):
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    b.csrf("/hosts/new")
    data = {"name": "csrf", "domain": ZONE}
    if token is not None:
        data["csrf_token"] = token
    r = b.http.post(portal.url + "/hosts/new", data=data, timeout=30)
    assert r.status_code == 403 and "did not come from this site" in r.text
    assert portal.service.store.find_host(f"csrf.{ZONE}") is None


def test_csrf_token_of_another_session_is_refused(portal):
    mallory = Browser(portal.url)
    mallory.login("bob", "pw-bob")
    foreign = mallory.csrf("/hosts/new")
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    r = b.post("/hosts/new", {"name": "csrf2", "domain": ZONE}, token=foreign)
    assert r.status_code == 403
    assert portal.service.store.find_host(f"csrf2.{ZONE}") is None


def test_login_form_needs_csrf_too(portal):
    r = requests.post(portal.url + "/login", data={"username": "alice", "password": "pw-alice"}, timeout=30)
    assert r.status_code == 403


def test_another_users_host_is_not_found(portal):
    alice, bob = Browser(portal.url), Browser(portal.url)
    alice.login("alice", "pw-alice")
    bob.login("bob", "pw-bob")
    fqdn, secret = new_host(alice, "private")
    assert portal.update(fqdn, secret, "myip=192.0.2.33")[1] == "good 192.0.2.33\n"
    token = bob.csrf("/")
    for path in (f"/hosts/{fqdn}", f"/hosts/{fqdn}/delete", f"/hosts/{fqdn}/secret"):
        r = bob.get(path)
        assert r.status_code == 404 and "192.0.2.33" not in r.text, path
    for path, data in ((f"/hosts/{fqdn}/delete", {}), (f"/hosts/{fqdn}/secret", {}),
                       (f"/hosts/{fqdn}/address", {"action": "set", "address": "192.0.2.66"}),
                       (f"/hosts/{fqdn}/address", {"action": "clear"}),
                       (f"/hosts/{fqdn}/comment", {"comment": "mine now"})):
        r = bob.post(path, data, token=token)
        assert r.status_code == 404, path
    # nothing changed: the host, its secret, its comment and what BIND serves
    assert portal.update(fqdn, secret, "myip=192.0.2.33")[1] == "nochg 192.0.2.33\n"
    assert portal.instance.dig(fqdn) == ["192.0.2.33"]
    assert portal.service.store.host(fqdn).comment == ""
    assert fqdn not in bob.get("/").text


def test_the_host_page_sets_clears_and_shows_history(portal):
    inst = portal.instance
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    fqdn, _ = new_host(b, "manual")
    token = b.csrf(f"/hosts/{fqdn}")
    r = b.post(f"/hosts/{fqdn}/address", {"action": "set", "address": "2001:db8::7"}, token=token)
    assert "BIND serves the change" in r.text
    assert inst.dig(fqdn, "AAAA") == ["2001:db8::7"]
    r = b.post(f"/hosts/{fqdn}/address", {"action": "set", "address": "not-an-address"}, token=token)
    assert r.status_code == 400
    b.post(f"/hosts/{fqdn}/comment", {"comment": "<script>alert(1)</script>"}, token=token)
    page = b.get(f"/hosts/{fqdn}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "portal:alice" in page and "2001:db8::7" in page  # history read from git
    b.post(f"/hosts/{fqdn}/address", {"action": "clear"}, token=token)
    assert inst.dig(fqdn, "AAAA") == []
    log = inst.git("log", "--format=%an %s", "-3")
    assert "portal:alice" in log


def test_delete_needs_a_post_and_removes_the_records(portal):
    inst = portal.instance
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    fqdn, secret = new_host(b, "gone")
    portal.update(fqdn, secret, "myip=192.0.2.34")
    confirm = b.get(f"/hosts/{fqdn}/delete")
    assert confirm.status_code == 200 and "Yes, delete" in confirm.text
    assert inst.dig(fqdn) == ["192.0.2.34"]  # the GET changed nothing
    r = b.post(f"/hosts/{fqdn}/delete", csrf_from=f"/hosts/{fqdn}/delete")
    assert r.status_code == 200 and "is deleted" in r.text
    assert inst.dig(fqdn) == []
    assert portal.update(fqdn, secret, "myip=192.0.2.34")[1] in ("nohost\n", "badauth\n")


def test_reserved_and_foreign_names_are_refused(portal):
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    token = b.csrf("/hosts/new")
    for label in ("www", "ns1", "a..b", "-bad", "x" * 70):
        r = b.post("/hosts/new", {"name": label, "domain": ZONE}, token=token)
        assert r.status_code == 400, label
    r = b.post("/hosts/new", {"name": "ok", "domain": "example.com"}, token=token)
    assert r.status_code in (400, 404)
    assert portal.service.store.hosts() == []


def test_session_cookie_is_dead_after_logout(portal):
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    cookie = b.http.cookies.get("ddns_session")
    token = b.csrf("/")
    r = b.post("/logout", token=token)
    assert "You are logged out" in r.text
    replay = requests.Session()
    replay.cookies.set("ddns_session", cookie)
    r = replay.get(portal.url + "/hosts/new", timeout=30)
    assert r.url.endswith("/login?next=/hosts/new")


def test_session_id_changes_at_login_and_cookie_flags(portal):
    b = Browser(portal.url)
    b.csrf("/login")
    before = b.http.cookies.get("ddns_session")
    r = b.http.post(portal.url + "/login", data={"username": "alice", "password": "pw-alice", "next": "/",
                                                 "csrf_token": re.search(r'value="([^"]+)"', b.last.text)[1]},
                    allow_redirects=False, timeout=30)
    assert r.status_code == 303
    set_cookie = r.headers["Set-Cookie"]
    assert "httponly" in set_cookie.lower() and "samesite=lax" in set_cookie.lower()
    assert "secure" not in set_cookie.lower()  # plain http here; test_tls checks Secure over https
    assert b.http.cookies.get("ddns_session") != before
    # only the hash of the id is stored
    assert portal.service.store.session(before) is None
    assert portal.service.store.session(b.http.cookies.get("ddns_session")) is None


def test_security_headers_on_pages(portal):
    r = requests.get(portal.url + "/login", timeout=30)
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"]
    assert "<script>" not in r.text  # no inline script


@pytest.mark.parametrize("target", ["//evil.example/", "/\t/other.example/", "/\n/other.example/",
                                    "/\\other.example/", "/hosts\r\nSet-Cookie: x=1"])
def test_open_redirect_after_login_is_refused(portal, target):
    """A hostile next (as typed, or as the login page's own form carries it) ends on the portal's start page."""
    b = Browser(portal.url)
    r = b.post("/login", {"username": "alice", "password": "pw-alice", "next": target},
               csrf_from="/login", follow=False)
    assert r.status_code == 303 and r.headers["Location"] in ("/", portal.url + "/"), (r.status_code, r.text)
    b = Browser(portal.url)
    page = b.get("/login", params={"next": target}).text
    assert 'name="next" value="/"' in page
    r = b.login("alice", "pw-alice")
    assert r.status_code == 200 and r.url == portal.url + "/" and "Your hosts" in r.text


def test_admin_pages(portal):
    inst = portal.instance
    alice = Browser(portal.url)
    alice.login("alice", "pw-alice")
    assert alice.get("/admin/domains").status_code == 403
    assert alice.get("/admin/status").status_code == 403
    root = Browser(portal.url)
    root.login("root", "pw-root")
    status = root.get("/admin/status")
    assert status.status_code == 200 and ZONE in status.text and "in sync" in status.text
    token = root.csrf("/admin/domains")
    r = root.post("/admin/domains", {"zone": "team.example.test"}, token=token)
    assert r.status_code == 200 and "team.example.test" in r.text
    assert inst.dig("team.example.test", "SOA")
    r = root.post("/admin/domains/team.example.test", {"access": "groups", "groups": "staff", "dynamic_ttl": "120"},
                  token=token)
    assert "Access to team.example.test saved" in r.text
    assert "dynamic_ttl = 120" in (inst.repo / "team.example.test" / "zone.toml").read_text()
    # alice is not in "staff": the domain is not offered, and posting it anyway is refused
    assert "team.example.test" not in alice.get("/hosts/new").text
    r = alice.post("/hosts/new", {"name": "sneaky", "domain": "team.example.test"}, csrf_from="/hosts/new")
    assert r.status_code == 403 and "may not register" in r.text
    assert portal.service.store.find_host("sneaky.team.example.test") is None


def test_api_with_a_personal_token(portal):
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    r = b.post("/tokens", {"name": "ci"}, csrf_from="/tokens")
    token = re.search(r'<code id="new-token">([^<]+)</code>', r.text)[1]
    assert token not in b.get("/tokens").text  # shown once
    api = portal.url + "/api/v1"
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(api + "/hosts", json={"name": "apihost", "domain": ZONE}, headers=auth, timeout=30)
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert portal.update(f"apihost.{ZONE}", secret, "myip=192.0.2.35")[1] == "good 192.0.2.35\n"
    hosts = requests.get(api + "/hosts", headers=auth, timeout=30).json()
    assert [h["fqdn"] for h in hosts] == [f"apihost.{ZONE}"] and hosts[0]["ipv4"] == "192.0.2.35"
    new = requests.post(api + f"/hosts/apihost.{ZONE}/secret", headers=auth, timeout=30).json()["secret"]
    assert portal.update(f"apihost.{ZONE}", secret, "myip=192.0.2.36")[1] == "badauth\n"
    assert portal.update(f"apihost.{ZONE}", new, "myip=192.0.2.36")[1] == "good 192.0.2.36\n"
    assert requests.delete(api + f"/hosts/apihost.{ZONE}", headers=auth, timeout=30).status_code == 204
    assert portal.instance.dig(f"apihost.{ZONE}") == []
    assert requests.get(api + "/hosts", headers={"Authorization": "Bearer ddns_wrong"}, timeout=30).status_code == 401
    spec = requests.get(api + "/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.") and "/hosts/{fqdn}" in spec["paths"]


def test_api_refuses_another_users_host(portal):
    alice, bob = Browser(portal.url), Browser(portal.url)
    alice.login("alice", "pw-alice")
    bob.login("bob", "pw-bob")
    fqdn, secret = new_host(alice, "apiprivate")
    r = bob.post("/tokens", {"name": "b"}, csrf_from="/tokens")
    token = re.search(r'<code id="new-token">([^<]+)</code>', r.text)[1]
    auth = {"Authorization": f"Bearer {token}"}
    api = portal.url + "/api/v1"
    assert requests.get(api + f"/hosts/{fqdn}", headers=auth, timeout=30).status_code == 404
    assert requests.delete(api + f"/hosts/{fqdn}", headers=auth, timeout=30).status_code == 404
    assert requests.post(api + f"/hosts/{fqdn}/secret", headers=auth, timeout=30).status_code == 404
    assert portal.update(fqdn, secret, "myip=192.0.2.37")[1] == "good 192.0.2.37\n"


def test_errors_are_pages_not_stack_traces(portal):
    r = requests.get(portal.url + "/no/such/page", headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 404 and "<h1>" in r.text and "Traceback" not in r.text
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    r = b.get("/hosts/%00%ff")
    assert r.status_code == 404 and "Traceback" not in r.text


def test_sessions_end_when_idle_or_too_old(tmp_path):
    """Timeouts with an injected clock (the store is real SQLite)."""
    from ddns.sessions import Sessions, hash_id
    from ddns.store import Store

    now = [1000.0]
    sessions = Sessions(Store(tmp_path / "s.db"), idle=60, max_age=300, clock=lambda: now[0])
    raw, session = sessions.start(user_id=None)
    assert sessions.store.session(hash_id(raw)) is not None and sessions.store.session(raw) is None
    now[0] += 59
    assert sessions.load(raw) is not None  # activity keeps it alive...
    now[0] += 59
    assert sessions.load(raw) is not None
    now[0] += 61
    assert sessions.load(raw) is None  # ...until it idles for longer than 60 s
    raw, _ = sessions.start()
    for _ in range(7):
        now[0] += 50
        alive = sessions.load(raw)
    assert alive is None  # over 300 s after it began, however active
    assert sessions.load("x" * 500) is None and sessions.load("") is None


def test_new_secrets_are_rate_limited(instance):
    instance.add_user("alice")
    with serving(instance, {"portal.max_secret_actions": 3}) as running:
        b = Browser(running.url)
        b.login("alice", "pw-alice")
        fqdn, _ = new_host(b, "limited")  # 1
        token = b.csrf(f"/hosts/{fqdn}")
        assert b.post(f"/hosts/{fqdn}/secret", token=token).status_code == 200  # 2
        r = b.post("/tokens", {"name": "t"}, token=token)  # 3
        api_token = re.search(r'<code id="new-token">([^<]+)</code>', r.text)[1]
        r = b.post(f"/hosts/{fqdn}/secret", token=token)
        assert r.status_code == 429 and "Too many new secrets" in r.text
        r = requests.post(running.url + f"/api/v1/hosts/{fqdn}/secret",
                          headers={"Authorization": f"Bearer {api_token}"}, timeout=30)
        assert r.status_code == 429
        r = b.post("/hosts/new", {"name": "another", "domain": ZONE}, token=token)
        assert r.status_code == 429 and running.service.store.find_host(f"another.{ZONE}") is None


@pytest.mark.parametrize("body, content_type", [
    (b"not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'{"name": 5, "domain": "dyn.example.test"}', "application/json"),
    (b'{"name": "x", "domain": ["dyn.example.test"]}', "application/json"),
    (b'{"name": "www", "domain": "dyn.example.test"}', "application/json"),
    (b'{"name": "a\\u0000b", "domain": "dyn.example.test"}', "application/json"),
    (b'{"name": "ok", "domain": "nope.example"}', "application/json"),
    (b'{"name": "' + b"x" * 70_000 + b'", "domain": "dyn.example.test"}', "application/json"),
], ids=["not-json", "array", "name-int", "domain-list", "reserved", "nul", "foreign-domain", "70k-body"])
def test_api_refuses_bad_bodies_and_changes_nothing(portal, body, content_type):
    b = Browser(portal.url)
    b.login("alice", "pw-alice")
    r = b.post("/tokens", {"name": "t"}, csrf_from="/tokens")
    token = re.search(r'<code id="new-token">([^<]+)</code>', r.text)[1]
    r = requests.post(portal.url + "/api/v1/hosts", data=body,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}, timeout=30)
    assert r.status_code in (400, 404, 413), r.text
    assert "Traceback" not in r.text
    if r.status_code != 413:  # the web server refuses bodies over 64 KiB before the app sees them
        assert r.json()["error"]
    assert portal.service.store.hosts() == []


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Bearer " + "x" * 9000,
                                    "Bearer ddns_" + "A" * 32, "bearer\x00ddns_x"],
                         ids=["none", "scheme-only", "empty", "basic", "9k-token", "unknown-token", "nul"])
def test_api_refuses_bad_authorization(portal, header):
    headers = {"Authorization": header} if header else {}
    try:
        r = requests.get(portal.url + "/api/v1/hosts", headers=headers, timeout=30)
    except ValueError:  # requests refuses to send some of these headers at all
        return
    assert r.status_code in (400, 401, 431)
    assert r.status_code != 200


def test_status_page_shows_upstream_errors(portal):
    inst = portal.instance
    root = Browser(portal.url)
    root.login("root", "pw-root")
    (inst.dir / "zones.git").rename(inst.dir / "zones.git.moved")  # the upstream disappears
    portal.service.request_sync()
    wait_until(lambda: portal.service.background.sync_error, 20, what="the sync to fail")
    page = root.get("/admin/status").text
    assert "Upstream: sync with the upstream failed" in page
    assert "ddns.service: sync with the upstream failed" in page  # the error log line


@pytest.mark.parametrize("ttl, reason", [("abc", "whole number"), ("0", "between 1 and 86400"),
                                         ("86401", "between 1 and 86400"), ("-5", "between 1 and 86400"),
                                         ("99999999999999999999", "between 1 and 86400"),
                                         ("1_000", "whole number"), ("\uff11\uff12\uff10", "whole number"),
                                         ("60.0", "whole number"), ("6e1", "whole number")])
def test_a_refused_domain_change_changes_nothing_and_says_why(portal, ttl, reason):
    inst = portal.instance
    settings = (inst.repo / ZONE / "zone.toml").read_text()
    head = inst.git("rev-parse", "HEAD")
    root, alice = Browser(portal.url), Browser(portal.url)
    root.login("root", "pw-root")
    alice.login("alice", "pw-alice")
    r = root.post(f"/admin/domains/{ZONE}", {"access": "groups", "groups": "staff", "dynamic_ttl": ttl},
                  csrf_from="/admin/domains")
    assert r.status_code == 400 and reason in r.text, r.text
    if reason != "whole number":
        assert "whole number" not in r.text
    # nothing changed: the domain is still open to everyone, its settings and the repository are as before
    assert ZONE in alice.get("/hosts/new").text
    assert (inst.repo / ZONE / "zone.toml").read_text() == settings
    assert inst.git("rev-parse", "HEAD") == head
    r = root.post(f"/admin/domains/{ZONE}", {"access": "groups", "groups": "", "dynamic_ttl": "120"},
                  csrf_from="/admin/domains")
    assert r.status_code == 400 and "at least one group" in r.text
    assert "dynamic_ttl = 120" not in (inst.repo / ZONE / "zone.toml").read_text()
    r = root.post(f"/admin/domains/{ZONE}", {"access": "groups", "groups": "staff", "dynamic_ttl": "120"},
                  csrf_from="/admin/domains")
    assert r.status_code == 200 and f"Access to {ZONE} saved" in r.text
    assert ZONE not in alice.get("/hosts/new").text
    assert "dynamic_ttl = 120" in (inst.repo / ZONE / "zone.toml").read_text()


def test_a_ttl_longer_than_ten_characters_is_read_whole(portal):
    """Leading zeros are still ninety seconds (the field was cut to 10 characters: 00000000090 became 9)."""
    root = Browser(portal.url)
    root.login("root", "pw-root")
    r = root.post(f"/admin/domains/{ZONE}", {"access": "public", "dynamic_ttl": "00000000090"},
                  csrf_from="/admin/domains")
    assert r.status_code == 200 and f"Access to {ZONE} saved" in r.text, r.text
    assert re.search(r"^dynamic_ttl = 90\b", (portal.instance.repo / ZONE / "zone.toml").read_text(), re.M)


def test_each_refusal_shows_the_status_of_the_table_and_says_why(instance):
    instance.add_user("alice")
    with serving(instance, {"portal.max_secret_actions": 4}) as running:
        running.service.add_domain("team.example.test")
        running.service.set_domain_access("team.example.test", False, ["staff"])  # alice is not in "staff"
        b = Browser(running.url)
        b.login("alice", "pw-alice")
        new_host(b, "taken")  # a new secret: 1 of 4
        token = b.csrf("/hosts/new")

        def refused(kind: errors.Kind, r: requests.Response, sentence: str) -> None:
            assert r.status_code == errors.CODES[kind].http, (r.status_code, r.text)
            assert sentence in r.text and "Traceback" not in r.text, r.text

        refused(errors.Kind.INVALID, b.post("/hosts/new", {"name": "www", "domain": ZONE}, token=token),
                f"The name www is reserved in {ZONE}.")  # 2 of 4
        refused(errors.Kind.NOT_FOUND, b.get(f"/hosts/nope.{ZONE}"), f"No host nope.{ZONE}.")
        refused(errors.Kind.NOT_FOUND, b.post("/tokens/999/delete", token=token), "No such token.")
        refused(errors.Kind.REFUSED, b.post("/hosts/new", {"name": "x", "domain": "team.example.test"}, token=token),
                "You may not register hosts in team.example.test.")  # 3 of 4
        refused(errors.Kind.CONFLICT, b.post("/hosts/new", {"name": "taken", "domain": ZONE}, token=token),
                f"The name taken.{ZONE} is taken.")  # 4 of 4
        with write_lock_held(running.instance.config.path("store.path")):
            refused(errors.Kind.BUSY, b.post(f"/hosts/taken.{ZONE}/comment", {"comment": "x"}, token=token),
                    "The database is busy; try again in a moment.")
        refused(errors.Kind.TOO_MANY, b.post("/hosts/new", {"name": "more", "domain": ZONE}, token=token),
                "Too many new secrets in a short time")
        assert [h.fqdn for h in running.service.store.hosts()] == [f"taken.{ZONE}"]
        assert running.service.store.host(f"taken.{ZONE}").comment == ""
