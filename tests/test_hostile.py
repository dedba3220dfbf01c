"""Hostile input over the real socket: every case gets a clear answer
and changes nothing -- no commit, the dynamic records and the rendered zone file
byte-identical, the same SOA serial served -- and nothing a client sends can
inject zone-file syntax.

The requests are written byte by byte on a raw socket, so control characters,
invalid UTF-8 and malformed headers reach the server exactly as a hostile
client would send them. One served instance is shared by the table-driven
cases (each case checks "nothing changed" on its own); the injection test
uses a fresh one.
"""
from __future__ import annotations

import base64
import ipaddress
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import REQUIRED_TOOLS, Instance, free_port, read_reply, require, start_serving
from ddns import cli, gitops, shards

ZONE = "dyn.example.test"
HOST = f"h.{ZONE}"             # alice's; A 192.0.2.1, AAAA 2001:db8::1 before the cases
MATE = f"mate.{ZONE}"          # alice's too
OTHER = f"other.{ZONE}"        # bob's
ZONE_DIR = ZONE
RENDERED = f"{ZONE}/{ZONE}.zone"
SHARDS = f"{ZONE}/dynamic"


# ---- raw HTTP ---------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def raw_request(port: int, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"",
                timeout: float = 30) -> Reply:
    """Send exactly these bytes (HTTP/1.1, Connection: close); read the whole reply."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1:" + str(port).encode(), b"Connection: close"]
    lines += [k + b": " + v for k, v in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading everything; its answer is still there
        reply = read_reply(s)
    head, _, rest = reply.partition(b"\r\n\r\n")
    head_lines = head.split(b"\r\n")
    status_line = head_lines[0].split(b" ")
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    hdrs = {}
    for line in head_lines[1:]:
        k, _, v = line.partition(b":")
        hdrs[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return Reply(status, hdrs, rest)


def b64(text: str | bytes) -> bytes:
    return base64.b64encode(text.encode() if isinstance(text, str) else text)


# ---- the shared instance ----------------------------------------------------------------
@dataclass
class Ctx:
    instance: Instance
    running: object
    secret: str
    mate_secret: str
    token: str

    def basic(self, user: str, password: str) -> bytes:
        return b"Basic " + b64(f"{user}:{password}")

    def state(self) -> tuple:
        """Everything a hostile request must not change."""
        inst = self.instance
        return (inst.commit_count(), inst.git("rev-parse", "HEAD").strip(),
                inst.tree_records(ZONE), (inst.repo / RENDERED).read_bytes(), inst.served_serial(),
                inst.dig(HOST, "A"), inst.dig(HOST, "AAAA"), inst.dig(OTHER, "A"))


def make_instance(directory: Path) -> Instance:
    """As conftest's ``instance`` fixture does, for a module-scoped instance."""
    require(*REQUIRED_TOOLS)
    http_port, dns_port, rndc_port = free_port(), free_port(), free_port()
    cli.init_instance(directory, http_port, dns_port, rndc_port,
                      extra={"security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False})
    return Instance(directory, directory / "ddns.toml", http_port, dns_port, rndc_port)


# Many cases fail authentication on purpose; a high limit keeps them from turning into "abuse".
OVERRIDES = {"security.max_failures": 100_000}


def prepare(inst: Instance, running) -> Ctx:
    secret = inst.add_host(HOST, "alice")
    mate_secret = inst.add_host(MATE, "alice")
    other_secret = inst.add_host(OTHER, "bob")
    token = inst.cli("user", "token", "alice", "--json").json()["token"]
    assert running.update(HOST, secret, "myip=192.0.2.1,2001:db8::1") == (200, "good 192.0.2.1,2001:db8::1\n")
    assert running.update(OTHER, other_secret, "myip=198.51.100.1") == (200, "good 198.51.100.1\n")
    return Ctx(inst, running, secret, mate_secret, token)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    inst = make_instance(tmp_path_factory.mktemp("hostile") / "inst")
    running = start_serving(inst, OVERRIDES)
    try:
        yield prepare(inst, running)
    finally:
        running.stop.set()
        running.thread.join(30)


# ---- the table --------------------------------------------------------------------------
AuthSpec = str | Callable[[Ctx], bytes] | None  # "host", "token", None (no header) or the raw header value


@dataclass(frozen=True)
class Case:
    id: str
    query: bytes                     # the raw target after "/nic/update?"
    status: int
    body: str | None                 # None: any body (the server refused before the app)
    auth: AuthSpec = "host"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    method: bytes = b"GET"
    form: bytes = b""


def q(text: str) -> bytes:
    return text.encode("latin-1")


def hostname(value: str, myip: str = "192.0.2.1") -> bytes:
    return q(f"hostname={value}&myip={myip}")


def myip(value: str) -> bytes:
    return q(f"myip={value}")


NOCHG = "nochg 192.0.2.1\n"
LONG_NAME = ".".join(["a" * 60] * 5) + "." + ZONE          # > 253 characters
LABEL_64 = "a" * 64 + "." + ZONE

CASES = [
    # -- hostnames -------------------------------------------------------------------------
    Case("wildcard", hostname(f"*.{ZONE}"), 200, "notfqdn\n"),
    Case("wildcard-encoded", hostname(f"%2A.{ZONE}"), 200, "notfqdn\n"),
    Case("empty-label", hostname(f"a..b.{ZONE}"), 200, "notfqdn\n"),
    Case("leading-dot", hostname(f".h.{ZONE}"), 200, "notfqdn\n"),
    Case("trailing-garbage", hostname(f"h.{ZONE}%2Fx"), 200, "notfqdn\n"),
    Case("trailing-bang", hostname(f"h.{ZONE}!"), 200, "notfqdn\n"),
    Case("300-chars", hostname(LONG_NAME), 200, "notfqdn\n"),
    Case("64-char-label", hostname(LABEL_64), 200, "notfqdn\n"),
    Case("unicode-idn-unregistered", hostname(f"h%C3%A9.{ZONE}"), 200, "nohost\n"),
    Case("unicode-rtl-override", hostname(f"h%E2%80%AE.{ZONE}"), 200, "notfqdn\n"),
    Case("unicode-fullwidth-dot", hostname(f"h%E3%80%82{ZONE}"), 200, "notfqdn\n"),
    Case("underscore-srv", hostname(f"_srv.{ZONE}"), 200, "notfqdn\n"),
    Case("underscore-tcp", hostname(f"_sip._tcp.{ZONE}"), 200, "notfqdn\n"),
    Case("hyphen-edges", hostname(f"-h-.{ZONE}"), 200, "notfqdn\n"),
    Case("punycode-prefix-only", hostname(f"xn--.{ZONE}"), 200, "notfqdn\n"),
    Case("newline-in-label", hostname(f"h%0A.{ZONE}"), 200, "notfqdn\n"),
    Case("newline-then-record", hostname(f"h.{ZONE}%0Aevil%2060%20IN%20A%20192.0.2.66"), 200, "notfqdn\n"),
    Case("cr-in-label", hostname(f"h%0D.{ZONE}"), 200, "notfqdn\n"),
    Case("semicolon", hostname(f"h%3Bx.{ZONE}"), 200, "notfqdn\n"),
    Case("include-directive", hostname("%24INCLUDE%20%2Fetc%2Fpasswd"), 200, "notfqdn\n"),
    Case("include-after-newline", hostname(f"h.{ZONE}%0A%24INCLUDE%20%2Fetc%2Fpasswd"), 200, "notfqdn\n"),
    Case("origin-directive", hostname("%24ORIGIN%20evil.example."), 200, "notfqdn\n"),
    Case("double-quotes", hostname(f"%22h%22.{ZONE}"), 200, "notfqdn\n"),
    Case("single-quote", hostname(f"h%27.{ZONE}"), 200, "notfqdn\n"),
    Case("parentheses", hostname(f"h%28x%29.{ZONE}"), 200, "notfqdn\n"),
    Case("at-sign-alone", hostname("%40"), 200, "notfqdn\n"),
    Case("at-sign-in-name", hostname(f"h%40{ZONE}"), 200, "notfqdn\n"),
    Case("space-in-name", hostname(f"h%20x.{ZONE}"), 200, "notfqdn\n"),
    Case("tab-in-name", hostname(f"h%09x.{ZONE}"), 200, "notfqdn\n"),
    Case("backslash", hostname(f"h%5C.{ZONE}"), 200, "notfqdn\n"),
    Case("nul", hostname(f"h%00.{ZONE}"), 200, "notfqdn\n"),
    Case("invalid-utf8", hostname(f"%FF%FE.{ZONE}"), 200, "notfqdn\n"),
    # raw (not percent-encoded) bytes >= 0x80 in the target: the HTTP server refuses them
    Case("invalid-utf8-raw-bytes", b"hostname=\xff\xfe." + q(ZONE) + b"&myip=192.0.2.1", 400, None),
    Case("not-fqdn", hostname("foo"), 200, "notfqdn\n"),
    Case("only-dots", hostname(".."), 200, "notfqdn\n"),
    Case("empty-list-items", hostname(","), 200, "notfqdn\nnotfqdn\n"),
    Case("list-with-wildcard", hostname(f"h.{ZONE},*.{ZONE}"), 200, NOCHG + "notfqdn\n"),
    Case("zone-apex", hostname(ZONE), 200, "nohost\n"),
    Case("below-a-host", hostname(f"x.h.{ZONE}"), 200, "nohost\n"),
    Case("outside-every-zone", hostname("example.org"), 200, "nohost\n"),
    Case("another-users-host", hostname(OTHER), 200, "nohost\n"),
    Case("token-another-users-host", hostname(f"h.{ZONE},{OTHER}"), 200, NOCHG + "nohost\n", auth="token"),
    Case("token-include", hostname("%24INCLUDE%20%2Fetc%2Fpasswd"), 200, "notfqdn\n", auth="token"),
    Case("token-wildcard", hostname(f"*.{ZONE}"), 200, "notfqdn\n", auth="token"),
    Case("token-apex", hostname(ZONE), 200, "nohost\n", auth="token"),
    Case("token-newline", hostname(f"mate%0A.{ZONE}"), 200, "notfqdn\n", auth="token"),
    # harmless spellings of the host itself: answered for the host, nothing changes
    Case("uppercase-trailing-dot", hostname(f"H.{ZONE.upper()}."), 200, NOCHG),
    Case("surrounding-whitespace", hostname(f"%20h.{ZONE}%0D%0A"), 200, NOCHG),
    # -- addresses ---------------------------------------------------------------------------
    Case("octet-256", myip("256.1.1.1"), 200, "badip\n"),
    Case("three-octets", myip("1.2.3"), 200, "badip\n"),
    Case("five-octets", myip("192.0.2.1.5"), 200, "badip\n"),
    Case("leading-zeros", myip("192.000.002.001"), 200, "badip\n"),
    Case("hex-octets", myip("0xc0.0.2.1"), 200, "badip\n"),
    Case("integer-address", myip("3221225985"), 200, "badip\n"),
    Case("trailing-dot-address", myip("192.0.2.1."), 200, "badip\n"),
    Case("mapped-invalid", myip("::ffff:256.1.1.1"), 200, "badip\n"),
    Case("mapped-loopback", myip("::ffff:127.0.0.1"), 200, "badip\n"),
    Case("mapped-unspecified", myip("::ffff:0.0.0.0"), 200, "badip\n"),
    Case("mapped-documentation-is-ipv4", myip("::ffff:192.0.2.1"), 200, NOCHG),
    Case("zone-id", myip("fe80::1%25eth0"), 200, "badip\n"),
    Case("zone-id-global", myip("2001:db8::1%25eth0"), 200, "badip\n"),
    Case("prefix-v4", myip("192.0.2.0%2F24"), 200, "badip\n"),
    Case("prefix-v6", myip("2001:db8::%2F64"), 200, "badip\n"),
    Case("bracketed-v6", myip("%5B2001:db8::1%5D"), 200, "badip\n"),
    Case("double-colon-twice", myip("2001:db8::1::2"), 200, "badip\n"),
    Case("unspecified-v4", myip("0.0.0.0"), 200, "badip\n"),
    Case("unspecified-v6", myip("::"), 200, "badip\n"),
    Case("multicast-v4", myip("224.0.0.1"), 200, "badip\n"),
    Case("broadcast", myip("255.255.255.255"), 200, "badip\n"),
    Case("reserved-240", myip("240.0.0.1"), 200, "badip\n"),
    Case("loopback-v4", myip("127.0.0.1"), 200, "badip\n"),
    Case("loopback-v6", myip("::1"), 200, "badip\n"),
    Case("link-local-v4", myip("169.254.1.1"), 200, "badip\n"),
    Case("link-local-v6", myip("fe80::1"), 200, "badip\n"),
    Case("multicast-v6", myip("ff02::1"), 200, "badip\n"),
    Case("two-ipv4", myip("192.0.2.1,192.0.2.2"), 200, "badip\n"),
    Case("two-ipv6", myip("2001:db8::1,2001:db8::2"), 200, "badip\n"),
    Case("good-and-bad", myip("192.0.2.1,256.0.0.1"), 200, "badip\n"),
    Case("include-after-address", myip("192.0.2.1%0A%24INCLUDE%20%2Fetc%2Fpasswd"), 200, "badip\n"),
    Case("record-after-address", myip("192.0.2.1%0Aevil%20IN%20A%20192.0.2.66"), 200, "badip\n"),
    Case("comment-after-address", myip("192.0.2.1%20%3B%20x"), 200, "badip\n"),
    Case("paren-after-address", myip("192.0.2.1%20%28"), 200, "badip\n"),
    Case("nul-in-address", myip("192.0.2.1%00"), 200, "badip\n"),
    Case("invalid-utf8-address", myip("%FF%FE"), 200, "badip\n"),
    Case("2k-value", myip("1" * 2000), 200, "badip\n"),
    Case("10k-value", myip("1" * 10_000), 414, None),
    Case("only-comma", myip(","), 200, "badip\n"),
    Case("empty-is-client-loopback", myip(""), 200, "badip\n"),
    Case("myipv6-garbage", q("myipv6=2001:db8::1%0A%3B"), 200, "badip\n"),
    Case("myipv6-repeated-family", q("myip=2001:db8::1&myipv6=2001:db8::2"), 200, "badip\n"),
    Case("myipv6-holding-ipv4", q("myipv6=192.0.2.1"), 200, "badip\n"),
    # -- query strings -----------------------------------------------------------------------
    Case("repeated-myip-different", q("myip=192.0.2.1&myip=192.0.2.2"), 200, "badip\n"),
    Case("repeated-myip-same", q("myip=192.0.2.1&myip=192.0.2.1"), 200, NOCHG),
    Case("repeated-hostname-different", q(f"hostname=h.{ZONE}&hostname={OTHER}&myip=192.0.2.1"), 200, "notfqdn\n"),
    Case("huge-query-string", q("x=" + "a" * 9000 + "&myip=192.0.2.2"), 414, None),
    Case("huge-request-line", q("x=" + "a" * 40_000 + "&myip=192.0.2.2"), 414, None),
    Case("bad-percent-myip", myip("%ZZ"), 200, "badip\n"),
    Case("truncated-percent-myip", myip("192.0.2.2%"), 200, "badip\n"),
    Case("bad-percent-hostname", hostname(f"h%G0.{ZONE}"), 200, "notfqdn\n"),
    Case("truncated-percent-hostname", hostname(f"h.{ZONE}%2"), 200, "notfqdn\n"),
    Case("raw-space-in-target", q(f"hostname=h x.{ZONE}&myip=192.0.2.2"), 400, None),
    Case("raw-nul-in-target", b"myip=192.0.2.2\x00", 400, None),  # not a valid request line
    Case("raw-nul-in-hostname", b"hostname=h\x00." + q(ZONE) + b"&myip=192.0.2.1", 400, None),
    Case("raw-high-bytes-in-myip", b"myip=192.0.2.2\xff", 400, None),
    Case("unknown-params-with-junk", q("myip=192.0.2.1&system=%FF&wildcard=%0A%24INCLUDE&mx=%3B"), 200, NOCHG),
    # -- headers ---------------------------------------------------------------------------
    Case("auth-bearer", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: b"Bearer " + c.token.encode()),
    Case("auth-digest", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: b'Digest username="' + HOST.encode() + b'"'),
    Case("auth-basic-no-data", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: b"Basic"),
    Case("auth-malformed-base64", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: b"Basic !!not*base64=="),
    Case("auth-base64-bad-padding", myip("192.0.2.2"), 401, "badauth\n",
         auth=lambda c: b"Basic " + b64(f"{HOST}:{c.secret}")[:-1]),
    Case("auth-no-colon", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: b"Basic " + b64(HOST + c.secret)),
    Case("auth-empty-username", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic("", c.secret)),
    Case("auth-empty-secret", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic(HOST, "")),
    Case("auth-unicode-secret", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic(HOST, "sécret-☃-" + c.secret)),
    Case("auth-secret-plus-nul", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic(HOST, c.secret + "\x00")),
    Case("auth-invalid-utf8", myip("192.0.2.2"), 401, "badauth\n",
         auth=lambda c: b"Basic " + b64(HOST.encode() + b":\xff\xfe" + c.secret.encode())),
    Case("auth-newline-username", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic(HOST + "\n", c.secret)),
    Case("auth-wildcard-username", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic(f"*.{ZONE}", c.secret)),
    Case("auth-other-hosts-secret", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic(HOST, c.mate_secret)),
    Case("auth-token-as-host-secret", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: c.basic(HOST, c.token)),
    Case("auth-huge-header", myip("192.0.2.2"), 401, "badauth\n", auth=lambda c: b"Basic " + b64("x" * 9000 + ":y")),
    Case("auth-header-over-server-limit", myip("192.0.2.2"), 431, None,
         auth=lambda c: b"Basic " + b64("x" * 20_000 + ":" + c.secret)),
    Case("huge-user-agent", myip("192.0.2.1"), 200, NOCHG, headers=((b"User-Agent", b"A" * 10_000),)),
    Case("forwarded-from-untrusted", b"", 200, "badip\n", headers=((b"X-Forwarded-For", b"192.0.2.77"),)),
    Case("real-ip-garbage", b"", 200, "badip\n", headers=((b"X-Real-IP", b"192.0.2.77 $INCLUDE /etc/passwd"),)),
    Case("header-bare-lf", b"", 400, None, headers=((b"X-Real-IP", b"192.0.2.77\n$INCLUDE /etc/passwd"),)),
    Case("header-obs-fold", b"", 200, "badip\n", headers=((b"X-Forwarded-For", b"192.0.2.77\r\n $INCLUDE"),)),
    # -- forms ---------------------------------------------------------------------------------
    Case("post-form-include", b"", 200, "badip\n", method=b"POST", form=q("myip=192.0.2.1%0A%24INCLUDE%20%2Fetc%2Fpasswd")),
    Case("post-form-wildcard", b"", 200, "notfqdn\n", method=b"POST", form=q(f"hostname=*.{ZONE}&myip=192.0.2.2")),
    Case("post-query-and-form-disagree", myip("192.0.2.1"), 200, "badip\n", method=b"POST", form=q("myip=192.0.2.2")),
    Case("post-huge-body", b"", 413, None, method=b"POST", form=q("myip=192.0.2.2&x=" + "a" * 70_000)),
]


def send(c: Ctx, case: Case) -> Reply:
    headers: list[tuple[bytes, bytes]] = [(b"User-Agent", b"hostile-test/1.0")]
    if case.auth == "host":
        headers.append((b"Authorization", c.basic(HOST, c.secret)))
    elif case.auth == "token":
        headers.append((b"Authorization", c.basic("alice", c.token)))
    elif callable(case.auth):
        headers.append((b"Authorization", case.auth(c)))
    for k, v in case.headers:
        headers = [(hk, hv) for hk, hv in headers if hk.lower() != k.lower()] + [(k, v)]
    if case.form:
        headers.append((b"Content-Type", b"application/x-www-form-urlencoded"))
    target = b"/nic/update" + (b"?" + case.query if case.query else b"")
    return raw_request(c.instance.http_port, case.method, target, headers, case.form)


def test_enough_cases():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_changes_nothing(ctx, case):
    before = ctx.state()
    reply = send(ctx, case)
    assert reply.status == case.status, reply
    if case.body is not None:
        assert reply.text == case.body
        assert reply.headers.get("content-type", "").startswith("text/plain")
    if case.status == 401:
        assert reply.headers.get("www-authenticate") == 'Basic realm="ddns"'
    assert ctx.state() == before
    # the service is still up and answers the next well-formed request as before
    assert ctx.running.update(HOST, ctx.secret, "myip=192.0.2.1") == (200, NOCHG)


# ---- zone-file injection -------------------------------------------------------------------
DYNAMIC_LINE = re.compile(r"^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?) (A|AAAA) (\S+)\Z")


def check_zone_files(inst: Instance) -> None:
    """The zone as named serves it (the head with its shards assembled) holds exactly the lines the service
    writes, and named accepts it; the head includes only the service's own shard files."""
    zone_dir = inst.repo / ZONE_DIR
    dynamic = inst.tree_records(ZONE)
    static = (zone_dir / "static.zone").read_text()
    head = (zone_dir / f"{ZONE}.zone").read_text()
    assert inst.records(ZONE) == dynamic
    assert inst.git("show", f"HEAD:{RENDERED}") == head
    assert inst.git("status", "--porcelain") == ""
    includes = [ln for ln in head.splitlines() if ln.upper().startswith("$INCLUDE")]
    assert includes == [f"$INCLUDE {p}" for p in shards.included(head)], includes
    assert sorted(shards.included(head)) == sorted(f"dynamic/{p.name}" for p in (zone_dir / "dynamic").iterdir())
    rendered = gitops.committed_zone(inst.repo, ZONE)

    expected_dynamic = []
    for line in dynamic.splitlines():
        m = DYNAMIC_LINE.match(line)
        assert m, f"unexpected line in the dynamic records: {line!r}"
        label, rtype, text = m.groups()
        addr = ipaddress.ip_address(text)
        assert str(addr) == text and (addr.version == 4) == (rtype == "A")
        expected_dynamic.append(f"{label} {rtype} {text}")
    for shard in (zone_dir / "dynamic").iterdir():
        lines = shard.read_text().splitlines()
        assert lines == sorted(lines), shard.name

    # Classify every line without relying on the template's wording: comments, the
    # directives the service writes, SOA / NS, verbatim static.zone lines and one
    # line per dynamic record -- nothing else.
    static_lines = {ln for ln in static.splitlines() if ln.strip()}
    dynamic_rendered = []
    for ln in rendered.splitlines():
        if not ln.strip() or ln in static_lines:
            continue
        if ln.startswith("$"):
            assert ln == f"$ORIGIN {ZONE}." or re.fullmatch(r"\$TTL \d+", ln), f"unexpected directive: {ln!r}"
        elif re.fullmatch(r"[a-z0-9-]+ (A|AAAA) \S+", ln):
            dynamic_rendered.append(ln)
        else:
            assert (ln.startswith(";")
                    or re.fullmatch(r"@ IN SOA ns1\.dyn\.example\.test\. hostmaster\.dyn\.example\.test\. "
                                    r"\( \d+ \d+ \d+ \d+ \d+ \)", ln)
                    or re.fullmatch(r"@ IN NS [a-z0-9.-]+\.", ln)), f"unexpected line in the zone file: {ln!r}"
    assert sorted(dynamic_rendered) == expected_dynamic
    for bad in ("$INCLUDE", "passwd", "evil", "\x00", '"'):
        assert bad not in rendered

    require("named-checkzone")
    proc = subprocess.run(["named-checkzone", "-q", "-w", str(zone_dir), ZONE, f"{ZONE}.zone"], capture_output=True,
                          text=True, timeout=60)  # the head as it is, its includes read from the zone directory
    assert proc.returncode == 0, proc.stdout + proc.stderr
    serial = int(re.search(r"\( (\d+) ", rendered).group(1))
    assert inst.served_serial() == serial


def test_zone_valid_and_served_after_the_table(ctx):
    check_zone_files(ctx.instance)
    assert ctx.instance.dig(HOST, "A") == ["192.0.2.1"]
    assert ctx.instance.dig(HOST, "AAAA") == ["2001:db8::1"]
    assert ctx.instance.dig("evil." + ZONE, "A") == []


INJECTIONS = [
    "\n$INCLUDE /etc/passwd", "\n$ORIGIN evil.example.", "\n$TTL 0", "\nevil 60 IN A 192.0.2.66", "; comment",
    " ( 1 2 3 )", '"quoted"', "\\010", "\r\n@ IN NS evil.example.", "\x00", "*", "@", "..", " IN TXT x",
]


def test_zone_file_injection_is_impossible(running):
    """Injection attempts through every field, mixed with accepted updates: the files
    hold only well-formed service lines and named serves only the accepted data."""
    inst = running.instance
    secret = inst.add_host(HOST, "alice")
    inst.add_host(MATE, "alice")
    token = inst.cli("user", "token", "alice", "--json").json()["token"]
    port = inst.http_port
    auth = b"Basic " + b64(f"{HOST}:{secret}")
    from urllib.parse import quote

    assert running.update(HOST, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    before = inst.commit_count()
    for i, payload in enumerate(INJECTIONS):
        enc = quote(payload, safe="")
        for query, user_auth in (
            (f"hostname=h{enc}.{ZONE}&myip=192.0.2.11", auth),
            (f"hostname=h.{ZONE}{enc}&myip=192.0.2.11", auth),
            (f"hostname={MATE}{enc}&myip=192.0.2.11", b"Basic " + b64(f"alice:{token}")),
            (f"myip=192.0.2.11{enc}", auth),
            (f"myip=2001:db8::11{enc}", auth),
            (f"myipv6={enc}2001:db8::11", auth),
            (f"myip=192.0.2.11&offline={enc}&system={enc}", b"Basic " + b64(f"{HOST}{payload}:{secret}")),
        ):
            reply = raw_request(port, b"GET", b"/nic/update?" + query.encode(), [(b"Authorization", user_auth)])
            assert reply.status in (200, 400, 401), (payload, query, reply)
            assert not reply.text.startswith(("good", "nochg")), (payload, query, reply)
        # an accepted update between the attempts: the file keeps being written
        assert running.update(HOST, secret, f"myip=192.0.2.{20 + i}") == (200, f"good 192.0.2.{20 + i}\n")
    assert inst.commit_count() == before + len(INJECTIONS)
    assert running.update("alice", token, f"hostname={MATE}&myip=2001:db8::99") == (200, "good 2001:db8::99\n")

    check_zone_files(inst)
    assert inst.tree_records(ZONE) == (
        f"h A 192.0.2.{20 + len(INJECTIONS) - 1}\nmate AAAA 2001:db8::99\n")
    assert inst.dig(HOST, "A") == [f"192.0.2.{20 + len(INJECTIONS) - 1}"]
    assert inst.dig(HOST, "AAAA") == []
    assert inst.dig("evil." + ZONE, "A") == []
    assert inst.dig(ZONE, "NS") == [f"ns1.{ZONE}."]
    # every shard that was ever committed is well-formed
    for commit in inst.git("rev-list", "HEAD", "--", SHARDS).split():
        for line in inst.records(ZONE, commit).splitlines():
            assert DYNAMIC_LINE.match(line), (commit, line)
