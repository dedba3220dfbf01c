"""Zone data in the zones repository, and rendering it to a zone file.

Layout of one zone directory ``ZONE/`` in the repository:

- ``zone.toml``       settings humans edit (SOA, NS, TTLs)            -- human
- ``static.zone``     static records in zone-file syntax              -- human
- ``dynamic/XX.records`` the hosts' records, one ``LABEL [TTL] TYPE RDATA``
                      per line, sorted, sharded by owner label (``ddns.shards``) -- service
- ``ZONE.zone``       the rendered head: SOA, NS, static records and one
                      ``$INCLUDE dynamic/XX.records`` per shard          -- service

The head's includes are relative to the zone directory (``cd ZONE &&
named-checkzone -w . ZONE ZONE.zone`` reads it); named itself loads a
flattened copy (``ddns.shards.assemble``), and ``ddns show ZONE [REV]``
prints one. Repositories of the old layout (one ``dynamic.records`` and the
whole zone in ``ZONE.zone``) are converted on load, in one commit.

There is no per-zone template: a template is code, and the zones repository is
data that admins push. Zones are rendered only with the shipped template or the
operator's (``zones.templates``, a path in the config file).

A pull request and a service commit never touch the same file. Everything
here is pure except the small readers, which take paths.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import jinja2

from . import krbrules
from .errors import Invalid
from .policy import reverse_zone
from .records import APEX, Dynamic, RecordSet, canonical, canonical_type, record_name
from .validate import AddressPolicy, parse_address, record_type

SETTINGS_FILE = "zone.toml"
STATIC_FILE = "static.zone"
DYNAMIC_FILE = "dynamic.records"  # the old layout's one file of dynamic records (migrated on load)
TEMPLATE_FILE = "zone.j2"


class SourceError(Invalid):
    """A human-edited file of a zone that must not be published; says which file (and line) to fix."""

    def __init__(self, file: str, line: int | None, message: str):
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file = file
        self.line = line


def rendered_file(zone: str) -> str:
    """Name of the rendered zone file inside the zone directory."""
    return f"{zone}.zone"


@dataclass(frozen=True)
class ZoneSettings:
    """What humans set for a zone (``zone.toml``)."""

    name: str
    ttl: int = 3600
    dynamic_ttl: int = 60
    primary_ns: str = ""
    hostmaster: str = ""
    refresh: int = 3600
    retry: int = 600
    expire: int = 1209600
    minimum: int = 60
    nameservers: tuple[str, ...] = ()
    unsigned_networks: tuple[str, ...] = ()  # [unsigned] networks: unsigned updates of a client's own name
    kerberos_rules: tuple[str, ...] = ()     # [kerberos] rules (ddns.krbrules), checked when the zone loads

    @classmethod
    def from_toml(cls, zone: str, text: str) -> "ZoneSettings":
        """The settings in TEXT; SourceError (naming zone.toml) for bad TOML or a value of the wrong type."""
        try:
            return cls._from_data(zone, tomllib.loads(text))
        except (tomllib.TOMLDecodeError, ValueError, TypeError, AttributeError) as exc:
            raise SourceError(SETTINGS_FILE, None, str(exc)) from exc

    @classmethod
    def _from_data(cls, zone: str, data: dict) -> "ZoneSettings":
        soa = data.get("soa", {})
        nameservers = tuple(data.get("nameservers", ()))
        primary = soa.get("primary_ns") or (nameservers[0] if nameservers else f"ns1.{zone}.")
        return cls(
            name=zone,
            ttl=int(data.get("ttl", cls.ttl)),
            dynamic_ttl=int(data.get("dynamic_ttl", cls.dynamic_ttl)),
            primary_ns=primary,
            hostmaster=soa.get("hostmaster", f"hostmaster.{zone}."),
            refresh=int(soa.get("refresh", cls.refresh)),
            retry=int(soa.get("retry", cls.retry)),
            expire=int(soa.get("expire", cls.expire)),
            minimum=int(soa.get("minimum", cls.minimum)),
            nameservers=nameservers or (primary,),
            unsigned_networks=unsigned_networks(_table(data, "unsigned").get("networks", ())),
            kerberos_rules=_kerberos_rules(zone, _table(data, "kerberos")),
        )


def _table(data: dict, name: str) -> dict:
    """The table NAME of zone.toml's DATA ({} when absent); SourceError when it is no table."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise SourceError(SETTINGS_FILE, None, f"{name} must be a table ([{name}])")
    return table


def unsigned_networks(values: object) -> tuple[str, ...]:
    """``[unsigned] networks`` canonical (``192.0.2.0/24``); SourceError for anything but a list of networks.

    Strict: an address with host bits (``192.0.2.7/24``) is refused rather
    than widened, and so is a scope (``fe80::%eth0/64``), which an update's
    source address never carries.
    """
    if not isinstance(values, (list, tuple)):
        raise SourceError(SETTINGS_FILE, None, "[unsigned] networks must be a list of networks")
    found: list[str] = []
    for value in values:
        if not isinstance(value, str) or "%" in value:
            raise SourceError(SETTINGS_FILE, None,
                              f"[unsigned] networks: {value!r} is not a network like 192.0.2.0/24 or 2001:db8::/64")
        try:
            network = str(ipaddress.ip_network(value.strip()))
        except ValueError as exc:
            raise SourceError(SETTINGS_FILE, None, f"[unsigned] networks: {value!r} is not a network: {exc}") from exc
        if network not in found:
            found.append(network)
    return tuple(found)


def _kerberos_rules(zone: str, table: dict) -> tuple[str, ...]:
    """``[kerberos] rules``: a list of rule strings, each valid for ZONE (SourceError says which and why)."""
    rules = table.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise SourceError(SETTINGS_FILE, None, "[kerberos] rules must be a list of strings")
    try:
        krbrules.parse_rules(rules, zone)
    except Invalid as exc:
        raise SourceError(SETTINGS_FILE, None, f"[kerberos] rules: {exc}") from exc
    return tuple(rules)


class BadRecordLine(Invalid):
    """A line of a dynamic records file that the service would never write."""


MAX_TTL = 2**31 - 1


def format_dynamic(records: Dynamic) -> str:
    """One RR per line, sorted by label, type, rdata: diff-friendly.

    ``LABEL TYPE RDATA`` for a set with the zone's dynamic TTL, ``LABEL TTL
    TYPE RDATA`` (on each of its lines) for one with a TTL of its own.
    """
    return "".join(f"{label} {rtype} {rdata}\n" if rs.ttl is None else f"{label} {rs.ttl} {rtype} {rdata}\n"
                   for (label, rtype), rs in sorted(records.items()) for rdata in rs.rdatas)


def _split_line(number: int, line: str) -> tuple[str, int | None, str, str]:
    """(label, TTL or None, type, rdata) of one line; the rdata is the rest of the line."""
    label, _, rest = line.partition(" ")
    ttl = None
    first, _, after = rest.partition(" ")
    if first.isascii() and first.isdigit():
        if first != str(int(first)) or int(first) > MAX_TTL:
            raise BadRecordLine(f"line {number}: bad TTL {first!r}")
        ttl, rest = int(first), after
    rtype, _, rdata = rest.partition(" ")
    if not (label and rtype and rdata):
        raise BadRecordLine(f"line {number}: expected 'LABEL [TTL] TYPE RDATA': {line!r}")
    return label, ttl, rtype, rdata


_ANY_HOST_ADDRESS = AddressPolicy(allow_private=True, allow_loopback=True)


def _check_line(label: str, rtype: str, rdata: str) -> None:
    """Raises Invalid unless the service could have written this record."""
    if label == APEX or record_name(label) != label:  # the apex holds static records: never dynamic ones
        raise Invalid(f"bad label {label!r}")
    if canonical_type(rtype) != rtype or rtype == "SOA":
        raise Invalid(f"bad type {rtype!r}")
    if rtype in ("A", "AAAA"):  # what a host may publish, whatever the operator's policy on private and loopback
        addr = parse_address(rdata, _ANY_HOST_ADDRESS)
        if record_type(addr) != rtype:
            raise Invalid(f"{rdata} is not {rtype} data")
        if rtype == "A":  # an IPv4 address's text is canonical A data exactly when it is its own dotted quad
            if str(addr) != rdata:
                raise Invalid(f"{rdata!r} is not canonical A data")
            return  # (dnspython's parse would cost 0.8 of the line's time at load, for the same verdict)
    if canonical(rtype, rdata) != rdata:
        raise Invalid(f"{rdata!r} is not canonical {rtype} data")


def parse_dynamic(text: str) -> Dynamic:
    """Parse a file of dynamic records (a shard); every line is validated as strictly as input.

    Lines of the old form (``LABEL A|AAAA ADDRESS``, one per host and family)
    are lines of the current one: old repositories load unchanged.
    """
    records: dict[tuple[str, str], tuple[int | None, list[str]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, ttl, rtype, rdata = _split_line(number, line)
        try:
            _check_line(label, rtype, rdata)
        except Invalid as exc:
            raise BadRecordLine(f"line {number}: {exc}") from exc
        set_ttl, rdatas = records.setdefault((label, rtype), (ttl, []))
        if set_ttl != ttl:
            raise BadRecordLine(f"line {number}: the lines of {label} {rtype} carry different TTLs")
        if rdata in rdatas:
            raise BadRecordLine(f"line {number}: {label} {rtype} {rdata} twice")
        rdatas.append(rdata)
    return {key: RecordSet(tuple(sorted(rdatas)), ttl) for key, (ttl, rdatas) in records.items()}


_SOA_SERIAL = re.compile(r"\bSOA\s+\S+\s+\S+\s*\(?\s*(\d+)")


def serial_of(zone_text: str) -> int | None:
    """The SOA serial of a rendered zone file (found within its first lines)."""
    match = _SOA_SERIAL.search(zone_text, 0, 4096)
    return int(match.group(1)) if match else None


# ---- static.zone: what a human may write there ------------------------------------------------

# $INCLUDE would make named (and named-checkzone) read a file of the server's disk; $GENERATE makes
# records nobody sees in the file. Only these two directives are allowed:
ALLOWED_DIRECTIVES = ("$TTL", "$ORIGIN")


@dataclass(frozen=True)
class StaticEntry:
    """One entry of a zone file (lines joined inside parentheses)."""

    line: int                 # where it starts
    owner: bool               # it starts in column 0: its first field is an owner name or a directive
    fields: tuple[str, ...]


_TOKEN = re.compile(r"""
    (?P<newline>\n)
  | [ \t\r]+ | ;[^\n]*                                    # blanks, comments
  | (?P<paren>[()])
  | (?P<token>"(?:[^"\\\n]+|\\[^\n])*"?                 # a quoted string, never past a line end
             | (?:[^ \t\r\n;()"\\]+|\\[^\n])+ | \\)     # a word with escapes; a lone backslash
""", re.X)


def _tokens(text: str) -> Iterator[tuple[int, bool, str]]:
    """(line, in column 0, token) of zone-file TEXT; line ends and parentheses are tokens of their own.

    Comments, quoted strings and backslash escapes as BIND reads them, except
    that neither a quote nor an escape ever swallows a line end: stricter
    than BIND, so nothing can hide a directive at the start of a line.
    """
    line, line_start = 1, 0
    for match in _TOKEN.finditer(text):
        if match.group("newline"):
            yield line, False, "\n"
            line, line_start = line + 1, match.end()
        elif match.lastgroup in ("paren", "token"):
            yield line, match.start() == line_start, match.group()


def static_entries(text: str) -> list[StaticEntry]:
    """The entries of zone-file TEXT, in order."""
    entries: list[StaticEntry] = []
    depth, started, start, owner, fields = 0, False, 0, False, []
    for line, column0, token in _tokens(text):
        if token == "\n":
            if depth == 0:
                if fields:
                    entries.append(StaticEntry(start, owner, tuple(fields)))
                started, fields = False, []
            continue
        if not started:
            started, start, owner = True, line, column0
        if token == "(":
            depth += 1
        elif token == ")":
            depth = max(depth - 1, 0)
        else:
            fields.append(token)
    if fields:
        entries.append(StaticEntry(start, owner, tuple(fields)))
    return entries


def _absolute(name: str, origin: str) -> str:
    if name == "@":
        return origin
    return name[:-1].lower() if name.endswith(".") else f"{name}.{origin}".lower()


def static_owners(static_text: str, zone: str) -> dict[str, int]:
    """Owner names of static.zone, relative to ZONE (its apex ``@``), each with the line it first appears on.

    Refuses (SourceError naming the line) what would publish something other
    than the file shows: directives but $TTL and $ORIGIN, and names or an
    $ORIGIN outside ZONE (named drops such data without failing).
    """
    zone = zone.lower().rstrip(".")
    origin, owners = zone, {}
    for entry in static_entries(static_text):
        first = entry.fields[0]
        if first.startswith("$"):
            directive = first.upper()
            if directive not in ALLOWED_DIRECTIVES:
                raise SourceError(STATIC_FILE, entry.line, f"{first} is not allowed (only {' and '.join(ALLOWED_DIRECTIVES)})")
            if directive == "$ORIGIN":
                if len(entry.fields) < 2:
                    raise SourceError(STATIC_FILE, entry.line, "$ORIGIN without a name")
                origin = _inside(zone, _absolute(entry.fields[1], origin), entry.line, "$ORIGIN")
            continue
        if entry.owner:
            name = _inside(zone, _absolute(first, origin), entry.line, "the name")
            owners.setdefault("@" if name == zone else name[: -len(zone) - 1], entry.line)
    return owners


def _inside(zone: str, name: str, line: int, what: str) -> str:
    if name != zone and not name.endswith("." + zone):
        raise SourceError(STATIC_FILE, line, f"{what} {name + '.' if name else '.'} is outside the zone {zone}. "
                                             "(named would drop its records)")
    return name


def check_host_names(source: "ZoneSource", host_labels: Iterable[str]) -> None:
    """Refuse static records on names that hosts use: named would merge them into the host's records."""
    clash = sorted(set(host_labels) & source.owners.keys(), key=lambda name: source.owners[name])
    if clash:
        raise SourceError(STATIC_FILE, source.owners[clash[0]],
                          f"{', '.join(clash)}: the name of a registered host (dynamic records); "
                          "static records there would join its records")


def template_environment(template_dirs: list[Path]) -> jinja2.Environment:
    """Jinja for zone files: no HTML escaping, undefined variables are errors.

    Unsandboxed, so only for trusted templates (the shipped one, the
    operator's): never give it a directory of the zones repository.
    """
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs]),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_zone(
    template: jinja2.Template,
    settings: ZoneSettings,
    serial: int,
    static_text: str,
    dynamic: str,
) -> str:
    """Render a zone's head file.

    The dynamic records reach the template as one pre-formatted block
    (``dynamic``): the ``$INCLUDE`` lines of the zone's shards between
    ``$TTL`` lines (``ddns.shards.include_block``), so the head stays small
    whatever the zone's size and operators' templates keep working.
    """
    return template.render(zone=settings, serial=serial, static=static_text, dynamic=dynamic)


@dataclass
class ZoneSource:
    """The human-edited inputs of one zone, read from a zone directory."""

    settings: ZoneSettings
    static_text: str
    owners: dict[str, int] = field(default_factory=dict)  # static owner names -> first line (static_owners)

    @property
    def reserved(self) -> set[str]:
        """Names hosts may not take: the static ones and the apex."""
        return set(self.owners) | {"@"}

    @classmethod
    def read(cls, zone_dir: Path) -> "ZoneSource":
        """Read and check the sources; SourceError names the file to fix."""
        zone = zone_dir.name
        if os.path.lexists(zone_dir / TEMPLATE_FILE):
            raise SourceError(TEMPLATE_FILE, None, "per-zone templates are not supported (a template is code the "
                                                   "service would run); remove it: zone.toml and static.zone hold "
                                                   "the zone, the operator's zones.templates its layout")
        for name in (SETTINGS_FILE, STATIC_FILE):
            if (zone_dir / name).is_symlink():  # it would make the service read a file of its disk
                raise SourceError(name, None, "is a symbolic link: make it a file")
        settings = ZoneSettings.from_toml(zone, (zone_dir / SETTINGS_FILE).read_text())
        static_path = zone_dir / STATIC_FILE
        static_text = static_path.read_text() if static_path.exists() else ""
        return cls(settings, static_text, static_owners(static_text, zone))


def list_zones(repo_dir: Path) -> list[str]:
    """Zones in the repository: directories holding a ``zone.toml``."""
    return sorted(p.parent.name for p in repo_dir.glob(f"*/{SETTINGS_FILE}") if not p.parent.is_symlink())



def check_reverse_zone(zone: str) -> None:
    """Invalid unless a reverse ZONE's labels are octets (in-addr.arpa) or nibbles (ip6.arpa), most significant last.

    ``2.0.192.in-addr.arpa`` holds 192.0.2.0/24, ``8.b.d.0.1.0.0.2.ip6.arpa``
    2001:db8::/32; a forward zone passes unchecked.
    """
    for suffix, most, label in (("in-addr.arpa", 4, r"(?:0|[1-9][0-9]{0,2})"), ("ip6.arpa", 32, r"[0-9a-f]")):
        if zone.endswith("." + suffix):
            labels = zone[: -len(suffix) - 1].split(".")
            if len(labels) > most or not all(re.fullmatch(label, x) and (len(x) < 3 or int(x) < 256) for x in labels):
                raise Invalid(f"{zone} is no reverse zone: {suffix} takes at most {most} labels of "
                              + ("octets 0-255" if most == 4 else "one hex digit each"))


def default_zone_files(zone: str, nameservers: list[str] | None, glue_address: str) -> tuple[str, str]:
    """zone.toml and static.zone for a new zone; without NAMESERVERS, ns1.ZONE with glue.

    A reverse zone needs NAMESERVERS: its server's name lives in a forward zone
    (with its address there), and a reverse zone holds no addresses.
    """
    if reverse_zone(zone) and not nameservers:
        raise Invalid(f"a reverse zone needs its name server (--ns ns1.example.org): {zone} holds no addresses")
    ns = [n if n.endswith(".") else n + "." for n in (nameservers or [f"ns1.{zone}."])]
    ns_list = ", ".join(f'"{n}"' for n in ns)
    settings = (f"# Settings of {zone}; edit by pull request.\n"
                f"ttl = 3600          # TTL of static records\n"
                f"dynamic_ttl = 60    # TTL of the records hosts update\n"
                f"nameservers = [{ns_list}]\n\n"
                f"[soa]\nhostmaster = \"hostmaster.{zone}.\"\nrefresh = 3600\nretry = 600\nexpire = 1209600\nminimum = 60\n")
    static = f"; Static records of {zone} in zone-file syntax; edit by pull request.\n"
    if not nameservers:
        static += f"ns1 IN A {glue_address}\n"
    return settings, static
