"""The hostile HTTP requests of tests/test_fuzz_http.py: a seeded generator and a raw-socket exchange.

Each request is built from random parts (method, target, query, headers, body,
framing) and keeps a ``shape``, the list of parts chosen, so that a failure
report groups requests by what they are rather than by their random bytes.
``is_safe`` decodes a request the way the server does (bottle's query and
form parsing, then ddns.web's UTF-8 step) and refuses one that carries valid
credentials together with an address the service could accept.
"""
from __future__ import annotations

import base64
import ipaddress
import random
import re
import socket
import urllib.parse
from dataclasses import dataclass, field

from conftest import read_reply

ZONE = "dyn.example.test"
HOST, MATE, FUZZ_HOST = f"h.{ZONE}", f"mate.{ZONE}", f"fz.{ZONE}"
REQUEST_TIMEOUT = 15.0
MAX_REPLY = 1 << 20


# ---- raw HTTP -------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int          # 0: the server closed without an answer; -1: no answer within the timeout
    body: bytes


def exchange(port: int, data: bytes) -> Reply:
    """Send DATA, close our side (so a short body ends), read the reply; bounded in time and size."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer (and close) before reading everything
            reply = read_reply(s, MAX_REPLY)
    except socket.timeout:
        return Reply(-1, b"")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return Reply(int(match[1]) if match else 0, reply.partition(b"\r\n\r\n")[2])


# ---- the corpus ---------------------------------------------------------------------------------
@dataclass
class Secrets:
    host: str            # HOST's secret (alice)
    alice_token: str     # alice's account token (dyndns2 user:token)
    fuzz_token: str      # fuzz's account token
    api_token: str       # fuzz's personal API token
    cookie: str          # a logged-in portal session of fuzz
    csrf: str            # its CSRF token


@dataclass
class Request:
    shape: list[str]                              # what kind of request this is (for the failure report)
    method: bytes = b"GET"
    path: bytes = b"/"
    query: list[bytes] = field(default_factory=list)   # raw name=value pairs
    headers: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    body: bytes = b""
    framing: str = "length"                       # how the body is delimited
    valid_auth: bool = False                      # carries credentials that could change DNS

    def target(self) -> bytes:
        return self.path + (b"?" + b"&".join(self.query) if self.query else b"")

    def bytes(self, port: int, rng: random.Random) -> bytes:
        lines = [self.method + b" " + self.target() + b" HTTP/1.1"]
        headers = list(self.headers)
        if not any(k.lower() == b"host" for k, _ in headers) and "no-host" not in self.shape:
            headers.insert(0, (b"Host", b"127.0.0.1:%d" % port))
        headers.append((b"Connection", b"close"))
        headers += framing_headers(self.framing, self.body, rng)
        lines += [k if v is None else k + b": " + v for k, v in headers]  # None: a line without a colon
        return b"\r\n".join(lines) + b"\r\n\r\n" + frame(self.framing, self.body, rng)


def framing_headers(framing: str, body: bytes, rng: random.Random) -> list[tuple[bytes, bytes]]:
    n = len(body)
    return {
        "length": [(b"Content-Length", b"%d" % n)] if body else [],
        "none": [],
        "long": [(b"Content-Length", b"%d" % (n + rng.randint(1, 5000)))],
        "short": [(b"Content-Length", b"%d" % max(0, n - rng.randint(1, max(1, n))))],
        "negative": [(b"Content-Length", b"-1")],
        "garbage": [(b"Content-Length", rng.choice([b"abc", b"1e3", b" 12 ", b"0x10", b"\xff", b""]))],
        "huge": [(b"Content-Length", b"999999999999")],
        "twice": [(b"Content-Length", b"%d" % n), (b"Content-Length", b"%d" % (n + 1))],
        "chunked": [(b"Transfer-Encoding", b"chunked")],
        "bad-chunk": [(b"Transfer-Encoding", b"chunked")],
        "unterminated-chunk": [(b"Transfer-Encoding", b"chunked")],
        "chunked-and-length": [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"%d" % n)],
        "te-garbage": [(b"Transfer-Encoding", rng.choice([b"gzip", b"chunked, gzip", b"identity", b"\xffchunked"]))],
    }[framing]


def frame(framing: str, body: bytes, rng: random.Random) -> bytes:
    if framing in ("chunked", "chunked-and-length"):
        pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
        return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    if framing == "bad-chunk":
        return rng.choice([b"zz\r\n", b"ffffffffffffffffff\r\n", b"5;ext=\xff\r\nabcde\r\n0\r\n\r\n",
                           b"-5\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", b"\r\n\r\n"]) + body
    if framing == "unterminated-chunk":
        return b"%x\r\n%s" % (len(body) + 10, body)
    return body


HOSTILE_VALUES = [
    "", " ", "*", "..", ".", ",", "@", "a" * 300, "\x00", "$INCLUDE /etc/passwd", "\n$ORIGIN evil.", "é", "☃",
    "\u202e", "%", "h.dyn.example.test", "H.DYN.EXAMPLE.TEST.", FUZZ_HOST, MATE, "192.0.2.1", "2001:db8::1",
    "::ffff:192.0.2.1", "127.0.0.1", "256.1.1.1", "1" * 2000, "192.0.2.1,2001:db8::2", "<script>", "'\"", "\\",
    "../../etc/passwd", "x" * 9000, "\r\nX-Injected: 1", "😀", "\ufeff", "\x7f", "null", "[]", "{}", "-1", "0",
]
CHARS = "abz09-._*@$;()\"'\\ \t\n\r\x00\x01\x7f%/:,=&#?+[]{}<>`|~!éß☃\u202e\u3002\uffff😀"
NAMES = ["hostname", "myip", "myipv6", "system", "wildcard", "mx", "offline", "next", "code", "state",
         "logged_out", "x", "", "myip[]", "MYIP", "csrf_token", "name", "domain", "comment", "address", "type",
         "action", "username", "password", "public", "groups", "ttl", "zone"]
BAD_PERCENT = [b"%", b"%Z", b"%ZZ", b"%G0", b"%%", b"%2", b"%00", b"%FF", b"%C3%28", b"%E2%82", b"%u2603", b"%0A"]
RAW_BYTES = [b"\x00", b"\xff", b"\x80", b" ", b"#", b"\t", b"\x7f"]


def hostile_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(HOSTILE_VALUES)
    return "".join(rng.choice(CHARS) for _ in range(rng.choice([1, 5, 20, 60, 300])))


def encode(text: str, rng: random.Random) -> bytes:
    """TEXT percent-encoded so the server decodes exactly TEXT (in one of several spellings)."""
    if rng.random() < 0.2:
        return "".join("%%%02X" % b for b in text.encode()).encode()
    return urllib.parse.quote_plus(text, safe="" if rng.random() < 0.5 else ":,@").encode()


def corrupt(raw: bytes, rng: random.Random) -> bytes:
    """RAW with a bad percent-encoding or a raw byte the server must refuse or keep literally."""
    at = rng.randint(0, len(raw))
    return raw[:at] + rng.choice(BAD_PERCENT + RAW_BYTES) + raw[at:]


def query_pairs(rng: random.Random, shape: list[str]) -> list[bytes]:
    kind = rng.choice(["params", "params", "params", "repeated", "huge", "bare", "empty"])
    shape.append("q:" + kind)
    if kind == "empty":
        return [rng.choice([b"", b"&", b"&&", b"=", b"?", b";"])]
    if kind == "huge":
        return [b"myip=" + b"1" * rng.choice([1100, 9000, 40_000])]
    pairs = []
    for _ in range(rng.randint(1, 6)):
        name, value = rng.choice(NAMES), hostile_text(rng)
        raw = encode(name, rng) + (b"" if kind == "bare" else b"=" + encode(value, rng))
        pairs.append(corrupt(raw, rng) if rng.random() < 0.3 else raw)
    if kind == "repeated":
        pairs += [pairs[0]] * rng.randint(1, 30) + [pairs[0].split(b"=")[0] + b"=" + encode(hostile_text(rng), rng)]
    return pairs


def fqdn_segment(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.3:
        return rng.choice([FUZZ_HOST, HOST, MATE, "nope." + ZONE, ZONE]).encode()
    if choice < 0.8:
        return encode(hostile_text(rng), rng).replace(b"+", b"%20")
    return corrupt(rng.choice([FUZZ_HOST, "x"]).encode(), rng)


PATHS = ["/nic/update"] * 6 + [
    "/nic/update/", "/nic//update", "/NIC/UPDATE", "/myip", "/healthz", "/", "/login", "/login/oidc",
    "/login/callback", "/logout", "/hosts/new", "/hosts/{f}", "/hosts/{f}/secret", "/hosts/{f}/delete",
    "/hosts/{f}/comment", "/hosts/{f}/address", "/tokens", "/tokens/1/delete", "/tokens/{f}/delete",
    "/admin/domains", "/admin/domains/{f}", "/admin/status", "/static/style.css", "/static/{f}",
    "/static/../../../etc/passwd", "/favicon.ico", "/hooks/zones", "/{f}", "*",
    "/hosts/{f}/keys", "/hosts/{f}/keys/{f}/secret", "/hosts/{f}/keys/{f}/delete", "/admin/keys",
    "/admin/keys/{f}/secret", "/admin/keys/{f}/delete",
] + ["/api/v1/openapi.json", "/api/v1/domains", "/api/v1/hosts", "/api/v1/hosts/{f}", "/api/v1/hosts/{f}/secret",
     "/api/v1/hosts/{f}/keys", "/api/v1/hosts/{f}/keys/{f}", "/api/v1/{f}"] * 3
METHODS = [b"GET"] * 5 + [b"POST"] * 5 + [b"HEAD", b"PUT", b"DELETE", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
                                          b"CONNECT", b"get", b"G\x00T", b"\xffGET", b"X" * 300, b"PROPFIND"]
# Portal forms a valid CSRF token may go to: none of them can change DNS or end the session.
CSRF_PATHS = ["/hosts/new", f"/hosts/{FUZZ_HOST}/comment", "/tokens", f"/hosts/{FUZZ_HOST}/secret", "/login",
              f"/hosts/{FUZZ_HOST}/keys"]


AUTH_KINDS = ["none", "none", "host", "alice-token", "fuzz-token", "bearer", "bearer-garbage", "basic-garbage",
              "basic-non-utf8", "huge", "raw-bytes", "twice"]
COOKIE_KINDS = ["none", "none", "valid", "garbage", "non-utf8", "huge", "many"]
BODY_KINDS = ["none", "none", "form", "form", "multipart", "multipart", "json", "json", "json-deep", "json-surrogate",
              "bytes"]


def auth_header(rng: random.Random, s: Secrets, req: Request, kinds: list[str] = AUTH_KINDS) -> None:
    kind = rng.choice(kinds)
    req.shape.append("auth:" + kind)
    b64 = lambda t: base64.b64encode(t if isinstance(t, bytes) else t.encode())  # noqa: E731
    value = {
        "none": None,
        "host": b"Basic " + b64(f"{HOST}:{s.host}"),
        "alice-token": b"Basic " + b64(f"alice:{s.alice_token}"),
        "fuzz-token": b"Basic " + b64(f"fuzz:{s.fuzz_token}"),
        "bearer": b"Bearer " + s.api_token.encode(),
        "bearer-garbage": b"Bearer " + encode(hostile_text(rng), rng),
        "basic-garbage": b"Basic " + rng.choice([b"!!", b"=", b"", b64("nocolon"), b64(":"), b"YQ"]),
        "basic-non-utf8": b"Basic " + b64(b"\xff\xfe:\xc3\x28" + s.host.encode()),
        "huge": rng.choice([b"Basic ", b"Bearer "]) + b"A" * rng.choice([3000, 9000, 20_000]),
        "raw-bytes": rng.choice([b"Basic ", b"Bearer "]) + bytes(rng.randrange(128, 256) for _ in range(20)),
        "twice": b"Basic " + b64(f"{HOST}:{s.host}"),
    }[kind]
    if value is not None:
        req.headers.append((b"Authorization", value))
    if kind == "twice":
        req.headers.append((b"Authorization", b"Bearer " + s.api_token.encode()))
    req.valid_auth = kind in ("host", "alice-token", "fuzz-token", "twice")


def other_headers(rng: random.Random, s: Secrets, req: Request, cookie_kinds: list[str] = COOKIE_KINDS) -> None:
    cookie = rng.choice(cookie_kinds)
    req.shape.append("cookie:" + cookie)
    cookies = {"valid": s.cookie.encode(), "garbage": b"ddns_session=" + encode(hostile_text(rng), rng),
               "non-utf8": b"ddns_session=\xff\xfe\xc3\x28", "huge": b"ddns_session=" + b"a" * 12_000,
               "many": b"; ".join(b"c%d=%d" % (i, i) for i in range(300))}
    if cookie in cookies:
        req.headers.append((b"Cookie", cookies[cookie]))
    extra = rng.choice(["none", "none", "ua-non-utf8", "ua-huge", "xff", "accept-html", "host-twice", "no-host",
                        "host-garbage", "non-utf8-value", "bad-name", "no-colon", "obs-fold", "many", "huge-header"])
    req.shape.append("hdr:" + extra)
    junk = {
        "ua-non-utf8": [(b"User-Agent", b"curl/\xff\xfe\x80")],
        "ua-huge": [(b"User-Agent", b"u" * 15_000)],
        "xff": [(b"X-Forwarded-For", encode(hostile_text(rng), rng)), (b"X-Real-IP", b"\xff"),
                (b"X-Forwarded-Proto", b"https")],
        "accept-html": [(b"Accept", b"text/html")],
        "host-twice": [(b"Host", b"127.0.0.1"), (b"Host", b"evil.example")],
        "no-host": [],
        "host-garbage": [(b"Host", rng.choice([b"", b"\xff", b"a" * 3000, b"[::1", b"x:y:z"]))],
        "non-utf8-value": [(rng.choice([b"Accept-Language", b"Referer", b"Origin", b"X-Gitlab-Token", b"Accept"]),
                            b"\xc3\x28\xff\xfe\xa0")],
        "bad-name": [(b"X-\xffBad", b"1")],
        "no-colon": [(b"NoColonHere", None)],
        "obs-fold": [(b"X-Folded", b"a\r\n b")],
        "many": [(b"X-H%d" % i, b"v") for i in range(150)],
        "huge-header": [(b"X-Huge", b"h" * 20_000)],
    }.get(extra, [])
    if extra == "no-host":
        req.shape.append("no-host")
    req.headers += junk


def body_of(rng: random.Random, s: Secrets, req: Request, path: str, kinds: list[str] = BODY_KINDS) -> None:
    kind = rng.choice(kinds)
    req.shape.append("body:" + kind)
    ctype = None
    if kind == "form":
        pairs = query_pairs(rng, req.shape)
        if "cookie:valid" in req.shape and path in CSRF_PATHS:
            pairs.append(b"csrf_token=" + s.csrf.encode())
        req.body, ctype = b"&".join(pairs), b"application/x-www-form-urlencoded"
    elif kind == "multipart":
        boundary = b"b0undary"
        parts = []
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(NAMES).encode()
            value = rng.choice([hostile_text(rng).encode(), "☃€日本".encode(), b"\xff\xfe\x80", b"x" * 3000])
            filename = rng.choice([b"", b'; filename="a.txt"', b'; filename="\xff.txt"', b'; filename="../x"'])
            parts.append(b'--' + boundary + b'\r\nContent-Disposition: form-data; name="' + name + b'"' + filename
                         + b"\r\n\r\n" + value + b"\r\n")
        if "cookie:valid" in req.shape and path in CSRF_PATHS:
            parts.append(b'--' + boundary + b'\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
                         + s.csrf.encode() + b"\r\n")
        end = rng.choice([b"--" + boundary + b"--\r\n", b"", b"--" + boundary + b"\r\n", b"--wrong--\r\n"])
        req.body = b"".join(parts) + end
        ctype = rng.choice([b"multipart/form-data; boundary=" + boundary, b"multipart/form-data",
                            b"multipart/form-data; boundary=", b"multipart/form-data; boundary=\xff"])
    elif kind in ("json", "json-deep", "json-surrogate"):
        if kind == "json-deep":
            depth = rng.choice([100, 1000, 5000, 30_000])
            opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
            req.body = opener * depth + b"1" + closer * depth
        elif kind == "json-surrogate":
            req.body = rng.choice([b'{"name": "\\ud800", "domain": "dyn.example.test"}',
                                   b'{"name": "ok", "domain": "\\udfff", "comment": "\\ud83d"}',
                                   b'{"name": "a", "domain": "dyn.example.test", "comment": "\\ud800\\u0000"}'])
        else:
            name = hostile_text(rng).replace("\\", "").replace('"', "")
            req.body = rng.choice([
                ('{"name": "%s", "domain": "%s", "comment": "%s"}' % (name, ZONE, name)).encode(),
                b'{"name": 1, "domain": [], "comment": {}}', b"[1, 2]", b"null", b"1e999", b'"x"', b"{", b"",
                b'{"name": "a", "name": "b", "domain": "dyn.example.test"}', b"\xff\xfe{}", b"{}" * 1000,
                ('{"name": "%s", "domain": "%s"}' % ("a" * 70_000, ZONE)).encode()])
        ctype = rng.choice([b"application/json", b"application/json; charset=latin-1", b"text/plain"])
    elif kind == "bytes":
        req.body = bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 5000])))
    if ctype is not None:
        req.headers.append((b"Content-Type", ctype))
    if req.body or rng.random() < 0.1:
        req.framing = rng.choice(["length"] * 8 + ["none", "long", "short", "negative", "garbage", "huge", "twice",
                                                   "chunked", "chunked", "bad-chunk", "unterminated-chunk",
                                                   "chunked-and-length", "te-garbage"])
        req.shape.append("framing:" + req.framing)


# Requests that get past routing and authentication to the code behind them:
# (paths, methods, auth kinds, cookie kinds, body kinds); the rest of each request stays random.
ENDPOINTS = [
    (["/nic/update"], [b"GET", b"POST"], ["host", "alice-token", "fuzz-token", "basic-non-utf8", "none"], ["none"],
     ["none", "form", "multipart", "bytes"]),
    (["/api/v1/hosts"], [b"POST"], ["bearer"], ["none"], ["json", "json-deep", "json-surrogate", "bytes", "multipart"]),
    (["/api/v1/hosts/{f}", "/api/v1/hosts/{f}/secret", "/api/v1/domains", "/api/v1/hosts", "/api/v1/hosts/{f}/keys",
      "/api/v1/hosts/{f}/keys/{f}"], [b"GET", b"POST", b"DELETE"], ["bearer"], ["none"], ["none", "json"]),
    (CSRF_PATHS + ["/logout", "/hosts/{f}/delete", "/hosts/{f}/address", "/tokens/1/delete", "/admin/domains",
                   "/hosts/{f}/keys/{f}/delete", "/admin/keys"],
     [b"POST"], ["none"], ["valid"], ["form", "multipart", "bytes"]),
    (["/", "/hosts/{f}", "/tokens", "/hosts/new", "/admin/status", "/login", "/hosts/{f}/secret", "/hosts/{f}/delete"],
     [b"GET"], ["none"], ["valid", "garbage", "non-utf8"], ["none"]),
    (["/hooks/zones"], [b"POST"], ["none"], ["none"], ["json", "bytes", "form"]),
]


def hostile_request(rng: random.Random, s: Secrets) -> Request:
    if rng.random() < 0.6:
        paths, methods, auths, cookies, bodies = rng.choice(ENDPOINTS)
    else:
        paths, methods, auths, cookies, bodies = PATHS, METHODS, AUTH_KINDS, COOKIE_KINDS, BODY_KINDS
    template = rng.choice(paths)
    req = Request(shape=[], method=rng.choice(methods))
    if "{f}" in template and rng.random() < 0.6:
        path = template.replace("{f}", FUZZ_HOST)  # a real host of the user whose session and token are sent
        req.path = path.encode()
    else:
        path = template
        req.path = template.encode().replace(b"{f}", fqdn_segment(rng))
    if rng.random() < 0.05:
        req.path = b"http://127.0.0.1" + req.path  # absolute form
    req.shape += [req.method[:10].decode("latin-1"), template]
    if rng.random() < 0.7:
        req.query = query_pairs(rng, req.shape)
    auth_header(rng, s, req, auths)
    other_headers(rng, s, req, cookies)
    body_of(rng, s, req, path, bodies)
    return req


# ---- the server's view: may this request change an address? ----------------------------------
def server_params(raw: bytes) -> list[tuple[str, str]]:
    """What bottle and ddns.web make of RAW as a query string or form body (same decoding steps)."""
    out = []
    for pair in raw.decode("latin-1").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        decode = lambda t: urllib.parse.unquote(t.replace("+", " "), encoding="latin-1").encode(  # noqa: E731
            "latin-1").decode("utf-8", errors="replace")
        out.append((decode(name), decode(value)))
    return out


def could_publish(value: str) -> bool:
    """True when VALUE might be accepted as myip / myipv6 (every comma-separated part an address)."""
    try:
        return all(ipaddress.ip_address(part.strip()) is not None for part in value.split(","))
    except ValueError:
        return False


def is_safe(req: Request) -> bool:
    """A hostile request with valid credentials must not carry an address the service could accept."""
    if not req.valid_auth:
        return True
    pairs = server_params(b"&".join(req.query)) + server_params(req.body)
    for part in re.split(rb"--[^\r\n]*\r\n", req.body):  # multipart fields: name line, blank line, value
        header, _, value = part.partition(b"\r\n\r\n")
        match = re.search(rb'name="([^"]*)"', header)
        if match:
            pairs.append((match[1].decode("latin-1"), value.rstrip(b"\r\n").decode("utf-8", errors="replace")))
    return not any(name in ("myip", "myipv6") and could_publish(value) for name, value in pairs)
