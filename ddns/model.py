"""The neutral words of a DNS change, shared by every interface and the publisher.

An interface (dyndns2, RFC 2136, the portal, the JSON API, the CLI) turns what
its client sent into an ``Update``: operations on RRsets of one zone, the
prerequisites that must hold when they are applied, and who asked. The service
checks the update against the identity's grants and hands it to the publisher,
which evaluates the prerequisites and applies the operations under its lock,
all or nothing, and answers with a ``Result``. Each interface maps the
``Outcome`` to its own words in one table of its own.

Names are absolute, lower-case, without the trailing dot
(``myvm.dyn.example.org``); record data is in canonical presentation form
(``192.0.2.1``, ``"v=spf1 -all"``). Nothing here does I/O.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable


class Op(enum.Enum):
    """What an operation does to the zone (RFC 2136 section 2.5)."""

    ADD = "add"                    # add one RR to its RRset; the same rdata again only sets the TTL
    DELETE_RR = "delete-rr"        # remove one RR (by rdata) from its RRset
    DELETE_RRSET = "delete-rrset"  # remove the RRset of one type at a name
    DELETE_NAME = "delete-name"    # remove every RRset at a name that an update may change


@dataclass(frozen=True)
class Operation:
    """One operation on one RRset (or, for ``DELETE_NAME``, on every RRset of a name)."""

    op: Op
    name: str
    rtype: str = ""          # "" only for DELETE_NAME
    rdata: str = ""          # ADD and DELETE_RR only
    ttl: int | None = None   # ADD only; None: the zone's dynamic TTL

    @classmethod
    def replace(cls, name: str, rtype: str, rdatas: list[str], ttl: int | None = None) -> list["Operation"]:
        """The operations that make NAME's RTYPE RRset exactly RDATAS (empty: delete it)."""
        return [cls(Op.DELETE_RRSET, name, rtype)] + [cls(Op.ADD, name, rtype, r, ttl) for r in rdatas]


class Need(enum.Enum):
    """A prerequisite's kind (RFC 2136 section 2.4), each with the rcode its failure gets."""

    NAME_IN_USE = "name-in-use"            # unmet: NXDOMAIN
    NAME_NOT_IN_USE = "name-not-in-use"    # unmet: YXDOMAIN
    RRSET_EXISTS = "rrset-exists"          # unmet: NXRRSET (value independent)
    RRSET_NOT_EXISTS = "rrset-not-exists"  # unmet: YXRRSET
    RRSET_EQUALS = "rrset-equals"          # unmet: NXRRSET (value dependent; rdata compared, TTL ignored)


@dataclass(frozen=True)
class Prerequisite:
    need: Need
    name: str
    rtype: str = ""                          # "" for the two name prerequisites
    rdatas: frozenset[str] = frozenset()     # RRSET_EQUALS only: the whole set the RRset must be


@dataclass(frozen=True)
class RRset:
    """One RRset as the zone holds it: one TTL for the set (RFC 2181 section 5.2)."""

    name: str
    rtype: str
    ttl: int
    rdatas: tuple[str, ...]  # sorted, no duplicates


@dataclass(frozen=True)
class Actor:
    """Who asked, from where, through which interface: what the commit's audit trailer records."""

    name: str                # "host:myvm.dyn.example.org", "key:acme.myvm...", "user:alice"
    client: str = ""         # the client's address
    interface: str = "cli"   # dyndns2, rfc2136, portal, api, cli, httpreq
    agent: str = ""
    request: str = ""


class Match(enum.Enum):
    """The rule types of BIND's update-policy that a grant may use."""

    SELF = "self"            # the name is the signer's name
    SELFSUB = "selfsub"      # the signer's name or below it
    NAME = "name"            # exactly the grant's target
    SUBDOMAIN = "subdomain"  # the target or below it
    ZONESUB = "zonesub"      # the zone's apex or below it
    WILDCARD = "wildcard"    # the target is a pattern like *.example.org
    PTR_SELF = "ptr-self"    # PTR records of a reverse zone whose rdata names the target (a host's own PTRs)


@dataclass(frozen=True)
class Grant:
    """One rule of an identity's policy; the first rule that matches an operation decides."""

    allow: bool
    match: Match
    target: str = ""                          # NAME, SUBDOMAIN, WILDCARD, PTR_SELF; ZONESUB: only that zone
    types: frozenset[str] = frozenset()       # empty: every type but SOA, NS, RRSIG, NSEC, NSEC3


@dataclass(frozen=True)
class Identity:
    """Who an interface authenticated, and what they may change.

    ``signer`` is the name ``self`` rules compare with (a host's name, a key's
    name). ``guard`` is evaluated by the publisher under its lock just before
    the update is applied -- "this host is still registered", "this key is not
    revoked" -- so a credential removed meanwhile changes nothing.
    """

    actor: Actor
    signer: str
    grants: tuple[Grant, ...]
    guard: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Update:
    """Operations on one zone, applied all or nothing if every prerequisite holds."""

    zone: str
    operations: tuple[Operation, ...]
    prerequisites: tuple[Prerequisite, ...] = ()
    actor: Actor = Actor("cli")
    guard: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    change_id: int | None = None  # handed over through the cluster's changes table: its row (the trailers record it)


class Outcome(enum.Enum):
    """What became of an update, in no interface's words."""

    PUBLISHED = "published"  # committed, and BIND serves it
    UNCHANGED = "unchanged"  # the zone already was what the update asked for
    UNSERVED = "unserved"    # committed, but BIND does not serve it (yet); retried
    REFUSED = "refused"      # not allowed, or the guard failed under the lock: nothing changed
    UNMET = "unmet"          # a prerequisite did not hold: nothing changed
    FAILED = "failed"        # not committed (zone broken or held, disk, git): nothing changed


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    unmet: Prerequisite | None = None  # UNMET: the first prerequisite that did not hold
    reason: str = ""                   # for logs and operators, never for the wire


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key as the listener needs it to verify and sign."""

    name: str
    algorithm: str   # "hmac-sha256", ...
    secret: bytes
