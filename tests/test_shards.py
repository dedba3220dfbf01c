"""Sharded dynamic records (ddns.shards): stable placement, empty shards, resharding, assembly. Pure."""
from __future__ import annotations

import subprocess
import sys
import zlib

import pytest

from ddns import errors, shards, zones
from ddns.records import RecordSet


def rs(*rdatas: str, ttl: int | None = None) -> RecordSet:
    return RecordSet(tuple(sorted(rdatas)), ttl)


RECORDS = {(f"h{i}", "A"): rs(f"192.0.2.{i % 250 + 1}") for i in range(500)}
RECORDS[("h1", "AAAA")] = rs("2001:db8::1", ttl=300)


def test_placement_is_crc32_of_the_label_and_the_same_in_another_process():
    assert shards.shard_index("h1", 256) == zlib.crc32(b"h1") % 256
    # Python's hash() is salted per process: a placement by it would move records between runs
    code = "from ddns import shards; print([shards.shard_index(f'h{i}', 256) for i in range(50)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PYTHONPATH": "."}).stdout.strip()
    assert other == str([shards.shard_index(f"h{i}", 256) for i in range(50)])


def test_all_types_of_a_label_share_its_shard_and_shard_names_are_fixed_width_hex():
    found = shards.ShardedRecords.of(RECORDS, 256)
    text = found.text(shards.shard_index("h1", 256))
    assert "h1 A 192.0.2.2\n" in text and "h1 300 AAAA 2001:db8::1\n" in text
    assert shards.shard_path(10, 256) == "dynamic/0a.records"
    assert shards.shard_path(10, 4096) == "dynamic/00a.records"
    assert shards.shard_path(0, 1) == "dynamic/00.records"


def test_empty_shards_are_not_files_and_texts_hold_every_record_once():
    found = shards.ShardedRecords.of({("a", "A"): rs("192.0.2.1"), ("b", "A"): rs("192.0.2.2")}, 256)
    assert len(found.paths()) == len(found.texts()) <= 2
    assert all(found.texts().values())
    lines = "".join(found.texts().values()).splitlines()
    assert sorted(lines) == ["a A 192.0.2.1", "b A 192.0.2.2"]
    assert shards.ShardedRecords.of({}, 256).paths() == []


def test_the_mapping_reads_like_the_dict_it_was_built_from():
    found = shards.ShardedRecords.of(RECORDS, 16)
    assert dict(found) == RECORDS and len(found) == len(RECORDS)
    assert found.get(("h1", "AAAA")) == RECORDS[("h1", "AAAA")] and found.get(("nope", "A")) is None
    assert ("h2", "A") in found and ("h2", "TXT") not in found


def test_changed_copies_only_the_touched_shards_and_leaves_the_old_version_as_it_was():
    old = shards.ShardedRecords.of(RECORDS, 16)
    before = {i: old.text(i) for i in range(16)}
    new = old.changed({("h1", "A"): rs("198.51.100.1"), ("h2", "A"): None, ("new", "TXT"): rs('"x"')})
    assert dict(old) == RECORDS and {i: old.text(i) for i in range(16)} == before  # never changed in place
    assert new[("h1", "A")] == rs("198.51.100.1") and ("h2", "A") not in new and new[("new", "TXT")] == rs('"x"')
    assert len(new) == len(RECORDS)
    touched = new.indexes([("h1", "A"), ("h2", "A"), ("new", "TXT")])
    for i in range(16):
        if i not in touched:
            assert new._shards[i] is old._shards[i]  # shared, not copied
            assert new.text(i) is before[i]           # kept, not formatted again
    assert shards.parse_shards(new.texts()) == dict(new)


def test_overlay_sees_its_changes_first_and_result_applies_them():
    base = shards.ShardedRecords.of(RECORDS, 8)
    work = shards.Overlay(base)
    work[("h1", "A")] = rs("198.51.100.9")
    del work[("h3", "A")]
    assert work.get(("h1", "A")) == rs("198.51.100.9") and work.get(("h3", "A")) is None
    with pytest.raises(KeyError):
        work[("h3", "A")]
    with pytest.raises(KeyError):
        del work[("h3", "A")]
    assert len(work) == len(RECORDS) - 1
    result = work.result()
    assert isinstance(result, shards.ShardedRecords)
    assert dict(result) == {**{k: v for k, v in RECORDS.items() if k != ("h3", "A")}, ("h1", "A"): rs("198.51.100.9")}
    assert dict(base) == RECORDS


def test_resharding_moves_records_between_files_and_keeps_every_one():
    few = shards.ShardedRecords.of(RECORDS, 4)
    many = shards.ShardedRecords.of(dict(few), 256)
    assert set(few.texts()) != set(many.texts())
    assert shards.parse_shards(few.texts()) == shards.parse_shards(many.texts()) == RECORDS


def test_a_record_in_two_files_or_a_bad_line_is_refused_naming_the_file():
    with pytest.raises(zones.BadRecordLine, match="dynamic/01.records: a A is in another shard file too"):
        shards.parse_shards({"dynamic/00.records": "a A 192.0.2.1\n", "dynamic/01.records": "a A 192.0.2.2\n"})
    with pytest.raises(zones.BadRecordLine, match="dynamic/00.records: line 1"):
        shards.parse_shards({"dynamic/00.records": "@ A 192.0.2.1\n"})


def test_assemble_puts_each_shard_in_place_of_its_include_line():
    found = shards.ShardedRecords.of(RECORDS, 4)
    block = shards.include_block(found.paths(), 60, 3600)
    head = f"$ORIGIN z.\n$TTL 3600\n@ IN SOA ns. h. ( 1 2 3 4 5 )\n{block}www IN A 192.0.2.80\n"
    assert shards.included(head) == found.paths()
    flat = shards.assemble(head, found.texts())
    assert "$INCLUDE" not in flat and flat.startswith("$ORIGIN z.\n$TTL 3600\n")
    assert flat.endswith("$TTL 3600\nwww IN A 192.0.2.80\n")  # the static TTL is back after the shards
    assert flat.count("\n") == head.count("\n") - len(found.paths()) + sum(t.count("\n") for t in found.texts().values())
    with pytest.raises(KeyError):
        shards.assemble(head, {})
    assert shards.include_block([], 60, 3600) == ""


def test_only_lines_the_service_writes_count_as_includes():
    head = "$INCLUDE /etc/passwd\n$INCLUDE dynamic/../x.records\n$include dynamic/00.records\n"
    assert shards.included(head) == [] and shards.assemble(head, {}) == head
    assert shards.is_shard_path("dynamic/0a.records")
    assert not any(map(shards.is_shard_path, ["dynamic/x.records", "dynamic/0a.txt", "dynamic/sub/00.records",
                                              "dynamic.records", "other/00.records"]))


@pytest.mark.parametrize("bad", [0, -1, 4097, "256", 2.5, True, None])
def test_a_bad_number_of_shards_is_a_clear_error(bad):
    with pytest.raises(errors.Invalid, match="zones.shards must be a whole number"):
        shards.check_count(bad)


def full_parse(rel: str, text: str) -> dict | str:
    """zones.parse_dynamic's verdict on one file: its records, or the refusal."""
    try:
        return zones.parse_dynamic(text)
    except zones.BadRecordLine as exc:
        return f"refused {exc}"


def loaded(rel: str, text: str, count: int = 1) -> tuple[dict | str, bool]:
    """load_shards' verdict on the same file, and whether its text was kept as the shard's."""
    try:
        found = shards.load_shards({rel: text}, count)
    except zones.BadRecordLine as exc:
        return f"refused {str(exc).removeprefix(rel + ': ')}", False
    return dict(found), any(t is text for t in found._texts)


# What a shard of plain A lines may hold, and every way a line can differ from what the service writes:
# each file gets parse_dynamic's verdict, whichever way load_shards takes.
PLAIN_LINES = [f"h{i:03d} A 192.0.2.{i}\n" for i in range(1, 6)]
ODD_FILES = [
    "", "\n", "a A 10.0.0.1", "a A 10.0.0.1\n\n", "a A 10.0.0.1\r\n", "a  A 10.0.0.1\n", "a A 10.0.0.1 \n",
    "A A 10.0.0.1\n", "a A 010.0.0.1\n", "a A 10.0.0.01\n", "a A 10.0.0\n", "a A 256.0.0.1\n", "a a 10.0.0.1\n",
    "a 60 A 10.0.0.1\n", "@ A 10.0.0.1\n", "-a A 10.0.0.1\n", "a- A 10.0.0.1\n", "a.b A 10.0.0.1\n", "a..b A 10.0.0.1\n",
    "_acme A 10.0.0.1\n", "xn--fa-hia A 10.0.0.1\n", "xn--zz A 10.0.0.1\n", "a.xn--zz A 10.0.0.1\n", "axn--b A 10.0.0.1\n",
    "a--b A 10.0.0.1\n", "a" * 63 + " A 10.0.0.1\n", "a" * 64 + " A 10.0.0.1\n", ("x." * 126 + "x") + " A 10.0.0.1\n",
    ("x." * 126 + "xy") + " A 10.0.0.1\n", "b A 10.0.0.1\na A 10.0.0.1\n", "a A 10.0.0.2\na A 10.0.0.1\n",
    "a A 10.0.0.1\na A 10.0.0.1\n", "a A 10.0.0.1\na A 10.0.0.2\n", "a A 10.0.0.1\na-b A 10.0.0.1\na.b A 10.0.0.1\n",
    "a A 10.0.0.1\na AAAA 2001:db8::1\n", "a AAAA 2001:db8::1\n", "a TXT \"x\"\n", "a A 10.0.0.1\nb 60 A 10.0.0.2\n",
    "é A 10.0.0.1\n", "a A ::ffff:10.0.0.1\n", "a A 10.0.0.1\x00\n", *PLAIN_LINES, "".join(PLAIN_LINES),
]


@pytest.mark.parametrize("text", ODD_FILES)
def test_a_shard_gets_the_full_parse_s_verdict_and_records(text):
    rel = "dynamic/00.records"
    expected = full_parse(rel, text)
    found, kept = loaded(rel, text)
    assert found == expected, text
    if expected and not isinstance(expected, str):  # its text is kept exactly when it is what the records format to
        assert kept == (zones.format_dynamic(expected) == text), text


def test_every_first_octet_gets_the_full_parse_s_verdict():
    for first in range(256):
        for address in (f"{first}.0.0.0", f"{first}.1.2.3", f"{first}.255.255.255"):
            text = f"a A {address}\n"
            assert loaded("dynamic/00.records", text)[0] == full_parse("dynamic/00.records", text), address
    # the regular expression's way is taken for the addresses outside the ranges refused whatever the policy
    assert [f for f in range(256) if shards._parse_plain_a(f"a A {f}.1.2.3\n") is None] == [0, 127, 169, *range(224, 256)]
    assert shards._parse_plain_a("".join(PLAIN_LINES)) is not None


def test_a_file_is_kept_as_its_shard_only_where_every_label_belongs_to_it():
    records = {(f"h{i}", "A"): rs(f"192.0.2.{i % 250 + 1}") for i in range(40)}
    right = shards.ShardedRecords.of(records, 4)
    files = right.texts()
    found = shards.load_shards(files, 4)
    assert dict(found) == records and all(found._texts[i] is files[shards.shard_path(i, 4)] for i in range(4))
    # the same files read as 8 shards: no file is one of those shards, every record moves to its own
    eight = shards.load_shards(files, 8)
    assert dict(eight) == records and eight.texts() == shards.ShardedRecords.of(records, 8).texts()
    # a record in the wrong file is found where its label belongs, and the files are not what it renders to
    moved = dict(files)
    label = next(k for k in records if shards.shard_index(k[0], 4) == 0)[0]
    moved[shards.shard_path(0, 4)] = "".join(l for l in files[shards.shard_path(0, 4)].splitlines(True)
                                              if not l.startswith(label + " "))
    moved[shards.shard_path(1, 4)] = "".join(sorted(files[shards.shard_path(1, 4)].splitlines(True)
                                                    + [f"{label} A {records[(label, 'A')].rdatas[0]}\n"]))
    found = shards.load_shards(moved, 4)
    assert found[(label, "A")] == records[(label, "A")] and found.texts() != moved


def test_plain_and_other_sets_of_a_label_read_and_change_like_a_dict():
    found = shards.ShardedRecords.of({("a", "A"): rs("192.0.2.1"), ("a", "AAAA"): rs("2001:db8::1"),
                                      ("b", "A"): rs("192.0.2.2", "192.0.2.3"), ("c", "A"): rs("192.0.2.4", ttl=60)}, 2)
    assert found.labels() == {"a", "b", "c"} and found.types() == {"A", "AAAA"} and len(found) == 4
    new = found.changed({("a", "A"): rs("192.0.2.5", "192.0.2.6"), ("b", "A"): rs("192.0.2.7"),
                         ("c", "A"): None, ("d", "A"): rs("192.0.2.8", ttl=30)})
    assert dict(new) == {("a", "A"): rs("192.0.2.5", "192.0.2.6"), ("a", "AAAA"): rs("2001:db8::1"),
                         ("b", "A"): rs("192.0.2.7"), ("d", "A"): rs("192.0.2.8", ttl=30)}
    assert len(new) == 4 and ("c", "A") not in new and ("c", "A") in found
    assert shards.parse_shards(new.texts()) == dict(new)


def test_record_files_are_the_regular_shards_and_the_old_file_never_a_link(tmp_path):
    zone_dir = tmp_path / "example.org"
    (zone_dir / "dynamic").mkdir(parents=True)
    (zone_dir / "dynamic" / "0a.records").write_text("a A 192.0.2.1\n")
    (zone_dir / "dynamic" / "notes.records").write_text("not a shard name\n")
    (zone_dir / "dynamic.records").write_text("b A 192.0.2.2\n")
    (tmp_path / "secret").write_text("a file of the service's disk\n")
    (zone_dir / "dynamic" / "0b.records").symlink_to(tmp_path / "secret")
    assert shards.record_files(zone_dir) == {"dynamic.records": "b A 192.0.2.2\n", "dynamic/0a.records": "a A 192.0.2.1\n"}
    linked = tmp_path / "linked.org"
    linked.mkdir()
    (linked / "dynamic").symlink_to(zone_dir / "dynamic")
    (linked / "dynamic.records").symlink_to(tmp_path / "secret")
    assert shards.record_files(linked) == {}
    assert shards.record_files(tmp_path / "missing.org") == {}


@pytest.mark.parametrize("records", [
    {(f"h{i}", "A"): rs(f"192.0.2.{i % 250 + 1}") for i in range(300)},  # every set a host's address
    {("b", "A"): rs("192.0.2.2", "192.0.2.3"), ("a", "AAAA"): rs("2001:db8::1"), ("a", "A"): rs("192.0.2.1"),
     ("a-b", "TXT"): rs('"v=spf1 -all"', '"say \\"hi\\"; \\\\ ok"', ttl=60), ("a.b", "A"): rs("192.0.2.9", ttl=0),
     ("xn--bcher-kva", "MX"): rs("10 mail.example."), ("_acme-challenge.a", "TXT"): rs('"x"')},
    {},
])
def test_a_shard_formats_as_format_dynamic_does(records):
    """The shard formatter that makes no RecordSet per entry writes exactly what format_dynamic writes."""
    found = shards.ShardedRecords.of(records, 1)
    assert found.text(0) == zones.format_dynamic(records)
    assert shards.parse_shards(found.texts()) == records


def test_a_changed_shard_s_text_is_spliced_to_what_formatting_it_again_writes():
    """Changes of every kind to a shard whose text was made (sets replaced, grown, given a TTL, new types,
    labels that sort next to each other or are prefixes of one another, the first and the last line,
    everything removed) give the text format_shard writes for the new records."""
    import random
    rng = random.Random(11)
    labels = ["a", "a-b", "a.b", "ab", "b", "h000001", "h000010", "h00001", "z", "_x.a"]
    kinds = [lambda: rs(f"192.0.2.{rng.randrange(1, 250)}"),
             lambda: rs("192.0.2.1", f"192.0.2.{rng.randrange(2, 250)}"),
             lambda: rs(f"192.0.2.{rng.randrange(1, 250)}", ttl=rng.choice([0, 60, 300])),
             lambda: None]
    found = shards.ShardedRecords.of({(label, "A"): rs("198.51.100.1") for label in labels[::2]}, 1)
    for step in range(300):
        if step % 3 == 0:
            found.text(0)  # made now and then: the next versions splice from it
        changes = {}
        for _ in range(rng.randrange(1, 4)):
            rtype = rng.choice(["A", "A", "AAAA", "TXT"])
            make = rng.choice(kinds)
            value = make()
            if value is not None and rtype != "A":
                value = rs("2001:db8::1") if rtype == "AAAA" else rs('"a b"', '"c"')
            changes[(rng.choice(labels), rtype)] = value
        found = found.changed(changes)
        assert found.text(0) == shards.ShardedRecords.of(dict(found), 1).text(0) == zones.format_dynamic(dict(found))
    found = found.changed({key: None for key in found})
    assert found.text(0) == ""
