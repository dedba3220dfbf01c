"""The sharded layout with real parts: migration of an old repository, resharding, ``ddns show``,
and what a commit touches. Real git, real named, real dig."""
from __future__ import annotations

import re
import subprocess

from ddns import errors, gitops, shards, zones

from conftest import Instance, serving, wait_until

ZONE = "dyn.example.test"
HEAD_FILE = f"{ZONE}/{ZONE}.zone"
HOSTS = {"h1": "192.0.2.1", "h2": "192.0.2.2", "h3": "198.51.100.3", "h4": "198.51.100.4", "h5": "203.0.113.5"}


def publish_hosts(inst: Instance) -> dict[str, str]:
    secrets = {label: inst.add_host(f"{label}.{ZONE}") for label in HOSTS}
    with serving(inst) as r:
        for label, address in HOSTS.items():
            assert r.update(f"{label}.{ZONE}", secrets[label], f"myip={address}") == (200, f"good {address}\n")
        assert r.update(f"h1.{ZONE}", secrets["h1"], "myip=2001:db8::1") == (200, "good 2001:db8::1\n")
    return secrets


def changed_files(inst: Instance, rev: str = "HEAD") -> list[str]:
    return inst.git("show", "--name-status", "--format=", rev).split("\n")[:-1]


def make_old_layout(inst: Instance) -> tuple[str, str]:
    """Rewrite the repository as the old service left it: one dynamic.records and the whole zone in ZONE.zone
    (each record with its TTL and class, as the old renderer wrote them), committed by the service's identity.
    Returns (dynamic.records, ZONE.zone) as committed."""
    records = inst.records(ZONE)
    head = (inst.repo / HEAD_FILE).read_text()
    ttl = 60
    old_lines = "".join(f"{label} {ttl if rs.ttl is None else rs.ttl} IN {rtype} {rdata}\n"
                        for (label, rtype), rs in sorted(zones.parse_dynamic(records).items()) for rdata in rs.rdatas)
    old_zone = re.sub(r"\$TTL 60\n(?:\$INCLUDE .*\n)+\$TTL 3600\n", lambda m: old_lines, head)
    assert old_zone != head and "$INCLUDE" not in old_zone
    inst.git("rm", "-q", "-r", f"{ZONE}/dynamic")
    (inst.repo / ZONE / "dynamic.records").write_text(records)
    (inst.repo / HEAD_FILE).write_text(old_zone)
    inst.git("add", "--", ZONE)
    inst.git("-c", "user.name=ddns", "-c", "user.email=ddns@localhost", "commit", "-q", "-m",
             "Update dyn.example.test (the old layout)")
    return records, old_zone


def test_a_commit_writes_the_head_and_the_touched_shard_only(instance):
    inst = instance
    secrets = publish_hosts(inst)
    assert len(inst.git("ls-tree", "--name-only", "HEAD", f"{ZONE}/dynamic/").split()) >= 3
    with serving(inst) as r:
        assert r.update(f"h4.{ZONE}", secrets["h4"], "myip=198.51.100.40") == (200, "good 198.51.100.40\n")
    shard = f"{ZONE}/{shards.shard_path(shards.shard_index('h4', 256), 256)}"
    assert changed_files(inst) == [f"M\t{HEAD_FILE}", f"M\t{shard}"]
    patch = inst.git("show", "--format=", "HEAD", "--", shard)
    assert "-h4 A 198.51.100.4\n" in patch and "+h4 A 198.51.100.40\n" in patch  # git log -p stays readable
    # the one host of a shard deleted: its file goes, and the head stops including it
    lone = next(label for label in HOSTS if sum(shards.shard_index(x, 256) == shards.shard_index(label, 256)
                                                  for x in HOSTS) == 1)
    lone_shard = shards.shard_path(shards.shard_index(lone, 256), 256)
    assert inst.cli("host", "delete", f"{lone}.{ZONE}").code in (0, 3)  # no named here: committed, not served
    assert f"D\t{ZONE}/{lone_shard}" in changed_files(inst)
    assert lone_shard not in shards.included((inst.repo / HEAD_FILE).read_text())
    assert not (inst.repo / ZONE / lone_shard).exists()


def test_an_old_repository_is_sharded_in_one_commit_on_start_and_served_as_before(instance):
    inst = instance
    publish_hosts(inst)
    records, old_zone = make_old_layout(inst)
    old_serial, count = zones.serial_of(old_zone), inst.commit_count()

    with serving(inst) as r:
        assert f"zone {ZONE}: published" in r.log.getvalue()
        assert inst.commit_count() == count + 1
        message = inst.git("log", "-1", "--format=%B")
        assert message.startswith(f"Shard dynamic records of {ZONE} (serial ")
        files = changed_files(inst)
        assert f"D\t{ZONE}/dynamic.records" in files and f"M\t{HEAD_FILE}" in files
        assert all(f.startswith("A\t" + ZONE + "/dynamic/") and f.endswith(".records")
                   or f in (f"D\t{ZONE}/dynamic.records", f"M\t{HEAD_FILE}") for f in files), files
        assert inst.records(ZONE) == records  # records unchanged
        new_serial = zones.serial_of(inst.git("show", f"HEAD:{HEAD_FILE}"))
        assert new_serial > old_serial
        wait_until(lambda: inst.served_serial() == new_serial, 10, what="named serving the migrated zone")
        for label, address in HOSTS.items():
            assert inst.dig(f"{label}.{ZONE}", "A") == [address], label
        assert inst.dig(f"h1.{ZONE}", "AAAA") == ["2001:db8::1"]
        assert inst.git("status", "--porcelain") == ""
        # the same records as before, the SOA serial apart
        assert gitops.zone_records(inst.cli("show", ZONE).out, ZONE) == gitops.zone_records(old_zone, ZONE)
        # an old revision prints as it was committed: its head is the whole zone
        assert inst.cli("show", ZONE, "HEAD~1").out == old_zone

    with serving(inst):  # started again: nothing left to convert
        assert inst.commit_count() == count + 1


def test_changing_the_number_of_shards_reshards_in_one_commit(instance):
    inst = instance
    publish_hosts(inst)
    records, count = inst.records(ZONE), inst.commit_count()
    with serving(inst, {"zones.shards": 2}):
        assert inst.commit_count() == count + 1
        assert inst.git("log", "-1", "--format=%s").startswith(f"Reshard dynamic records of {ZONE}")
        assert inst.records(ZONE) == records
        assert set(inst.git("ls-tree", "--name-only", "HEAD", f"{ZONE}/dynamic/").split()) <= {
            f"{ZONE}/dynamic/00.records", f"{ZONE}/dynamic/01.records"}
        for label, address in HOSTS.items():
            assert inst.dig(f"{label}.{ZONE}", "A") == [address], label
    with serving(inst, {"zones.shards": 2}):
        assert inst.commit_count() == count + 1


def test_show_prints_the_assembled_zone_and_refuses_a_bad_zone_or_revision(instance):
    inst = instance
    publish_hosts(inst)
    shown = inst.cli("show", ZONE)
    assert shown.code == 0 and shown.err == ""
    assert shown.out == gitops.committed_zone(inst.repo, ZONE)
    assert "$INCLUDE" not in shown.out and "h3 A 198.51.100.3\n" in shown.out
    assert zones.serial_of(shown.out) == zones.serial_of((inst.repo / HEAD_FILE).read_text())
    first = inst.git("rev-list", "--max-parents=0", "HEAD").strip()
    assert "h3 A" not in inst.cli("show", ZONE, first).out  # as committed then
    not_found = errors.codes(errors.NotFound("x")).exit
    for args, message in [((f"nope.{ZONE}",), "no zone"), ((ZONE, "no-such-rev"), "no revision"),
                          ((ZONE, "HEAD~999"), "no revision"), (("../etc",), "no zone name")]:
        r = inst.cli("show", *args)
        assert r.code != 0 and r.out == "" and message in r.err, (args, r)
    assert inst.cli("show", f"nope.{ZONE}").code == not_found


def test_named_reads_the_head_with_its_includes_as_the_assembled_file(tmp_path):
    """The flattened copy named loads means what the committed head with its $INCLUDEs means: named-checkzone
    dumps the same zone from both (TTLs of their own, the dynamic TTL, the static TTL after the shards)."""
    from ddns import resource_dir
    from ddns.records import RecordSet
    settings = zones.ZoneSettings.from_toml(ZONE, "ttl = 3600\ndynamic_ttl = 45\n")
    template = zones.template_environment([resource_dir("templates") / "zone"]).get_template(zones.TEMPLATE_FILE)
    records = {(f"h{i}", "A"): RecordSet((f"192.0.2.{i + 1}",)) for i in range(40)}
    records[("h1", "TXT")] = RecordSet(('"own ttl"',), 300)
    found = shards.ShardedRecords.of(records, 8)
    static = "ns1 IN A 192.0.2.53\n$ORIGIN sub.dyn.example.test.\nwww IN A 192.0.2.80\n"
    zone_dir = tmp_path / ZONE
    for rel, text in found.texts().items():
        (zone_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (zone_dir / rel).write_text(text)
    (zone_dir / f"{ZONE}.zone").write_text(shards.render_head(template, settings, 42, static, found))
    (tmp_path / "flat.zone").write_text(shards.render_flat(template, settings, 42, static, found))

    def dump(directory, name):
        proc = subprocess.run(["named-checkzone", "-q", "-D", "-o", "-", "-w", str(directory), ZONE, name],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return sorted(" ".join(line.split()) for line in proc.stdout.splitlines())

    from_head = dump(zone_dir, f"{ZONE}.zone")
    assert from_head == dump(tmp_path, "flat.zone")
    assert f'h1.{ZONE}. 300 IN TXT "own ttl"' in from_head
    assert f"h2.{ZONE}. 45 IN A 192.0.2.3" in from_head
    assert f"www.sub.{ZONE}. 3600 IN A 192.0.2.80" in from_head
