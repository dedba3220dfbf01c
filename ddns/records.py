"""A zone's RRsets and the RFC 2136 rules for changing them. Pure: no files, no locks.

The publisher keeps two kinds of data per zone. ``Static`` is what the zone
holds without the service's records -- the SOA, the apex NS and whatever
humans wrote in static.zone -- parsed once per load from the zone rendered
without dynamic records. ``Dynamic`` is what updates change: RRsets keyed by
(label, type), each with one TTL (None: the zone's ``dynamic_ttl``) and its
rdata as sorted canonical presentation text.

``apply`` decides one ``model.Update`` against both: prerequisites first
(RFC 2136 section 3.2, against static and dynamic data as they are at that
moment, including what earlier updates of the same group did), then the
operations (section 3.4.2): an ADD of a CNAME beside other data is ignored and
so is other data beside a CNAME, the same rdata again only sets the TTL, an
RRset keeps one TTL, SOA and the apex NS are never deleted, DELETE_NAME
removes only dynamic RRsets. A name that holds static records takes no
dynamic data at all (named would merge them). All or nothing: a refused or
unmet update leaves the records as they were.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Iterable

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone

from .errors import Invalid
from .model import Need, Op, Operation, Outcome, Prerequisite, Result, Update
from .validate import ACE_PREFIX, DOTTED_QUAD, REPEATS, InvalidName, normalize_name

APEX = "@"


@dataclass(frozen=True, slots=True)
class RecordSet:
    """One RRset's data: sorted canonical rdata and one TTL (None: the zone's dynamic TTL).

    Slots: a zone keeps one per record in memory (100,000 at 100k hosts); no
    __dict__ saves about 40 bytes each (4 MiB at 100k, measured).
    """

    rdatas: tuple[str, ...]
    ttl: int | None = None


# (label relative to the zone, type) -> the RRset; labels are lower-case, "@" is the apex.
Dynamic = dict[tuple[str, str], RecordSet]
# label -> type -> the RRset: looked up by name (is it in use, which types does it hold)
Static = dict[str, dict[str, RecordSet]]


def canonical_type(rtype: str) -> str:
    """RTYPE as dnspython names it ("a" -> "A"); Invalid when it is no record type."""
    if not isinstance(rtype, str):
        raise Invalid(f"not a record type: {rtype!r}")
    return _canonical_type(rtype)


@functools.lru_cache(maxsize=256)  # a handful of types in use: named on every update, 100k times at a load
def _canonical_type(rtype: str) -> str:
    try:
        value = dns.rdatatype.from_text(rtype)
    except (dns.exception.DNSException, ValueError) as exc:
        raise Invalid(f"not a record type: {rtype!r}") from exc
    if dns.rdatatype.is_metatype(value) or value == dns.rdatatype.NONE:
        raise Invalid(f"not a record type: {rtype!r}")
    return dns.rdatatype.to_text(value)


def canonical(rtype: str, text: str, zone: str | None = None) -> str:
    """TEXT as canonical presentation rdata of RTYPE; names relative to ZONE (absolute when None).

    A PTR target is absolute and lower-case (one spelling per name). Raises
    Invalid for data that is not RTYPE's (``1.2.3`` as A, an empty TXT), so
    nothing a zone file would refuse reaches one.
    """
    if rtype == "A" and DOTTED_QUAD.fullmatch(text):  # dnspython's own text for it, 30x faster
        return text
    origin = dns.name.from_text(zone) if zone else dns.name.root
    if not text or "\n" in text or "\r" in text or len(text) > 4000:
        raise Invalid(f"not {rtype} data: {text[:100]!r}")
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, text, origin=origin, relativize=False)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise Invalid(f"not {rtype} data: {text[:100]!r}: {exc}") from exc
    if rdata.rdtype == dns.rdatatype.PTR:  # one spelling of a target: ptr-self compares it with a host's name
        return rdata.to_text().lower()
    return rdata.to_text()


_UNDERSCORE_LABEL = re.compile(r"_[a-z0-9](?:[a-z0-9-]{0,60}[a-z0-9])?")


_LDH = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_NAME = re.compile(rf"{_LDH}(?:\.{_LDH})*")


def record_name(name: str) -> str:
    """NAME as the model writes names (lower-case, no trailing dot, IDN as A-labels); Invalid otherwise.

    Host names' rules, except that a label may start with an underscore
    (``_acme-challenge.myvm.example.org``, ``_dmarc``).
    """
    text = name[:-1] if isinstance(name, str) and name.endswith(".") else name
    if not isinstance(text, str) or not text or len(text) > 253:
        raise Invalid(f"not a record name: {str(name)[:100]!r}")
    if _PLAIN_NAME.fullmatch(text) and not text.startswith(ACE_PREFIX) and "." + ACE_PREFIX not in text:
        return text  # lower-case LDH labels, none an A-label: what the checks below return unchanged
    return _record_name(name, text)


@functools.lru_cache(maxsize=REPEATS)  # an update names its zone and host more than once (see validate)
def _record_name(name: str, text: str) -> str:
    labels = []
    for part in text.split("."):
        if part.startswith("_"):
            if not _UNDERSCORE_LABEL.fullmatch(part.lower()):
                raise Invalid(f"not a record name: {name[:100]!r}")
            labels.append(part.lower())
            continue
        try:
            labels.append(normalize_name(part))
        except InvalidName as exc:
            raise Invalid(f"not a record name: {name[:100]!r}: {exc}") from exc
    return ".".join(labels)


def longest_zone(name: str, is_zone: Callable[[str], bool]) -> str | None:
    """The longest suffix of NAME (absolute, canonical) that IS_ZONE accepts, NAME itself first; None: none.

    A label is stripped at a time: no list of every suffix is built, which the
    loop thread's early "this changes something" (``Updates.surely_changes``) pays on every request."""
    zone = name
    while not is_zone(zone):
        _, dot, zone = zone.partition(".")
        if not dot:
            return None
    return zone


def label_of(name: str, zone: str) -> str:
    """NAME (absolute, in ZONE) relative to ZONE, "@" for the apex."""
    return APEX if name == zone else name[: -len(zone) - 1]


def zone_static(text: str, zone: str) -> Static:
    """The RRsets of zone file TEXT (rendered without dynamic records), with absolute names in rdata."""
    origin = dns.name.from_text(zone)
    parsed = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    static: Static = {}
    for name, node in parsed.nodes.items():
        label = APEX if name == origin else name.relativize(origin).to_text().lower()
        for rdataset in node.rdatasets:
            rtype = dns.rdatatype.to_text(rdataset.rdtype)
            static.setdefault(label, {})[rtype] = RecordSet(tuple(sorted({r.to_text() for r in rdataset})), rdataset.ttl)
    return static


def with_serial(soa: str, serial: int) -> str:
    """SOA rdata text with SERIAL in place of its own."""
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, soa)
    return rdata.replace(serial=serial).to_text()


class _View:
    """The records as one update sees them: the zone's data and the changes the update made so far."""

    def __init__(self, static: Static, dynamic: Dynamic, types: Iterable[str]):
        self.static = static
        self.dynamic = dynamic
        self.types = set(types)  # every type DYNAMIC holds (more do no harm): what a name is probed for
        self.changes: dict[tuple[str, str], RecordSet | None] = {}

    def get(self, label: str, rtype: str) -> RecordSet | None:
        key = (label, rtype)
        return self.changes[key] if key in self.changes else self.dynamic.get(key)

    def dynamic_at(self, label: str) -> dict[str, RecordSet]:
        return {t: rs for t in self.types if (rs := self.get(label, t)) is not None}

    def present(self, label: str) -> dict[str, RecordSet]:
        return {**self.static.get(label, {}), **self.dynamic_at(label)}

    def put(self, label: str, rtype: str, value: RecordSet | None) -> None:
        self.changes[(label, rtype)] = value
        self.types.add(rtype)

    def net_changes(self) -> Changes:
        return {k: v for k, v in self.changes.items() if self.dynamic.get(k) != v}


def _holds(need: Prerequisite, zone: str, view: _View) -> bool:
    present = view.present(label_of(need.name, zone))
    if need.need is Need.NAME_IN_USE:
        return bool(present)
    if need.need is Need.NAME_NOT_IN_USE:
        return not present
    if need.need is Need.RRSET_EXISTS:
        return need.rtype in present
    if need.need is Need.RRSET_NOT_EXISTS:
        return need.rtype not in present
    found = present.get(need.rtype)  # RRSET_EQUALS: compared by rdata, the TTL ignored
    return found is not None and set(found.rdatas) == set(need.rdatas)


def _add(op: Operation, label: str, view: _View) -> None:
    others = set(view.present(label)) - {op.rtype}
    if (op.rtype == "CNAME" and others) or (op.rtype != "CNAME" and "CNAME" in others):
        return  # RFC 2136 3.4.2.2: a CNAME beside other data (or other data beside a CNAME) is ignored
    old = view.get(label, op.rtype)
    if op.rtype == "CNAME" or old is None:  # a name has at most one CNAME: a new one replaces it
        view.put(label, op.rtype, RecordSet((op.rdata,), op.ttl))
        return
    # the same rdata again only sets the TTL; the set keeps one TTL, the last one added
    view.put(label, op.rtype, RecordSet(tuple(sorted(set(old.rdatas) | {op.rdata})), op.ttl))


def _delete(op: Operation, label: str, view: _View) -> None:
    """DELETE_RR / DELETE_RRSET / DELETE_NAME on dynamic data only: SOA and the apex NS are static."""
    if op.op is Op.DELETE_NAME:
        for rtype in view.dynamic_at(label):
            view.put(label, rtype, None)
        return
    old = view.get(label, op.rtype)
    if old is None:
        return
    rdatas = () if op.op is Op.DELETE_RRSET else tuple(r for r in old.rdatas if r != op.rdata)
    view.put(label, op.rtype, RecordSet(rdatas, old.ttl) if rdatas else None)


# What an update changes: (label, type) -> the RRset after it, None where it is deleted.
Changes = dict[tuple[str, str], "RecordSet | None"]


def apply(update: Update, static: Static, dynamic: Dynamic, types: Iterable[str]) -> tuple[Changes, Result | None]:
    """What UPDATE changes in DYNAMIC (only what differs), or ({}, the Result that stopped it: UNMET, FAILED).

    TYPES are the types DYNAMIC holds (the publisher keeps them, so that an
    update never scans the whole zone). Names and rdata are expected valid
    and canonical (the service checks them); nothing passed in is changed.
    """
    view = _View(static, dynamic, types)
    for need in update.prerequisites:
        if not _holds(need, update.zone, view):
            return {}, Result(Outcome.UNMET, unmet=need, reason=f"{need.need.value} {need.name} {need.rtype}".rstrip())
    for op in update.operations:
        label = label_of(op.name, update.zone)
        if op.op is Op.ADD:
            if label in static:
                # never merge dynamic data into static ones (named would): the zone's data conflict, nothing changes
                return {}, Result(Outcome.FAILED, reason=f"{op.name}: static records of {update.zone} use that name")
            _add(op, label, view)
        else:
            _delete(op, label, view)
    return view.net_changes(), None
