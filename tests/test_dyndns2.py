"""The dyndns2 contract (README: The update API) over the real socket: answers, HTTP status,
what named serves and what Git records.

Not covered here: ``dnserr`` (publishing failures: the faults tests) and
``911`` (a server-side crash; no honest way to provoke it without mocks).
"""
from __future__ import annotations

import subprocess
import time

import pytest

from ddns.gitrepo import parse_trailers

from conftest import http, require

ZONE = "dyn.example.test"
H1 = f"h1.{ZONE}"
H2 = f"h2.{ZONE}"
H3 = f"h3.{ZONE}"


# ---- helpers ------------------------------------------------------------------------
def curl(url: str, *args: str) -> subprocess.CompletedProcess:
    require("curl")
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args, url], capture_output=True, text=True, timeout=60)


def last_records(inst):
    return parse_trailers(inst.git("log", "-1", "--format=%B"))


def assert_plain_answer(status: int, body: str, headers: dict, expected_status: int, expected_body: str) -> None:
    assert (status, body) == (expected_status, expected_body)
    ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert ctype.startswith("text/plain")
    for line in body.splitlines():
        assert line == line.strip() and line, f"answer line with blanks: {line!r}"


# ---- authentication -----------------------------------------------------------------
def test_no_credentials_is_challenged(running):
    inst = running.instance
    inst.add_host(H1)
    before = inst.commit_count()
    status, body, headers = running.request("/nic/update?hostname=" + H1 + "&myip=192.0.2.1")
    assert_plain_answer(status, body, headers, 401, "badauth\n")
    assert {k.lower(): v for k, v in headers.items()}["www-authenticate"] == 'Basic realm="ddns"'
    assert inst.commit_count() == before


def test_wrong_secret_and_unknown_user_are_badauth(running):
    inst = running.instance
    secret = inst.add_host(H1)
    before = inst.commit_count()
    status, body, headers = running.request("/nic/update?myip=192.0.2.1", auth=(H1, secret + "x"))
    assert_plain_answer(status, body, headers, 401, "badauth\n")
    assert "basic realm=" in {k.lower(): v for k, v in headers.items()}["www-authenticate"].lower()
    assert running.update(H1, "", "myip=192.0.2.1") == (401, "badauth\n")
    assert running.update(f"nobody.{ZONE}", secret, "myip=192.0.2.1") == (401, "badauth\n")
    assert running.update("nobody", secret, "myip=192.0.2.1") == (401, "badauth\n")
    assert inst.commit_count() == before
    assert inst.dig(H1) == []


def test_wget_sends_credentials_after_the_challenge(running):
    require("wget")
    inst = running.instance
    secret = inst.add_host(H1)
    proc = subprocess.run(["wget", "-q", "-O", "-", "--tries=1", "--timeout=30", f"--user={H1}", f"--password={secret}",
                           f"{inst.url}/nic/update?myip=192.0.2.21"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "good 192.0.2.21\n"
    assert inst.dig(H1) == ["192.0.2.21"]
    assert last_records(inst)[0].agent.lower().startswith("wget")


def test_credentials_in_the_url(running):
    inst = running.instance
    secret = inst.add_host(H1)
    proc = curl(f"http://{H1}:{secret}@127.0.0.1:{inst.http_port}/nic/update?hostname={H1}&myip=192.0.2.22")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "good 192.0.2.22\n"
    assert inst.dig(H1) == ["192.0.2.22"]
    # the FQDN in upper case with a trailing dot is the same host
    proc = curl(f"http://{H1.upper()}.:{secret}@127.0.0.1:{inst.http_port}/nic/update?myip=192.0.2.22")
    assert proc.stdout == "nochg 192.0.2.22\n"


def test_regenerated_secret_replaces_the_old_one_at_once(running):
    inst = running.instance
    old = inst.add_host(H1)
    assert running.update(H1, old, "myip=192.0.2.30") == (200, "good 192.0.2.30\n")
    assert running.update(H1, old, "myip=192.0.2.30") == (200, "nochg 192.0.2.30\n")  # now in the verification cache
    r = inst.cli("host", "secret", H1, "--json")
    assert r.code == 0, r.err
    new = r.json()["secret"]
    assert new != old
    assert running.update(H1, old, "myip=192.0.2.31") == (401, "badauth\n")
    assert inst.dig(H1) == ["192.0.2.30"]
    assert running.update(H1, new, "myip=192.0.2.31") == (200, "good 192.0.2.31\n")
    assert running.update(H1, old, "myip=192.0.2.32") == (401, "badauth\n")
    assert inst.dig(H1) == ["192.0.2.31"]


def test_abuse_after_too_many_failures_until_the_window_passes(instance, serve):
    window = 2
    running = serve({"security.max_failures": 3, "security.failure_window": window})
    inst = running.instance
    secret = inst.add_host(H1)
    other = inst.add_host(H2)
    before = inst.commit_count()
    for _ in range(3):
        assert running.update(H1, "wrong-" + secret, "myip=192.0.2.40") == (401, "badauth\n")
    failed_at = time.monotonic()
    assert running.update(H1, secret, "myip=192.0.2.40") == (200, "abuse\n")  # even the right secret
    assert running.update(H1, "wrong", "myip=192.0.2.40") == (200, "abuse\n")
    assert inst.commit_count() == before
    assert inst.dig(H1) == []
    # another host is not affected
    assert running.update(H2, other, "myip=192.0.2.41") == (200, "good 192.0.2.41\n")
    # after the window, the right secret works again (bounded wait)
    time.sleep(max(0.0, window + 0.3 - (time.monotonic() - failed_at)))
    deadline = time.monotonic() + 10
    while True:
        answer = running.update(H1, secret, "myip=192.0.2.40")
        if answer != (200, "abuse\n") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer == (200, "good 192.0.2.40\n")
    assert inst.dig(H1) == ["192.0.2.40"]


def test_blocked_user_agent_is_badagent(instance, serve):
    running = serve({"dyndns2.blocked_user_agents": ["BadClient"]})
    inst = running.instance
    secret = inst.add_host(H1)
    before = inst.commit_count()
    status, body, headers = running.request("/nic/update?myip=192.0.2.50", auth=(H1, secret),
                                            headers={"User-Agent": "BadClient/1.0 (router)"})
    assert_plain_answer(status, body, headers, 200, "badagent\n")
    assert inst.commit_count() == before
    assert inst.dig(H1) == []
    assert running.update(H1, secret, "myip=192.0.2.50", **{"User-Agent": "ddclient/3.10.0"}) == (200, "good 192.0.2.50\n")


# ---- answers ------------------------------------------------------------------------
def test_good_then_nochg_without_a_commit(running):
    inst = running.instance
    secret = inst.add_host(H1)
    before = inst.commit_count()
    serial = inst.served_serial()
    status, body, headers = running.request("/nic/update?hostname=" + H1 + "&myip=192.0.2.1", auth=(H1, secret))
    assert_plain_answer(status, body, headers, 200, "good 192.0.2.1\n")
    assert inst.commit_count() == before + 1
    assert inst.dig(H1) == ["192.0.2.1"]
    new_serial = inst.served_serial()
    assert new_serial > serial
    assert inst.records(ZONE) == "h1 A 192.0.2.1\n"
    records = last_records(inst)
    assert [(r.host, r.type, r.old, r.new, r.actor, r.interface) for r in records] == [
        (H1, "A", None, "192.0.2.1", f"host:{H1}", "dyndns2")]

    status, body, headers = running.request("/nic/update?hostname=" + H1 + "&myip=192.0.2.1", auth=(H1, secret))
    assert_plain_answer(status, body, headers, 200, "nochg 192.0.2.1\n")
    assert inst.commit_count() == before + 1
    assert inst.served_serial() == new_serial

    assert running.update(H1, secret, "myip=192.0.2.2") == (200, "good 192.0.2.2\n")
    assert inst.dig(H1) == ["192.0.2.2"]
    assert [(r.old, r.new) for r in last_records(inst)] == [("192.0.2.1", "192.0.2.2")]


def test_notfqdn(running):
    inst = running.instance
    secret = inst.add_host(H1)
    before = inst.commit_count()
    for hostname in ("foo", "-bad-.dyn.example.test", "a..b"):
        status, body, headers = running.request(f"/nic/update?hostname={hostname}&myip=192.0.2.1", auth=(H1, secret))
        assert_plain_answer(status, body, headers, 200, "notfqdn\n")
    assert inst.commit_count() == before


def test_nohost(running):
    inst = running.instance
    s1 = inst.add_host(H1)
    inst.add_host(H2)
    before = inst.commit_count()
    # a valid FQDN nobody registered
    assert running.update(H1, s1, f"hostname=ghost.{ZONE}&myip=192.0.2.1") == (200, "nohost\n")
    # a name outside every zone of the service
    assert running.update(H1, s1, "hostname=www.example.org&myip=192.0.2.1") == (200, "nohost\n")
    # a host's credentials used for another registered host
    assert running.update(H1, s1, f"hostname={H2}&myip=192.0.2.1") == (200, "nohost\n")
    assert inst.commit_count() == before
    assert inst.dig(H2) == []


def test_numhost(instance, serve):
    running = serve({"dyndns2.max_hosts": 3})
    inst = running.instance
    for h in (H1, H2, H3):
        inst.add_host(h)
    token = inst.cli("user", "token", "alice", "--json").json()["token"]
    before = inst.commit_count()
    four = ",".join([H1, H2, H3, f"h4.{ZONE}"])
    status, body, headers = running.request(f"/nic/update?hostname={four}&myip=192.0.2.1", auth=("alice", token))
    assert_plain_answer(status, body, headers, 200, "numhost\n")
    assert inst.commit_count() == before
    three = ",".join([H1, H2, H3])
    assert running.update("alice", token, f"hostname={three}&myip=192.0.2.1") == (
        200, "good 192.0.2.1\ngood 192.0.2.1\ngood 192.0.2.1\n")


# ---- myip ---------------------------------------------------------------------------
def test_myip_forms(running):
    inst = running.instance
    secret = inst.add_host(H1)
    assert running.update(H1, secret, "myip=192.0.2.60") == (200, "good 192.0.2.60\n")
    assert running.update(H1, secret, "myip=2001:db8::60") == (200, "good 2001:db8::60\n")
    assert (inst.dig(H1, "A"), inst.dig(H1, "AAAA")) == (["192.0.2.60"], ["2001:db8::60"])
    # ddclient >= 3.11: v4,v6 in one value; the answer lists v4 first
    assert running.update(H1, secret, "myip=2001:db8::61,192.0.2.61") == (200, "good 192.0.2.61,2001:db8::61\n")
    assert (inst.dig(H1, "A"), inst.dig(H1, "AAAA")) == (["192.0.2.61"], ["2001:db8::61"])
    # myipv6 alongside myip, and alone
    assert running.update(H1, secret, "myip=192.0.2.62&myipv6=2001:db8::62") == (200, "good 192.0.2.62,2001:db8::62\n")
    assert running.update(H1, secret, "myipv6=2001:db8::63") == (200, "good 2001:db8::63\n")
    assert (inst.dig(H1, "A"), inst.dig(H1, "AAAA")) == (["192.0.2.62"], ["2001:db8::63"])
    # inadyn percent-encodes IPv6
    assert running.update(H1, secret, "myip=2001%3Adb8%3A%3A5") == (200, "good 2001:db8::5\n")
    assert inst.dig(H1, "AAAA") == ["2001:db8::5"]
    # one family unchanged, the other new: good, one commit with one change
    before = inst.commit_count()
    assert running.update(H1, secret, "myip=192.0.2.62,2001:db8::64") == (200, "good 192.0.2.62,2001:db8::64\n")
    assert inst.commit_count() == before + 1
    assert [(r.type, r.new) for r in last_records(inst)] == [("AAAA", "2001:db8::64")]
    assert running.update(H1, secret, "myip=192.0.2.62,2001:db8::64") == (200, "nochg 192.0.2.62,2001:db8::64\n")
    assert inst.commit_count() == before + 1


def test_missing_myip_refuses_loopback_by_default(running):
    inst = running.instance
    secret = inst.add_host(H1)
    before = inst.commit_count()
    assert running.update(H1, secret) == (200, "badip\n")
    assert running.update(H1, secret, "myip=") == (200, "badip\n")
    assert inst.commit_count() == before
    assert inst.dig(H1) == []


def test_missing_myip_uses_the_client_address(instance, serve):
    running = serve({"dyndns2.allow_loopback": True})
    inst = running.instance
    secret = inst.add_host(H1)
    assert running.update(H1, secret) == (200, "good 127.0.0.1\n")
    assert inst.dig(H1) == ["127.0.0.1"]
    assert running.update(H1, secret, "myip=") == (200, "nochg 127.0.0.1\n")
    record = last_records(inst)[0]
    assert (record.new, record.client) == ("127.0.0.1", "127.0.0.1")


def test_a_and_aaaa_are_independent(running):
    inst = running.instance
    secret = inst.add_host(H1)
    assert running.update(H1, secret, "myip=2001:db8::70")[1] == "good 2001:db8::70\n"
    assert running.update(H1, secret, "myip=192.0.2.70")[1] == "good 192.0.2.70\n"
    assert (inst.dig(H1, "A"), inst.dig(H1, "AAAA")) == (["192.0.2.70"], ["2001:db8::70"])
    assert running.update(H1, secret, "myip=192.0.2.71")[1] == "good 192.0.2.71\n"
    assert (inst.dig(H1, "A"), inst.dig(H1, "AAAA")) == (["192.0.2.71"], ["2001:db8::70"])
    assert running.update(H1, secret, "myip=2001:db8::71")[1] == "good 2001:db8::71\n"
    assert (inst.dig(H1, "A"), inst.dig(H1, "AAAA")) == (["192.0.2.71"], ["2001:db8::71"])
    assert inst.records(ZONE).splitlines() == sorted(
        ["h1 A 192.0.2.71", "h1 AAAA 2001:db8::71"])


# ---- hostname lists -----------------------------------------------------------------
def test_hostname_list_answers_one_line_per_host_in_order(running):
    inst = running.instance
    s2 = inst.add_host(H2)            # alice
    inst.add_host(H1)                 # alice
    inst.add_host(H3, owner="bob")    # someone else's
    token = inst.cli("user", "token", "alice", "--json").json()["token"]
    assert running.update(H2, s2, "myip=192.0.2.1") == (200, "good 192.0.2.1\n")
    before = inst.commit_count()

    status, body, headers = running.request(f"/nic/update?hostname={H1},{H2}&myip=192.0.2.1", auth=("alice", token))
    assert_plain_answer(status, body, headers, 200, "good 192.0.2.1\nnochg 192.0.2.1\n")
    assert inst.commit_count() == before + 1
    assert (inst.dig(H1), inst.dig(H2)) == (["192.0.2.1"], ["192.0.2.1"])
    assert [r.actor for r in last_records(inst)] == ["user:alice"]

    # another user's host in the middle answers nohost on its own line
    status, body, headers = running.request(f"/nic/update?hostname={H2},{H3},{H1},foo&myip=192.0.2.2",
                                            auth=("alice", token))
    assert_plain_answer(status, body, headers, 200, "good 192.0.2.2\nnohost\ngood 192.0.2.2\nnotfqdn\n")
    assert (inst.dig(H1), inst.dig(H2), inst.dig(H3)) == (["192.0.2.2"], ["192.0.2.2"], [])
    assert inst.commit_count() == before + 2  # one group commit for both hosts
    assert sorted(r.host for r in last_records(inst)) == [H1, H2]

    # a wrong token is badauth for the whole request
    assert running.update("alice", token + "x", f"hostname={H1}&myip=192.0.2.3") == (401, "badauth\n")


def test_unknown_parameters_are_ignored(running):
    inst = running.instance
    secret = inst.add_host(H1)
    q = f"system=dyndns&hostname={H1}&myip=192.0.2.80&wildcard=ON&mx=x&backmx=NO&offline=NO&foo=%FF"
    assert running.update(H1, secret, q, **{"User-Agent": "ddclient/3.10.0"}) == (200, "good 192.0.2.80\n")
    assert inst.dig(H1) == ["192.0.2.80"]
    assert inst.dig(H1, "MX") == []


def test_inadyn_style_http10_request(running):
    """HTTP/1.0, a Host header without port, IPv6 percent-encoded (raw socket)."""
    import base64
    import socket

    inst = running.instance
    secret = inst.add_host(H1)
    auth = base64.b64encode(f"{H1}:{secret}".encode()).decode()
    request = (f"GET /nic/update?hostname={H1}&myip=2001%3Adb8%3A%3A90 HTTP/1.0\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Basic {auth}\r\nUser-Agent: inadyn/2.10\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", inst.http_port), timeout=30) as s:
        s.sendall(request)
        data = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"200"
    assert body == b"good 2001:db8::90\n"
    assert inst.dig(H1, "AAAA") == ["2001:db8::90"]


# ---- client address behind proxies --------------------------------------------------
def test_forwarded_headers_ignored_from_untrusted_peers(running):
    inst = running.instance
    secret = inst.add_host(H1)
    before = inst.commit_count()
    # without myip the client is the peer (127.0.0.1, loopback, refused) -- not the claimed address
    assert running.update(H1, secret, **{"X-Forwarded-For": "198.51.100.7"}) == (200, "badip\n")
    assert running.update(H1, secret, **{"X-Real-IP": "198.51.100.7"}) == (200, "badip\n")
    assert inst.commit_count() == before
    assert running.update(H1, secret, "myip=192.0.2.90", **{"X-Forwarded-For": "198.51.100.7"}) == (
        200, "good 192.0.2.90\n")
    assert last_records(inst)[0].client == "127.0.0.1"
    status, body, _ = running.request("/myip", headers={"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "198.51.100.8"})
    assert (status, body) == (200, "127.0.0.1\n")


def test_forwarded_headers_believed_from_trusted_proxies(instance, serve):
    running = serve({"http.trusted_proxies": ["127.0.0.1"]})
    inst = running.instance
    secret = inst.add_host(H1)
    assert running.update(H1, secret, **{"X-Forwarded-For": "198.51.100.7"}) == (200, "good 198.51.100.7\n")
    assert inst.dig(H1) == ["198.51.100.7"]
    assert last_records(inst)[0].client == "198.51.100.7"
    # a chain: the rightmost address that is not a trusted proxy is the client
    assert running.update(H1, secret, **{"X-Forwarded-For": "203.0.113.66, 198.51.100.8"}) == (
        200, "good 198.51.100.8\n")
    assert running.update(H1, secret, **{"X-Real-IP": "2001:db8::99"}) == (200, "good 2001:db8::99\n")
    assert (inst.dig(H1, "A"), inst.dig(H1, "AAAA")) == (["198.51.100.8"], ["2001:db8::99"])
    # an explicit myip wins; the forwarded address is still the recorded client
    assert running.update(H1, secret, "myip=192.0.2.91", **{"X-Forwarded-For": "198.51.100.9"}) == (
        200, "good 192.0.2.91\n")
    record = last_records(inst)[0]
    assert (record.new, record.client) == ("192.0.2.91", "198.51.100.9")
    status, body, _ = running.request("/myip", headers={"X-Forwarded-For": "198.51.100.10"})
    assert (status, body) == (200, "198.51.100.10\n")


# ---- other endpoints ----------------------------------------------------------------
def test_myip_endpoint(running):
    status, body, headers = running.request("/myip")
    assert_plain_answer(status, body, headers, 200, "127.0.0.1\n")


def test_healthz(running):
    import json

    status, body, headers = running.request("/healthz")
    assert status == 200
    assert {k.lower(): v for k, v in headers.items()}["content-type"].startswith("application/json")
    data = json.loads(body)
    assert data["status"] == "ok"
    assert ZONE in data["zones"]


def test_post_update_is_accepted(running):
    """Some routers POST the form; the parameters count the same."""
    inst = running.instance
    secret = inst.add_host(H1)
    status, body, _ = http(running.url + "/nic/update", auth=(H1, secret), method="POST",
                           data=f"hostname={H1}&myip=192.0.2.95".encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body) == (200, "good 192.0.2.95\n")
    assert inst.dig(H1) == ["192.0.2.95"]


@pytest.mark.parametrize("value", ["%20192.0.2.70", "192.0.2.70%20", "192.0.2.70,%202001:db8::70",
                                   "%09192.0.2.70", "192.0.2.70%0A"])
def test_myip_with_whitespace_is_badip_and_changes_nothing(running, value):
    """An address with blanks around it is malformed: refused, never silently trimmed."""
    inst = running.instance
    secret = inst.add_host(H1)
    assert running.update(H1, secret, "myip=192.0.2.69") == (200, "good 192.0.2.69\n")
    before = inst.commit_count()
    assert running.update(H1, secret, "myip=" + value) == (200, "badip\n")
    assert inst.commit_count() == before
    assert inst.dig(H1, "A") == ["192.0.2.69"]
