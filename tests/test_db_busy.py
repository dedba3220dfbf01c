"""A database whose write lock another process holds: the web answers at once.

Reads never need the write lock (WAL); a web request that must write waits
``store.web_busy_timeout`` (1 s) and answers 503 with a clear message, so
worker threads stay free and updates with a known secret still answer
``good`` promptly. Real service, real HTTP, real named; the lock is a
``BEGIN EXCLUSIVE`` on another SQLite connection.
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import serving, write_lock_held

ZONE = "dyn.example.test"
FQDN, OTHER = f"busy.{ZONE}", f"other.{ZONE}"
QUICK = 5.0  # seconds: the answer must come long before SQLite's 30 s wait (a loaded machine is slow)


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


@pytest.fixture
def busy(instance):
    instance.add_user("alice")
    secret = instance.add_host(FQDN)
    instance.add_host(OTHER)
    # the failed logins below are many: the limiters must not answer abuse before they reach the database
    with serving(instance, {"dyndns2.allow_loopback": True, "security.max_failures": 1000,
                            "security.max_client_failures": 1000}) as running:
        browser = requests.Session()
        page = browser.get(running.url + "/login", timeout=30).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        r = browser.post(running.url + "/login", timeout=30, data={
            "username": "alice", "password": "pw-alice", "next": "/", "csrf_token": token})
        assert "Your hosts" in r.text
        api_token = running.service.accounts.new_api_token(running.service.store.user("alice"), "test")
        yield running, browser, secret, api_token


def comment(running, browser, text: str) -> requests.Response:
    page = browser.get(running.url + f"/hosts/{FQDN}", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    return browser.post(running.url + f"/hosts/{FQDN}/comment", data={"comment": text, "csrf_token": token},
                        timeout=10)


def test_a_locked_database_gets_quick_answers_and_updates_still_work(busy):
    running, browser, secret, api_token = busy
    url, auth = running.url, (FQDN, secret)
    bearer = {"Authorization": f"Bearer {api_token}"}
    assert requests.get(f"{url}/nic/update?myip=192.0.2.1", auth=auth, timeout=30).text == "good 192.0.2.1\n"
    with write_lock_held(running.instance.config.path("store.path")):
        # reads answer as usual
        r, took = timed(browser.get, url + "/", timeout=10)
        assert r.status_code == 200 and FQDN in r.text and took < QUICK, (r.status_code, took)
        r, took = timed(requests.get, url + "/login", timeout=10)
        assert r.status_code == 200 and took < QUICK, (r.status_code, took)
        r, took = timed(requests.get, url + "/api/v1/hosts", headers=bearer, timeout=10)
        assert r.status_code == 200 and FQDN in r.text and took < QUICK, (r.status_code, took)
        # a write answers 503 quickly, with a clear message, and changes nothing
        r, took = timed(comment, running, browser, "written while locked")
        assert r.status_code == 503 and "database is busy" in r.text and took < 2 * QUICK, (r.status_code, took)
        r, took = timed(requests.get, f"{url}/nic/update?myip=192.0.2.9", auth=(FQDN, "wrong-secret"), timeout=10)
        assert (r.status_code, r.text) in ((503, "911\n"), (401, "badauth\n")) and took < QUICK, (r.text, took)
        # many writers waiting at once do not starve an update with a known secret
        with ThreadPoolExecutor(20) as pool:
            waiting = [pool.submit(requests.get, f"{url}/nic/update?myip=192.0.2.9", auth=(OTHER, f"wrong-{i}"),
                                   timeout=10) for i in range(40)]
            r, took = timed(requests.get, f"{url}/nic/update?myip=192.0.2.2", auth=auth, timeout=30)
            assert r.text == "good 192.0.2.2\n" and took < 2 * QUICK, (r.text, took)
            assert {w.result().status_code for w in waiting} <= {503, 401}
        assert running.instance.dig(FQDN) == ["192.0.2.2"]
    # released: everything as usual again
    r = comment(running, browser, "written after the lock")
    assert r.status_code == 200 and "Comment saved" in r.text
    assert running.service.store.host(FQDN).comment == "written after the lock"
    r = requests.get(f"{url}/nic/update?myip=192.0.2.9", auth=(FQDN, "wrong-secret"), timeout=10)
    assert (r.status_code, r.text) == (401, "badauth\n")
    assert requests.get(url + "/api/v1/hosts", headers=bearer, timeout=10).status_code == 200
