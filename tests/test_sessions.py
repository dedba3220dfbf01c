"""Portal sessions cost the database nothing until someone logs in, and little after.

Anonymous visitors (the login page, its CSRF token, a started OpenID login)
get no session row; a logged-in user's page loads note ``seen`` at most once
per interval. Real app over HTTP, real SQLite; the interval with an injected clock.
"""
from __future__ import annotations

import re
import sqlite3

import pytest
import requests

from ddns.sessions import PRE_COOKIE, SEEN_INTERVAL, Sessions, hash_id
from ddns.store import Store

from conftest import serving

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Observer:
    """A separate connection to the database: counts rows and notices commits by anyone else."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, timeout=10)

    def sessions(self) -> int:
        return self.db.execute("SELECT count(*) FROM sessions").fetchone()[0]

    def version(self) -> int:
        """PRAGMA data_version: changes whenever another connection commits."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]


@pytest.fixture
def portal(instance):
    instance.add_user("alice")
    with serving(instance) as r:
        yield r, Observer(instance.config.path("store.path"))


def login_form(browser: requests.Session, url: str) -> str:
    page = browser.get(url + "/login", timeout=30)
    assert page.status_code == 200
    return CSRF.search(page.text)[1]


def test_anonymous_page_loads_make_no_session_rows(portal):
    running, observer = portal
    before = observer.sessions()
    for i in range(30):
        fresh = requests.Session()  # a new visitor each time, as a flood would be
        assert fresh.get(running.url + "/login", timeout=30).status_code == 200
        assert fresh.get(running.url + f"/login?next=/hosts/{i}", timeout=30).status_code == 200
        assert fresh.get(running.url + "/", timeout=30).url.endswith("/login")
        assert fresh.get(running.url + "/hosts/x.example", timeout=30).status_code == 200  # sent to the login
    assert observer.sessions() == before == 0


def test_the_anonymous_login_form_is_protected_without_a_row(portal):
    running, observer = portal
    browser, other = requests.Session(), requests.Session()
    token, foreign = login_form(browser, running.url), login_form(other, running.url)
    assert browser.cookies.get(PRE_COOKIE) and browser.cookies.get(PRE_COOKIE) != other.cookies.get(PRE_COOKIE)
    assert observer.sessions() == 0
    form = {"username": "alice", "password": "pw-alice", "next": "/"}
    for bad in (foreign, "", "forged"):  # another visitor's token, none, a made-up one
        r = browser.post(running.url + "/login", data={**form, "csrf_token": bad}, timeout=30)
        assert r.status_code == 403, r.status_code
    stranger = requests.Session()  # a cross-site post carries the token but not the visitor's cookie
    assert stranger.post(running.url + "/login", data={**form, "csrf_token": token}, timeout=30).status_code == 403
    assert observer.sessions() == 0
    r = browser.post(running.url + "/login", data={**form, "csrf_token": token}, timeout=30)
    assert r.status_code == 200 and "Your hosts" in r.text
    assert observer.sessions() == 1  # the login made the first row


def test_page_loads_of_a_logged_in_user_write_nothing_within_the_interval(portal):
    running, observer = portal
    browser = requests.Session()
    token = login_form(browser, running.url)
    assert "Your hosts" in browser.post(running.url + "/login", timeout=30, data={
        "username": "alice", "password": "pw-alice", "next": "/", "csrf_token": token}).text
    version = observer.version()
    for _ in range(20):
        r = browser.get(running.url + "/", timeout=30)
        assert r.status_code == 200 and "Your hosts" in r.text
        assert browser.get(running.url + "/tokens", timeout=30).status_code == 200
    assert observer.version() == version, "page loads committed to the database"


def test_seen_is_written_at_most_once_per_interval(tmp_path):
    """Injected clock, real SQLite: N loads in an interval, one write; the session still idles out."""
    now = [1000.0]
    path = tmp_path / "s.db"
    sessions = Sessions(Store(path), idle=1800, max_age=8 * 3600, clock=lambda: now[0])
    raw, _ = sessions.start()
    observer = Observer(path)
    writes, version = 0, observer.version()
    for _ in range(300):  # 300 requests, 1 s apart: five intervals
        now[0] += 1
        assert sessions.load(raw) is not None
        if observer.version() != version:
            writes, version = writes + 1, observer.version()
    assert writes == 300 // SEEN_INTERVAL
    seen = observer.db.execute("SELECT seen FROM sessions WHERE id_hash=?", (hash_id(raw),)).fetchone()[0]
    assert now[0] - seen < SEEN_INTERVAL
    now[0] = seen + 1801
    assert sessions.load(raw) is None  # idle for longer than `idle` since the last noted request


@pytest.mark.parametrize("value", [None, "", "x", "e30", "e30.", "e30.00", "e30.\u00e9", "\u00e9.\u00e9", "!!!.abc",
                                   "W10." + "0" * 64])
def test_signed_values_refuse_anything_they_did_not_sign(value):
    from ddns.sessions import Signer

    signer = Signer()
    good = signer.sign("oidc", {"state": "s"})
    assert signer.unsign("oidc", good) == {"state": "s"}
    assert signer.unsign("csrf", good) is None  # another purpose
    assert Signer().unsign("oidc", good) is None  # another key (another process)
    assert signer.unsign("oidc", value) is None
    encoded, _, mac = good.partition(".")
    assert signer.unsign("oidc", encoded + "x." + mac) is None
