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
import threading
import time
from typing import Any, Callable

import bottle

from .auth import FailureLimiter, client_network
from .oidc import LoginFailed, OidcLogin
from .publisher import Outcome
from .service import HostView, NoSuchObject, Service, ServiceError, TooMany
from .store import User

PREFIX = "/api/v1"


def host_json(view: HostView) -> dict[str, Any]:
    host = view.host
    return {"fqdn": host.fqdn, "domain": host.zone, "comment": host.comment, "ipv4": view.ipv4, "ipv6": view.ipv6,
            "created": host.created, "last_update": host.last_update, "last_client": host.last_client,
            "last_agent": host.last_agent, "last_tls": host.last_tls, "auth_faults": host.auth_faults,
            "client_faults": host.client_faults}


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
        user = service.api_token_user(token)
        if user is not None or oidc is None or token.startswith("ddns_"):
            return user
        user_id = cache.get(token)
        if user_id is not None:
            return service.store.user_by_id(user_id)
        if known_only:
            return None
        try:
            user = service.login_oidc(oidc.userinfo(token))
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
            except NoSuchObject as exc:
                return problem(404, str(exc))
            except TooMany as exc:
                return problem(429, str(exc))
            except ServiceError as exc:
                return problem(400, str(exc))
        return wrapper

    def body() -> dict[str, Any]:
        try:
            data = json.loads(bottle.request.body.read(64 * 1024) or b"{}")
        except ValueError as exc:
            raise ServiceError("the body is not JSON") from exc
        if not isinstance(data, dict):
            raise ServiceError("the body must be a JSON object")
        return data

    def text(data: dict[str, Any], key: str) -> str:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ServiceError(f"{key} must be a string")
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
        service.count_secret_action(user)
        host, secret = service.add_host_for(user, text(data, "name"), text(data, "domain"), text(data, "comment"))
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
        service.count_secret_action(user)
        return reply({"fqdn": host.fqdn, "secret": service.regenerate_secret(host.fqdn)})


def openapi_document(server_url: str) -> dict[str, Any]:
    """OpenAPI 3.1 description of the API above."""
    host_schema = {"type": "object", "properties": {
        "fqdn": {"type": "string"}, "domain": {"type": "string"}, "comment": {"type": "string"},
        "ipv4": {"type": ["string", "null"]}, "ipv6": {"type": ["string", "null"]},
        "created": {"type": "number"}, "last_update": {"type": ["number", "null"]},
        "last_client": {"type": ["string", "null"]}, "last_agent": {"type": ["string", "null"]},
        "last_tls": {"type": ["boolean", "null"]}, "auth_faults": {"type": "integer"},
        "client_faults": {"type": "integer"}}}
    error = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    fqdn_param = [{"name": "fqdn", "in": "path", "required": True, "schema": {"type": "string"}}]

    def ok(schema: dict, description: str = "OK") -> dict:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

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
                        "Error": {"type": "object", "properties": {"error": {"type": "string"}}}},
        },
        "paths": {
            "/domains": {"get": {"summary": "Domains you may register hosts in", "responses": {
                "200": ok({"type": "array", "items": {"type": "object", "properties": {
                    "domain": {"type": "string"}, "public": {"type": "boolean"},
                    "groups": {"type": "array", "items": {"type": "string"}}}}}), "401": error}}},
            "/hosts": {
                "get": {"summary": "Your hosts", "responses": {
                    "200": ok({"type": "array", "items": {"$ref": "#/components/schemas/Host"}}), "401": error}},
                "post": {"summary": "Register a host; the answer holds its secret, shown only this once",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["name", "domain"], "properties": {
                                 "name": {"type": "string", "description": "the label, e.g. myvm"},
                                 "domain": {"type": "string", "description": "e.g. dyn.example.org"},
                                 "comment": {"type": "string"}}}}}},
                         "responses": {"201": ok({"allOf": [{"$ref": "#/components/schemas/Host"}, {
                             "type": "object", "properties": {"secret": {"type": "string"}}}]}, "Created"),
                             "400": error, "401": error, "404": error}}},
            "/hosts/{fqdn}": {
                "parameters": fqdn_param,
                "get": {"summary": "One of your hosts", "responses": {
                    "200": ok({"$ref": "#/components/schemas/Host"}), "401": error, "404": error}},
                "delete": {"summary": "Delete a host and its DNS records", "responses": {
                    "204": {"description": "Deleted"}, "401": error, "404": error, "503": error}}},
            "/hosts/{fqdn}/secret": {
                "parameters": fqdn_param,
                "post": {"summary": "A new secret; the old one stops working at once", "responses": {
                    "200": ok({"type": "object", "properties": {"fqdn": {"type": "string"},
                                                               "secret": {"type": "string"}}}),
                    "401": error, "404": error}}},
        },
    }
