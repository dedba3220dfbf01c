"""Zone data in the zones repository, and rendering it to a zone file.

Layout of one zone directory ``ZONE/`` in the repository:

- ``zone.toml``       settings humans edit (SOA, NS, TTLs)            -- human
- ``static.zone``     static records in zone-file syntax              -- human
- ``dynamic.records`` one ``LABEL TYPE ADDRESS`` per line, sorted     -- service
- ``ZONE.zone``       the rendered file BIND loads                    -- service

There is no per-zone template: a template is code, and the zones repository is
data that admins push. Zones are rendered only with the shipped template or the
operator's (``zones.templates``, a path in the config file).

A pull request and a service commit never touch the same file. Everything
here is pure except the small readers, which take paths.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from .validate import InvalidAddress, InvalidName, normalize_name, parse_address, AddressPolicy, record_type

SETTINGS_FILE = "zone.toml"
STATIC_FILE = "static.zone"
DYNAMIC_FILE = "dynamic.records"
TEMPLATE_FILE = "zone.j2"


class SourceError(ValueError):
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

    @classmethod
    def from_toml(cls, zone: str, text: str) -> "ZoneSettings":
        data = tomllib.loads(text)
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
        )


# (label, type) -> address text; labels are relative to the zone.
DynamicRecords = dict[tuple[str, str], str]


class BadRecordLine(ValueError):
    """A line of a dynamic records file that the service would never write."""


def parse_dynamic(text: str) -> DynamicRecords:
    """Parse ``dynamic.records``; every line is validated as strictly as input."""
    records: DynamicRecords = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ("A", "AAAA"):
            raise BadRecordLine(f"line {number}: expected 'LABEL A|AAAA ADDRESS': {line!r}")
        label, rtype, address = parts
        try:
            if normalize_name(label) != label or "." in label:
                raise BadRecordLine(f"line {number}: bad label {label!r}")
            addr = parse_address(address, AddressPolicy(allow_private=True, allow_loopback=True))
        except (InvalidName, InvalidAddress) as exc:
            raise BadRecordLine(f"line {number}: {exc}") from exc
        if record_type(addr) != rtype or str(addr) != address:
            raise BadRecordLine(f"line {number}: {address} is not a canonical {rtype} address")
        if (label, rtype) in records:
            raise BadRecordLine(f"line {number}: a second {rtype} record for {label}")
        records[(label, rtype)] = address
    return records


def format_dynamic(records: DynamicRecords) -> str:
    """One record per line, sorted by label then type: diff-friendly."""
    return "".join(f"{label} {rtype} {addr}\n" for (label, rtype), addr in sorted(records.items()))


_SOA_SERIAL = re.compile(r"\bSOA\s+\S+\s+\S+\s*\(?\s*(\d+)")


def serial_of(zone_text: str) -> int | None:
    """The SOA serial of a rendered zone file (found within its first lines)."""
    match = _SOA_SERIAL.search(zone_text, 0, 4096)
    return int(match.group(1)) if match else None


def static_names(static_text: str, zone: str = "") -> set[str]:
    """Owner names used by static records (relative, lowercased): reserved for hosts.

    Absolute owners inside ZONE are made relative (its apex becomes ``@``).
    """
    zone = zone.lower().rstrip(".")
    names = set()
    for line in static_text.splitlines():
        if not line or line[0] in " \t;$(":
            continue
        owner = line.split()[0].lower()
        if zone and owner.endswith("."):
            owner = owner[:-1]
            if owner == zone:
                owner = "@"
            elif owner.endswith("." + zone):
                owner = owner[: -len(zone) - 1]
        names.add(owner.rstrip("."))
    return names


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
    dynamic: DynamicRecords,
) -> str:
    """Render a zone file.

    The dynamic records reach the template as one pre-formatted block
    (``dynamic``): a Jinja loop over 100k records costs ~50 ms more.
    """
    ttl = settings.dynamic_ttl
    block = "".join(f"{label} {ttl} IN {rtype} {addr}\n" for (label, rtype), addr in sorted(dynamic.items()))
    return template.render(zone=settings, serial=serial, static=static_text, dynamic=block)


@dataclass
class ZoneSource:
    """The human-edited inputs of one zone, read from a zone directory."""

    settings: ZoneSettings
    static_text: str
    reserved: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, zone_dir: Path) -> "ZoneSource":
        """Read and check the sources; SourceError names the file to fix."""
        zone = zone_dir.name
        if (zone_dir / TEMPLATE_FILE).exists():
            raise SourceError(TEMPLATE_FILE, None, "per-zone templates are not supported (a template is code the "
                                                   "service would run); remove it: zone.toml and static.zone hold "
                                                   "the zone, the operator's zones.templates its layout")
        settings = ZoneSettings.from_toml(zone, (zone_dir / SETTINGS_FILE).read_text())
        static_path = zone_dir / STATIC_FILE
        static_text = static_path.read_text() if static_path.exists() else ""
        return cls(settings, static_text, static_names(static_text, zone) | {"@"})


def list_zones(repo_dir: Path) -> list[str]:
    """Zones in the repository: directories holding a ``zone.toml``."""
    return sorted(p.parent.name for p in repo_dir.glob(f"*/{SETTINGS_FILE}"))



def with_dynamic_ttl(settings_toml: str, ttl: int) -> str:
    """zone.toml text with ``dynamic_ttl`` set to TTL, comments and the rest kept as they are."""
    lines = settings_toml.splitlines(keepends=True)
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    for i in range(first_table):  # a top-level key: only before the first [table]
        match = re.match(r"(\s*dynamic_ttl\s*=\s*)[^#\s]*(.*)", lines[i], re.S)
        if match:
            lines[i] = f"{match[1]}{ttl}{match[2]}"
            return "".join(lines)
    if first_table and not lines[first_table - 1].endswith("\n"):
        lines[first_table - 1] += "\n"
    lines.insert(first_table, f"dynamic_ttl = {ttl}\n")
    return "".join(lines)
