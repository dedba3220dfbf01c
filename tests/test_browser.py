"""The portal in a real headless Chromium (Debian's, driven by Playwright):
log in through the OpenID provider's form or with a local account, add a host,
read its secret from the page, update with curl, regenerate, delete.

Screenshots of every page go to ``artifacts/screenshots/`` (or
``$DDNS_ARTIFACTS``) as test artifacts; the README shows some of them.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import RESTRICTED_ZONE, oidc_portal, require, serving

ZONE = "dyn.example.test"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("DDNS_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("required tool missing: chromium (Debian package chromium; see .ci/run)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, request):
    context = chromium.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    errors: list[str] = []  # script errors and CSP violations on the portal's pages (not the provider's)
    pg.on("console", lambda msg: errors.append(f"{msg.location.get('url')}: {msg.text}")
          if msg.type == "error" and "/realms/" not in msg.location.get("url", "")
          and not msg.location.get("url", "").endswith("/favicon.ico") else None)  # the provider has none
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors
    yield pg
    context.close()


def shot(page, name: str) -> Path:
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def curl_update(url: str, fqdn: str, secret: str, address: str) -> str:
    require("curl")
    return subprocess.run(["curl", "-sS", "--max-time", "30", "-u", f"{fqdn}:{secret}",
                           f"{url}/nic/update?hostname={fqdn}&myip={address}"],
                          capture_output=True, text=True, timeout=60).stdout


def add_host(page, label: str, zone: str) -> str:
    """Fill in the add-host form; returns the secret read from the page it leads to."""
    page.get_by_role("link", name="Add host").first.click()
    page.get_by_label("Name").fill(label)
    page.get_by_label("Domain").select_option(zone)
    page.get_by_role("button", name="Create host and show its secret").click()
    secret = page.locator("#secret").inner_text().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", secret), secret
    return secret


def test_oidc_user_manages_a_host_in_the_browser(page, instance, tmp_path):
    with oidc_portal(instance, tmp_path) as portal:
        url = portal.url
        page.goto(url + "/")
        assert page.url.startswith(url + "/login")
        shot(page, "01-login")
        page.get_by_role("link", name="Log in with Example SSO").click()
        assert page.url.startswith(portal.idp.issuer)  # the provider's own login form
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill("alice-pw")
        shot(page, "02-provider-login")
        page.locator("#kc-login").click()
        page.wait_for_url(url + "/")
        assert page.get_by_role("heading", name="Your hosts").is_visible()
        assert "Alice Liddell" in page.locator("header").inner_text()

        # add a host in the domain only the group "staff" may use
        secret = add_host(page, "laptop", RESTRICTED_ZONE)
        fqdn = f"laptop.{RESTRICTED_ZONE}"
        configs = page.locator("section.config")
        assert configs.count() == 6
        assert secret in page.locator("#cfg-curl").inner_text()
        assert f"login={fqdn}" in page.locator("#cfg-ddclient").inner_text()
        shot(page, "03-secret-and-configs")
        page.reload()  # shown once: a reload does not show it again
        assert page.locator("#secret").count() == 0 and page.locator("#secret-gone").is_visible()
        assert secret not in page.content()

        assert curl_update(url, fqdn, secret, "192.0.2.50") == "good 192.0.2.50\n"
        assert portal.running.instance.dig(fqdn) == ["192.0.2.50"]
        page.goto(url + "/")
        row = page.locator("tr", has_text=fqdn)
        assert "192.0.2.50" in row.inner_text() and "curl" in row.inner_text()
        shot(page, "04-overview")

        # host page: comment, history, regenerate
        page.get_by_role("link", name=fqdn).click()
        page.get_by_label("Comment").fill("Alice's laptop")
        page.get_by_role("button", name="Save comment").click()
        assert page.get_by_text("Comment saved.").is_visible()
        assert "192.0.2.50" in page.locator("table.history").inner_text()
        shot(page, "05-host")
        page.get_by_role("button", name="Make a new secret").click()
        new_secret = page.locator("#secret").inner_text().strip()
        assert new_secret != secret
        assert curl_update(url, fqdn, secret, "192.0.2.51") == "badauth\n"
        assert curl_update(url, fqdn, new_secret, "192.0.2.51") == "good 192.0.2.51\n"

        # delete, with confirmation
        page.goto(f"{url}/hosts/{fqdn}")
        page.get_by_role("link", name=f"Delete {fqdn}").click()
        shot(page, "06-delete-confirm")
        page.get_by_role("button", name=f"Yes, delete {fqdn}").click()
        assert page.get_by_text(f"{fqdn} is deleted").is_visible()
        assert portal.running.instance.dig(fqdn) == []
        assert curl_update(url, fqdn, new_secret, "192.0.2.52") in ("nohost\n", "badauth\n")

        # log out: the provider asks for the password again
        page.get_by_role("button", name="Log out").click()
        assert page.get_by_text("You are logged out").is_visible()
        page.get_by_role("link", name="Log in with Example SSO").click()
        assert page.locator("#kc-login").is_visible()
        assert page.errors == [], page.errors  # no CSP violations or script errors


def test_admin_pages_in_the_browser(page, instance, tmp_path):
    with oidc_portal(instance, tmp_path) as portal:
        url = portal.url
        page.goto(url + "/login/oidc")
        page.get_by_label("Username").fill("carol")
        page.get_by_label("Password").fill("carol-pw")
        page.locator("#kc-login").click()
        page.wait_for_url(url + "/")
        page.get_by_role("link", name="Domains").click()
        page.get_by_label("Zone", exact=True).fill("lab.example.test")
        page.get_by_role("button", name="Add domain").click()
        assert page.get_by_text("Domain lab.example.test added").is_visible()
        assert portal.running.instance.dig("lab.example.test", "SOA")
        shot(page, "07-domains")
        page.get_by_role("link", name="Status").click()
        assert page.get_by_role("heading", name="BIND against Git").is_visible()
        assert page.locator("table", has_text="lab.example.test").get_by_text("in sync").first.is_visible()
        shot(page, "08-status")
        assert page.errors == [], page.errors


def test_local_account_in_the_browser_on_a_phone(chromium, instance):
    instance.add_user("dana")
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        with serving(instance, {"dyndns2.allow_loopback": True, "portal.max_login_failures": 3}) as running:
            url = running.url
            page.goto(url + "/login")
            page.get_by_label("User name").fill("dana")
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Log in").click()
            assert page.get_by_text("Wrong user name or password").is_visible()
            page.get_by_label("User name").fill("dana")
            page.get_by_label("Password").fill("pw-dana")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(url + "/")
            secret = add_host(page, "phone", ZONE)
            shot(page, "09-phone-secret")
            assert curl_update(url, f"phone.{ZONE}", secret, "192.0.2.60") == "good 192.0.2.60\n"
            page.goto(url + "/")
            assert "192.0.2.60" in page.locator("table.hosts").inner_text()
            # nothing wider than the screen but the tables' own scroll boxes
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 400, width
            shot(page, "10-phone-overview")
    finally:
        context.close()


def test_tsig_keys_in_the_browser(page, instance):
    """An ACME key from the host page: shown once with its key file and certbot/lego snippets, then deleted."""
    instance.add_user("erin")
    with serving(instance) as running:
        url = running.url
        page.goto(url + "/login")
        page.get_by_label("User name").fill("erin")
        page.get_by_label("Password").fill("pw-erin")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(url + "/")
        add_host(page, "certs", ZONE)
        fqdn = f"certs.{ZONE}"
        page.goto(f"{url}/hosts/{fqdn}")
        page.get_by_label("Algorithm").select_option("hmac-sha512")
        page.get_by_role("button", name="Make an ACME key").click()
        secret = page.locator("#key-secret").inner_text().strip()
        assert page.locator("section.config").count() == 4
        assert f'secret "{secret}";' in page.locator("#cfg-keyfile").inner_text()
        assert "dns_rfc2136_algorithm = HMAC-SHA512" in page.locator("#cfg-certbot").inner_text()
        shot(page, "11-tsig-key")
        page.reload()
        assert page.locator("#secret-gone").is_visible() and secret not in page.content()
        page.goto(f"{url}/hosts/{fqdn}")
        assert f"_acme-challenge.{fqdn}" in page.locator("#keys").inner_text() and secret not in page.content()
        page.locator("#keys").screenshot(path=str(shot(page, "12-host-keys")))
        page.locator("#keys").get_by_role("link", name="Delete").click()
        page.get_by_role("button", name=f"Yes, delete _acme-challenge.{fqdn}").click()
        assert page.get_by_text("is revoked").is_visible()
        assert running.service.tsig_key(f"_acme-challenge.{fqdn}") is None
        assert page.errors == [], page.errors
