"""Read models: what the pages, the API and /healthz show of the service's state.

Nothing here changes anything; the service answers its adapters' questions
with these, built from the publisher, the store, the guard and the
background threads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import bind
from .background import Background
from .config import Config
from .guard import Guard
from .publishing.publisher import Publisher
from .store import Domain, Host, Store


@dataclass(frozen=True)
class HostView:
    """A host with the addresses it has in the zone."""

    host: Host
    ipv4: str | None
    ipv6: str | None
    in_repository: bool = True  # False: a merge removed its zone; nothing is served until the zone returns

    @property
    def principal(self) -> str | None:
        """The Kerberos principal linked to the host (``ddns host principal``)."""
        return self.host.principal


@dataclass(frozen=True)
class DomainView:
    """An open domain with its number of hosts and its host records' TTL (None: not in the repository now)."""

    domain: Domain
    hosts: int
    dynamic_ttl: int | None


class Reports:
    """The views of hosts, the admins' status page and the health check."""

    def __init__(self, config: Config, store: Store, publisher: Publisher, guard: Guard, background: Background,
                 cluster_active: Callable[[], bool] | None = None):
        self.config = config
        self.store = store
        self.publisher = publisher
        self.guard = guard
        self.background = background
        self.cluster_active = cluster_active  # a publisher node of a cluster: whether it holds the lock

    def view(self, host: Host) -> HostView:
        """HOST with its addresses in Git; none, and not in the repository, when a merge removed its zone."""
        try:
            return HostView(host, self.publisher.current(host.zone, host.label, "A"),
                            self.publisher.current(host.zone, host.label, "AAAA"))
        except KeyError:  # the host stays (unserved) until its zone returns or it is deleted
            return HostView(host, None, None, in_repository=False)

    def served(self, host: Host) -> dict[str, list[str] | None]:
        """What BIND answers for the host now: {"A": [...], "AAAA": [...]} (None: no answer)."""
        server, port = self.config["bind.listen"], self.config["bind.port"]
        return {rtype: bind.served_records(host.fqdn, rtype, server, port, timeout=0.5) for rtype in ("A", "AAAA")}

    def status(self) -> dict:
        """What the admins' status page shows: counts, the publisher, BIND against Git, recent errors."""
        publisher, thread = self.publisher, self.background.publisher_thread
        zones_ = []
        for zone, state in sorted(publisher.zones.items()):
            served = bind.served_serial(zone, self.config["bind.listen"], self.config["bind.port"], timeout=0.5)
            zones_.append({"zone": zone, "git_serial": state.serial, "served_serial": served,
                           "in_sync": served == state.serial, "broken": state.broken,
                           "unserved": zone in publisher.unserved})
        return {
            "counts": {t: self.store.count(t) for t in ("users", "domains", "hosts", "sessions", "api_tokens")},
            "queue": thread.queue_length if thread else 0,
            "running": thread is not None,
            "last_publish": publisher.last_publish,
            "head": publisher.repo.head(),
            "zones": zones_,
            "last_error": publisher.last_error,
            "sync_error": self.background.sync_error,
            "errors": list(reversed(self.background.recent_errors.lines)),
            "failure_keys": self.guard.size(),
            "failure_table_size": self.config["security.failure_table_size"],
        }

    def health(self) -> dict:
        """What /healthz answers: "degraded", with the reasons, while changes are not published."""
        publisher, thread, sync_error = self.publisher, self.background.publisher_thread, self.background.sync_error
        # copies first: the publisher's threads change these meanwhile
        unserved, held = sorted(publisher.unserved.copy()), publisher.held.copy()
        broken = {zone: state.broken for zone, state in publisher.zones.copy().items() if state.broken}
        stalled = thread.stalled_for() if thread else 0.0
        reasons = [f"named does not serve the last commit of {zone}" for zone in unserved]
        reasons += [f"zone {zone} does not validate: {why}" for zone, why in sorted(broken.items())]
        reasons += [f"zone {zone} is held (no commits until its files are put back): {why}"
                    for zone, why in sorted(held.items())]
        if publisher.failure:
            reasons.append(f"the last publish failed: {publisher.failure}")
        if stalled > self.config["publisher.stuck_seconds"]:
            reasons.append(f"the publisher is stuck: a change has waited {stalled:.1f} s to be committed")
        if sync_error:
            reasons.append(sync_error)
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "sync_error": sync_error,
            "zones": sorted(publisher.zones.copy()),
            "unserved": unserved,
            "broken": broken,
            "held": held,
            "queue": thread.queue_length if thread else 0,
            "stalled_seconds": round(stalled, 3),
            "last_publish": publisher.last_publish,
            "last_error": publisher.last_error,
            **({"active": self.cluster_active()} if self.cluster_active is not None else {}),
        }
