"""The JSON API for automation (``/api/v1``), described by ``/api/v1/openapi.json``.

Callers authenticate with ``Authorization: Bearer TOKEN``: a personal API token
made in the portal (``ddns_...``), or an access token of the OpenID provider,
which is checked with the provider's userinfo endpoint and then trusted for
``oidc.userinfo_cache_seconds``. No cookies are read here, so no CSRF token is
needed; the same ownership rules as the portal apply.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from typing import Any, Callable

import bottle

from . import api_keys, errors
from .accounts import API_TOKEN_PREFIX
from .auth import FailureLimiter, client_network
from .oidc import LoginFailed, OidcLogin
from .model import Outcome
from .reports import HostView
from .service import Service
from .store import User

PREFIX = "/api/v1"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The request body's string fields: the server enforces exactly what the OpenAPI document states.
FIELDS: dict[str, dict[str, Any]] = {
    "name": {"maxLength": 63, "pattern": f"^{_LABEL}$", "description": "the label, e.g. myvm"},
    "domain": {"maxLength": 253, "pattern": f"^({_LABEL}\\.)*{_LABEL}$", "description": "e.g. dyn.example.org"},
    "comment": {"maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
                "description": "free text without control characters"},
}
REQUIRED = ("name", "domain")


def host_json(view: HostView) -> dict[str, Any]:
    host = view.host
    return {"fqdn": host.fqdn, "domain": host.zone, "comment": host.comment, "ipv4": view.ipv4, "ipv6": view.ipv6,
            "in_repository": view.in_repository, "created": host.created, "last_update": host.last_update,
            "last_client": host.last_client, "last_agent": host.last_agent, "last_tls": host.last_tls,
            "auth_faults": host.auth_faults, "client_faults": host.client_faults, "principal": view.principal}


class BearerCache:
    """Users behind recently checked provider tokens, keyed on the token's SHA-256."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        self.ttl, self.clock, self.max_entries = ttl, clock, max_entries
        self._users: dict[bytes, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> int | None:
        with self._lock:
            item = self._users.get(hashlib.sha256(token.encode()).digest())
        return item[0] if item and item[1] > self.clock() else None

    def put(self, token: str, user_id: int) -> None:
        with self._lock:
            if len(self._users) >= self.max_entries:
                self._users.clear()
            self._users[hashlib.sha256(token.encode()).digest()] = (user_id, self.clock() + self.ttl)


def install(app: bottle.Bottle, service: Service, oidc: OidcLogin | None, client_of: Callable[[], str]) -> None:
    """The API routes; CLIENT_OF is the app's view of the client address (proxies included)."""
    cache = BearerCache(service.config["oidc.userinfo_cache_seconds"])
    config = service.config
    failures = FailureLimiter(config["security.max_client_failures"], config["security.failure_window"],
                              max_keys=config["security.failure_table_size"])

    def reply(body: Any, status: int = 200) -> bottle.HTTPResponse:
        return bottle.HTTPResponse("" if body is None else json.dumps(body), status,
                                   {"Content-Type": "application/json", "Cache-Control": "no-store"})

    def refused(error: errors.DdnsError) -> bottle.HTTPResponse:
        """A refusal as the API answers it: the status from ``errors.CODES``, the message as "error"."""
        return problem(errors.codes(error).http, str(error))

    def problem(status: int, message: str) -> bottle.HTTPResponse:
        response = reply({"error": message}, status)
        if status == 401:
            response.set_header("WWW-Authenticate", 'Bearer realm="ddns"')
        return response

    def caller(known_only: bool) -> User | None:
        """The token's user; KNOWN_ONLY: without asking the provider (a blocked network's valid tokens still work)."""
        scheme, _, token = bottle.request.get_header("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 8192:
            return None
        user = service.accounts.api_token_user(token)
        if user is not None or oidc is None or token.startswith(API_TOKEN_PREFIX):
            return user
        user_id = cache.get(token)
        if user_id is not None:
            return service.accounts.user(user_id)
        if known_only:
            return None
        try:
            user = service.accounts.login_oidc(oidc.userinfo(token))
        except LoginFailed:
            return None
        cache.put(token, user.id)
        return user

    def endpoint(handler: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> bottle.HTTPResponse:
            network = client_network(client_of())
            blocked = failures.blocked(network)
            user = caller(known_only=blocked)
            if user is None and blocked:
                return problem(429, "too many failed authentications; wait a few minutes")
            if user is None:
                failures.fail(network)
                return problem(401, "a valid bearer token is needed (a personal API token or an OpenID access token)")
            try:
                return handler(user, *args, **kwargs)
            except errors.DdnsError as exc:  # a refusal, or an object gone while the request ran
                return refused(exc)
        return wrapper

    def body() -> dict[str, Any]:
        try:
            data = json.loads(bottle.request.body.read(64 * 1024) or b"{}")
        except ValueError as exc:
            raise errors.Invalid("the body is not JSON") from exc
        except RecursionError as exc:
            raise errors.Invalid("the body is nested too deeply") from exc
        if not isinstance(data, dict):
            raise errors.Invalid("the body must be a JSON object")
        return data

    def text(data: dict[str, Any], key: str) -> str:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise errors.Invalid(f"{key} must be a string")
        check_field(key, value)
        return value

    @app.get(PREFIX + "/openapi.json")
    def openapi():
        return reply(openapi_document(service.config.public_url))

    @app.get(PREFIX + "/domains")
    @endpoint
    def domains(user: User):
        return reply([{"domain": d.zone, "public": d.public, "groups": list(d.groups)}
                      for d in service.usable_domains(user)])

    @app.get(PREFIX + "/hosts")
    @endpoint
    def hosts(user: User):
        return reply([host_json(v) for v in service.list_hosts(user.name)])

    @app.post(PREFIX + "/hosts")
    @endpoint
    def create(user: User):
        data = body()
        name, domain, comment = (text(data, key) for key in ("name", "domain", "comment"))
        service.accounts.count_secret_action(user)
        host, secret = service.add_host_for(user, name, domain, comment)
        return reply({**host_json(service.view(host)), "secret": secret}, 201)

    @app.get(PREFIX + "/hosts/<fqdn>")
    @endpoint
    def show(user: User, fqdn: str):
        return reply(host_json(service.view(service.owned_host(user, fqdn))))

    @app.delete(PREFIX + "/hosts/<fqdn>")
    @endpoint
    def delete(user: User, fqdn: str):
        host = service.owned_host(user, fqdn)
        if service.delete_host(host.fqdn, "api:" + user.name, "api") is Outcome.FAILED:
            return problem(503, "the change could not be published; nothing changed")
        return reply(None, 204)

    @app.post(PREFIX + "/hosts/<fqdn>/secret")
    @endpoint
    def regenerate(user: User, fqdn: str):
        host = service.owned_host(user, fqdn)
        service.accounts.count_secret_action(user)
        return reply({"fqdn": host.fqdn, "secret": service.regenerate_secret(host.fqdn)})

    api_keys.install(app, service, endpoint, reply, problem, body)


def check_field(key: str, value: str) -> None:
    """Refuse VALUE for the body field KEY unless it meets the constraints FIELDS documents (and is valid Unicode)."""
    rules = FIELDS[key]
    if len(value) > rules["maxLength"]:
        raise errors.Invalid(f"{key} is longer than {rules['maxLength']} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\\ud800") is JSON, but no text
        raise errors.Invalid(f"{key} is not valid Unicode") from exc
    if not value and key in REQUIRED:
        raise errors.Invalid(f"{key} is needed")
    if not re.fullmatch(rules["pattern"], value):
        raise errors.Invalid(f"{key} does not match {rules['pattern']}")


def openapi_document(server_url: str) -> dict[str, Any]:
    """OpenAPI 3.1 description of the API above; the body's constraints are FIELDS, which the server enforces."""
    host_schema = {"type": "object", "properties": {
        "fqdn": {"type": "string"}, "domain": {"type": "string"}, "comment": {"type": "string"},
        "ipv4": {"type": ["string", "null"]}, "ipv6": {"type": ["string", "null"]},
        "in_repository": {"type": "boolean", "description": "false: a merge removed the host's domain from the "
                                                            "zones repository; nothing is served for it"},
        "created": {"type": "number"}, "last_update": {"type": ["number", "null"]},
        "last_client": {"type": ["string", "null"]}, "last_agent": {"type": ["string", "null"]},
        "last_tls": {"type": ["boolean", "null"]}, "auth_faults": {"type": "integer"},
        "client_faults": {"type": "integer"},
        "principal": {"type": ["string", "null"], "readOnly": True,
                      "description": "the Kerberos principal linked to the host (set by admins: ddns host principal)"}}}
    fqdn_param = [{"name": "fqdn", "in": "path", "required": True, "schema": {"type": "string"}}]

    def ok(schema: dict, description: str = "OK") -> dict:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def error_answers(*codes: int) -> dict[str, dict]:
        """The error answers CODES (401 and 429 can come from every call: authentication is rate-limited)."""
        texts = {400: "the request is refused (see error); nothing changed", 401: "no valid bearer token",
                 403: "you may not do this (e.g. register hosts in that domain); nothing changed",
                 404: "no such host or domain (or one you may not see)", 409: "the name is taken",
                 429: "too many failed authentications or new secrets; wait a few minutes",
                 503: "the change could not be published, or the database is busy; nothing changed"}
        return {str(code): {"description": texts[code], "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}} for code in sorted({401, 429, *codes})}

    return {
        "openapi": "3.1.0",
        "info": {"title": "ddns API", "version": "1",
                 "description": "Manage your dynamic DNS hosts. Addresses are updated with the dyndns2 protocol "
                                "(GET /nic/update with the host's name and secret), not with this API."},
        "servers": [{"url": server_url + PREFIX}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A personal API token (made in the portal) or an "
                                                          "access token of the service's OpenID provider."}},
            "schemas": {"Host": host_schema,
                        "Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
        },
        "paths": {
            "/domains": {"get": {"summary": "Domains you may register hosts in", "responses": {
                "200": ok({"type": "array", "items": {"type": "object", "properties": {
                    "domain": {"type": "string"}, "public": {"type": "boolean"},
                    "groups": {"type": "array", "items": {"type": "string"}}}}}), **error_answers()}}},
            "/hosts": {
                "get": {"summary": "Your hosts", "responses": {
                    "200": ok({"type": "array", "items": {"$ref": "#/components/schemas/Host"}}), **error_answers()}},
                "post": {"summary": "Register a host; the answer holds its secret, shown only this once",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": list(REQUIRED), "properties": {
                                 key: {"type": "string", **rules} for key, rules in FIELDS.items()}}}}},
                         "responses": {"201": ok({"allOf": [{"$ref": "#/components/schemas/Host"}, {
                             "type": "object", "properties": {"secret": {"type": "string"}}}]}, "Created"),
                             **error_answers(400, 403, 404, 409)}}},
            "/hosts/{fqdn}": {
                "parameters": fqdn_param,
                "get": {"summary": "One of your hosts", "responses": {
                    "200": ok({"$ref": "#/components/schemas/Host"}), **error_answers(404)}},
                "delete": {"summary": "Delete a host and its DNS records", "responses": {
                    "204": {"description": "Deleted"}, **error_answers(404, 503)}}},
            "/hosts/{fqdn}/secret": {
                "parameters": fqdn_param,
                "post": {"summary": "A new secret; the old one stops working at once", "responses": {
                    "200": ok({"type": "object", "properties": {"fqdn": {"type": "string"},
                                                               "secret": {"type": "string"}}}),
                    **error_answers(404)}}},
            **api_keys.openapi_paths(fqdn_param, ok, error_answers),
        },
    }
