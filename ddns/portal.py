"""The web portal: server-rendered pages on the explicit Bottle app.

Every page goes through :meth:`Portal.page`, which loads the server-side
session, sends anonymous visitors of protected pages to the login, and checks
the CSRF token of every POST. Host pages find hosts through
``Service.owned_host``, so another user's host is "not found", whatever id
is typed in. Secrets are kept in this process's memory between the POST that
makes them and the one page that shows them -- never in the database.
"""
from __future__ import annotations

import functools
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

import bottle
import jinja2

from . import clientconfigs, formtext, portal_keys, resource_dir
from .oidc import PENDING_SECONDS, LoginFailed, OidcLogin
from .model import Outcome
from .service import NoSuchObject, Service, ServiceError, TooMany
from .sessions import COOKIE, OIDC_COOKIE, PRE_COOKIE, Sessions, csrf_ok
from .store import Busy, NotFound, Session, User

WEB_TEMPLATES = resource_dir("templates") / "web"
STATIC = resource_dir("templates") / "static"
STASH_SECONDS = 600
OUTCOME_TEXT = {
    Outcome.PUBLISHED: "BIND serves the change.",
    Outcome.UNCHANGED: "Nothing to change.",
    Outcome.UNSERVED: "Saved and committed, but BIND does not serve it yet; it is retried.",
    Outcome.FAILED: "The change could not be published; nothing changed. Try again later.",
}


class SecretStash:
    """Secrets waiting to be shown once, in memory, per session (lost on restart: regenerate then)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._items: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def put(self, session: Session, key: str, secret: str) -> None:
        now = self.clock()
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
            self._items[(session.id_hash, key)] = (secret, now + STASH_SECONDS)

    def take(self, session: Session, key: str) -> str | None:
        with self._lock:
            item = self._items.pop((session.id_hash, key), None)
        return item[0] if item and item[1] > self.clock() else None


@dataclass
class Visit:
    """What a page handler knows about the request: the session and its user (None: anonymous)."""

    session: Session | None
    user: User | None
    pre: str | None = None  # an anonymous visitor's pre-session id (its forms' CSRF tokens are signed for it)
    cookies: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # to set: name -> (value, path, max-age)

    def set_cookie(self, name: str, value: str, path: str, max_age: int) -> None:
        """Set cookie NAME on the response ("" and max-age 0 remove it)."""
        self.cookies[name] = (value, path, max_age)


MAX_NEXT = 1000


def safe_next(target: str | None) -> str:
    r"""A same-origin absolute path to go to after login; anything else becomes "/".

    Browsers drop tabs and newlines from a Location and read a backslash as a
    slash, so ``/\t/evil.example`` and ``/\evil.example`` reach another origin as
    ``//evil.example``; a control character makes the header itself invalid.
    Only printable ASCII without spaces and backslashes is kept (the portal's
    own ``next`` values are percent-encoded, so they are never refused), and
    what remains must parse as a path with neither scheme nor host.
    """
    if not target or len(target) > MAX_NEXT or not all("!" <= ch <= "~" and ch != "\\" for ch in target):
        return "/"
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return target


def timestamp(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value)) if value else "never"


class Portal:
    def __init__(self, service: Service, oidc: OidcLogin | None, client: Callable[[], str],
                 over_tls: Callable[[], bool], clock: Callable[[], float] = time.time):
        """CLIENT and OVER_TLS are the app's views of the request (proxies included)."""
        config = service.config
        self.service = service
        self.oidc = oidc
        self.local_login = config["portal.local_login"]
        self.sessions = Sessions(service.store, config["portal.session_idle"], config["portal.session_max"], clock)
        self.stash = SecretStash()
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(WEB_TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.env.filters["time"] = timestamp
        self.client = client
        self.over_tls = over_tls

    # ---- request plumbing ----------------------------------------------------
    def tls(self) -> bool:
        return self.service.config.public_url.startswith("https://") or self.over_tls()

    def apply_cookies(self, visit: Visit, response: bottle.HTTPResponse) -> None:
        for name, (value, path, max_age) in visit.cookies.items():
            response.set_cookie(name, value, path=path, httponly=True, samesite="lax", secure=self.tls(),
                                max_age=max_age)

    def visit(self) -> Visit:
        session = self.sessions.load(bottle.request.get_cookie(COOKIE))
        user = None
        if session is not None and session.user_id is not None:
            try:
                user = self.service.store.user_by_id(session.user_id)
            except NotFound:
                user = None
        pre = bottle.request.get_cookie(PRE_COOKIE)
        return Visit(session, user, pre if pre and len(pre) <= 100 else None)

    def csrf_token(self, visit: Visit) -> str:
        """The token this visit's forms carry: the session's, or (anonymous) one signed for the pre-session cookie.

        An anonymous visitor gets no session row (a flood of page loads writes nothing), only the cookie.
        """
        if visit.session is not None:
            return visit.session.csrf
        if not visit.pre:
            visit.pre = secrets.token_urlsafe(32)
            visit.set_cookie(PRE_COOKIE, visit.pre, "/", int(self.sessions.max_age))
        return self.sessions.anonymous_csrf(visit.pre)

    def csrf_valid(self, visit: Visit) -> bool:
        token = formtext.value(bottle.request.forms, "csrf_token")
        if visit.session is not None:
            return csrf_ok(visit.session, token)
        return self.sessions.anonymous_csrf_ok(visit.pre, token)

    def page(self, login: bool = True, admin: bool = False) -> Callable:
        """Decorate a handler(visit, ...): session, login and admin checks, CSRF on POST."""
        def decorate(handler: Callable) -> Callable:
            @functools.wraps(handler)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                visit = self.visit()
                try:
                    if bottle.request.method == "POST" and not self.csrf_valid(visit):
                        response = self.error(visit, 403, "This form has expired or did not come from this site. "
                                                          "Go back, reload the page and try again.")
                    elif login and visit.user is None:
                        if bottle.request.method == "GET":
                            response = self.redirect("/login?next=" + urllib.parse.quote(bottle.request.fullpath))
                        else:
                            response = self.error(visit, 401, "Please log in first.")
                    elif admin and not visit.user.is_admin:
                        response = self.error(visit, 403, "This page is for admins.")
                    else:
                        response = handler(visit, *args, **kwargs)
                except TooMany as exc:
                    response = self.error(visit, 429, str(exc).capitalize() + ".")
                except Busy as exc:
                    response = self.error(visit, 503, str(exc).capitalize() + ".")
                except ServiceError as exc:
                    response = self.error(visit, 404 if isinstance(exc, NoSuchObject) else 400, str(exc))
                except NotFound as exc:  # the object went away while the request ran (a concurrent delete)
                    response = self.error(visit, 404, str(exc))
                self.apply_cookies(visit, response)
                return response
            return wrapper
        return decorate

    def render(self, visit: Visit, template: str, code: int = 200, **context: Any) -> bottle.HTTPResponse:
        flashes = visit.session.data.pop("flash", []) if visit.session else []
        if flashes:
            self.sessions.save(visit.session)
        context.setdefault("error", "")
        body = self.env.get_template(template).render(
            user=visit.user, csrf_token=self.csrf_token(visit), flashes=flashes, oidc=self.oidc is not None,
            oidc_button=self.service.config["oidc.button"], local_login=self.local_login, **context)
        return bottle.HTTPResponse(body, code, {"Content-Type": "text/html; charset=utf-8",
                                                  "Cache-Control": "no-store"})

    def error(self, visit: Visit, status: int, message: str) -> bottle.HTTPResponse:
        return self.render(visit, "error.html", status, status=status, message=message)

    def flash(self, visit: Visit, message: str) -> None:
        """A message for the next page (pages that flash need a login, so the session exists)."""
        visit.session.data.setdefault("flash", []).append(message)
        self.sessions.save(visit.session)

    def redirect(self, location: str) -> bottle.HTTPResponse:
        return bottle.HTTPResponse(status=303, headers={"Location": location})

    def form(self, name: str, limit: int = 200) -> str:
        return formtext.value(bottle.request.forms, name).strip()[:limit]

    def begin_session(self, visit: Visit, user: User, data: dict | None = None) -> None:
        """Log USER in: a new session id (the anonymous one ends), so a planted id is worthless."""
        if visit.session is not None:
            self.sessions.end(visit.session)
        raw, visit.session = self.sessions.start(user.id, data)
        visit.set_cookie(COOKIE, raw, "/", int(self.sessions.max_age))
        visit.user = user
        self.service.store.note_login(user.id, self.service.clock())

    # ---- pages -----------------------------------------------------------------
    def install(self, app: bottle.Bottle) -> None:
        page, service = self.page, self.service

        @app.get("/static/<name:path>")
        def static(name: str):
            response = bottle.static_file(name, root=str(STATIC))
            response.set_header("Cache-Control", "public, max-age=3600")
            return response

        @app.get("/favicon.ico")
        def favicon():
            return static("favicon.svg")

        @app.get("/")
        @page(login=False)
        def home(visit: Visit):
            if visit.user is None:
                return self.redirect("/login")
            return self.overview(visit)

        @app.get("/login")
        @page(login=False)
        def login_page(visit: Visit):
            if visit.user is not None:
                return self.redirect("/")
            return self.render(visit, "login.html", next=safe_next(bottle.request.query.getunicode("next")),
                               logged_out="logged_out" in bottle.request.query)

        @app.post("/login")
        @page(login=False)
        def login_local(visit: Visit):
            target = safe_next(self.form("next", 500))
            if not self.local_login:
                return self.error(visit, 404, "Local accounts are switched off here.")
            name, password = self.form("username", 64), formtext.value(bottle.request.forms, "password")
            try:
                user = service.check_password(name, password, self.client())
            except TooMany:
                return self.render(visit, "login.html", 429, next=target, logged_out=False,
                                   error="Too many failed logins. Wait a few minutes and try again.")
            if user is None:
                return self.render(visit, "login.html", 401, next=target, logged_out=False,
                                   error="Wrong user name or password.")
            self.begin_session(visit, user)
            return self.redirect(target)

        @app.get("/login/oidc")
        @page(login=False)
        def login_oidc(visit: Visit):
            if self.oidc is None:
                return self.error(visit, 404, "Login through OpenID Connect is not configured here.")
            try:
                url, pending = self.oidc.begin(service.config.public_url + "/login/callback")
            except LoginFailed as exc:
                return self.error(visit, 502, str(exc))
            pending["next"] = safe_next(bottle.request.query.getunicode("next"))
            visit.set_cookie(OIDC_COOKIE, self.sessions.signer.sign("oidc", pending), "/login", PENDING_SECONDS)
            return self.redirect(url)

        @app.get("/login/callback")
        @page(login=False)
        def login_callback(visit: Visit):
            if self.oidc is None:
                return self.error(visit, 404, "Login through OpenID Connect is not configured here.")
            query = bottle.request.query
            pending = self.sessions.signer.unsign("oidc", bottle.request.get_cookie(OIDC_COOKIE))
            visit.set_cookie(OIDC_COOKIE, "", "/login", 0)  # a state is good for one callback only
            if query.getunicode("error"):
                return self.error(visit, 401, "The login service did not log you in: "
                                  + (query.getunicode("error_description") or query.getunicode("error"))[:200])
            try:
                tokens = self.oidc.finish(pending, query.getunicode("state") or "", query.getunicode("code") or "",
                                          service.config.public_url + "/login/callback")
            except LoginFailed as exc:
                return self.error(visit, 401, str(exc))
            user = service.login_oidc(tokens.identity)
            self.begin_session(visit, user, {"refresh_token": tokens.refresh_token})
            return self.redirect(safe_next(pending.get("next")))

        @app.post("/logout")
        @page(login=False)
        def logout(visit: Visit):
            if visit.session is not None:
                refresh = visit.session.data.get("refresh_token")
                if refresh and self.oidc is not None:
                    self.oidc.logout(refresh)
                self.sessions.end(visit.session)
            visit.session, visit.user = None, None
            visit.set_cookie(COOKIE, "", "/", 0)
            return self.redirect("/login?logged_out=1")

        @app.get("/hosts/new")
        @page()
        def host_new(visit: Visit):
            return self.render(visit, "host_new.html", domains=service.usable_domains(visit.user), label="",
                               zone="", comment="")

        @app.post("/hosts/new")
        @page()
        def host_create(visit: Visit):
            label, zone, comment = self.form("name", 253), self.form("domain", 253), self.form("comment")
            domains = service.usable_domains(visit.user)
            service.count_secret_action(visit.user)
            try:
                host, secret = service.add_host_for(visit.user, label, zone, comment)
            except ServiceError as exc:
                return self.render(visit, "host_new.html", 400, domains=domains, label=label, zone=zone,
                                   comment=comment, error=str(exc))
            self.stash.put(visit.session, host.fqdn, secret)
            return self.redirect(f"/hosts/{host.fqdn}/secret")

        @app.get("/hosts/<fqdn>")
        @page()
        def host_page(visit: Visit, fqdn: str):
            view = service.view(service.owned_host(visit.user, fqdn))
            served = service.served(view.host) if view.in_repository else {"A": [], "AAAA": []}
            return self.render(visit, "host.html", view=view, served=served,
                               history=service.history(view.host.fqdn)[:50], keys=portal_keys.host_keys(service, visit.user, view.host.fqdn))

        @app.post("/hosts/<fqdn>/comment")
        @page()
        def host_comment(visit: Visit, fqdn: str):
            host = service.owned_host(visit.user, fqdn)
            service.set_comment(host.fqdn, self.form("comment"))
            self.flash(visit, "Comment saved.")
            return self.redirect(f"/hosts/{host.fqdn}")

        @app.post("/hosts/<fqdn>/address")
        @page()
        def host_address(visit: Visit, fqdn: str):
            host = service.owned_host(visit.user, fqdn)
            actor = "portal:" + visit.user.name
            if self.form("action") == "clear":
                rtypes = {"A": ("A",), "AAAA": ("AAAA",)}.get(self.form("type"), ("A", "AAAA"))
                outcome = service.clear_address(host.fqdn, actor, "portal", rtypes)
            else:
                outcome = service.set_address(host.fqdn, self.form("address", 100), actor, "portal",
                                              client=self.client(), agent=bottle.request.get_header("User-Agent", "")[:200])
            self.flash(visit, OUTCOME_TEXT[outcome])
            return self.redirect(f"/hosts/{host.fqdn}")

        @app.post("/hosts/<fqdn>/secret")
        @page()
        def host_regenerate(visit: Visit, fqdn: str):
            host = service.owned_host(visit.user, fqdn)
            service.count_secret_action(visit.user)
            self.stash.put(visit.session, host.fqdn, service.regenerate_secret(host.fqdn))
            return self.redirect(f"/hosts/{host.fqdn}/secret")

        @app.get("/hosts/<fqdn>/secret")
        @page()
        def host_secret(visit: Visit, fqdn: str):
            host = service.owned_host(visit.user, fqdn)
            secret = self.stash.take(visit.session, host.fqdn)
            configs = clientconfigs.client_configs(service.config.public_url, host.fqdn, secret) if secret else []
            return self.render(visit, "secret.html", host=host, secret=secret, configs=configs)

        @app.get("/hosts/<fqdn>/delete")
        @page()
        def host_delete_confirm(visit: Visit, fqdn: str):
            return self.render(visit, "host_delete.html", host=service.owned_host(visit.user, fqdn))

        @app.post("/hosts/<fqdn>/delete")
        @page()
        def host_delete(visit: Visit, fqdn: str):
            host = service.owned_host(visit.user, fqdn)
            outcome = service.delete_host(host.fqdn, "portal:" + visit.user.name, "portal")
            if outcome is Outcome.FAILED:
                return self.error(visit, 503, OUTCOME_TEXT[outcome])
            self.flash(visit, f"{host.fqdn} is deleted. " + OUTCOME_TEXT[outcome])
            return self.redirect("/")

        @app.get("/tokens")
        @page()
        def tokens(visit: Visit):
            return self.render(visit, "tokens.html", tokens=service.store.api_tokens(visit.user.id),
                               new_token=self.stash.take(visit.session, "api-token"),
                               api_url=service.config.public_url + "/api/v1")

        @app.post("/tokens")
        @page()
        def token_create(visit: Visit):
            service.count_secret_action(visit.user)
            token = service.new_api_token(visit.user, self.form("name", 100) or "API token")
            self.stash.put(visit.session, "api-token", token)
            return self.redirect("/tokens")

        @app.post("/tokens/<token_id:int>/delete")
        @page()
        def token_delete(visit: Visit, token_id: int):
            try:
                service.store.delete_api_token(visit.user.id, token_id)
            except NotFound:
                return self.error(visit, 404, "No such token.")
            self.flash(visit, "The token is revoked.")
            return self.redirect("/tokens")

        @app.get("/admin/domains")
        @page(admin=True)
        def domains(visit: Visit):
            return self.domains_page(visit)

        @app.post("/admin/domains")
        @page(admin=True)
        def domain_add(visit: Visit):
            zone = self.form("zone", 253)
            nameservers = self.form("nameservers", 1000).replace(",", " ").split()
            try:
                outcome = service.add_domain(zone, nameservers or None, "portal:" + visit.user.name)
            except ServiceError as exc:
                return self.domains_page(visit, 400, error=str(exc), zone=zone)
            self.flash(visit, f"Domain {zone} added. " + OUTCOME_TEXT[outcome])
            return self.redirect("/admin/domains")

        @app.post("/admin/domains/<zone>")
        @page(admin=True)
        def domain_update(visit: Visit, zone: str):
            groups = self.form("groups", 10_000).replace(",", "\n").splitlines()
            public = self.form("access") != "groups"
            ttl_text = self.form("dynamic_ttl", 10)
            try:
                ttl = int(ttl_text) if ttl_text else None
            except ValueError:
                return self.domains_page(visit, 400, error="The TTL must be a whole number of seconds.", zone="")
            try:
                outcome = service.configure_domain(zone, public, groups, ttl, "portal:" + visit.user.name)
            except NoSuchObject:
                raise  # the page's 404
            except ServiceError as exc:  # refused as a whole: nothing was changed
                return self.domains_page(visit, 400, error=str(exc).capitalize() + ".", zone="")
            message = f"Access to {zone} saved."
            if outcome is not None:
                message += " TTL: " + OUTCOME_TEXT[outcome]
            self.flash(visit, message)
            return self.redirect("/admin/domains")

        @app.get("/admin/status")
        @page(admin=True)
        def status(visit: Visit):
            return self.render(visit, "status.html", status=service.status())

        portal_keys.install(self, app)

    def overview(self, visit: Visit) -> bottle.HTTPResponse:
        rows, bind_answers = [], True
        for view in self.service.list_hosts(visit.user.name):
            if not view.in_repository:  # its zone left the repository: BIND has nothing to say about it
                served = {"A": [], "AAAA": []}
            elif bind_answers:
                served = self.service.served(view.host)
                bind_answers = served["A"] is not None
            else:
                served = {"A": None, "AAAA": None}
            rows.append((view, served))
        return self.render(visit, "overview.html", rows=rows, bind_answers=bind_answers,
                           can_add=bool(self.service.usable_domains(visit.user)))

    def domains_page(self, visit: Visit, status: int = 200, error: str = "", zone: str = "") -> bottle.HTTPResponse:
        counts = self.service.store.host_counts()
        rows = [(d, counts.get(d.zone, 0), self.service.dynamic_ttl(d.zone)) for d in self.service.store.domain_list()]
        return self.render(visit, "domains.html", status, rows=rows, error=error, zone=zone)
