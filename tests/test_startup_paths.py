"""The start-up's shortcuts and what still takes the long way.

named starts on its copies while the zones load when a copy of every zone
is there and the zone list names exactly them; else after the load, on
copies written from it. A stale or garbled copy is loaded again. A zone
whose sources passed the full named-checkzone before is checked without its
records; a human change of the sources, a quick check that fails or a
dynamic CNAME beside other data takes the full check, and a bad zone is
still refused.
"""
from __future__ import annotations

import os

import pytest

from conftest import Instance, serving, wait_until
from ddns import bind, instance as instance_mod, shards
from ddns.publishing import zonestate
from ddns.publishing.publisher import Publisher
from ddns.wiring import build_publisher

FQDN = "myvm.dyn.example.test"


def copy_of(inst: Instance):
    return inst.dir / "bind" / "zones" / f"{inst.zone}.zone"


def served_as_committed(inst: Instance) -> None:
    result = inst.cli("check", "--served")
    assert result.code == 0, result.out + result.err


@pytest.fixture
def order(monkeypatch) -> list[str]:
    """What happens first at start: named's launch or the zones' load."""
    events: list[str] = []
    launch, load = bind.ManagedNamed.launch, Publisher.load
    monkeypatch.setattr(bind.ManagedNamed, "launch", lambda self: (events.append("launch"), launch(self))[1])
    monkeypatch.setattr(Publisher, "load", lambda self: (events.append("load"), load(self))[1])
    return events


def open_and_stop(inst: Instance, order: list[str]) -> list[str]:
    """Start as serve does, check named serves what is committed, stop; what happened first."""
    order.clear()
    service, named = instance_mod.open_serving(inst.config)
    first = list(order)
    try:
        status = service.start()
        assert status == {inst.zone: "served"}, status
        served_as_committed(inst)
    finally:
        service.stop()
        named.stop()
    return first


def test_named_starts_before_the_load_only_when_a_copy_of_every_zone_is_listed(instance: Instance, order):
    instance.add_host(FQDN)
    assert open_and_stop(instance, order) == ["launch", "load"]  # init wrote the copy and the zone list
    # a copy missing (an instance of an older version): written from the load, then named starts
    copy_of(instance).unlink()
    assert open_and_stop(instance, order) == ["load", "launch"] and copy_of(instance).exists()
    assert open_and_stop(instance, order) == ["launch", "load"]
    # a zone list that names another set of zones (a zone added or removed meanwhile): the load first
    zones_conf = instance.dir / "bind" / "zones.conf"
    zones_conf.write_text(zones_conf.read_text() + "# changed\n")
    assert open_and_stop(instance, order) == ["load", "launch"] and "# changed" not in zones_conf.read_text()


@pytest.mark.parametrize("damage", ["stale", "garbled"])
def test_a_stale_or_garbled_copy_is_loaded_again_at_start(instance: Instance, damage: str):
    secret = instance.add_host(FQDN)
    with serving(instance) as running:
        assert running.update(FQDN, secret, "myip=192.0.2.10")[1] == "good 192.0.2.10\n"
    old = copy_of(instance).read_text()
    with serving(instance) as running:
        assert running.update(FQDN, secret, "myip=192.0.2.11")[1] == "good 192.0.2.11\n"
    journal = copy_of(instance).with_name(copy_of(instance).name + ".jnl")
    journal.unlink(missing_ok=True)
    copy_of(instance).write_text(old if damage == "stale" else "garbage (\n")
    with serving(instance):
        assert instance.dig(FQDN) == ["192.0.2.11"]
        served_as_committed(instance)


@pytest.fixture
def checked(monkeypatch) -> list[str]:
    """The texts named-checkzone is run on."""
    texts: list[str] = []
    check = zonestate.ZoneReader.check
    monkeypatch.setattr(zonestate.ZoneReader, "check", lambda self, zone, text: (texts.append(text), check(self, zone, text))[1])
    return texts


def load(inst: Instance) -> zonestate.ZoneState:
    publisher = build_publisher(inst.config)
    publisher.recover()
    publisher.load()
    return publisher.zones[inst.zone]


def set_address(inst: Instance, address: str) -> None:
    """Committed (named is not running: the outcome says unserved)."""
    inst.cli("host", "set", FQDN, address)
    assert f"myvm A {address}" in inst.tree_records(inst.zone)


def human_commit(inst: Instance, rel: str, text: str) -> None:
    path = inst.repo / rel
    path.write_text(text)
    inst.git("add", rel)
    inst.git("-c", "user.name=Alice", "-c", "user.email=alice@example.test", "commit", "-q", "-m", f"Edit {rel}")


def test_a_zone_is_checked_whole_once_per_version_of_its_sources(instance: Instance, checked):
    instance.add_host(FQDN)
    set_address(instance, "192.0.2.20")
    marker = instance.repo / ".git" / zonestate.CHECKED_DIR / instance.zone
    marker.unlink(missing_ok=True)
    checked.clear()
    assert load(instance).broken is None
    assert len(checked) == 1 and "myvm A 192.0.2.20" in checked[0] and marker.exists()
    checked.clear()
    assert load(instance).broken is None  # the same sources: the zone without its records
    assert len(checked) == 1 and "myvm" not in checked[0] and "$INCLUDE" not in checked[0]
    checked.clear()
    static = f"{instance.zone}/static.zone"
    human_commit(instance, static, (instance.repo / static).read_text() + "www A 192.0.2.80\n")
    assert load(instance).broken is None  # a human change: the full check again
    assert len(checked) == 1 and "myvm A 192.0.2.20" in checked[0] and "www A 192.0.2.80" in checked[0]
    checked.clear()
    human_commit(instance, static, (instance.repo / static).read_text() + "bad A 300.1.2.3\n")
    state = load(instance)
    assert state.broken and "myvm A 192.0.2.20" in checked[-1]


def test_a_quick_check_that_fails_takes_the_full_check(instance: Instance, checked):
    """An apex NS on a host's name: without the host's address the zone fails, with it it passes."""
    instance.add_host(FQDN)
    set_address(instance, "192.0.2.20")
    static = f"{instance.zone}/static.zone"
    human_commit(instance, static, (instance.repo / static).read_text() + f"@ NS {FQDN}.\n")
    assert load(instance).broken is None
    checked.clear()
    assert load(instance).broken is None
    assert len(checked) == 2 and "myvm A" not in checked[0] and "myvm A 192.0.2.20" in checked[1]


def test_a_dynamic_cname_beside_other_data_is_refused_though_the_sources_did_not_change(instance: Instance, checked):
    instance.add_host(FQDN)
    set_address(instance, "192.0.2.20")
    assert load(instance).broken is None
    rel = f"{instance.zone}/{shards.shard_path(shards.shard_index('myvm', shards.DEFAULT_SHARDS), shards.DEFAULT_SHARDS)}"
    human_commit(instance, rel, (instance.repo / rel).read_text() + "myvm CNAME elsewhere.example.\n")
    checked.clear()
    state = load(instance)
    assert state.broken and "CNAME" in state.broken
    assert "myvm CNAME elsewhere.example." in checked[-1]  # named-checkzone on the whole zone said so


def test_a_service_file_that_lost_its_data_but_kept_its_size_and_times_is_put_back_at_start(serve, instance):
    """The working tree is not fsynced: an unclean stop can keep a shard's size and times but not its data,
    and git's stat check passes it. The start compares each service file's content with HEAD's and puts it
    back: the service and named go on from what is committed."""
    secret = instance.add_host(FQDN)
    running = serve()
    assert running.update(FQDN, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    running.stop.set()
    running.thread.join(30)
    rel = instance.git("grep", "-l", "192.0.2.10", "HEAD", "--", instance.zone).strip().removeprefix("HEAD:")
    assert shards.is_shard_path(rel.removeprefix(f"{instance.zone}/")), rel
    path, committed = instance.repo / rel, instance.git("show", f"HEAD:{rel}").encode()
    # a write from here moves ctime (lost data would not): git is told not to trust it, as some setups do
    instance.git("config", "core.trustctime", "false")
    was = path.stat()
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns - 3600 * 10**9))  # well before the index is written
    instance.git("update-index", "-q", "--refresh")  # so git's stat data is not racily clean
    was = path.stat()
    with open(path, "r+b") as out:  # same size, other data, in place (same inode)
        out.write(path.read_bytes().replace(b"192.0.2.10", b"192.0.2.99"))
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert path.read_bytes() != committed and path.stat().st_size == was.st_size
    assert instance.git("status", "--porcelain") == ""  # git's stat check sees nothing

    running = serve()
    assert path.read_bytes() == committed
    assert instance.git("status", "--porcelain") == ""
    assert f"putting back {rel}" in running.log.getvalue()
    assert running.update(FQDN, secret, "myip=192.0.2.10") == (200, "nochg 192.0.2.10\n")  # what the service holds
    assert instance.dig(FQDN) == ["192.0.2.10"]
    served_as_committed(instance)
