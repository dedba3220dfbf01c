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
from typing import Iterable, Iterator, Mapping, MutableMapping

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
    return dict(load_shards(files, 1))


def load_shards(files: Mapping[str, str], count: int = DEFAULT_SHARDS) -> "ShardedRecords":
    """The records of FILES (path -> text) as COUNT shards, every line validated (``parse_shards``).

    A file that is exactly what its shard formats to becomes that shard as
    parsed, its text kept: the zone's files are neither split again nor
    formatted again to learn that they are what the records render to.
    """
    check_count(count)
    shards: list[dict] = [{} for _ in range(count)]
    texts: list[str | None] = [None] * count
    for rel, text in sorted(files.items()):
        entries, canonical = _parse_shard(rel, text)
        index = shard_index_of(rel, count)
        if canonical and index is not None and not shards[index] and _all_in(entries, index, count):
            shards[index], texts[index] = entries, text
            continue
        twice = []
        for key, value in entries.items():
            shard = shards[shard_index(_label(key), count)]
            if key in shard or _other_form(key) in shard:
                twice.append(_key(key))
            shard[key] = value
        if twice:
            label, rtype = min(twice)
            raise zones.BadRecordLine(f"{rel}: {label} {rtype} is in another shard file too")
    return ShardedRecords(count, shards, texts)


def _all_in(entries: dict, index: int, count: int) -> bool:
    """Whether every label of ENTRIES belongs in shard INDEX of COUNT."""
    labels = [key if type(key) is str else key[0] for key in entries]
    return all(crc % count == index for crc in map(zlib.crc32, map(str.encode, labels)))


def shard_index_of(rel: str, count: int) -> int | None:
    """The index of the shard REL names among COUNT (``shard_path``); None: not one of them."""
    if not is_shard_path(rel):
        return None
    index = int(rel[len(SHARD_DIR) + 1:-len(SHARD_SUFFIX)], 16)
    return index if index < count and shard_path(index, count) == rel else None


# A shard of plain A records -- nearly every shard of a zone of hosts -- is checked by one regular
# expression in C instead of line by line: each line ``LABEL A ADDRESS`` with lower-case LDH labels
# (no A-label: no "xn--" anywhere in the file) and a canonical dotted quad outside every range
# parse_address refuses whatever the policy (first octet 0, 127, 169, 224-255). What it accepts,
# zones.parse_dynamic accepts with the same records; anything else takes that way (tests/test_startup.py).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_FIRST_OCTET = r"(?:1[01][0-9]|12[0-689]|1[3-57-9][0-9]|16[0-8]|2[01][0-9]|22[0-3]|[1-9][0-9]?)"
_LDH_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_A_SHARD = re.compile(
    rf"(?:{_LDH_LABEL}(?:\.{_LDH_LABEL})* A {_FIRST_OCTET}(?:\.{_OCTET}){{3}}\n)*")
_MAX_NAME = 253


def _parse_shard(rel: str, text: str) -> tuple[dict, bool]:
    """The entries (``ShardedRecords``' form) of the shard file REL, and whether TEXT is what they format to.

    BadRecordLine (naming REL) for a line the service would never write.
    """
    plain = _parse_plain_a(text)
    if plain is not None:
        return plain, True
    try:
        parsed = zones.parse_dynamic(text)
    except zones.BadRecordLine as exc:
        raise zones.BadRecordLine(f"{rel}: {exc}") from exc
    return {_entry_key(key, rs): _entry_value(key, rs) for key, rs in parsed.items()}, \
        zones.format_dynamic(parsed) == text


def _parse_plain_a(text: str) -> dict | None:
    """TEXT's entries if it is a canonical shard of plain A lines, sorted, each once; else None (the full parse decides)."""
    if "xn--" in text or not _PLAIN_A_SHARD.fullmatch(text):
        return None
    fields = text.replace(" A ", "\n").split("\n")  # label, address, label, address, ..., ""
    fields.pop()  # after the last line's newline
    labels = fields[0::2]
    pairs = list(zip(labels, fields[1::2]))
    if any(first >= second for first, second in zip(pairs, pairs[1:])) \
            or (labels and max(map(len, labels)) > _MAX_NAME):
        return None  # not in the order format_dynamic writes (or a line twice), or a name too long
    entries = dict(pairs)
    if len(entries) == len(pairs):
        return entries  # one address per name: the common case, no object per record
    grouped: dict[str, list[str]] = {}
    for label, rdata in pairs:
        grouped.setdefault(label, []).append(rdata)
    return {label if len(rdatas) == 1 else (label, "A"): rdatas[0] if len(rdatas) == 1 else RecordSet(tuple(rdatas))
            for label, rdatas in grouped.items()}


# How a shard holds an RRset (``ShardedRecords``): a set of one A record with the zone's dynamic
# TTL -- a host's address, nearly every set -- as ``label: address``, with no key tuple and no
# RecordSet (a third of the memory a record takes); every other set as ``(label, type): RecordSet``.
def _entry_key(key: Key, rs: RecordSet) -> str | Key:
    return key[0] if key[1] == "A" and rs.ttl is None and len(rs.rdatas) == 1 else key


def _entry_value(key: Key, rs: RecordSet) -> str | RecordSet:
    return rs.rdatas[0] if key[1] == "A" and rs.ttl is None and len(rs.rdatas) == 1 else rs


def _label(entry_key: str | Key) -> str:
    return entry_key if type(entry_key) is str else entry_key[0]


def _key(entry_key: str | Key) -> Key:
    return (entry_key, "A") if type(entry_key) is str else entry_key


def _other_form(entry_key: str | Key) -> str | Key:
    """The key the same RRset would have in the other form (a plain A set's and a general one's)."""
    return (entry_key, "A") if type(entry_key) is str else entry_key[0] if entry_key[1] == "A" else entry_key


def _lookup(shard: dict, key: Key) -> RecordSet | None:
    if key[1] == "A":
        address = shard.get(key[0])
        if address is not None:
            return RecordSet((address,))
    return shard.get(key)


def _put(shard: dict, key: Key, rs: RecordSet | None) -> None:
    """Set KEY's RRset in SHARD to RS (None: remove it), in its form."""
    if key[1] == "A":
        shard.pop(key[0], None)
    shard.pop(key, None)
    if rs is not None:
        shard[_entry_key(key, rs)] = _entry_value(key, rs)


def format_shard(shard: dict) -> str:
    """SHARD's file text: ``zones.format_dynamic`` of its RRsets, without making a RecordSet per entry.

    A commit formats each shard it touched again, and at 100k records a shard
    holds ~400 of them: building a key and a RecordSet for each (as
    ``format_dynamic`` needs) cost more than the formatting. The order is
    format_dynamic's: by (label, type), then each set's rdatas as stored.
    """
    if all(type(key) is str for key in shard):  # every set a host's address: sorting the labels is the order
        return "".join([f"{label} A {shard[label]}\n" for label in sorted(shard)])
    lines = []
    for (label, rtype), found in sorted((_key(key), value) for key, value in shard.items()):  # keys are unique
        if type(found) is str:
            lines.append(f"{label} A {found}\n")
            continue
        prefix = f"{label} {rtype} " if found.ttl is None else f"{label} {found.ttl} {rtype} "
        lines += [f"{prefix}{rdata}\n" for rdata in found.rdatas]
    return "".join(lines)


def splice_shard(text: str, shard: dict, keys: Iterable[Key]) -> str:
    """TEXT (a shard's file as ``format_shard`` writes it) with the lines of the labels of KEYS written again
    from SHARD, the rest left as it is: ``format_shard(SHARD)`` when only those (label, type) sets differ.

    A commit changes a set or two of a shard; formatting all of it again
    meant sorting its ~390 labels at 100k records, strings scattered over the
    heap (0.17 ms a shard there). Each label's lines are found by a binary
    search over the lines (sorted by label), then replaced.
    """
    types: dict[str, set[str]] = {}
    for label, rtype in keys:
        types.setdefault(label, set()).add(rtype)
    for label in types:
        start = end = _first_line(text, label)
        while text.startswith(f"{label} ", end):  # this label's lines: their types are written again too
            line_end = text.index("\n", end)
            types[label].add(_line_type(text[end + len(label) + 1:line_end]))
            end = line_end + 1
        lines = []
        for rtype in sorted(types[label]):
            found = _lookup(shard, (label, rtype))
            if found is not None:
                prefix = f"{label} {rtype} " if found.ttl is None else f"{label} {found.ttl} {rtype} "
                lines += [f"{prefix}{rdata}\n" for rdata in found.rdatas]
        text = f"{text[:start]}{''.join(lines)}{text[end:]}"
    return text


def _first_line(text: str, label: str) -> int:
    """Where the first line of TEXT (lines sorted by label) whose label is not below LABEL starts (len: none)."""
    lo, hi = 0, len(text)  # lines before lo have smaller labels; the line at hi (if any) does not
    while lo < hi:
        start = text.rfind("\n", 0, (lo + hi) // 2) + 1  # the line around the middle (never before lo)
        if text[start:text.index(" ", start)] < label:
            lo = text.index("\n", start) + 1
        else:
            hi = start
    return lo


def _line_type(rest: str) -> str:
    """The type of a shard line from what follows its label: ``[TTL ]TYPE RDATA``."""
    first, _, after = rest.partition(" ")
    return after.partition(" ")[0] if first.isdigit() else first


class ShardedRecords(Mapping[Key, RecordSet]):
    """A zone's dynamic RRsets split into COUNT shards by owner label; never changed once built (see the module).

    Each shard is a dict of entries in the form ``_entry_key`` says; each text
    is the shard's file, None (not made yet), or (an older version's text,
    the keys changed since): ``text`` makes it when asked.
    """

    __slots__ = ("count", "_shards", "_texts", "_len")

    def __init__(self, count: int, shards: list[dict], texts: list | None = None):
        self.count = count
        self._shards = shards
        self._texts = texts if texts is not None else [None] * count
        self._len = sum(map(len, shards))

    @classmethod
    def of(cls, records: Mapping[Key, RecordSet], count: int = DEFAULT_SHARDS) -> "ShardedRecords":
        """RECORDS split into COUNT shards."""
        check_count(count)
        shards: list[dict] = [{} for _ in range(count)]
        for key, rs in records.items():
            shards[shard_index(key[0], count)][_entry_key(key, rs)] = _entry_value(key, rs)
        return cls(count, shards)

    def __getitem__(self, key: Key) -> RecordSet:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def get(self, key: Key, default=None):
        found = _lookup(self._shards[shard_index(key[0], self.count)], key)
        return default if found is None else found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str) and self.get(key) is not None

    def __iter__(self) -> Iterator[Key]:
        for shard in self._shards:
            for entry_key in shard:
                yield (entry_key, "A") if type(entry_key) is str else entry_key

    def __len__(self) -> int:
        return self._len

    def changed(self, changes: Mapping[Key, RecordSet | None]) -> "ShardedRecords":
        """A new version with CHANGES (None: the set is gone); only the touched shards are copied.

        A touched shard whose text was made keeps it with the keys changed
        since (``text`` splices their lines in); one never made stays so.
        """
        shards, texts = list(self._shards), list(self._texts)
        touched: dict[int, list[Key]] = {}
        for key in changes:
            touched.setdefault(shard_index(key[0], self.count), []).append(key)
        for index, keys in touched.items():
            shards[index] = dict(shards[index])
            old = texts[index]
            texts[index] = None if old is None else (old, keys) if type(old) is str else (old[0], old[1] + keys)
        for key, rs in changes.items():
            _put(shards[shard_index(key[0], self.count)], key, rs)
        return ShardedRecords(self.count, shards, texts)

    def labels(self) -> set[str]:
        """The owner labels of every RRset."""
        return {key if type(key) is str else key[0] for shard in self._shards for key in shard}

    def types(self) -> set[str]:
        """The types of every RRset."""
        found = {key[1] for shard in self._shards for key in shard if type(key) is not str}
        return found | {"A"} if any(type(key) is str for shard in self._shards for key in shard) else found

    def indexes(self, keys: object) -> set[int]:
        """The shards that hold KEYS ((label, type) pairs)."""
        return {shard_index(label, self.count) for label, _ in keys}

    def text(self, index: int) -> str:
        """Shard INDEX as its file has it (``zones.format_dynamic``); formatted once, then kept."""
        text = self._texts[index]
        if type(text) is not str:  # never made (None), or made before the keys that changed since
            shard = self._shards[index]
            text = format_shard(shard) if text is None else splice_shard(text[0], shard, text[1])
            self._texts[index] = text
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
