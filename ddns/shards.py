"""The dynamic records of a zone, sharded: ``ZONE/dynamic/XX.records`` files joined by ``$INCLUDE``.

A commit must cost the same on a zone of 100 records and of 100,000, so the
records are split by a stable hash of their owner label (CRC-32, never
Python's salted ``hash()``) into a fixed number of shards. A commit rewrites
the shards it touched and the small rendered head (``ZONE.zone``: SOA with the
serial, NS, static records, one ``$INCLUDE dynamic/XX.records`` line per
non-empty shard), so Git stores a few small blobs a commit and ``git log -p``
shows the changed record lines and the serial. Empty shards are not written.
Changing the number of shards moves records between files in one commit.

``ShardedRecords`` is the in-memory form: an immutable mapping (label, type)
-> RecordSet whose shards are shared between versions, so a commit copies
only the shards it touched (``changed``), and whose per-shard text is
formatted once and kept (``text``). ``Overlay`` holds one group's changes
over it. ``assemble`` replaces each ``$INCLUDE`` line of a head by its
shard's text: the whole zone as one file, what BIND serves and what
``ddns show`` prints. Everything here is pure but ``record_files``, the one
reader of a zone directory's record files.
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Iterator, Mapping, MutableMapping

from . import zones
from .errors import Invalid
from .records import RecordSet

SHARD_DIR = "dynamic"
SHARD_SUFFIX = ".records"
DEFAULT_SHARDS = 256

Key = tuple[str, str]

_INCLUDE = re.compile(rf"^\$INCLUDE {SHARD_DIR}/([0-9a-f]+){re.escape(SHARD_SUFFIX)}\n", re.M)
_SHARD_NAME = re.compile(rf"[0-9a-f]+{re.escape(SHARD_SUFFIX)}")


MAX_SHARDS = 4096


def check_count(count: object) -> int:
    """COUNT as a number of shards (``zones.shards``); Invalid unless a whole number from 1 to MAX_SHARDS."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SHARDS:
        raise Invalid(f"zones.shards must be a whole number from 1 to {MAX_SHARDS}, not {count!r}")
    return count


def shard_index(label: str, count: int) -> int:
    """The shard of LABEL among COUNT: the same on every machine and run (CRC-32 of its bytes)."""
    return zlib.crc32(label.encode()) % count


def shard_name(index: int, count: int) -> str:
    """File name stem of shard INDEX: lowercase hex, as wide as COUNT needs (at least two digits)."""
    return f"{index:0{max(2, len(f'{count - 1:x}'))}x}"


def shard_path(index: int, count: int) -> str:
    """Path of shard INDEX relative to the zone directory: ``dynamic/XX.records``."""
    return f"{SHARD_DIR}/{shard_name(index, count)}{SHARD_SUFFIX}"


def is_shard_path(rel: str) -> bool:
    """Whether REL (relative to a zone directory) names a shard file the service could write."""
    head, _, name = rel.partition("/")
    return head == SHARD_DIR and bool(_SHARD_NAME.fullmatch(name))


def include_block(paths: list[str], dynamic_ttl: int, ttl: int) -> str:
    """What the zone template gets as ``dynamic``: the $INCLUDE lines between $TTL lines.

    Shard lines carry a TTL only when their set has its own, so the block
    sets the zone's dynamic TTL for them and puts the static TTL back after.
    """
    if not paths:
        return ""
    return f"$TTL {dynamic_ttl}\n" + "".join(f"$INCLUDE {p}\n" for p in paths) + f"$TTL {ttl}\n"


def assemble(head: str, shard_texts: Mapping[str, str]) -> str:
    """HEAD with each ``$INCLUDE dynamic/XX.records`` line replaced by that shard's text (one file, no includes).

    SHARD_TEXTS maps shard paths (``dynamic/XX.records``) to their text; a
    shard the head names but SHARD_TEXTS lacks raises KeyError.
    """
    return _INCLUDE.sub(lambda m: shard_texts[f"{SHARD_DIR}/{m.group(1)}{SHARD_SUFFIX}"], head)


def render_head(template, settings: zones.ZoneSettings, serial: int, static_text: str,
                found: "ShardedRecords") -> str:
    """A zone's head file: the template with FOUND's shards as $INCLUDE lines (``zones.render_zone``)."""
    block = include_block(found.paths(), settings.dynamic_ttl, settings.ttl)
    return zones.render_zone(template, settings, serial, static_text, block)


def render_flat(template, settings: zones.ZoneSettings, serial: int, static_text: str,
                dynamic: Mapping[Key, RecordSet], count: int = DEFAULT_SHARDS) -> str:
    """A whole zone as one file: its head with the shards of DYNAMIC in place (what named serves).

    The shards' order is the file's: DYNAMIC split into COUNT (a ``ShardedRecords`` as it is).
    """
    found = dynamic if isinstance(dynamic, ShardedRecords) else ShardedRecords.of(dynamic, count)
    return assemble(render_head(template, settings, serial, static_text, found), found.texts())


def included(head: str) -> list[str]:
    """The shard paths HEAD includes, in order."""
    return [f"{SHARD_DIR}/{name}{SHARD_SUFFIX}" for name in _INCLUDE.findall(head)]


def record_files(zone_dir: Path) -> dict[str, str]:
    """Path (relative to ZONE_DIR) -> text of each file of dynamic records there: its shards, the old dynamic.records.

    Only regular files: a symbolic link (or a linked ``dynamic/``) would make
    the service read, or commit, a file of its own disk.
    """
    shard_dir = zone_dir / SHARD_DIR
    paths = [zone_dir / zones.DYNAMIC_FILE]
    if shard_dir.is_dir() and not shard_dir.is_symlink():
        paths += sorted(p for p in shard_dir.iterdir() if is_shard_path(f"{SHARD_DIR}/{p.name}"))
    return {p.relative_to(zone_dir).as_posix(): p.read_text() for p in paths if p.is_file() and not p.is_symlink()}


def parse_shards(files: Mapping[str, str]) -> dict[Key, RecordSet]:
    """The records of shard FILES (path -> text), each line validated (``zones.parse_dynamic``).

    BadRecordLine names the file: a bad line, or an RRset in two files.
    """
    merged: dict[Key, RecordSet] = {}
    for rel, text in sorted(files.items()):
        try:
            parsed = zones.parse_dynamic(text)
        except zones.BadRecordLine as exc:
            raise zones.BadRecordLine(f"{rel}: {exc}") from exc
        twice = [key for key in parsed if key in merged]  # O(this file), not O(all records so far)
        if twice:
            label, rtype = min(twice)
            raise zones.BadRecordLine(f"{rel}: {label} {rtype} is in another shard file too")
        merged.update(parsed)
    return merged


class ShardedRecords(Mapping[Key, RecordSet]):
    """A zone's dynamic RRsets split into COUNT shards by owner label; never changed once built (see the module)."""

    __slots__ = ("count", "_shards", "_texts", "_len")

    def __init__(self, count: int, shards: list[dict[Key, RecordSet]], texts: list[str | None] | None = None):
        self.count = count
        self._shards = shards
        self._texts = texts if texts is not None else [None] * count
        self._len = sum(map(len, shards))

    @classmethod
    def of(cls, records: Mapping[Key, RecordSet], count: int = DEFAULT_SHARDS) -> "ShardedRecords":
        """RECORDS split into COUNT shards."""
        check_count(count)
        shards: list[dict[Key, RecordSet]] = [{} for _ in range(count)]
        for key, rs in records.items():
            shards[shard_index(key[0], count)][key] = rs
        return cls(count, shards)

    def __getitem__(self, key: Key) -> RecordSet:
        return self._shards[shard_index(key[0], self.count)][key]

    def get(self, key: Key, default=None):
        return self._shards[shard_index(key[0], self.count)].get(key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and bool(key) and key in self._shards[shard_index(key[0], self.count)]

    def __iter__(self) -> Iterator[Key]:
        for shard in self._shards:
            yield from shard

    def __len__(self) -> int:
        return self._len

    def changed(self, changes: Mapping[Key, RecordSet | None]) -> "ShardedRecords":
        """A new version with CHANGES (None: the set is gone); only the touched shards are copied."""
        shards, texts = list(self._shards), list(self._texts)
        for index in {shard_index(label, self.count) for label, _ in changes}:
            shards[index] = dict(shards[index])
            texts[index] = None
        for key, rs in changes.items():
            shard = shards[shard_index(key[0], self.count)]
            if rs is None:
                shard.pop(key, None)
            else:
                shard[key] = rs
        return ShardedRecords(self.count, shards, texts)

    def indexes(self, keys: object) -> set[int]:
        """The shards that hold KEYS ((label, type) pairs)."""
        return {shard_index(label, self.count) for label, _ in keys}

    def text(self, index: int) -> str:
        """Shard INDEX as its file has it (``zones.format_dynamic``); formatted once, then kept."""
        text = self._texts[index]
        if text is None:
            text = self._texts[index] = zones.format_dynamic(self._shards[index])
        return text

    def paths(self) -> list[str]:
        """The paths of the non-empty shards, in order: the files of the zone and its $INCLUDE lines."""
        return [shard_path(i, self.count) for i, shard in enumerate(self._shards) if shard]

    def texts(self) -> dict[str, str]:
        """Path -> text of every non-empty shard: what ``dynamic/`` must hold."""
        return {shard_path(i, self.count): self.text(i) for i, shard in enumerate(self._shards) if shard}


class Overlay(MutableMapping[Key, RecordSet]):
    """One group's changes over BASE, without copying it: reads see the changes first.

    Only lookups, assignment and deletion are cheap; iterating walks BASE.
    """

    def __init__(self, base: Mapping[Key, RecordSet]):
        self.base = base
        self.changes: dict[Key, RecordSet | None] = {}

    def __getitem__(self, key: Key) -> RecordSet:
        if key in self.changes:
            found = self.changes[key]
            if found is None:
                raise KeyError(key)
            return found
        return self.base[key]

    def get(self, key: Key, default=None):
        if key in self.changes:
            found = self.changes[key]
            return default if found is None else found
        return self.base.get(key, default)

    def __setitem__(self, key: Key, rs: RecordSet) -> None:
        self.changes[key] = rs

    def __delitem__(self, key: Key) -> None:
        if self.get(key) is None:
            raise KeyError(key)
        self.changes[key] = None

    def __iter__(self) -> Iterator[Key]:
        yield from (key for key in self.base if key not in self.changes)
        yield from (key for key, rs in self.changes.items() if rs is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def result(self) -> Mapping[Key, RecordSet]:
        """BASE with the changes: a ``ShardedRecords`` shares BASE's untouched shards."""
        if isinstance(self.base, ShardedRecords):
            return self.base.changed(self.changes)
        merged = {**self.base, **self.changes}
        return {k: v for k, v in merged.items() if v is not None}
