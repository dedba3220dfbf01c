"""``ddns serve`` and ``ddns quickstart``: run an instance (named, the publisher, the web server) until stopped.

``serve`` is the single process (``cluster.role = all``); another role is a
node of a cluster (``ddns.cluster.roles``). ``quickstart`` creates a demo
instance the first time, prints a login and a working update, then serves it.
"""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Callable

from . import __version__, config as configmod, errors, listener, logs, memory
from .auth import new_secret
from .cli_base import Env, Exit
from .instance import (demo_key, freeze_loaded, init_instance, narrow_secrets, open_serving, prepare_managed_bind,
                       unfreeze_loaded)
from .metrics import check as check_metrics
from .service import Service

log = logging.getLogger("ddns.serve")


def cmd_serve(args, env: Env) -> Exit:
    path = configmod.find_config_file(args.config, env.environ, env.cwd)
    return serve(configmod.load(path, env.environ, {"cluster.role": args.role} if args.role else None), env)


def serve(cfg: configmod.Config, env: Env, ready: Callable[[Service], None] | None = None,
          stop_event: threading.Event | None = None) -> Exit:
    """Run named (if managed), the publisher and the web server until SIGTERM / SIGINT.

    What it says goes to the log (``ddns.serve``), so with log.format json every line is JSON.
    """
    check_metrics(cfg)  # unusable settings are refused before anything starts
    memory.limit_arenas()  # before the first thread starts (glibc read MALLOC_ARENA_MAX at exec)
    stop_logging = logs.configure(cfg, env.stderr)  # log.format, log.level
    try:
        return _serve(cfg, env, ready, stop_event)
    finally:
        stop_logging()


def _serve(cfg: configmod.Config, env: Env, ready: Callable[[Service], None] | None,
           stop_event: threading.Event | None) -> Exit:
    from .web import create_app, make_server

    if cfg["cluster.role"] != "all":  # a node of a cluster (ddns.cluster.roles)
        from .cluster import roles
        return Exit(roles.serve(cfg, ready, stop_event))
    narrow_secrets(cfg)
    if cfg["bind.managed"]:
        prepare_managed_bind(cfg)
    service, named = open_serving(cfg)  # named (if managed) started beside the zones' load
    stop = stop_event or threading.Event()
    try:
        status = service.start()
        for zone, state in sorted(status.items()):
            log.info("zone %s: %s", zone, state)
        freeze_loaded()  # its collection first: what it frees is given back too
        memory.give_back()  # what the load and the reconcile freed
        server = make_server(create_app(service), cfg)
        server.prepare()
        update_listener = listener.start(service, cfg)  # binds now: a port in use fails here
        web = threading.Thread(target=server.serve, name="http", daemon=True)
        web.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        log.info("ddns %s serving on %s (DNS on %s:%s%s)", __version__, cfg.public_url, cfg["bind.listen"],
                 cfg["bind.port"], f", RFC 2136 updates on {cfg['dnsupdate.listen']}:{update_listener.port}"
                 if update_listener else "")
        if ready:
            ready(service)
        stop.wait()
        log.info("stopping")
        server.stop()
        if update_listener:
            update_listener.stop()
        service.stop()
    finally:
        unfreeze_loaded()
        if named:
            named.stop()
    return Exit.OK


def cmd_quickstart(args, env: Env) -> Exit:
    """Create (first time) and run a demo instance, printing a login and a working curl line."""
    directory = Path(args.dir)
    config_path = directory / "ddns.toml"
    fresh = not config_path.exists()
    if fresh:
        init_instance(directory, args.http_port, args.dns_port, args.rndc_port, args.zone,
                      update_port=args.update_port)
    cfg = configmod.load(config_path, env.environ)
    service = Service.open(cfg)
    zone = service.domains()[0].domain.zone
    if fresh:
        password = new_secret()[:20]
        service.accounts.add_user("admin", password, is_admin=True)
        env.out(f"Admin login: admin / {password}  (shown once)")
    fqdn = f"demo.{zone}"
    try:
        secret = service.regenerate_secret(fqdn)
    except errors.NotFound:
        _, secret = service.add_host(fqdn, "admin", "created by quickstart")
    env.out(f"Demo host {fqdn}, secret {secret}")
    env.out("Update it:")
    env.out(f"  curl -u '{fqdn}:{secret}' '{cfg.public_url}/nic/update?myip=192.0.2.10'")
    env.out("See what BIND serves:")
    env.out(f"  dig @{cfg['bind.listen']} -p {cfg['bind.port']} +short {fqdn} A")
    if cfg["dnsupdate.port"]:
        key_path = demo_key(service, directory, fqdn)
        env.out(f"Or with nsupdate (RFC 2136, signed with the host's TSIG key in {key_path}):")
        script = (f"server {cfg['dnsupdate.listen']} {cfg['dnsupdate.port']}\\nzone {zone}\\n"
                  f"update delete {fqdn} A\\nupdate add {fqdn} 60 A 192.0.2.11\\nsend\\n")
        env.out(f"  printf '{script}' | nsupdate -k {key_path}")
    env.out(f"History: ddns -c {config_path} history {fqdn}")
    env.out(f"Web portal: {cfg.public_url}/  (log in as admin)")
    return serve(cfg, env)
