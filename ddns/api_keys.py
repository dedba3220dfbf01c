"""The JSON API's TSIG key routes: ``/api/v1/hosts/{fqdn}/keys`` (installed by ddns.api).

The same rules as the portal: a user manages the keys of their own hosts;
another user's host or key is 404. A new key's secret is in the answer of
the POST that makes it, and nowhere else afterwards.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import bottle

from . import keyconfigs, keyrules
from .errors import DdnsError, Invalid, codes

if TYPE_CHECKING:
    from .service import Service

PREFIX = "/api/v1"
# The body of POST .../keys: the server enforces exactly what the OpenAPI document states.
KEY_FIELDS: dict[str, dict[str, Any]] = {
    "kind": {"enum": ["host", "acme"], "default": "host",
             "description": "host: the host's own A, AAAA and TXT records; acme: only TXT at _acme-challenge.FQDN"},
    "algorithm": {"enum": list(keyrules.ALGORITHMS), "default": keyrules.DEFAULT_ALGORITHM},
}
KEY_SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "kind": {"type": "string", "enum": list(keyrules.KINDS)},
    "algorithm": {"type": "string"}, "host": {"type": ["string", "null"]}, "zone": {"type": ["string", "null"]},
    "rules": {"type": "array", "items": {"type": "string"}}, "created": {"type": "number"}}}


def key_options(data: dict[str, Any]) -> dict[str, Any]:
    """The POST body as ``Service.add_key`` options; Invalid unless it is what KEY_FIELDS allows."""
    unknown = sorted(set(data) - set(KEY_FIELDS))
    if unknown:
        raise Invalid(f"unknown field {unknown[0][:50]!r}")
    values = {key: data.get(key, rules["default"]) for key, rules in KEY_FIELDS.items()}
    for key, value in values.items():
        if value not in KEY_FIELDS[key]["enum"]:
            raise Invalid(f"{key} must be one of {', '.join(KEY_FIELDS[key]['enum'])}")
    return {"acme": values["kind"] == "acme", "algorithm": values["algorithm"]}


def install(app: bottle.Bottle, service: "Service", endpoint: Callable, reply: Callable, problem: Callable,
            body: Callable[[], dict[str, Any]]) -> None:
    """The key routes, with ddns.api's authentication (ENDPOINT) and answers (REPLY, PROBLEM, BODY)."""

    def refusals(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> bottle.HTTPResponse:
            try:
                return handler(*args, **kwargs)
            except DdnsError as exc:
                return problem(codes(exc).http, str(exc))
        return wrapper

    @app.get(PREFIX + "/hosts/<fqdn>/keys")
    @endpoint
    @refusals
    def keys(user, fqdn: str):
        host = service.owned_host(user, fqdn)
        return reply([keyconfigs.key_json(k) for k in service.keys(user, host.fqdn)])

    @app.post(PREFIX + "/hosts/<fqdn>/keys")
    @endpoint
    @refusals
    def create(user, fqdn: str):
        host = service.owned_host(user, fqdn)
        options = key_options(body())
        service.count_secret_action(user)
        key, secret = service.add_key(user, host.fqdn, **options)
        return reply({**keyconfigs.key_json(key), "secret": secret,
                      "key_file": keyconfigs.key_file(key.name, key.algorithm, secret)}, 201)

    @app.delete(PREFIX + "/hosts/<fqdn>/keys/<name>")
    @endpoint
    @refusals
    def delete(user, fqdn: str, name: str):
        host = service.owned_host(user, fqdn)
        service.delete_key(user, name, host.fqdn)
        return reply(None, 204)


def openapi_paths(fqdn_param: list[dict], ok: Callable, errors: Callable) -> dict[str, Any]:
    """The OpenAPI entries of the routes above (OK and ERRORS: ddns.api's answer builders)."""
    name_param = [*fqdn_param, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/hosts/{fqdn}/keys": {
            "parameters": fqdn_param,
            "get": {"summary": "The host's TSIG keys (never their secrets)", "responses": {
                "200": ok({"type": "array", "items": KEY_SCHEMA}), **errors(404)}},
            "post": {"summary": "Make a TSIG key for RFC 2136 updates; the answer holds its secret, shown only "
                                "this once", "requestBody": {"required": False, "content": {"application/json": {
                                    "schema": {"type": "object", "additionalProperties": False, "properties": {
                                        key: {"type": "string", **rules} for key, rules in KEY_FIELDS.items()}}}}},
                     "responses": {"201": ok({"allOf": [KEY_SCHEMA, {"type": "object", "properties": {
                         "secret": {"type": "string", "description": "base64"},
                         "key_file": {"type": "string", "description": "BIND key file, for nsupdate -k"}}}]},
                         "Created"), **errors(400, 404, 409)}}},
        "/hosts/{fqdn}/keys/{name}": {
            "parameters": name_param,
            "delete": {"summary": "Revoke a key: updates signed with it are refused at once", "responses": {
                "204": {"description": "Deleted"}, **errors(404)}}},
    }
