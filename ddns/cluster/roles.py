"""``ddns serve --role web|publisher``: the processes of a cluster (``all``, the default, is ``cli_serve.serve``).

Every node serves HTTP (portal, API, ``/nic/update``, ``/healthz``) and, when
``dnsupdate.port`` is set, RFC 2136; every node's ``Service`` hands its
updates over through the changes table (``changes.ChangeQueue`` in place of
the in-process publisher thread), so the adapters do not know which role they
run in. What a node reads (its zones, a host's records for the portal) comes
from its own clone of ``zones.upstream``, reset to the upstream whenever the
active publisher says it pushed (``NOTIFY ddns_published``) and every
``zones.sync_seconds``. A web node never answers ``nochg`` from that clone:
it has no served snapshot, so every update goes to the publisher, which
decides it against what it serves.

A web node publishes nothing itself: its publisher's commits (a host's
deletion) go through the table too (``webpublisher``); zones added or
changed (admins' changes) answer ``Unavailable`` -- make them on the
active publisher's node (CLI or portal).

A publisher node runs its managed named (a hidden primary) and stands by,
polling the advisory lock (``election``). Once elected it takes over
(``takeover``): the clone reset to the upstream, named reconciled, the
publisher thread started, the rows the upstream already has marked done from
its trailers, and the consumer applies the rest. If the lock may be lost the
process ends at once (exit status 75): it must not push or answer anything
more; restarted, it is a standby.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from typing import Callable

from .. import __version__, bind, listener
from ..config import Config, ConfigError
from ..instance import narrow_secrets, prepare_managed_bind
from ..service import Service
from ..wiring import build_publisher
from . import changes, upstream
from .election import Elector
from .takeover import Follower, Takeover
from .webpublisher import WebPublisher

log = logging.getLogger("ddns.cluster")

ROLES = ("all", "web", "publisher")
LOST_LOCK_EXIT = 75  # EX_TEMPFAIL: a supervisor restarts the node, as a standby


def cluster_config(cfg: Config) -> Config:
    """CFG checked for a cluster role; a publisher pushes every group before answering it (no push delay)."""
    if cfg["cluster.role"] not in ROLES:
        raise ConfigError(f"cluster.role is one of {', '.join(ROLES)}, not {cfg['cluster.role']!r}")
    if not cfg["store.url"].startswith(("postgresql://", "postgres://")):
        raise ConfigError("a cluster role needs store.url = \"postgresql://...\": the changes table lives there")
    if not cfg.upstream:
        raise ConfigError("a cluster role needs zones.upstream: the repository every node follows")
    values = {**cfg.as_dict(), "zones.push_seconds": 1e9}
    if cfg["cluster.role"] == "web":
        values["bind.managed"] = False
    return Config(values, cfg.base_dir, cfg.source)


def wait_seconds(cfg: Config) -> float:
    """How long a request waits for its change's outcome: named's budget plus a failover's."""
    return cfg["bind.verify_timeout"] + cfg["cluster.takeover_seconds"]


def serve(cfg: Config, ready: Callable[[Service], None] | None = None,
          stop_event: threading.Event | None = None) -> int:
    """Run one node of the cluster in CFG's role until SIGTERM / SIGINT (or a lost lock).

    What it says goes to the log (``ddns.serve``, as ``ddns serve``'s), in log.format.
    """
    cfg = cluster_config(cfg)
    out = logging.getLogger("ddns.serve").info
    role, url = cfg["cluster.role"], cfg["store.url"]
    narrow_secrets(cfg)
    upstream.ensure_clone(cfg.path("zones.repo"), cfg.upstream, cfg["zones.git_fsync"])
    upstream.follow(cfg.path("zones.repo"), cfg["zones.branch"])  # before recover: unpushed commits go
    if cfg["bind.managed"]:
        prepare_managed_bind(cfg)
    queue = changes.ChangeQueue(url, wait_seconds(cfg))
    stop = stop_event or threading.Event()
    named = takeover = None
    if role == "web":
        publisher = build_publisher(cfg, kind=WebPublisher, queue=queue, branch=cfg["zones.branch"])
        service = Service.open(cfg, publisher=publisher, handover=queue)  # the migrations include the changes table
        follower = Follower(publisher.follow, url, cfg["zones.sync_seconds"])
    else:
        elected = threading.Event()
        elector = Elector(url, cfg["cluster.lock_id"], elected.set, _lost)
        service = Service.open(cfg, handover=queue, active=elector.active.is_set)
        follower = Follower(functools.partial(upstream.follow_locked, service.publisher, cfg["zones.branch"]),
                            url, cfg["zones.sync_seconds"])
        takeover = Takeover(service, url, follower, elector, elected)
    queue.failed = functools.partial(service.metrics.error, "cluster")  # every adapter's hand-overs, counted once
    try:
        if cfg["bind.managed"]:
            service.prepare_named()
            named = bind.ManagedNamed(cfg.path("bind.dir"), bind.Rndc(cfg["bind.rndc_server"], cfg["bind.rndc_port"],
                                                                      cfg.path("bind.rndc_key")), cfg["bind.named"])
            named.start()
        queue.start()
        follower.start()
        return _run(cfg, service, out, ready, stop, takeover)
    finally:
        follower.stop()
        queue.stop()
        if named:
            named.stop()


def _lost(reason: str) -> None:
    """The lock may be gone: stop at once, nothing more is pushed or answered (see the module)."""
    log.critical("stopping: %s", reason)
    logging.shutdown()
    os._exit(LOST_LOCK_EXIT)  # not a clean stop: that would push and answer what the publisher thread holds


def _run(cfg: Config, service: Service, out: Callable[[str], None], ready: Callable[[Service], None] | None,
         stop: threading.Event, takeover: Takeover | None) -> int:
    from ..web import create_app, make_server

    server = make_server(create_app(service, role=cfg["cluster.role"]), cfg)
    server.prepare()
    update_listener = listener.start(service, cfg)
    web = threading.Thread(target=server.serve, name="http", daemon=True)
    web.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    out(f"ddns {__version__} serving as {cfg['cluster.role']} on {cfg.public_url}"
        + (f", RFC 2136 updates on {cfg['dnsupdate.listen']}:{update_listener.port}" if update_listener else ""))
    if takeover is not None:
        takeover.elector.start()
    if ready:
        ready(service)
    try:
        if takeover is not None:
            takeover.run_until(stop, out)
        stop.wait()
        out("stopping")
    finally:
        server.stop()
        if update_listener:
            update_listener.stop()
        if takeover is not None:
            takeover.stop()
    return 0
