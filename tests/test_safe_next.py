"""``safe_next``: where the portal may send a browser after login (pure logic, a table of hostile values).

The real-app tests (local login in test_portal.py, OpenID Connect in
test_portal_oidc.py) check that a login really ends on the portal's origin.
"""
from __future__ import annotations

from urllib.parse import urljoin

import pytest

from ddns.portal import MAX_NEXT, safe_next

PORTAL = "https://ddns.example.org/some/page"

HOSTILE = [
    None, "", "evil.example", "https://evil.example/", "http:/evil.example", "javascript:alert(1)",
    "//evil.example/", "///evil.example/", "/\\evil.example/", "\\\\evil.example", "/\\/evil.example",
    "/\t/evil.example/", "/\n/evil.example/", "/\r\n/evil.example/", "\t//evil.example/", " //evil.example/",
    "/ /evil.example/", "/\x00/evil.example", "/\x0b/evil.example", "/\x1f/evil.example", "/\x7f/evil.example",
    "/\u00a0/evil.example", "/\u2028/evil.example", "/\uff0f/evil.example", "/\u3000/evil.example",
    "/hosts\r\nSet-Cookie: x=1", "/" + "a" * MAX_NEXT,
]


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_become_the_start_page(target):
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", [
    "/", "/hosts/new", "/hosts/laptop.dyn.example.test", "/tokens?x=1&y=%2F%2Fevil", "/a/%09/b",
    "/%2F%2Fevil.example/", "/hosts#frag", "/login?next=%2Fhosts",
])
def test_local_paths_are_kept(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", HOSTILE + ["/a/%09/b", "/%2F%2Fevil.example/", "/hosts"])
def test_whatever_comes_in_stays_on_the_portal(target):
    """The browser's view: the result, resolved against a portal page, is on the portal's origin."""
    resolved = urljoin(PORTAL, safe_next(target))
    assert resolved.startswith("https://ddns.example.org/"), resolved
