"""The one update use case: what every interface calls to change a zone's records.

An interface authenticates its client into an ``Identity`` and turns the
request into operations and prerequisites; ``Updates.update_many`` checks
each update against the identity's grants (``ddns.policy``), refuses types
the operator did not open (``updates.types``), makes names and rdata
canonical, and hands the updates to the publisher as one group. The
publisher evaluates each update's guard and prerequisites under its lock,
against the records it is about to change, and applies it all or nothing; the
answer comes once BIND serves the change (``PUBLISHED``) or the wait for it
ends (``UNSERVED``).

An update that changes nothing in what is committed and served right now
(``Publisher.served``, read without any lock) is answered ``UNCHANGED`` at
once, after its guard: the client that repeats its address every few minutes
(dyndns2's ``nochg``) does not queue behind the publisher. Anything else --
a change, an unmet prerequisite, a snapshot that is no longer current -- goes
to the publisher, which decides it as before; see
``ddns.publishing.servedview`` for why the answer from memory is the one the
publisher would give.

Every result is counted here, by the actor's interface and the outcome
(``observe``: the service's metrics), so no interface counts on its own.
"""
from __future__ import annotations

import ipaddress
from typing import Callable, Iterable

from . import policy, records
from .errors import DdnsError, Invalid, NotFound, Refused
from .model import Identity, Need, Op, Operation, Outcome, Prerequisite, Result, RRset, Update
from .publishing.publisher import Publisher
from .publishing.servedview import Served
from .validate import AddressPolicy, InvalidAddress, parse_address, record_type

MAX_TTL = 7 * 86400


class Updates:
    """Checks updates and hands them to the publisher (through PUBLISH: the queue while serving)."""

    def __init__(self, publisher: Publisher, publish: Callable[[list[Update]], list[Result]], types: Iterable[str],
                 addresses: AddressPolicy, observe: Callable[[str, str], None] = lambda interface, outcome: None):
        self.publisher = publisher
        self.publish = publish
        self.observe = observe  # (interface, outcome) of every result, and of every request refused as a whole
        self.types = frozenset(records.canonical_type(t) for t in types) - {"SOA"}
        self.addresses = addresses

    def find_zone(self, name: str) -> str | None:
        """The longest of our zones that NAME is in (None: none)."""
        try:
            name = records.record_name(name)
        except Invalid:
            return None
        return records.longest_zone(name, self.publisher.has_zone)

    def surely_changes(self, name: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
        """Whether replacing NAME's address RRsets with ADDRESSES surely changes what is committed now.

        Read from the publisher's records in memory, no lock, no store, no file:
        a cheap "not UNCHANGED" before ``unchanged_now``'s store read and secret
        check, which an update would pay only to be sent to a worker anyway.
        False when unsure (no such zone, a static record there): the full check decides.
        """
        try:
            name = records.record_name(name)
        except Invalid:
            return False
        states = self.publisher.zones  # read as it is: no lock, no file (has_zone may look at files)
        zone = records.longest_zone(name, states.__contains__)
        if zone is None:
            return False
        state, label = states[zone], records.label_of(name, zone)
        for addr in addresses:
            rtype = record_type(addr)
            found = state.dynamic.get((label, rtype))
            if found is None:
                return label not in state.static
            if found.rdatas != (str(addr),):
                return True
        return False

    def rrsets(self, zone: str, name: str) -> list[RRset]:
        """What ZONE holds at NAME now, static and dynamic, the apex SOA with the current serial."""
        name = self._in_zone(records.record_name(name), zone)
        try:
            return self.publisher.rrsets(zone, records.label_of(name, zone))
        except KeyError as exc:
            raise NotFound(f"no zone {zone}") from exc

    def update(self, identity: Identity, zone: str, operations: Iterable[Operation],
               prerequisites: Iterable[Prerequisite] = ()) -> Result:
        """Apply OPERATIONS to ZONE if PREREQUISITES hold, all or nothing (see the module)."""
        return self.update_many(identity, [Update(zone, tuple(operations), tuple(prerequisites))])[0]

    def update_many(self, identity: Identity, updates: list[Update]) -> list[Result]:
        """UPDATES as IDENTITY's, one group commit; one result each, in order.

        Invalid names, rdata or TTLs raise ``errors.Invalid`` (nothing is
        published); an update the identity may not make, or of a zone that is
        not ours, is REFUSED on its own. An update's own guard is checked
        beside the identity's.
        """
        interface = identity.actor.interface
        try:
            results = self._decide(identity, updates)
        except DdnsError as exc:
            self.observe(interface, exc.kind.value)
            raise
        for result in results:
            self.observe(interface, result.outcome.value)
        return results

    def unchanged_now(self, identity: Identity, updates: list[Update]) -> list[Result] | None:
        """UPDATES all answered UNCHANGED from the served snapshots, counted as ``update_many`` counts them.

        None when any of them needs more than memory (a refusal, an invalid
        name, a change, no current snapshot): ``update_many`` decides those,
        and counts them then. Nothing here waits but the guard's read.
        """
        try:
            results = [self._from_snapshot(identity, update) for update in updates]
        except DdnsError:
            return None
        if not all(isinstance(r, Result) and r.outcome is Outcome.UNCHANGED for r in results):
            return None
        for result in results:
            self.observe(identity.actor.interface, result.outcome.value)
        return results

    def _decide(self, identity: Identity, updates: list[Update]) -> list[Result]:
        """UPDATES checked, the unchanged answered from the served snapshot, the rest published (``update_many``)."""
        results: list[Result | None] = [None] * len(updates)
        ready: list[tuple[int, Update]] = []
        for i, update in enumerate(updates):
            decided = self._from_snapshot(identity, update)
            if isinstance(decided, Result):
                results[i] = decided
            else:
                ready.append((i, decided))
        if ready:  # nothing to queue when every update was refused or answered from the snapshot
            for (i, _), result in zip(ready, self.publish([u for _, u in ready])):
                results[i] = result
        return [r or Result(Outcome.FAILED, reason="not published") for r in results]

    def _from_snapshot(self, identity: Identity, update: Update) -> Update | Result:
        """UPDATE's REFUSED result, its UNCHANGED one from the zone's served snapshot, or UPDATE checked for the publisher."""
        served = self.publisher.served(records.record_name(update.zone))
        checked = self._check(identity, update, served is not None)
        if isinstance(checked, Result) or served is None or not self._unchanged(checked, served):
            return checked
        return Result(Outcome.UNCHANGED)

    def _check(self, identity: Identity, update: Update, served: bool = False) -> Update | Result:
        """UPDATE canonical and authorized, with IDENTITY's actor and guard; or the REFUSED result.

        SERVED: the zone has a current served snapshot, so it is ours now (no
        second look at its files).
        """
        zone = records.record_name(update.zone)
        if not served and not self.publisher.has_zone(zone):  # a merge removed it (or it never was ours)
            return Result(Outcome.REFUSED, reason=f"no zone {update.zone}")
        operations = tuple(self._operation(op, zone) for op in update.operations)
        prerequisites = tuple(self._prerequisite(p, zone) for p in update.prerequisites)
        try:
            operations = policy.authorize(identity, zone, operations)
        except Refused as exc:
            return Result(Outcome.REFUSED, reason=str(exc))
        closed = sorted({op.rtype for op in operations if op.rtype not in self.types})
        if closed:
            return Result(Outcome.REFUSED, reason=f"updates may not change {', '.join(closed)} records")
        return Update(zone, operations, prerequisites, identity.actor, _both(identity.guard, update.guard))

    def _unchanged(self, update: Update, served: Served) -> bool:
        """UPDATE (checked) changes nothing in SERVED, its zone's current snapshot, and its guard holds.

        False sends it to the publisher: an unmet prerequisite or a failed
        guard are decided there. The snapshot was current when read, before
        the checks: the answer is the one the update would get decided then.
        """
        changes, stopped = records.apply(update, served.static, served.dynamic, served.types)
        return not changes and stopped is None and (update.guard is None or update.guard())

    def _in_zone(self, name: str, zone: str) -> str:
        if not policy.in_zone(name, zone):
            raise Invalid(f"{name} is not in the zone {zone}")
        return name

    def _operation(self, op: Operation, zone: str) -> Operation:
        name = self._in_zone(records.record_name(op.name), zone)
        if op.op is Op.DELETE_NAME:
            return Operation(Op.DELETE_NAME, name)
        rtype = records.canonical_type(op.rtype)
        if op.op is Op.DELETE_RRSET:
            return Operation(Op.DELETE_RRSET, name, rtype)
        if op.ttl is not None and not (type(op.ttl) is int and 0 <= op.ttl <= MAX_TTL):
            raise Invalid(f"a TTL is 0 to {MAX_TTL} seconds, not {op.ttl!r}")
        return Operation(op.op, name, rtype, self._rdata(rtype, op.rdata, zone), op.ttl if op.op is Op.ADD else None)

    def _prerequisite(self, need: Prerequisite, zone: str) -> Prerequisite:
        name = self._in_zone(records.record_name(need.name), zone)
        if need.need in (Need.NAME_IN_USE, Need.NAME_NOT_IN_USE):
            return Prerequisite(need.need, name)
        rtype = records.canonical_type(need.rtype)
        rdatas = frozenset(records.canonical(rtype, r, zone) for r in need.rdatas)
        return Prerequisite(need.need, name, rtype, rdatas if need.need is Need.RRSET_EQUALS else frozenset())

    def _rdata(self, rtype: str, text: str, zone: str) -> str:
        """TEXT canonical; an address also by the operator's address rules (dyndns2.allow_private, ...).

        An address is written as ``ipaddress`` writes it, which is dnspython's
        spelling too, except for IPv6 addresses in ``::/80`` (dnspython writes
        an embedded IPv4 address in dotted form) and an IPv4-mapped spelling
        given as A data (refused, as before): those go through
        ``records.canonical``. Parsing the address once saves a dnspython parse
        on every dyndns2 request.
        """
        if rtype in ("A", "AAAA"):
            try:
                addr = parse_address(text, self.addresses)
            except InvalidAddress as exc:
                raise Invalid(str(exc)) from exc
            if record_type(addr) != rtype:
                raise Invalid(f"{text} is not {rtype} data")
            if (addr.version == 4 and ":" not in text) or (addr.version == 6 and addr.packed[:10] != bytes(10)):
                return str(addr)
        return records.canonical(rtype, text, zone)


def _both(first: Callable[[], bool] | None, second: Callable[[], bool] | None) -> Callable[[], bool] | None:
    """A guard that holds when FIRST and SECOND do (None: no guard)."""
    if first is None or second is None:
        return first or second
    return lambda: first() and second()
