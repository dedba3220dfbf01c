"""A zone's state as the publisher knows it: read from the working tree and validated.

Reading a zone renders it and runs named-checkzone on the result, so a zone
whose human-edited sources do not validate is marked broken (and named keeps
serving what it has) instead of being published. That costs a subprocess, so
the state carries stat stamps of the files: the human-edited sources are
validated again only when they change, and a change of the zone's head file
(which every service commit rewrites, its serial at least) shows that another
process committed: one stat, whatever the number of shards. Nothing here
writes, locks or knows of Git: the publisher decides when a zone is read again.

A zone is checked whole (named-checkzone on the zone with every record) once
per version of its human-edited sources: the digest of the sources that
passed is kept in the repository's git directory (``CHECKED_DIR``). While
the sources are those, a load checks the zone without its dynamic records
(named-checkzone on the head alone) -- the dynamic lines pass the strict
per-line parse, no static name holds a host's records, and no CNAME shares
its name with other dynamic data -- so a restart of a zone of 100k records
needs no full check; any human change of the sources, or a quick check that
fails, takes the full check again.

The dynamic records are read from the shard files (``ddns.shards``), or from
the old layout's one ``dynamic.records``; a zone whose files are not exactly
what its records render to (the old layout, another number of shards) is
marked unsettled, and reconcile rewrites it in one commit.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dns.exception
import jinja2

from .. import __version__, bind, errors, records, shards, zones
from .worktree import atomic_write

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so

# In the zones repository's git directory: per zone, the digest of the sources the full check last passed.
CHECKED_DIR = "ddns-checked"


def stamp(*paths: Path) -> tuple:
    """(inode, mtime, size) of each path, None where it is missing: any replacement changes it."""
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


@dataclass
class ZoneState:
    """What the publisher knows of one zone: its validated sources and records."""

    source: zones.ZoneSource
    template: jinja2.Template
    dynamic: records.Dynamic
    serial: int
    stamp: tuple                # of the service's files, to notice other writers
    broken: str | None = None  # why the zone's human-edited sources cannot be published
    source_stamp: tuple = ()   # of the human-edited files, to validate them only when they change
    static: records.Static = field(default_factory=dict)  # the zone without dynamic records, SOA and NS included
    types: set[str] = field(default_factory=set)  # the types of the dynamic records (a superset), see records.apply
    settled: bool = True       # the service's files are what the records render to (else reconcile rewrites them)
    legacy: bool = False       # read from the old layout's dynamic.records (reconcile shards it)


class ZoneReader:
    """Reads the zones of the working tree ROOT with trusted templates (ENV) and validates them.

    ON_ERROR receives the reason a zone cannot be published (the publisher's last error).
    """

    def __init__(self, root: Path, env: jinja2.Environment, checkzone: str, on_error: Callable[[str], None],
                 shard_count: int = shards.DEFAULT_SHARDS):
        self.root = root
        self.env = env  # trusted templates only, never the repository's
        self.checkzone = checkzone
        self.shard_count = shard_count
        self._on_error = on_error

    def head_path(self, zone: str) -> Path:
        """ZONE's rendered head file (``ZONE/ZONE.zone``)."""
        return self.root / zone / zones.rendered_file(zone)

    def service_paths(self, zone: str) -> tuple[Path]:
        """The file whose stamp shows another writer: the head, which every service commit rewrites first (one stat)."""
        return (self.head_path(zone),)

    def source_paths(self, zone: str) -> tuple[Path, Path, Path]:
        """The files humans edit."""
        d = self.root / zone
        return d / zones.SETTINGS_FILE, d / zones.STATIC_FILE, d / zones.TEMPLATE_FILE

    def unchanged(self, zone: str, state: ZoneState) -> bool:
        """Whether none of ZONE's files changed since STATE was read from them."""
        return (bool(state.stamp) and state.stamp == stamp(*self.service_paths(zone))
                and state.source_stamp == stamp(*self.source_paths(zone)))

    def read(self, zone: str) -> ZoneState:
        """ZONE's state from its files, not validated; raises when they cannot be read or parsed."""
        zone_dir = self.root / zone
        head_path = self.head_path(zone)
        files_stamp = stamp(head_path)
        source = zones.ZoneSource.read(zone_dir)
        template = self.env.get_template(zones.TEMPLATE_FILE)
        files = shards.record_files(zone_dir)
        legacy = zones.DYNAMIC_FILE in files
        dynamic = shards.load_shards(files, self.shard_count)
        zones.check_host_names(source, dynamic.labels())
        serial = zones.serial_of(head_path.read_text()) if head_path.exists() else None
        return ZoneState(source, template, dynamic, serial or 0, files_stamp,
                         source_stamp=stamp(*self.source_paths(zone)), types=dynamic.types(),
                         settled=not legacy and files == dynamic.texts(), legacy=legacy)

    def load(self, zone: str) -> ZoneState:
        """ZONE's state, validated: one that cannot be read or does not validate is marked broken."""
        try:
            state = self.read(zone)
        except (OSError, UnicodeError, errors.Invalid, jinja2.TemplateError) as exc:  # files humans broke
            log.error("zone %s cannot be read: %s", zone, exc)
            self._on_error(f"zone {zone} cannot be read: {exc}")
            placeholder = zones.ZoneSource(zones.ZoneSettings(zone), "")
            return ZoneState(placeholder, jinja2.Template(""), {}, 0, (), broken=str(exc))
        digest = self.sources_digest(zone)
        if digest is None or digest != self._checked(zone) or self.quick_check(zone, state):
            error = self.validate(zone, state, self.flat(state, state.serial or 1))
        else:
            error = None
        if error:
            log.error("zone %s does not validate; keeping what named serves: %s", zone, error)
            state.broken = error
            self._on_error(f"zone {zone} does not validate: {error}")
        return state

    def render(self, state: ZoneState, serial: int, dynamic: records.Dynamic | None = None) -> str:
        """The head file of STATE at SERIAL (with DYNAMIC instead of its records, when given)."""
        found = self.sharded(state.dynamic if dynamic is None else dynamic)
        return shards.render_head(state.template, state.source.settings, serial, state.source.static_text, found)

    def flat(self, state: ZoneState, serial: int, dynamic: records.Dynamic | None = None) -> str:
        """The whole zone of STATE at SERIAL as one file, no $INCLUDE: what named must serve."""
        found = self.sharded(state.dynamic if dynamic is None else dynamic)
        return shards.render_flat(state.template, state.source.settings, serial, state.source.static_text, found)

    def sharded(self, dynamic: records.Dynamic) -> shards.ShardedRecords:
        """DYNAMIC split into this reader's number of shards (as it is when it already is)."""
        if isinstance(dynamic, shards.ShardedRecords) and dynamic.count == self.shard_count:
            return dynamic
        return shards.ShardedRecords.of(dynamic, self.shard_count)

    def validate(self, zone: str, state: ZoneState, text: str) -> str | None:
        """Why TEXT (STATE rendered and flattened, ``flat``) cannot be published, or None; then STATE's static data is parsed too.

        Prerequisites and the CNAME rule look at the static data: parsed once
        here (from the zone without dynamic records), never per update.
        """
        error = self.check(zone, text) or self._parse_static(zone, state)
        if error is None:
            self._mark_checked(zone)
        return error

    def quick_check(self, zone: str, state: ZoneState) -> str | None:
        """Why STATE, whose sources passed the full check before, cannot be published, checked without its dynamic records.

        named-checkzone on the zone without them, and what named-checkzone
        would find among them that the per-line parse cannot: a CNAME beside
        other data of its name. None: it can; STATE's static data is parsed.
        """
        if "CNAME" in state.types:
            by_label: dict[str, set[str]] = {}
            for label, rtype in state.dynamic:
                by_label.setdefault(label, set()).add(rtype)
            clash = sorted(label for label, types in by_label.items() if "CNAME" in types and len(types) > 1)
            if clash:
                return f"{clash[0]} has a CNAME and other data"
        return self.check(zone, self.render(state, state.serial or 1, {})) or self._parse_static(zone, state)

    def _parse_static(self, zone: str, state: ZoneState) -> str | None:
        try:
            state.static = records.zone_static(self.render(state, 1, {}), zone)
        except dns.exception.DNSException as exc:
            return f"the zone cannot be parsed: {exc}"
        return None

    def sources_digest(self, zone: str) -> str | None:
        """SHA-256 of what the full check of ZONE depends on besides its records (None: a source unreadable).

        The human-edited files, the trusted template, this version of ddns and
        the checker: a change of any of them takes the full check again.
        """
        digest = hashlib.sha256(f"{__version__}\0{self.checkzone}\0{self.shard_count}\0".encode())
        try:
            for path in self.source_paths(zone):
                digest.update(path.read_bytes() if path.exists() else b"-")
                digest.update(b"\0")
            digest.update(self.env.loader.get_source(self.env, zones.TEMPLATE_FILE)[0].encode())
        except (OSError, jinja2.TemplateError):
            return None
        return digest.hexdigest()

    def _checked_path(self, zone: str) -> Path | None:
        git_dir = self.root / ".git"
        return git_dir / CHECKED_DIR / zone if git_dir.is_dir() else None

    def _checked(self, zone: str) -> str | None:
        """The digest of ZONE's sources that last passed the full check (None: none known)."""
        path = self._checked_path(zone)
        try:
            return path.read_text().strip() if path is not None else None
        except OSError:
            return None

    def _mark_checked(self, zone: str) -> None:
        """ZONE's sources as they are passed the full check (losing the mark costs one full check, never more)."""
        path, digest = self._checked_path(zone), self.sources_digest(zone)
        if path is None or digest is None or digest == self._checked(zone):
            return
        try:
            atomic_write(path, digest + "\n", fsync=False)
        except OSError as exc:
            log.warning("cannot note that zone %s passed its check: %s", zone, exc)

    def check(self, zone: str, text: str) -> str | None:
        """named-checkzone on a temp copy: the real file is only ever replaced by a valid one."""
        with tempfile.NamedTemporaryFile("w", suffix=".zone") as f:
            f.write(text)
            f.flush()
            return bind.check_zone(zone, Path(f.name), self.checkzone)
