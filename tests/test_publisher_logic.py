"""The publisher's logic against a named in memory (ddns.publishing.memtarget): served, unserved, retried, reconciled.

The real-BIND behaviour is in test_faults and the end-to-end tests; here the
target is told to be down or frozen, so each case runs in milliseconds.
"""
from __future__ import annotations

import threading
import time

import dns.rcode
import pytest

from conftest import Instance, wait_until
from ddns import bind, zones
from ddns.background import Background
from ddns.publishing.bindtarget import PublishTarget
from ddns.gitrepo import ZonesRepo
from ddns.publishing.memtarget import MemoryNamed
from ddns.model import Actor, Operation, Outcome, Update
from ddns.publishing.publish_queue import PublisherThread
from ddns.publishing import worktree
from ddns.publishing.publisher import Publisher
from ddns.wiring import ZONE_TEMPLATES

ZONE = "dyn.example.test"


def set_a(label: str, address: str) -> Update:
    return Update(ZONE, tuple(Operation.replace(f"{label}.{ZONE}", "A", [address])), actor=Actor("test"))


@pytest.fixture
def named(instance: Instance) -> MemoryNamed:
    return MemoryNamed(instance.repo)


@pytest.fixture
def publisher(instance: Instance, named: MemoryNamed) -> Publisher:
    target = PublishTarget(rndc=None, verify_timeout=0.3, control=named)
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], target, fsync=False)
    publisher.load()
    publisher.reconcile()
    assert named.served[ZONE] == publisher.zones[ZONE].serial
    named.reloads.clear()
    return publisher


def test_a_group_is_one_commit_one_reload_and_published_once_served(instance, publisher, named):
    before = instance.commit_count()
    results = publisher.apply([set_a(f"h{i}", f"192.0.2.{i + 1}") for i in range(20)])
    assert {r.outcome for r in results} == {Outcome.PUBLISHED}
    assert instance.commit_count() == before + 1
    assert named.reloads == [ZONE]
    assert named.served[ZONE] == publisher.zones[ZONE].serial


def test_an_update_that_changes_nothing_commits_and_reloads_nothing(instance, publisher, named):
    publisher.apply([set_a("vm", "192.0.2.1")])
    before, reloads = instance.commit_count(), list(named.reloads)
    assert [r.outcome for r in publisher.apply([set_a("vm", "192.0.2.1")])] == [Outcome.UNCHANGED]
    assert (instance.commit_count(), named.reloads) == (before, reloads)


def test_named_down_is_committed_unserved_and_the_retry_serves_it(instance, publisher, named):
    named.down = True
    before = instance.commit_count()
    [result] = publisher.apply([set_a("vm", "192.0.2.2")])
    assert result.outcome is Outcome.UNSERVED
    assert instance.commit_count() == before + 1  # committed: the change is not lost
    assert publisher.unserved == {ZONE} and "connection refused" in publisher.last_error
    named.down = False
    publisher.retry()
    assert publisher.unserved == set()
    assert named.served[ZONE] == publisher.zones[ZONE].serial


def test_named_frozen_answers_unserved_within_the_budget_and_asks_again(publisher, named):
    named.frozen = True
    [result] = publisher.apply([set_a("vm", "192.0.2.3")])
    assert result.outcome is Outcome.UNSERVED
    assert len(named.reloads) >= 2  # a zone that stays behind is asked again
    assert "does not serve serial" in publisher.last_error
    named.frozen = False
    publisher.retry()
    assert publisher.unserved == set()


def test_reconcile_renders_above_a_newer_served_serial(publisher, named):
    newer = publisher.zones[ZONE].serial + 1000
    named.served[ZONE] = newer  # named serves a file from before (a restored backup)
    assert publisher.reconcile() == {ZONE: "published"}
    assert publisher.zones[ZONE].serial > newer
    assert named.served[ZONE] == publisher.zones[ZONE].serial
    assert publisher.reconcile() == {ZONE: "served"}


def test_an_unserved_zone_is_reloaded_by_reconcile(publisher, named):
    named.served.pop(ZONE)
    assert publisher.reconcile() == {ZONE: "served"}  # nothing to re-render, only to reload
    assert named.reloads == [ZONE] and named.served[ZONE] == publisher.zones[ZONE].serial


# ---- incremental mode: each commit one update, full loads only to repair ------------------
@pytest.fixture
def incremental(instance: Instance, named: MemoryNamed, tmp_path) -> Publisher:
    target = PublishTarget(rndc=None, verify_timeout=0.3, control=named, mode="incremental", zone_dir=tmp_path / "copies")
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], target, fsync=False)
    publisher.load()
    publisher.write_zones_conf()
    publisher.reconcile()
    named.reloads.clear()
    return publisher


def test_incremental_a_group_is_one_commit_and_one_update(instance, incremental, named, tmp_path):
    before = instance.commit_count()
    copy = (tmp_path / "copies" / f"{ZONE}.zone").read_text()
    results = incremental.apply([set_a(f"h{i}", f"192.0.2.{i + 1}") for i in range(20)])
    assert {r.outcome for r in results} == {Outcome.PUBLISHED}
    assert instance.commit_count() == before + 1
    assert named.reloads == [] and len(named.updates) == 1 and len(named.updates[0].changes) == 20
    assert named.served[ZONE] == incremental.zones[ZONE].serial == named.updates[0].serial
    assert (tmp_path / "copies" / f"{ZONE}.zone").read_text() == copy  # named's copy is named's


def test_incremental_a_refused_update_is_a_full_load_of_the_committed_zone(incremental, named, tmp_path):
    named.update_rcode = dns.rcode.NXRRSET
    [result] = incremental.apply([set_a("vm", "192.0.2.9")])
    assert result.outcome is Outcome.PUBLISHED
    assert named.reloads == [ZONE] and named.updates == []
    assert "NXRRSET" in incremental.last_error
    assert "192.0.2.9" in (tmp_path / "copies" / f"{ZONE}.zone").read_text()
    named.update_rcode = dns.rcode.NOERROR
    incremental.apply([set_a("vm", "192.0.2.10")])
    assert named.reloads == [ZONE] and len(named.updates) == 1  # in sync again: an update


def test_incremental_named_down_then_back_is_loaded_not_updated_over_the_gap(incremental, named):
    named.down = True
    [result] = incremental.apply([set_a("vm", "192.0.2.11")])
    assert result.outcome is Outcome.UNSERVED
    named.down = False
    [result] = incremental.apply([set_a("vm2", "192.0.2.12")])
    assert result.outcome is Outcome.PUBLISHED
    assert named.reloads == [ZONE] and named.updates == []
    assert named.served[ZONE] == incremental.zones[ZONE].serial


def test_a_shard_made_and_emptied_within_one_group_is_no_file_and_the_commit_stands(instance, publisher, named):
    """One group adds a host in a shard nobody uses yet and deletes it again, beside a real change."""
    from ddns import shards
    assert shards.shard_index("new", shards.DEFAULT_SHARDS) != shards.shard_index("other", shards.DEFAULT_SHARDS)
    delete = Update(ZONE, tuple(Operation.replace(f"new.{ZONE}", "A", [])), actor=Actor("test"))
    before = instance.commit_count()
    results = publisher.apply([set_a("new", "192.0.2.9"), delete, set_a("other", "192.0.2.10")])
    assert [r.outcome for r in results] == [Outcome.PUBLISHED] * 3
    assert instance.commit_count() == before + 1
    assert instance.records(ZONE) == "other A 192.0.2.10\n"
    assert instance.git("status", "--porcelain") == ""


def test_a_zone_asked_again_during_the_wait_is_loaded_under_the_publisher_s_lock(instance, publisher, named):
    locked = []
    real_reload = named.reload

    def reload(zone, timeout):
        locked.append(publisher.lock._depth > 0)  # one thread here: held by the waiter itself
        real_reload(zone, timeout)
    named.reload = reload
    named.frozen = True
    batch = publisher.commit([set_a("vm", "192.0.2.4")])
    assert locked == [True]  # the commit's own publish
    assert publisher.wait_served(batch.serials, timeout=0.45) == set()
    assert len(locked) >= 2 and all(locked), locked  # each re-ask took the lock


def test_a_soa_ttl_an_admin_changed_is_the_one_the_next_update_sends(instance, named):
    target = PublishTarget(rndc=None, verify_timeout=0.3, control=named, mode="incremental")
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], target, fsync=False)
    publisher.load()
    publisher.reconcile()
    settings = (instance.repo / ZONE / "zone.toml").read_text()
    assert "ttl = 3600" in settings
    assert publisher.update_settings(ZONE, settings.replace("ttl = 3600", "ttl = 1800", 1), "admin") is Outcome.PUBLISHED
    assert [r.outcome for r in publisher.apply([set_a("vm", "192.0.2.5")])] == [Outcome.PUBLISHED]
    assert named.updates[-1].soa_ttl == 1800


def incremental_publisher(instance: Instance, named: MemoryNamed) -> Publisher:
    """A publisher in incremental mode that writes named's copies and its zones.conf (named itself in memory)."""
    key = bind.create_publisher_key(instance.dir / "test-publisher.key")
    target = PublishTarget(rndc=None, verify_timeout=0.3, control=named, mode="incremental", update_key=key,
                           zones_conf=instance.dir / "conf" / "zones.conf", zone_dir=instance.dir / "copies")
    (instance.dir / "conf").mkdir()
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], target, fsync=False)
    publisher.load()
    publisher.reconcile()
    return publisher


def add_zone(instance: Instance, publisher: Publisher, zone: str) -> Outcome:
    settings, static = zones.default_zone_files(zone, None, "127.0.0.1")
    return publisher.add_zone(zone, settings, static, "admin")


def test_a_publisher_key_gone_since_the_start_does_not_fail_a_new_zone(instance, named):
    publisher = incremental_publisher(instance, named)
    (instance.dir / "test-publisher.key").unlink()  # its name was read at the start
    assert add_zone(instance, publisher, "new.example.test") is Outcome.PUBLISHED
    conf = (instance.dir / "conf" / "zones.conf").read_text()
    assert "new.example.test" in conf and "ddns-publisher" in conf


def test_a_zones_conf_that_cannot_be_written_leaves_a_new_zone_committed_and_unserved(instance, named):
    publisher = incremental_publisher(instance, named)
    (instance.dir / "conf" / "zones.conf").unlink()
    (instance.dir / "conf").rmdir()
    (instance.dir / "conf").write_text("a file where the directory was\n")
    before = instance.commit_count()
    assert add_zone(instance, publisher, "new.example.test") is Outcome.UNSERVED  # not an exception after the commit
    assert instance.commit_count() == before + 1
    assert "new.example.test" in publisher.unserved and "cannot write the zones for named" in publisher.last_error


def test_the_start_s_wait_for_named_is_bounded_by_its_budget_even_when_each_query_blocks(instance, publisher, named):
    """A named that answers nothing: every query waits its whole timeout, and the wait still ends in budget."""
    asked = []

    def silent(zone, timeout):
        asked.append(timeout)
        time.sleep(timeout)
        return None
    named.served_serial = silent
    budget = 0.3
    start = time.monotonic()
    Background({"bind.verify_timeout": budget}, publisher, sync=None, reconcile=None, flush_seen=None)._await_named()
    assert asked and max(asked) <= budget and sum(asked) <= budget + 0.05, asked
    assert time.monotonic() - start < budget + 0.6


@pytest.mark.parametrize("mode, answered_by", [("incremental", "publisher"), ("reload", "served-watch")])
def test_a_group_named_took_as_an_update_is_answered_by_the_publisher_thread_itself(instance, named, mode,
                                                                                     answered_by):
    """No wait for named after an update it answered: no watcher thread is woken for the answer, and the
    publisher thread does not ask named again (a sync meanwhile would make it wait)."""
    target = PublishTarget(rndc=None, verify_timeout=5.0, control=named, mode=mode)
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], target, fsync=False)
    publisher.load()
    publisher.reconcile()
    waited, wait_served = [], publisher.wait_served
    publisher.wait_served = lambda *a, **kw: (waited.append(threading.current_thread().name), wait_served(*a, **kw))[1]
    queue = PublisherThread(publisher)
    queue.start()
    try:
        threads = []
        for i in range(2):  # the first after the reconcile's full load, the second after an update
            with publisher.locked():  # the group waits for the lock: the callback is in place before its answer
                future = queue.submit([set_a("vm", f"192.0.2.{i + 1}")])[0]
                future.add_done_callback(lambda f: threads.append(threading.current_thread().name))
            assert future.result(30).outcome is Outcome.PUBLISHED
        wait_until(lambda: len(threads) == 2, 10, what="both answers")
        assert threads[1].startswith(answered_by)
        assert named.served[ZONE] == publisher.zones[ZONE].serial
        assert [name for name in waited if name.startswith("publisher")] == []
        assert len(waited) == (0 if answered_by == "publisher" else 2)  # a watcher waits after a reload only
        assert publisher.served(ZONE).serial == publisher.zones[ZONE].serial  # the served view learned it
    finally:
        queue.stop()


def spares_of(instance: Instance) -> set[str]:
    directory = instance.repo / ".git" / worktree.SPARE_DIR
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def test_no_spares_when_named_reads_the_working_tree(instance, publisher):
    """No bind.zone_dir: named loads the working tree's files, so none is ever written over in place."""
    for i in range(3):
        assert publisher.apply([set_a("vm", f"192.0.2.{i + 1}")])[0].outcome is Outcome.PUBLISHED
    assert spares_of(instance) == set()


def test_spares_of_an_earlier_run_are_emptied_at_the_first_commit(instance, incremental, named):
    """Spares of paths no longer written (a reshard, a removed zone, a moved repository) never pile up."""
    stale = instance.repo / ".git" / worktree.SPARE_DIR / ("0" * 32)
    for i in range(2):
        assert incremental.apply([set_a("vm", f"192.0.2.{i + 1}")])[0].outcome is Outcome.PUBLISHED
    kept = spares_of(instance)
    assert kept  # named reads its own copies: the replaced versions wait to be written over
    stale.write_text("a spare of a shard no longer written\n")
    restarted = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], incremental.named.settings, fsync=False)
    restarted.load()
    assert restarted.apply([set_a("vm", "192.0.2.9")])[0].outcome is Outcome.PUBLISHED
    assert stale.name not in spares_of(instance) and spares_of(instance) <= kept
