"""A registered host's records: what its credentials may change, and removing them with the host.

A host's identity grants it its own A, AAAA and TXT records, TXT at
``_acme-challenge.<fqdn>`` and, in reverse zones, the PTR records that point at
it (``ptr-self``), guarded by "the host is still registered": the
publisher checks the guard under its lock right before it applies an update,
so one authenticated before a deletion but published after it is refused
instead of bringing the record back. ``delete_host`` removes the records and
the host as one step under that same lock: whatever was applied before is
removed, whatever comes after is refused.
"""
from __future__ import annotations

import functools

from .keyrules import ptr_self
from .model import Actor, Grant, Identity, Match, Op, Operation, Outcome, Update
from .publishing.publisher import Publisher
from .store import Host, Store

HOST_TYPES = frozenset({"A", "AAAA", "TXT"})


def names_of(host: Host) -> tuple[str, ...]:
    """The names a host's records live at."""
    return host.fqdn, f"_acme-challenge.{host.fqdn}"


def host_identity(store: Store, host: Host, actor: Actor) -> Identity:
    """HOST's own rights, guarded by "still registered" (see the module)."""
    guard = functools.partial(store.host_registered, host.fqdn, host.created, host.owner_id)
    grants = (Grant(True, Match.SELF, types=HOST_TYPES),
              Grant(True, Match.NAME, names_of(host)[1], frozenset({"TXT"})),
              ptr_self(host.fqdn))
    return Identity(actor, host.fqdn, grants, guard)


def delete_host(publisher: Publisher, store: Store, host: Host, actor: Actor) -> Outcome | None:
    """Remove HOST's records and HOST in one step under the publisher's lock; None: deleted meanwhile.

    If the records cannot be removed (a broken zone, a failed commit) the host
    stays (FAILED).
    """
    update = Update(host.zone, tuple(Operation(Op.DELETE_NAME, n) for n in names_of(host)), actor=actor)
    with publisher.locked():
        if not store.host_registered(host.fqdn, host.created, host.owner_id):
            return None  # deleted by a concurrent request
        batch = publisher.commit([update]) if _has_records(publisher, host) else None
        if batch is not None and _has_records(publisher, host):
            return Outcome.FAILED
        store.delete_host(host.fqdn)
    if batch is None:
        return Outcome.PUBLISHED
    [result] = batch.settle(publisher.wait_served(batch.serials))
    return Outcome.UNSERVED if result.outcome is Outcome.UNSERVED else Outcome.PUBLISHED


def _has_records(publisher: Publisher, host: Host) -> bool:
    """Whether HOST's names hold dynamic records now (False when its zone left the repository)."""
    try:
        return any(publisher.dynamic(host.zone, name[: -len(host.zone) - 1]) for name in names_of(host))
    except KeyError:
        return False
