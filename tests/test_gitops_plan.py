"""Planning and checking human changes of the zones repository.

The pure parts (zone_records, diff_records, guard_problems, format_plan) on
their own, then check_revision and ``ddns check`` against real Git
repositories made here, with the real named-checkzone (no named needed).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ddns import gitops, resource_dir, shards, zones
from ddns.gitops import MIN_RECORDS_FOR_SHARE, diff_records, format_plan, guard_problems, zone_records

from ddns.gitrepo import ZonesRepo
from ddns.model import Actor, Operation, Update
from ddns.publishing.bindtarget import PublishTarget
from ddns.publishing.publisher import Publisher

from conftest import Instance, require
from recordsets import as_sets

ZONE = "dyn.example.test"
TEMPLATES = [resource_dir("templates") / "zone"]
STATIC = f"{ZONE}/{zones.STATIC_FILE}"
SETTINGS = f"{ZONE}/{zones.SETTINGS_FILE}"
DYNAMIC = f"{ZONE}/{shards.shard_path(shards.shard_index('vm', shards.DEFAULT_SHARDS), shards.DEFAULT_SHARDS)}"  # vm's shard
RENDERED = f"{ZONE}/{zones.rendered_file(ZONE)}"


def render(static: str, dynamic: dict[tuple[str, str], str] | None = None, settings: str | None = None,
           zone: str = ZONE, serial: int = 7) -> str:
    """A zone file as the service renders it (the shipped template)."""
    template = zones.template_environment(TEMPLATES).get_template(zones.TEMPLATE_FILE)
    toml = settings if settings is not None else f'ttl = 3600\ndynamic_ttl = 60\nnameservers = ["ns1.{zone}."]\n'
    return shards.render_flat(template, zones.ZoneSettings.from_toml(zone, toml), serial, static, as_sets(dynamic or {}))


# ---- zone_records --------------------------------------------------------------------------

def test_zone_records_of_a_rendered_zone():
    text = render(
        "ns1 IN A 192.0.2.53\n"
        "www 300 IN A 192.0.2.2\n"
        "www 300 IN A 192.0.2.1\n"         # two rdata, given unsorted
        "alias IN CNAME www\n"
        f"abs.{ZONE}. IN TXT \"hello world\"\n"  # an absolute owner inside the zone
        "@ IN MX 10 mail.example.net.\n",
        {("vm", "A"): "192.0.2.9", ("vm", "AAAA"): "2001:db8::9"},
        settings=f'ttl = 3600\ndynamic_ttl = 60\nnameservers = ["ns1.{ZONE}.", "ns.example.net."]\n')
    assert zone_records(text, ZONE) == {
        ("@", "NS"): ("3600 ns.example.net.", "3600 ns1"),
        ("@", "MX"): ("3600 10 mail.example.net.",),
        ("ns1", "A"): ("3600 192.0.2.53",),
        ("www", "A"): ("300 192.0.2.1", "300 192.0.2.2"),
        ("alias", "CNAME"): ("3600 www",),
        ("abs", "TXT"): ('3600 "hello world"',),
        ("vm", "A"): ("60 192.0.2.9",),
        ("vm", "AAAA"): ("60 2001:db8::9",),
    }


def test_zone_records_leave_out_the_soa_so_a_new_serial_is_no_change():
    a = zone_records(render("ns1 IN A 192.0.2.53\n", serial=1), ZONE)
    b = zone_records(render("ns1 IN A 192.0.2.53\n", serial=2026010101), ZONE)
    assert a == b
    assert not any(rtype == "SOA" for _, rtype in a)
    assert diff_records(ZONE, a, b).empty


def test_zone_records_ttl_is_part_of_the_value():
    short = zone_records(render("ns1 IN A 192.0.2.53\n", {("vm", "A"): "192.0.2.9"}), ZONE)
    long = zone_records(render("ns1 IN A 192.0.2.53\n", {("vm", "A"): "192.0.2.9"},
                               settings=f'ttl = 3600\ndynamic_ttl = 300\nnameservers = ["ns1.{ZONE}."]\n'), ZONE)
    assert short[("vm", "A")] == ("60 192.0.2.9",)
    assert long[("vm", "A")] == ("300 192.0.2.9",)
    plan = diff_records(ZONE, short, long)
    assert plan.changed == [("vm", "A", ("60 192.0.2.9",), ("300 192.0.2.9",))]
    assert not plan.added and not plan.removed


def test_zone_records_sort_rdata_whatever_the_file_order():
    one = zone_records(render("ns1 IN A 192.0.2.53\nm IN A 192.0.2.3\nm IN A 192.0.2.1\nm IN A 192.0.2.2\n"), ZONE)
    two = zone_records(render("ns1 IN A 192.0.2.53\nm IN A 192.0.2.2\nm IN A 192.0.2.3\nm IN A 192.0.2.1\n"), ZONE)
    assert one[("m", "A")] == ("3600 192.0.2.1", "3600 192.0.2.2", "3600 192.0.2.3")
    assert diff_records(ZONE, one, two).empty


# ---- diff_records ----------------------------------------------------------------------------

OLD = {("@", "NS"): ("3600 ns1",), ("ns1", "A"): ("3600 192.0.2.53",), ("www", "A"): ("3600 192.0.2.80",),
       ("old", "CNAME"): ("3600 www",)}
NEW = {("@", "NS"): ("3600 ns1",), ("ns1", "A"): ("3600 192.0.2.53",), ("www", "A"): ("3600 192.0.2.90",),
       ("api", "A"): ("300 192.0.2.81",), ("mail", "AAAA"): ("3600 2001:db8::25",)}


def test_diff_records_added_removed_changed():
    plan = diff_records(ZONE, OLD, NEW)
    assert (plan.zone, plan.status, plan.existing, plan.empty) == (ZONE, "changed", 4, False)
    assert plan.added == [("api", "A", ("300 192.0.2.81",)), ("mail", "AAAA", ("3600 2001:db8::25",))]
    assert plan.removed == [("old", "CNAME", ("3600 www",))]
    assert plan.changed == [("www", "A", ("3600 192.0.2.80",), ("3600 192.0.2.90",))]
    assert plan.as_dict() == {
        "zone": ZONE, "status": "changed", "existing": 4,
        "added": [{"name": "api", "type": "A", "values": ["300 192.0.2.81"]},
                  {"name": "mail", "type": "AAAA", "values": ["3600 2001:db8::25"]}],
        "removed": [{"name": "old", "type": "CNAME", "values": ["3600 www"]}],
        "changed": [{"name": "www", "type": "A", "old": ["3600 192.0.2.80"], "new": ["3600 192.0.2.90"]}],
    }


def test_diff_records_one_value_more_is_a_change_of_the_record_set():
    plan = diff_records(ZONE, {("m", "A"): ("60 192.0.2.1",)}, {("m", "A"): ("60 192.0.2.1", "60 192.0.2.2")})
    assert plan.changed == [("m", "A", ("60 192.0.2.1",), ("60 192.0.2.1", "60 192.0.2.2"))]
    assert not plan.added and not plan.removed


def test_diff_records_zone_added_and_removed():
    added = diff_records(ZONE, None, NEW)
    assert (added.status, added.existing, added.removed, added.changed, added.empty) == ("added", 0, [], [], False)
    assert [(n, t) for n, t, _ in added.added] == sorted(NEW)

    removed = diff_records(ZONE, OLD, None)
    assert (removed.status, removed.existing, removed.added, removed.changed, removed.empty) == ("removed", 4, [], [], False)
    assert [(n, t) for n, t, _ in removed.removed] == sorted(OLD)


def test_diff_records_empty():
    assert diff_records(ZONE, OLD, dict(OLD)).empty
    assert diff_records(ZONE, {}, {}).empty
    # a zone appearing or disappearing is never "no change", even without records
    assert not diff_records(ZONE, None, {}).empty
    assert not diff_records(ZONE, {}, None).empty


# ---- guard_problems --------------------------------------------------------------------------

def zone_of(n: int) -> dict:
    """N record sets: the apex NS and N-1 hosts."""
    records = {("@", "NS"): ("3600 ns1",)}
    for i in range(1, n):
        records[(f"h{i}", "A")] = (f"60 192.0.2.{i}",)
    return records


def touch(records: dict, removed: int = 0, changed: int = 0, added: int = 0) -> dict:
    """RECORDS with the first REMOVED hosts gone, the next CHANGED rewritten, ADDED new ones."""
    new = dict(records)
    hosts = [k for k in records if k[0] != "@"]
    for key in hosts[:removed]:
        del new[key]
    for key in hosts[removed:removed + changed]:
        new[key] = ("60 198.51.100.1",)
    for i in range(added):
        new[(f"new{i}", "AAAA")] = (f"60 2001:db8::{i + 1:x}",)
    return new


def test_guard_whole_zone_removed():
    plan = diff_records(ZONE, zone_of(3), None)
    assert guard_problems(plan, 0.3) == [f"{ZONE}: the whole zone would be removed (3 record sets)"]


def test_guard_zone_added_is_fine():
    assert guard_problems(diff_records(ZONE, None, zone_of(50)), 0.3) == []


def test_guard_apex_ns_changed_or_removed():
    old = {("@", "NS"): ("3600 ns1", "3600 ns2"), ("ns1", "A"): ("3600 192.0.2.53",)}
    changed = {**old, ("@", "NS"): ("3600 ns1",)}
    assert guard_problems(diff_records(ZONE, old, changed), 0.3) == [f"{ZONE}: the apex NS records would change"]
    other_server = {**old, ("@", "NS"): ("3600 ns.example.net.", "3600 ns2")}
    assert guard_problems(diff_records(ZONE, old, other_server), 0.3) == [f"{ZONE}: the apex NS records would change"]
    removed = {k: v for k, v in old.items() if k != ("@", "NS")}
    assert guard_problems(diff_records(ZONE, old, removed), 0.3) == [f"{ZONE}: the apex NS records would change"]


def test_guard_ns_below_the_apex_is_not_the_apex():
    old = {("@", "NS"): ("3600 ns1",), ("sub", "NS"): ("3600 ns.example.net.",)}
    new = {("@", "NS"): ("3600 ns1",), ("sub", "NS"): ("3600 ns.example.org.",)}
    assert guard_problems(diff_records(ZONE, old, new), 0.3) == []


def test_guard_apex_ns_ttl_only_change_keeps_the_delegation():
    old = {("@", "NS"): ("3600 ns1", "3600 ns2")}
    new = {("@", "NS"): ("7200 ns2", "7200 ns1")}
    assert guard_problems(diff_records(ZONE, old, new), 0.3) == []


def test_guard_share_exactly_at_the_limit_is_allowed():
    old = zone_of(10)
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=3)), 0.3) == []
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=1, changed=2)), 0.3) == []
    old = zone_of(20)
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=6)), 0.3) == []


def test_guard_share_just_over_the_limit_is_refused():
    old = zone_of(10)
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=4)), 0.3) == [
        f"{ZONE}: 4 of 10 record sets would be deleted or rewritten (more than 30%)"]
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=2, changed=2)), 0.3) == [
        f"{ZONE}: 4 of 10 record sets would be deleted or rewritten (more than 30%)"]
    assert guard_problems(diff_records(ZONE, old, touch(old, changed=4)), 0.3) != []
    old = zone_of(20)
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=7)), 0.3) == [
        f"{ZONE}: 7 of 20 record sets would be deleted or rewritten (more than 30%)"]


def test_guard_additions_do_not_count():
    old = zone_of(10)
    assert guard_problems(diff_records(ZONE, old, touch(old, added=100)), 0.3) == []


def test_guard_small_zones_are_exempt_from_the_share():
    old = zone_of(MIN_RECORDS_FOR_SHARE - 1)
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=MIN_RECORDS_FOR_SHARE - 2)), 0.3) == []
    old = zone_of(MIN_RECORDS_FOR_SHARE)
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=MIN_RECORDS_FOR_SHARE - 1)), 0.3) != []
    # the threshold is a parameter
    old = zone_of(3)
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=2)), 0.3, min_records=3) == [
        f"{ZONE}: 2 of 3 record sets would be deleted or rewritten (more than 30%)"]


def test_guard_max_share_parameter():
    old = zone_of(10)
    five, six = touch(old, removed=5), touch(old, removed=6)
    assert guard_problems(diff_records(ZONE, old, five), 0.5) == []
    assert guard_problems(diff_records(ZONE, old, six), 0.5) == [
        f"{ZONE}: 6 of 10 record sets would be deleted or rewritten (more than 50%)"]
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=1)), 0.0) == [
        f"{ZONE}: 1 of 10 record sets would be deleted or rewritten (more than 0%)"]
    assert guard_problems(diff_records(ZONE, old, touch(old, removed=9)), 1.0) == []


def test_guard_apex_ns_and_share_together():
    old = zone_of(10)
    new = touch(old, removed=5)
    del new[("@", "NS")]
    assert guard_problems(diff_records(ZONE, old, new), 0.3) == [
        f"{ZONE}: the apex NS records would change",
        f"{ZONE}: 6 of 10 record sets would be deleted or rewritten (more than 30%)"]


# ---- format_plan -------------------------------------------------------------------------------

def test_format_plan_markdown():
    text = format_plan([diff_records(ZONE, OLD, NEW)])
    assert text == (
        f"### {ZONE} (changed)\n\n"
        "2 added, 1 removed, 1 changed (of 4 record sets)\n\n"
        "| | name | type | records |\n"
        "|---|---|---|---|\n"
        "| + | `api` | A | 300 192.0.2.81 |\n"
        "| + | `mail` | AAAA | 3600 2001:db8::25 |\n"
        "| - | `old` | CNAME | 3600 www |\n"
        "| ~ | `www` | A | 3600 192.0.2.80 → 3600 192.0.2.90 |\n")


def test_format_plan_several_values_and_zones():
    multi = diff_records("a.example.test", {("m", "A"): ("60 192.0.2.1",)},
                         {("m", "A"): ("60 192.0.2.1", "60 192.0.2.2")})
    gone = diff_records("b.example.test", {("@", "NS"): ("3600 ns1",)}, None)
    quiet = diff_records("c.example.test", OLD, OLD)
    text = format_plan([multi, quiet, gone])
    assert "| ~ | `m` | A | 60 192.0.2.1 → 60 192.0.2.1, 60 192.0.2.2 |" in text
    assert "### b.example.test (removed)" in text and "| - | `@` | NS | 3600 ns1 |" in text
    assert "c.example.test" not in text
    assert text.index("a.example.test") < text.index("b.example.test")


def test_format_plan_without_changes():
    assert format_plan([]) == "No DNS changes.\n"
    assert format_plan([diff_records(ZONE, OLD, OLD), diff_records("other.example.test", {}, {})]) == "No DNS changes.\n"


# ---- check_revision and `ddns check` against real repositories -----------------------------

def git(repo: Path, *args: str, message: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Zone Admin", "GIT_AUTHOR_EMAIL": "admin@example.test",
           "GIT_COMMITTER_NAME": "Zone Admin", "GIT_COMMITTER_EMAIL": "admin@example.test"}
    env.pop("DDNS_SERVICE_PUSH", None)
    proc = subprocess.run(["git", "-C", str(repo), "-c", "commit.gpgsign=false", *args], capture_output=True,
                          text=True, env=env, input=message, timeout=60)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-F", "-", message=message)
    return git(repo, "rev-parse", "HEAD")


def write(repo: Path, path: str, text: str) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)


def append(repo: Path, path: str, text: str) -> None:
    write(repo, path, (repo / path).read_text() + text)


def replace(repo: Path, path: str, old: str, new: str) -> None:
    text = (repo / path).read_text()
    assert old in text, f"{old!r} not in {path}"
    write(repo, path, text.replace(old, new))


BASE_STATIC = "www IN A 192.0.2.80\nold IN CNAME www\n"


@pytest.fixture
def clone(instance: Instance, tmp_path: Path) -> Path:
    """An admin's clone of the instance's zones repository, with a richer main.

    The main branch goes to a hook-less copy of the bare repository (a plain
    upstream): what is checked below is each branch against it, not this set-up.
    It has static records and one dynamic record (as the service writes them).
    """
    require("git", "named-checkzone")
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(instance.dir / "zones.git"), str(upstream))
    work = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(upstream), str(work))
    append(work, STATIC, BASE_STATIC)
    write(work, DYNAMIC, "vm A 192.0.2.9\n")
    commit(work, "Base: two static records and a host")
    git(work, "push", "-q", "origin", "HEAD:main")
    git(work, "fetch", "-q", "origin")
    return work


def check(instance: Instance, work: Path, *args: str):
    return instance.cli("check", "--repo", str(work), *args)


def plan_rows(plan: dict) -> tuple[list, list, list]:
    return ([(a["name"], a["type"], a["values"]) for a in plan["added"]],
            [(r["name"], r["type"], r["values"]) for r in plan["removed"]],
            [(c["name"], c["type"], c["old"], c["new"]) for c in plan["changed"]])


def test_check_plans_exactly_the_changes_of_a_branch(instance, clone):
    git(clone, "checkout", "-q", "-b", "pr")
    replace(clone, STATIC, "www IN A 192.0.2.80\n", "www IN A 192.0.2.90\n")       # changed
    replace(clone, STATIC, "old IN CNAME www\n", "")                               # removed
    append(clone, STATIC, "api 300 IN A 192.0.2.81\nmail IN AAAA 2001:db8::25\n")  # added x2
    replace(clone, SETTINGS, "dynamic_ttl = 60", "dynamic_ttl = 300")              # vm A: new TTL
    replace(clone, SETTINGS, "refresh = 3600", "refresh = 7200")                   # SOA only: no record
    rev = commit(clone, "Static records for the web site")
    base = git(clone, "rev-parse", "origin/main")

    r = check(instance, clone, "--json")
    assert r.code == 0, r.out + r.err
    report = r.json()
    assert (report["base"], report["rev"], report["ok"], report["forced"]) == (base, rev, True, False)
    assert (report["errors"], report["guarded"]) == ([], [])
    assert [(p["zone"], p["status"], p["existing"]) for p in report["plans"]] == [(ZONE, "changed", 5)]
    added, removed, changed = plan_rows(report["plans"][0])
    assert added == [("api", "A", ["300 192.0.2.81"]), ("mail", "AAAA", ["3600 2001:db8::25"])]
    assert removed == [("old", "CNAME", ["3600 www"])]
    assert changed == [("vm", "A", ["60 192.0.2.9"], ["300 192.0.2.9"]),
                       ("www", "A", ["3600 192.0.2.80"], ["3600 192.0.2.90"])]

    r = check(instance, clone, "--plan")
    assert r.code == 0, r.out + r.err
    assert r.out == (
        f"### {ZONE} (changed)\n\n"
        "2 added, 1 removed, 2 changed (of 5 record sets)\n\n"
        "| | name | type | records |\n"
        "|---|---|---|---|\n"
        "| + | `api` | A | 300 192.0.2.81 |\n"
        "| + | `mail` | AAAA | 3600 2001:db8::25 |\n"
        "| - | `old` | CNAME | 3600 www |\n"
        "| ~ | `vm` | A | 60 192.0.2.9 → 300 192.0.2.9 |\n"
        "| ~ | `www` | A | 3600 192.0.2.80 → 3600 192.0.2.90 |\n\n")

    # the same verdict by name of the revision, from another branch, and with --base spelled out
    git(clone, "checkout", "-q", "main")
    assert check(instance, clone, "pr", "--json").json() == report
    assert check(instance, clone, "pr", "--base", "origin/main", "--json").json() == report
    assert check(instance, clone, "pr", "--base", "pr", "--plan").out == "No DNS changes.\n\n"


def test_check_names_file_and_line_of_a_broken_record(instance, clone):
    git(clone, "checkout", "-q", "-b", "broken")
    append(clone, STATIC, "ok IN A 192.0.2.7\nbad IN A 192.0.2.300\n")
    line = (clone / STATIC).read_text().splitlines().index("bad IN A 192.0.2.300") + 1
    commit(clone, "A typo")
    r = check(instance, clone, "--plan")
    assert r.code == 1, r.out + r.err
    errors = [l for l in r.out.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {STATIC}:{line}: "), r.out
    assert "192.0.2.300" in errors[0]
    report = check(instance, clone, "--json").json()
    assert report["ok"] is False and report["plans"] == []
    assert report["errors"][0].startswith(f"{STATIC}:{line}: ")


def test_check_names_zone_toml_when_it_does_not_parse(instance, clone):
    git(clone, "checkout", "-q", "-b", "toml")
    replace(clone, SETTINGS, "dynamic_ttl = 60", "dynamic_ttl = = 60")
    commit(clone, "A TOML typo")
    r = check(instance, clone, "--json")
    assert r.code == 1
    assert [e.split(":")[0] for e in r.json()["errors"]] == [SETTINGS]


@pytest.mark.parametrize("path", [DYNAMIC, RENDERED])
def test_check_refuses_edits_of_service_files(instance, clone, path):
    git(clone, "checkout", "-q", "-b", "edit-service-file")
    append(clone, path, "vm2 A 192.0.2.10\n" if path == DYNAMIC else "; a comment\n")
    commit(clone, "Edit a file the service writes")
    r = check(instance, clone, "--json")
    assert r.code == 1
    assert r.json()["errors"] == [f"{path}: written by the service only; change zone.toml or static.zone instead"]
    r = check(instance, clone)
    assert r.code == 1 and f"error: {path}: written by the service only" in r.out


def test_check_refuses_a_forged_audit_trailer(instance, clone):
    git(clone, "checkout", "-q", "-b", "forged")
    append(clone, STATIC, "api IN A 192.0.2.81\n")
    commit(clone, 'Innocent\n\nDdns-Change: {"host":"x.dyn.example.test","type":"A","old":null,"new":"192.0.2.1",'
                  '"actor":"host:x.dyn.example.test","client":"","interface":"dyndns2"}\n')
    r = check(instance, clone, "--json")
    assert r.code == 1
    assert r.json()["errors"] == ["a pushed commit carries a Ddns-Change trailer: only the service writes those"]


def _grow_and_shrink(clone: Path, branch: str, trailer: str) -> tuple[str, str]:
    """On BRANCH: add eight records (13 record sets), then delete six of them."""
    git(clone, "checkout", "-q", "-b", branch, "origin/main")
    append(clone, STATIC, "".join(f"a{i} IN A 192.0.2.{100 + i}\n" for i in range(1, 9)))
    grown = commit(clone, "Eight test records")
    text = (clone / STATIC).read_text()
    for i in range(1, 7):
        text = text.replace(f"a{i} IN A 192.0.2.{100 + i}\n", "")
    write(clone, STATIC, text)
    return grown, commit(clone, "Drop most test records\n" + trailer)


def test_check_mass_deletion_is_refused_unless_forced_by_a_trailer(instance, clone):
    problem = f"{ZONE}: 6 of 13 record sets would be deleted or rewritten (more than 30%)"

    grown, shrunk = _grow_and_shrink(clone, "unforced", "")
    r = check(instance, clone, "--base", grown, "--json")
    assert r.code == 1
    report = r.json()
    assert (report["base"], report["rev"], report["guarded"], report["errors"]) == (grown, shrunk, [problem], [])
    assert (report["ok"], report["forced"]) == (False, False)
    assert [name for name, _, _ in plan_rows(report["plans"][0])[1]] == [f"a{i}" for i in range(1, 7)]
    r = check(instance, clone, "--base", grown)
    assert (r.code, r.out) == (1, f"refused unless forced: {problem}\n")
    # against origin/main (the default base) the branch only adds two records: fine
    r = check(instance, clone, "--json")
    assert r.code == 0 and r.json()["guarded"] == []
    assert plan_rows(r.json()["plans"][0]) == ([("a7", "A", ["3600 192.0.2.107"]), ("a8", "A", ["3600 192.0.2.108"])],
                                              [], [])

    grown, shrunk = _grow_and_shrink(clone, "forced", "\nDdns-Force: yes\n")
    r = check(instance, clone, "--base", grown, "--json")
    assert r.code == 0, r.out + r.err
    report = r.json()
    assert (report["guarded"], report["errors"], report["ok"], report["forced"]) == ([problem], [], True, True)
    r = check(instance, clone, "--base", grown, "--plan")
    assert r.code == 0
    assert r.out.startswith(f"forced: {problem}\n### {ZONE} (changed)\n")
    assert "0 added, 6 removed, 0 changed (of 13 record sets)" in r.out
    # the trailer counts only inside the checked range
    r = check(instance, clone, "--base", shrunk, "--json")
    assert r.json()["forced"] is False


def test_check_max_share_comes_from_the_config(instance, clone):
    grown, _ = _grow_and_shrink(clone, "unforced", "")
    config = instance.dir / "lenient.toml"
    text = instance.config_path.read_text()
    assert "\n[zones]\n" in text
    config.write_text(text.replace("\n[zones]\n", "\n[zones]\nmax_change_share = 0.5\n", 1))
    lenient = Instance(instance.dir, config, instance.http_port, instance.dns_port, instance.rndc_port)
    assert check(instance, clone, "--base", grown).code == 1
    r = check(lenient, clone, "--base", grown, "--json")
    assert r.code == 0 and r.json()["guarded"] == [], r.out + r.err


def test_check_revision_zone_added_and_removed(clone):
    new = "new.example.test"
    git(clone, "checkout", "-q", "-b", "zones")
    base = git(clone, "rev-parse", "HEAD")
    write(clone, f"{new}/{zones.SETTINGS_FILE}", f'ttl = 3600\nnameservers = ["ns1.{new}."]\n')
    write(clone, f"{new}/{zones.STATIC_FILE}", "ns1 IN A 192.0.2.53\nwww IN AAAA 2001:db8::80\n")
    added = commit(clone, "A new zone")
    report = gitops.check_revision(clone, added, base, TEMPLATES)
    assert report.ok() and report.errors == [] and report.guarded == []
    assert [(p.zone, p.status, p.existing) for p in report.plans] == [(new, "added", 0)]
    assert report.plans[0].added == [("@", "NS", ("3600 ns1",)), ("ns1", "A", ("3600 192.0.2.53",)),
                                     ("www", "AAAA", ("3600 2001:db8::80",))]

    # removing a zone means removing its zone.toml (the service removes its own files)
    (clone / SETTINGS).unlink()
    removed = commit(clone, "Retire the dynamic zone")
    report = gitops.check_revision(clone, removed, added, TEMPLATES)
    assert report.errors == []
    assert [(p.zone, p.status, p.existing) for p in report.plans] == [(ZONE, "removed", 5)]
    assert report.guarded == [f"{ZONE}: the whole zone would be removed (5 record sets)"]
    assert not report.ok() and report.ok(forced=True)
    assert "### dyn.example.test (removed)" in format_plan(report.plans)


def test_check_revision_ignores_files_outside_zones(clone):
    git(clone, "checkout", "-q", "-b", "docs")
    base = git(clone, "rev-parse", "HEAD")
    append(clone, "README.md", "\nMore words.\n")
    write(clone, "notes/todo.txt", "nothing\n")
    rev = commit(clone, "Docs only")
    report = gitops.check_revision(clone, rev, base, TEMPLATES)
    assert (report.ok(), report.plans, report.errors, report.guarded) == (True, [], [], [])
    assert format_plan(report.plans) == "No DNS changes.\n"


def test_forced_by_commits_reads_the_trailer_in_the_range(clone):
    git(clone, "checkout", "-q", "-b", "force")
    base = git(clone, "rev-parse", "HEAD")
    append(clone, STATIC, "x IN A 192.0.2.1\n")
    first = commit(clone, "One\n\nDdns-Force: YES\n")
    append(clone, STATIC, "y IN A 192.0.2.2\n")
    second = commit(clone, "Two\n\nDdns-Force: no\n")
    assert gitops.forced_by_commits(clone, base, first)
    assert gitops.forced_by_commits(clone, base, second)
    assert not gitops.forced_by_commits(clone, first, second)
    assert not gitops.forced_by_commits(clone, base, base)


def test_a_check_renders_with_the_configured_number_of_shards_the_file_named_loads(instance):
    """zones.shards decides the order of the assembled file: the checked file must be named's, line for line."""
    publisher = Publisher(ZonesRepo(instance.repo), TEMPLATES, PublishTarget(rndc=None), fsync=False, shard_count=4)
    publisher.load()
    publisher.reconcile()  # reshards into 4
    labels = [f"h{i}" for i in range(12)]
    publisher.apply([Update(ZONE, tuple(Operation.replace(f"{label}.{ZONE}", "A", [f"192.0.2.{i + 1}"])),
                            actor=Actor("test")) for i, label in enumerate(labels)])
    committed = gitops.committed_zone(instance.repo, ZONE)
    assert gitops.render_zone_at(instance.repo, "HEAD", ZONE, TEMPLATES, "named-checkzone", shard_count=4).text == committed
    assert gitops.render_zone_at(instance.repo, "HEAD", ZONE, TEMPLATES, "named-checkzone").text != committed  # it can fail


def test_check_takes_the_number_of_shards_from_the_config(instance, clone):
    text = instance.config_path.read_text()
    config = instance.dir / "many-shards.toml"
    config.write_text(text.replace("\n[zones]\n", "\n[zones]\nshards = 5000\n", 1))
    many = Instance(instance.dir, config, instance.http_port, instance.dns_port, instance.rndc_port)
    r = check(many, clone)
    assert r.code != 0 and "zones.shards must be a whole number from 1 to 4096" in r.out + r.err, r.out + r.err
