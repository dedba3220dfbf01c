"""The portal's TSIG key pages: a host's keys on its page, admins' zone keys on /admin/keys.

A new key's secret goes the way a host's does: the POST that makes it puts
it in the portal's in-memory stash and redirects (POST, redirect, GET) to the
page that shows it once with its key file and client snippets; reloading that
page shows it no more. Deleting asks for confirmation first. Every key is
found through ``Service.keys``/``delete_key`` with the visitor as the user, so
another user's key is "not found", whatever name is typed in.
"""
from __future__ import annotations

import functools
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

import bottle

from . import keyconfigs, keyrules
from .errors import DdnsError, NotFound, codes
from .keystore import KeyInfo
from .store import User

if TYPE_CHECKING:
    from .portal import Portal, Visit
    from .service import Service


def update_endpoint(portal: "Portal") -> tuple[str, int]:
    """Where the snippets send updates: the DNS update listener's address and port."""
    config = portal.service.config
    return keyconfigs.update_endpoint(config["dnsupdate.listen"], config["dnsupdate.port"], config.public_url)


def host_keys(service: "Service", user: User, fqdn: str) -> list[KeyInfo]:
    """The keys the host page lists; none when the host was deleted while the page was being made."""
    try:
        return service.keys(user, fqdn)
    except NotFound:
        return []


def install(portal: "Portal", app: bottle.Bottle) -> None:
    page, service = portal.page, portal.service
    portal.env.globals["key_algorithms"] = keyrules.ALGORITHMS  # the host page's key form

    def refusals(handler: Callable) -> Callable:
        """A refused key action is an error page with the status ddns.errors gives its kind."""
        @functools.wraps(handler)
        def wrapper(visit: "Visit", *args: Any, **kwargs: Any) -> bottle.HTTPResponse:
            try:
                return handler(visit, *args, **kwargs)
            except DdnsError as exc:
                return portal.error(visit, codes(exc).http, str(exc))
        return wrapper

    def visible(visit: "Visit", name: str, host: str | None, kind: str | None = None) -> KeyInfo:
        for key in service.keys(visit.user, host, kind):
            if key.name == name:
                return key
        raise NotFound(f"no key {name[:253]}")

    def secret_page(visit: "Visit", key: KeyInfo, back: str) -> bottle.HTTPResponse:
        secret = portal.stash.take(visit.session, "key:" + key.name)
        configs, (server, port) = [], update_endpoint(portal)
        if secret:
            fqdn = key.host if key.kind == "host" else key.name if key.kind == "acme" else key.zone
            zone = key.zone or service.host(key.host).zone
            configs = keyconfigs.key_configs(key.name, key.algorithm, secret, key.kind, fqdn, zone, server, port)
        return portal.render(visit, "key_secret.html", key=key, secret=secret, configs=configs, back=back,
                             listener_off=port == 0)

    def quoted(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    # ---- a host's keys ---------------------------------------------------------
    @app.post("/hosts/<fqdn>/keys")
    @page()
    @refusals
    def host_key_create(visit: "Visit", fqdn: str):
        host = service.owned_host(visit.user, fqdn)
        service.count_secret_action(visit.user)
        key, secret = service.add_key(visit.user, host.fqdn, acme=portal.form("kind") == "acme",
                                      algorithm=portal.form("algorithm") or keyrules.DEFAULT_ALGORITHM)
        portal.stash.put(visit.session, "key:" + key.name, secret)
        return portal.redirect(f"/hosts/{host.fqdn}/keys/{quoted(key.name)}/secret")

    @app.get("/hosts/<fqdn>/keys/<name>/secret")
    @page()
    @refusals
    def host_key_secret(visit: "Visit", fqdn: str, name: str):
        host = service.owned_host(visit.user, fqdn)
        return secret_page(visit, visible(visit, name, host.fqdn), f"/hosts/{host.fqdn}")

    @app.get("/hosts/<fqdn>/keys/<name>/delete")
    @page()
    @refusals
    def host_key_delete_confirm(visit: "Visit", fqdn: str, name: str):
        host = service.owned_host(visit.user, fqdn)
        key = visible(visit, name, host.fqdn)
        return portal.render(visit, "key_delete.html", key=key, action=f"/hosts/{host.fqdn}/keys/{quoted(key.name)}/delete",
                             back=f"/hosts/{host.fqdn}")

    @app.post("/hosts/<fqdn>/keys/<name>/delete")
    @page()
    @refusals
    def host_key_delete(visit: "Visit", fqdn: str, name: str):
        host = service.owned_host(visit.user, fqdn)
        key = service.delete_key(visit.user, name, host.fqdn)
        portal.flash(visit, f"The key {key.name} is revoked: updates signed with it are refused from now on.")
        return portal.redirect(f"/hosts/{host.fqdn}")

    # ---- zone keys (admins) ------------------------------------------------------
    def zone_keys_page(visit: "Visit", status: int = 200, error: str = "", form: dict | None = None):
        return portal.render(visit, "zone_keys.html", status, keys=service.keys(visit.user, kind="zone"),
                             zones=[d.zone for d in service.usable_domains(visit.user)], algorithms=keyrules.ALGORITHMS, error=error,
                             form=form or {"name": "", "zone": "", "rules": "grant zonesub TXT"})

    @app.get("/admin/keys")
    @page(admin=True)
    def zone_keys(visit: "Visit"):
        return zone_keys_page(visit)

    @app.post("/admin/keys")
    @page(admin=True)
    def zone_key_create(visit: "Visit"):
        form = {"name": portal.form("name", 253), "zone": portal.form("zone", 253), "rules": portal.form("rules", 10_000)}
        rules = tuple(line.strip() for line in form["rules"].splitlines() if line.strip())
        service.count_secret_action(visit.user)
        try:
            key, secret = service.add_key(visit.user, form["name"], zone=form["zone"], rules=rules,
                                          algorithm=portal.form("algorithm") or keyrules.DEFAULT_ALGORITHM)
        except DdnsError as exc:  # nothing was made: the form again, with what was typed
            return zone_keys_page(visit, codes(exc).http, str(exc), form)
        portal.stash.put(visit.session, "key:" + key.name, secret)
        return portal.redirect(f"/admin/keys/{quoted(key.name)}/secret")

    @app.get("/admin/keys/<name>/secret")
    @page(admin=True)
    @refusals
    def zone_key_secret(visit: "Visit", name: str):
        return secret_page(visit, visible(visit, name, None, "zone"), "/admin/keys")

    @app.get("/admin/keys/<name>/delete")
    @page(admin=True)
    @refusals
    def zone_key_delete_confirm(visit: "Visit", name: str):
        key = visible(visit, name, None, "zone")
        return portal.render(visit, "key_delete.html", key=key, action=f"/admin/keys/{quoted(key.name)}/delete",
                             back="/admin/keys")

    @app.post("/admin/keys/<name>/delete")
    @page(admin=True)
    @refusals
    def zone_key_delete(visit: "Visit", name: str):
        key = visible(visit, name, None, "zone")
        service.delete_key(visit.user, key.name)
        portal.flash(visit, f"The key {key.name} is revoked: updates signed with it are refused from now on.")
        return portal.redirect("/admin/keys")
