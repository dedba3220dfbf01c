"""The web application (an explicit ``Bottle()``, built by ``create_app``) and its server."""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import ssl
import secrets
from http import HTTPStatus
from typing import Callable

import bottle

from . import api, dyndns2, errors, formtext, httpreq
from .config import Config
from .db import RETRYABLE
from .httpserver import HttpServer, Limits
from .httpwire import Reply
from .oidc import OidcLogin
from .portal import Portal
from .service import Service

log = logging.getLogger("ddns.web")
MAX_QUERY_LENGTH = 8192
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def client_address(environ: dict, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The client's address; proxy headers count only when the peer is a trusted proxy.

    With X-Forwarded-For, the rightmost address that is not itself a trusted
    proxy is the client (the ones left of it are whatever the client claimed).
    """
    peer = _peer(environ.get("REMOTE_ADDR", ""))
    if not trusted or not _in(peer, trusted):
        return peer
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded:
        hops = [_plain(h.strip()) for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not _in(hop, trusted):
                return hop
        return hops[0] if hops else peer
    real = environ.get("HTTP_X_REAL_IP", "").strip()
    return _plain(real) if real else peer


def _plain(text: str) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        elif addr.scope_id is not None:  # "fe80::1%anything": the scope is no part of where a client is
            addr = ipaddress.IPv6Address(addr.packed)
    return str(addr)


# The socket's peer address (short, never a header's text), seen again on each of its requests.
_peer = functools.lru_cache(maxsize=4096)(_plain)


def _in(text: str, networks: list) -> bool:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(addr.version == n.version and addr in n for n in networks)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None."""
    scheme, _, data = header.partition(" ")
    if scheme.lower() != "basic" or not data or len(data) > 2048:
        return None
    try:
        user, sep, password = base64.b64decode(data.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


def request_id() -> str:
    """16 random hex digits naming one request in the log (a UUID object's worth of randomness, without the object)."""
    return secrets.token_hex(8)


def tls_used(environ: dict, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """The client reached us over TLS: our own listener's, or a trusted proxy's that says so.

    Read from the environ, not ``request.urlparts``: Bottle's scheme believes
    any client's X-Forwarded-Proto (and costs a URL rebuild per request).
    """
    if environ.get("wsgi.url_scheme") == "https":
        return True
    return environ.get("HTTP_X_FORWARDED_PROTO", "") == "https" and _in(_peer(environ.get("REMOTE_ADDR", "")), trusted)


def update_request(request: bottle.BaseRequest, trusted: list) -> dyndns2.UpdateRequest:
    """The dyndns2 request in REQUEST: the query's values (and a POST's form's), the credentials, the client."""
    params: dict[str, list[str]] = {}
    sources = [request.query] + ([request.forms] if request.method == "POST" else [])
    for source in sources:
        for key, values in formtext.all_values(source).items():
            params.setdefault(key, []).extend(values)
    return dyndns2.UpdateRequest(
        credentials=basic_credentials(request.get_header("Authorization", "")),
        params=params,
        client=client_address(request.environ, trusted),
        agent=request.get_header("User-Agent", ""),
        tls=tls_used(request.environ, trusted),
        request_id=request_id(),
    )


# The headers of every plain-text answer (clients and scripts read them; no cache keeps them).
PLAIN_TEXT = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


def answer_now(service: Service, headers: dict[str, str]) -> Callable[[dict], Reply | None]:
    """For the HTTP loop thread: the answer to a ``GET /nic/update`` the service gives without waiting
    (``dyndns2.answer_now``: a nochg), as the app writes it, with HEADERS (the security headers); None for
    anything else, which a worker thread runs through the app. This saves a nochg the hand-over to a worker
    and back, and Bottle."""
    trusted = service.trusted_proxies
    fixed = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in {**PLAIN_TEXT, **headers}.items()]

    def answer(environ: dict) -> Reply | None:
        if environ["REQUEST_METHOD"] != "GET" or environ["PATH_INFO"] != "/nic/update" \
                or len(environ["QUERY_STRING"]) > MAX_QUERY_LENGTH:
            return None
        found = dyndns2.answer_now(service, update_request(bottle.BaseRequest(environ), trusted))
        if found is None:
            return None
        body = found.body.encode()
        return Reply(found.status, HTTPStatus(found.status).phrase.encode(),
                     [*fixed, (b"Content-Length", b"%d" % len(body))], body)
    return answer


def security_headers(oidc_origin: str | None) -> dict[str, str]:
    """Headers on every answer: no inline script, no framing, no referrer to other sites.

    ``form-action`` must allow the provider: Chromium checks it on the redirect a form submission gets.
    """
    form_action = "'self'" + (f" {oidc_origin}" if oidc_origin else "")
    return {
        "Content-Security-Policy": f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                   f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
                                   f"base-uri 'none'",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


def create_app(service: Service, oidc: OidcLogin | None = None, role: str = "all") -> bottle.Bottle:
    """The app for SERVICE; OIDC is the OpenID login (None: ``OidcLogin.from_config``); ROLE is what /healthz says
    this process is (``cluster.role``: all, web, publisher).

    Built by the install_* helpers below, one concern each, in the order they must run: the hooks and
    the busy plugin before any route, the error pages last.
    """
    app = bottle.Bottle()
    portal_on = service.config["portal.enabled"]
    if oidc is None and portal_on:
        oidc = OidcLogin.from_config(service.config)
    headers = security_headers(oidc.origin if oidc else None)
    app.config["ddns.answer_now"] = answer_now(service, headers)  # for make_server: nochg on the loop thread
    install_hooks(app, service, headers)
    install_updates(app, service)
    install_operations(app, service, role)
    install_front(app, service, oidc)
    install_errors(app, headers, portal_on)
    return app


def _text(body: str, status: int = 200, headers: dict | None = None) -> bottle.HTTPResponse:
    """A plain-text answer no cache keeps: what clients and scripts read."""
    return bottle.HTTPResponse(body, status, {**PLAIN_TEXT, **(headers or {})})


def install_hooks(app: bottle.Bottle, service: Service, headers: dict[str, str]) -> None:
    """What every request goes through: the security HEADERS, short lock waits, busy as 503, a parsed form."""
    @app.hook("after_request")
    def add_security_headers():
        for name, value in headers.items():
            bottle.response.set_header(name, value)

    @app.hook("before_request")
    def short_waits_for_the_write_lock():
        service.begin_web_request()

    def busy_is_503(callback):
        """A write that found the database busy (or out of reach) answers at once, on every route (a clear message, no 500).

        Outside the handlers' own refusal tables: a session read before a portal page, a token before an API call.
        """
        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except RETRYABLE as exc:
                log.warning("%s %s: %s", bottle.request.method, bottle.request.path, exc)
                service.metrics.failure(exc)
                status = errors.codes(exc).http
                if bottle.request.path.startswith(api.PREFIX + "/"):
                    return bottle.HTTPResponse(json.dumps({"error": str(exc)}), status,
                                               {"Content-Type": "application/json", "Retry-After": "2"})
                return _text(str(exc) + "\n", status, {"Retry-After": "2"})
        return wrapper

    app.install(busy_is_503)

    @app.hook("before_request")
    def parse_form_body():
        """Parse a form body before any handler reads it: undecodable form data is one clear 400, never a 500."""
        if bottle.request.method == "POST" and bottle.request.content_type.split(";")[0].strip() in FORM_TYPES:
            try:
                bottle.request.forms
            except (UnicodeError, LookupError, ValueError):
                raise _text("bad request: the form data is not valid UTF-8\n", 400)


def install_updates(app: bottle.Bottle, service: Service) -> None:
    """The routes clients update through: dyndns2's /nic/update, lego's httpreq, and /myip to learn their address."""
    trusted = service.trusted_proxies

    @app.route("/nic/update", method=["GET", "POST"])
    def nic_update():
        if len(bottle.request.environ.get("QUERY_STRING", "")) > MAX_QUERY_LENGTH:
            return _text("notfqdn\n", 414)
        request = update_request(bottle.request, trusted)
        try:
            answer = dyndns2.handle_update(service, request)
        except RETRYABLE as exc:
            log.warning("update %s: %s", request.request_id, exc)
            service.metrics.failure(exc)
            return _text("911\n", 503, {"Retry-After": "5"})
        except Exception:
            log.exception("update %s failed", request.request_id)
            return _text("911\n", 500)
        return _text(answer.body, answer.status, answer.headers)

    @app.post(httpreq.PREFIX + "/<action:re:" + "|".join(httpreq.ACTIONS) + ">")
    def acme_httpreq(action: str):
        """lego's httpreq provider: a host sets and removes its own _acme-challenge TXT (see ddns.httpreq)."""
        request = httpreq.Request(
            action=action,
            credentials=basic_credentials(bottle.request.get_header("Authorization", "")),
            body=bottle.request.body.read(httpreq.MAX_BODY_BYTES + 1),
            client=client_address(bottle.request.environ, trusted),
            agent=bottle.request.get_header("User-Agent", ""),
            request_id=request_id(),
        )
        answer = httpreq.handle(service, request)
        return bottle.HTTPResponse(answer.body, answer.status, {"Content-Type": "application/json",
                                                                "Cache-Control": "no-store", **answer.headers})

    @app.get("/myip")
    def myip():
        return _text(client_address(bottle.request.environ, trusted) + "\n")


def install_operations(app: bottle.Bottle, service: Service, role: str) -> None:
    """The routes operators' tools call: /healthz (saying ROLE), /metrics when enabled, the zones' push webhook."""
    @app.get("/healthz")
    def healthz():
        body = {**service.health(), "role": role}
        status = 200 if body["status"] == "ok" else 503
        return bottle.HTTPResponse(json.dumps(body), status, {"Content-Type": "application/json"})

    if service.metrics.enabled:
        @app.get("/metrics")
        def metrics():
            """Prometheus's scrape, for the networks in metrics.allow only (ddns.metrics)."""
            if not service.metrics.allows(client_address(bottle.request.environ, service.trusted_proxies)):
                return _text("forbidden\n", 403)
            body, content_type = service.metrics.exposition()
            return bottle.HTTPResponse(body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"})

    @app.post("/hooks/zones")
    def zones_webhook():
        """A Git server's push webhook: fetch the upstream now (GitLab / Gitea token, or GitHub's HMAC)."""
        secret = service.config["zones.webhook_secret"]
        if not secret:
            return _text("webhook not configured\n", 404)
        body = bottle.request.body.read(1024 * 1024)
        token = bottle.request.get_header("X-Gitlab-Token") or bottle.request.get_header("X-Ddns-Token") or ""
        signature = bottle.request.get_header("X-Hub-Signature-256") or ""
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not (token and hmac.compare_digest(token.encode(), secret.encode())) and \
                not (signature and hmac.compare_digest(signature.encode(), expected.encode())):
            return _text("forbidden\n", 403)
        service.request_sync()
        return _text("sync requested\n", 202)


def install_front(app: bottle.Bottle, service: Service, oidc: OidcLogin | None) -> None:
    """What people use: the portal and its API with OIDC (portal.enabled), else a one-line page saying how to update."""
    trusted = service.trusted_proxies
    if service.config["portal.enabled"]:
        def client() -> str:
            return client_address(bottle.request.environ, trusted)

        def is_tls() -> bool:
            return tls_used(bottle.request.environ, trusted)

        api.install(app, service, oidc, client)
        Portal(service, oidc, client, is_tls).install(app)
    else:
        @app.get("/")
        def index():
            return _text(f"ddns: dynamic DNS. Update with: curl -u FQDN:SECRET "
                         f"'{service.config.public_url}/nic/update?myip=ADDRESS'\n")


def install_errors(app: bottle.Bottle, headers: dict[str, str], portal_on: bool) -> None:
    """Error pages: text for clients, a short HTML page for browsers (PORTAL_ON); never a stack trace."""
    def plain_error(message: str, html: bool = True) -> str:
        """The page for MESSAGE. The security HEADERS are set here again: Bottle's error path drops the headers set before it."""
        for name, value in headers.items():
            bottle.response.set_header(name, value)
        if html and portal_on and "text/html" in bottle.request.get_header("Accept", ""):
            bottle.response.content_type = "text/html; charset=utf-8"
            return ERROR_PAGE.format(message=message)
        bottle.response.content_type = "text/plain; charset=utf-8"
        return message + "\n"

    @app.error(404)
    def not_found(error):
        return plain_error("not found")

    @app.error(405)
    def not_allowed(error):
        return plain_error("method not allowed")

    @app.error(500)
    def server_error(error):
        if bottle.request.path.startswith("/nic/"):
            return plain_error("911", html=False)  # the dyndns2 answer: the client waits and retries
        return plain_error("911: something went wrong here; it is logged. Try again later.")


ERROR_PAGE = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ddns: {message}</title>"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
              "<link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main class=\"narrow\">"
              "<h1>Sorry: {message}</h1><p><a href=\"/\">Back to your hosts</a></p></main></body></html>")


def make_server(app: bottle.Bottle, cfg: Config) -> HttpServer:
    """The web server for APP as CFG says (HTTPS when given a certificate): see ddns.httpserver for why not cheroot.

    With ``http.answer_on_loop`` an app of ``create_app`` has the loop thread answer what its service can
    answer without waiting (``answer_now``).
    """
    limits = Limits(request_timeout=cfg["http.request_timeout"], max_connections=cfg["http.max_connections"])
    context = None
    if cfg["http.tls_cert"] and cfg["http.tls_key"]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cfg.path("http.tls_cert")), str(cfg.path("http.tls_key")))
    now = app.config.get("ddns.answer_now") if isinstance(app, bottle.Bottle) and cfg["http.answer_on_loop"] else None
    return HttpServer(app, cfg["http.listen"], cfg["http.port"], cfg["http.threads"], limits,
                      security_headers(None), context, answer_now=now)
