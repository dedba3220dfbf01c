"""A seeded random HTTP corpus against the running service (real app, real named).

Hostile methods, targets, query strings (repeated parameters, huge values, bad
percent-encodings, NUL, non-UTF-8), headers (non-UTF-8 bytes, huge,
duplicated), bodies (chunked, wrong Content-Length, multipart, JSON nesting)
against /nic/update, the portal pages and /api/v1, written byte by byte on raw
sockets (the generator is tests/fuzz_corpus.py); every tenth request is a
legitimate update. The assertions:

- no answer has a status >= 500 or a traceback in its body, and no exception
  is logged while the corpus runs;
- every commit is one a legitimate update made, in order, and nothing else:
  the zone's dynamic records hold exactly what they set, the rendered zone passes
  named-checkzone, named serves its serial and the addresses they set;
- the service still answers a legitimate update at the end.

Hostile requests may carry valid credentials (to reach the parsing behind
authentication), but never an address the service could accept: each such
request is checked against the server's own decoding before it is sent.

CI sends a small corpus with a fixed seed; a developer runs it long with
``DDNS_FUZZ_EXAMPLES=20000 DDNS_FUZZ_SEED=$RANDOM``. A failure names the
seed and the request shapes that failed.
"""
from __future__ import annotations

import http.client
import logging
import os
import random
import re
import time
import urllib.parse

import pytest

from conftest import Crashes, Instance, serving, wait_until
from recordsets import as_sets
from ddns import bind, gitops, zones
from fuzz_corpus import FUZZ_HOST, HOST, MATE, REQUEST_TIMEOUT, ZONE, Secrets, exchange, hostile_request, is_safe

SEED = int(os.environ.get("DDNS_FUZZ_SEED", "20261201"))
EXAMPLES = int(os.environ.get("DDNS_FUZZ_EXAMPLES", "400"))
LEGIT_EVERY = 10
# Wrong credentials come by the hundred from 127.0.0.1; the limits would turn them into "abuse".
OVERRIDES = {"security.max_failures": 10**6, "security.max_client_failures": 10**6,
             "portal.max_login_failures": 10**6, "portal.max_secret_actions": 10**6}


def portal_login(port: int, user: str, password: str) -> tuple[str, str]:
    """Log in through the portal's form; returns (Cookie header value, CSRF token of the new session)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", "/login")
        resp = conn.getresponse()
        page, cookie = resp.read().decode(), resp.getheader("Set-Cookie").split(";")[0]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        form = urllib.parse.urlencode({"csrf_token": csrf, "next": "/", "username": user, "password": password})
        conn.request("POST", "/login", form, {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 303, resp.status
        cookie = resp.getheader("Set-Cookie").split(";")[0]
        conn.request("GET", "/tokens", headers={"Cookie": cookie})
        resp = conn.getresponse()
        return cookie, re.search(r'name="csrf_token" value="([^"]+)"', resp.read().decode())[1]
    finally:
        conn.close()


def snapshot_of(records: dict[str, str]) -> str:
    return zones.format_dynamic(as_sets({(host, "A" if ":" not in a else "AAAA"): a for host, a in records.items()}))


@pytest.fixture
def fuzzed(instance: Instance):
    with serving(instance, OVERRIDES) as running:
        yield running


def prepare(fuzzed) -> Secrets:
    """alice owns HOST and MATE (the legitimate updates); fuzz owns FUZZ_HOST, a token, a session."""
    inst = fuzzed.instance
    host_secret = inst.add_host(HOST, "alice")
    inst.add_host(MATE, "alice")
    inst.add_host(FUZZ_HOST, "fuzz")
    alice_token = inst.cli("user", "token", "alice", "--json").json()["token"]
    fuzz_token = inst.cli("user", "token", "fuzz", "--json").json()["token"]
    api_token = fuzzed.service.accounts.new_api_token(fuzzed.service.store.user("fuzz"), "fuzz")
    cookie, csrf = portal_login(inst.http_port, "fuzz", "pw-fuzz")
    return Secrets(host_secret, alice_token, fuzz_token, api_token, cookie, csrf)


def legit_update(fuzzed, secrets: Secrets, k: int) -> tuple[str, str, str | None]:
    """The K-th legitimate update: HOST by its secret or MATE by alice's token, each time a new address.

    Returns (label, address, problem or None). ``dnserr`` counts as done: it is committed, and
    served once named has loaded it (a loaded machine may take longer than verify_timeout).
    """
    if k % 2 == 0:
        label, address, auth, query = "h", f"198.51.100.{1 + k % 250}", (HOST, secrets.host), ""
    else:
        label, address, auth, query = "mate", f"2001:db8::{k:x}", ("alice", secrets.alice_token), f"hostname={MATE}&"
    status, body = fuzzed.update(*auth, f"{query}myip={address}")
    ok = status == 200 and body in (f"good {address}\n", "dnserr\n")
    return label, address, None if ok else f"{label} {address} -> {status} {body!r}"


def assert_only_legit_commits(inst: Instance, start: str, snapshots: list[str], expected: dict[str, str]) -> None:
    """Every commit since START is a legitimate update, in order; named serves exactly their result."""
    commits = inst.git("rev-list", "--reverse", f"{start}..HEAD").split()
    assert [inst.records(ZONE, c) for c in commits] == snapshots
    assert inst.tree_records(ZONE) == snapshots[-1]
    assert inst.git("status", "--porcelain") == ""
    rendered = inst.repo / ZONE / zones.rendered_file(ZONE)
    flat = inst.repo.parent / "assembled.zone"
    flat.write_text(gitops.committed_zone(inst.repo, ZONE))
    assert bind.check_zone(ZONE, flat) is None
    serial = zones.serial_of(rendered.read_text())
    wait_until(lambda: inst.served_serial() == serial, 30, what=f"named serving serial {serial}")
    assert inst.dig(HOST, "A") == [expected["h"]] and inst.dig(HOST, "AAAA") == []
    assert inst.dig(MATE, "AAAA") == [expected["mate"]] and inst.dig(MATE, "A") == []
    assert inst.dig(FUZZ_HOST, "A") == [] and inst.dig(FUZZ_HOST, "AAAA") == []


def test_random_http_corpus_breaks_nothing(fuzzed):
    assert EXAMPLES >= 2 * LEGIT_EVERY, "DDNS_FUZZ_EXAMPLES: at least 20 (both legitimate hosts get updated)"
    inst, port = fuzzed.instance, fuzzed.instance.http_port
    secrets = prepare(fuzzed)
    start = inst.git("rev-parse", "HEAD").strip()
    rng = random.Random(SEED)
    expected: dict[str, str] = {}          # label -> address the legitimate updates set
    snapshots: list[str] = []              # the dynamic records after each legitimate update
    failures: dict[str, tuple[int, int, bytes]] = {}
    legit_bad: list[str] = []
    answers: dict[int, int] = {}
    crashes = Crashes()
    logging.getLogger().addHandler(crashes)
    t0 = time.monotonic()
    try:
        for n in range(EXAMPLES):
            if n % LEGIT_EVERY == LEGIT_EVERY - 1:
                label, address, problem = legit_update(fuzzed, secrets, n // LEGIT_EVERY)
                legit_bad += [f"request {n}: {problem}"] if problem else []
                expected[label] = address
                snapshots.append(snapshot_of(expected))
                continue
            for _ in range(100):  # bounded: almost every draw is safe
                req = hostile_request(rng, secrets)
                if is_safe(req):
                    break
            else:
                pytest.fail("the generator kept drawing requests that could change an address")
            data = req.bytes(port, rng)
            reply = exchange(port, data)
            answers[reply.status] = answers.get(reply.status, 0) + 1
            # 501 is the answer HTTP prescribes for a transfer coding the server does not implement.
            refused_coding = reply.status == 501 and req.framing == "te-garbage"
            if (reply.status >= 500 and not refused_coding) or b"Traceback" in reply.body or b'File "' in reply.body:
                failures.setdefault(" ".join(req.shape), (n, reply.status, data[:300]))
    finally:
        logging.getLogger().removeHandler(crashes)
    elapsed = time.monotonic() - t0

    report = "\n".join(f"  {shape}\n    -> {status} (request {n}: {raw!r})"
                       for shape, (n, status, raw) in sorted(failures.items()))
    assert not failures, (f"{len(failures)} request shapes got a 5xx or a traceback "
                          f"(DDNS_FUZZ_SEED={SEED}, DDNS_FUZZ_EXAMPLES={EXAMPLES}):\n{report}")
    assert not crashes.records, f"exceptions logged (DDNS_FUZZ_SEED={SEED}): {crashes.records[:10]}"
    assert not legit_bad, legit_bad
    assert answers.get(-1, 0) <= EXAMPLES // 50, f"answers by status: {answers} in {elapsed:.0f}s"
    assert_only_legit_commits(inst, start, snapshots, expected)

    # ... and it still answers a legitimate update.
    assert fuzzed.update(HOST, secrets.host, "myip=203.0.113.99") in ((200, "good 203.0.113.99\n"), (200, "dnserr\n"))
    wait_until(lambda: inst.dig(HOST, "A") == ["203.0.113.99"], 30, what=f"{HOST} served as 203.0.113.99")
    wait_until(lambda: fuzzed.request("/healthz")[0] == 200, 30, what="/healthz 200")
