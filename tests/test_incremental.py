"""Incremental publishing for real: ddns serve sends each commit to its named as one RFC 2136 update.

named loads its own copy of each zone (bind.zone_dir), never the Git working
tree; after every kind of change (updates, deletes, TTL changes, a human
change, a new zone, a restart with a journal, a divergence) what named serves
(AXFR) equals what is committed, which ``ddns check --served`` proves.
"""
from __future__ import annotations

import http.client as http_client
import os
import re
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import pytest

from conftest import Instance, ServeProcess, http, kill_named, query, wait_until
from ddns import bind, config as configmod
from ddns.errors import Invalid
from ddns.publishing.incremental import read_key
from ddns.wiring import build_publisher
from test_faults import rndc_answers
from test_rfc2136 import make_key, nsupdate

FQDN = "myvm.dyn.example.test"


def served_as_committed(inst: Instance) -> None:
    result = inst.cli("check", "--served")
    assert result.code == 0, result.out + result.err
    assert "served as committed" in result.out


def named_log(inst: Instance) -> str:
    return (inst.dir / "bind" / "named.log").read_text()


def serial_named_took(log: str) -> int:
    """The serial of the first SOA an update put in the zone in LOG (a part of named's log)."""
    found = re.search(r"adding an RR at 'dyn\.example\.test' SOA ns1\.dyn\.example\.test\. "
                      r"hostmaster\.dyn\.example\.test\. (\d+) ", log)
    assert found, log[-2000:]
    return int(found.group(1))


def test_update_is_served_and_committed_when_good_is_answered_without_a_reload(serve, instance):
    secret = instance.add_host(FQDN)
    running = serve()
    copy = instance.dir / "bind" / "zones" / f"{instance.zone}.zone"
    assert f'file "{copy.resolve()}"; update-policy {{ grant "ddns-publisher" zonesub ANY; }};' in \
        (instance.dir / "bind" / "zones.conf").read_text()
    before = instance.commit_count()
    assert running.update(FQDN, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    assert instance.dig(FQDN) == ["192.0.2.10"]
    assert instance.commit_count() == before + 1
    assert f"( {instance.served_serial()} " in instance.git("show", f"HEAD:{instance.zone}/{instance.zone}.zone")
    assert "updating zone 'dyn.example.test/IN': adding an RR at 'myvm.dyn.example.test' A 192.0.2.10" in named_log(instance)
    assert copy.with_name(copy.name + ".jnl").exists()  # named's journal, next to its copy, not in Git
    assert not list(instance.repo.rglob("*.jnl"))
    served_as_committed(instance)


def test_deletes_ttl_changes_a_human_change_and_a_new_zone_stay_served_as_committed(serve, instance):
    instance.add_host(FQDN)
    key = make_key(instance, FQDN)
    running = serve()
    for lines in ([f"update add {FQDN} 300 A 192.0.2.1", f"update add {FQDN} 300 A 192.0.2.2",
                   f'update add {FQDN} 300 TXT "hello world"'],
                  [f"update delete {FQDN} A", f"update add {FQDN} 120 A 192.0.2.3"],  # a TTL change
                  [f"update delete {FQDN} TXT"]):
        assert nsupdate(instance, lines, key.k).returncode == 0
        served_as_committed(instance)
    assert instance.dig(FQDN, "TXT") == []
    assert query(instance.dns_port, FQDN, "A") == ["192.0.2.3"]

    # a human change: a static record pushed through Git -> a full load (freeze, write, thaw)
    static = instance.repo / instance.zone / "static.zone"
    static.write_text(static.read_text() + "human 600 IN A 198.51.100.7\n")
    instance.git("commit", "-qam", "a human adds a record")
    journal = instance.dir / "bind" / "zones" / f"{instance.zone}.zone.jnl"
    assert journal.exists()
    assert running.service.reconcile()[instance.zone] == "published"
    assert instance.dig(f"human.{instance.zone}") == ["198.51.100.7"]
    assert not journal.exists()  # thawed with a changed file: named dropped its journal
    served_as_committed(instance)
    assert nsupdate(instance, [f"update add {FQDN} 120 A 192.0.2.4"], key.k).returncode == 0  # updates go on after the thaw
    served_as_committed(instance)

    running.service.add_domain("second.example.test", actor="test")
    assert query(instance.dns_port, "second.example.test", "SOA")
    served_as_committed(instance)


def test_named_restarted_with_its_journal_serves_the_last_update(serve, instance):
    secret = instance.add_host(FQDN)
    running = serve()
    assert running.update(FQDN, secret, "myip=192.0.2.20") == (200, "good 192.0.2.20\n")
    serial = instance.served_serial()
    running.stop.set()
    running.thread.join(30)
    copy = instance.dir / "bind" / "zones" / f"{instance.zone}.zone"
    assert copy.with_name(copy.name + ".jnl").exists()
    serve()
    assert instance.served_serial() == serial
    assert instance.dig(FQDN) == ["192.0.2.20"]
    served_as_committed(instance)


def test_a_zone_changed_behind_our_back_is_detected_and_repaired_by_a_full_load(serve, instance):
    secret = instance.add_host(FQDN)
    running = serve()
    assert running.update(FQDN, secret, "myip=192.0.2.30") == (200, "good 192.0.2.30\n")
    # someone else changes the zone in named with the publisher key
    key = read_key(instance.dir / "bind" / "publisher.key")
    foreign = dns.update.UpdateMessage(instance.zone, keyring=key, keyname=key.name)
    foreign.replace(FQDN + ".", 60, "A", "203.0.113.66")
    foreign.add(f"intruder.{instance.zone}.", 60, "A", "203.0.113.67")
    assert dns.query.tcp(foreign, "127.0.0.1", port=instance.dns_port, timeout=5).rcode() == dns.rcode.NOERROR
    differs = instance.cli("check", "--served")
    assert differs.code == 1
    assert f"~ {FQDN}. A: committed 60 192.0.2.30; served 60 203.0.113.66" in differs.out
    assert f"+ intruder.{instance.zone}. 60 A 203.0.113.67" in differs.out
    # the next update's prerequisite fails: named loads the committed zone instead
    assert running.update(FQDN, secret, "myip=192.0.2.31") == (200, "good 192.0.2.31\n")
    assert "prerequisite not satisfied" in named_log(instance)
    assert instance.dig(FQDN) == ["192.0.2.31"]
    assert instance.dig(f"intruder.{instance.zone}") == []
    served_as_committed(instance)


def test_a_wrong_publisher_key_falls_back_to_full_loads(serve, instance):
    secret = instance.add_host(FQDN)
    first = serve()  # named.conf and zones.conf now carry the real key
    first.stop.set()
    first.thread.join(30)
    wrong = instance.dir / "wrong.key"
    bind.create_publisher_key(wrong)
    cfg = instance.config
    named = bind.ManagedNamed(instance.dir / "bind", bind.Rndc("127.0.0.1", cfg["bind.rndc_port"], cfg.path("bind.rndc_key")))
    with named:
        running = serve({"bind.publisher_key": str(wrong), "bind.managed": False})
        assert running.update(FQDN, secret, "myip=192.0.2.40") == (200, "good 192.0.2.40\n")
        assert instance.dig(FQDN) == ["192.0.2.40"]
        assert "update of dyn.example.test" in running.service.publisher.last_error
        assert "request has invalid signature" in named_log(instance)
        running.stop.set()
        running.thread.join(30)


@pytest.mark.parametrize("content", ["", "garbage {", 'key "k" { algorithm hmac-md99; secret "AAAA"; };\n',
                                     'key "k" { algorithm hmac-sha256; secret "***"; };\n'])
def test_a_garbled_publisher_key_is_refused_with_a_clear_error(instance, content):
    (instance.dir / "bind" / "publisher.key").write_text(content)
    with pytest.raises(Invalid, match="publisher key .*publisher.key"):
        build_publisher(instance.config)


def test_a_missing_publisher_key_means_reloads_in_auto_mode_and_is_refused_in_incremental_mode(instance):
    (instance.dir / "bind" / "publisher.key").unlink()
    assert build_publisher(instance.config).named.settings.mode == "reload"
    incremental = configmod.load(instance.config_path, environ={}, overrides={"bind.publish": "incremental"})
    with pytest.raises(Invalid, match="publisher key .*publisher.key: No such file"):
        build_publisher(incremental)
    with pytest.raises(Invalid, match="bind.publish must be one of auto, reload, incremental"):
        build_publisher(configmod.load(instance.config_path, environ={}, overrides={"bind.publish": "sometimes"}))


def test_incremental_without_a_zone_dir_is_a_config_error_at_the_start(instance):
    config = configmod.load(instance.config_path, environ={}, overrides={"bind.publish": "incremental",
                                                                        "bind.zone_dir": ""})
    with pytest.raises(configmod.ConfigError, match="bind.publish = incremental needs bind.zone_dir"):
        build_publisher(config)


def test_reload_mode_still_serves_from_named_s_copy(serve, instance):
    secret = instance.add_host(FQDN)
    running = serve({"bind.publish": "reload"})
    assert "update-policy" not in (instance.dir / "bind" / "zones.conf").read_text()
    assert running.update(FQDN, secret, "myip=192.0.2.50") == (200, "good 192.0.2.50\n")
    assert instance.dig(FQDN) == ["192.0.2.50"]
    copy = instance.dir / "bind" / "zones" / f"{instance.zone}.zone"
    assert "192.0.2.50" in copy.read_text()
    served_as_committed(instance)


def test_an_instance_of_an_older_version_is_migrated_at_start(serve, instance):
    """named.conf without the publisher key, zones.conf pointing into the Git tree: serve rewrites both."""
    secret = instance.add_host(FQDN)
    bind_dir = instance.dir / "bind"
    (bind_dir / "publisher.key").unlink()
    cfg = instance.config
    (bind_dir / "named.conf").write_text(bind.named_conf(bind_dir, bind_dir / "zones.conf", cfg["bind.listen"],
                                                         cfg["bind.port"], cfg["bind.rndc_port"]))
    tree_file = (instance.repo / instance.zone / f"{instance.zone}.zone").resolve()
    (bind_dir / "zones.conf").write_text(bind.zones_conf({instance.zone: tree_file}))
    running = serve()
    assert (bind_dir / "publisher.key").exists()
    assert str(tree_file) not in (bind_dir / "zones.conf").read_text()
    assert running.update(FQDN, secret, "myip=192.0.2.60") == (200, "good 192.0.2.60\n")
    wait_until(lambda: instance.dig(FQDN) == ["192.0.2.60"], 5, what="served")
    assert "adding an RR at 'myvm.dyn.example.test' A 192.0.2.60" in named_log(instance)
    served_as_committed(instance)
    assert instance.git("status", "--porcelain") == ""


def test_switching_from_incremental_to_reload_mode_keeps_serving(serve, instance):
    """The journal named kept in incremental mode does not stop the copy loading in reload mode."""
    secret = instance.add_host(FQDN)
    running = serve()
    assert running.update(FQDN, secret, "myip=192.0.2.70") == (200, "good 192.0.2.70\n")
    running.stop.set()
    running.thread.join(30)
    running = serve({"bind.publish": "reload"})
    assert running.update(FQDN, secret, "myip=192.0.2.71") == (200, "good 192.0.2.71\n")
    assert instance.dig(FQDN) == ["192.0.2.71"]
    served_as_committed(instance)
    running.stop.set()
    running.thread.join(30)
    running = serve()  # and back
    assert running.update(FQDN, secret, "myip=192.0.2.72") == (200, "good 192.0.2.72\n")
    assert instance.dig(FQDN) == ["192.0.2.72"]
    served_as_committed(instance)


def test_check_served_refuses_an_unknown_zone_and_says_when_named_does_not_answer(instance):
    unknown = instance.cli("check", "--served", "nosuch.example.test")
    assert unknown.code == 1 and "no zone nosuch.example.test" in unknown.err
    down = instance.cli("check", "--served")  # named is not running
    assert down.code != 0 and f"zone transfer of {instance.zone} from 127.0.0.1:{instance.dns_port}" in down.err
    assert down.out == ""


@contextmanager
def branch_held_by_a_live_git(inst: Instance):
    """A real git process in the working tree that holds refs/heads/main.lock (an open ref transaction)."""
    head = inst.git("rev-parse", "HEAD").strip()
    proc = subprocess.Popen(["git", "update-ref", "--stdin"], cwd=inst.repo, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    proc.stdin.write(f"start\nupdate refs/heads/main {head} {head}\nprepare\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "start: ok\n" and proc.stdout.readline() == "prepare: ok\n"
    try:
        yield inst.repo / ".git" / "refs" / "heads" / "main.lock"
    finally:
        proc.stdin.write("abort\n")
        proc.stdin.close()
        proc.wait(10)


@contextmanager
def branch_reflog_replaced(inst: Instance, make):
    """The branch's reflog replaced by what MAKE(path) makes there (a directory: its append fails; a FIFO: it
    blocks), so the commit stops after the branch's lock is taken and the update sent; put back after."""
    reflog = inst.repo / ".git" / "logs" / "refs" / "heads" / "main"
    kept = reflog.with_name("main.kept")
    reflog.rename(kept)
    make(reflog)
    try:
        yield reflog
    finally:
        if reflog.is_dir():
            reflog.rmdir()
        else:
            reflog.unlink()
        kept.rename(reflog)


def test_a_branch_locked_under_the_commit_sends_nothing_to_named(serve, instance):
    """A held lock (a racing push, pack-refs, a stale lock) fails the commit before the update is sent:
    named neither takes it nor is loaded again."""
    secret = instance.add_host(FQDN)
    running = serve()
    assert running.update(FQDN, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    count, serial = instance.commit_count(), instance.served_serial()
    named = running.service.publisher.named
    sent = []
    real_send = named.send
    named.send = lambda change, deadline=None: sent.append(change) or real_send(change, deadline)
    with branch_held_by_a_live_git(instance) as lock:
        assert running.update(FQDN, secret, "myip=192.0.2.11") == (200, "911\n")
        assert lock.exists()  # a live writer's lock is never taken away
    assert sent == []  # the update was never sent (the send itself recorded, not named's log raced)
    assert "192.0.2.11" not in named_log(instance)
    assert "loading the committed zone again" not in running.log.getvalue()  # nothing to withdraw
    assert instance.commit_count() == count and instance.served_serial() == serial
    assert running.update(FQDN, secret, "myip=192.0.2.12") == (200, "good 192.0.2.12\n")
    served_as_committed(instance)


def withdraw_one(running, inst: Instance, secret: str) -> tuple[int, int]:
    """An update of FQDN whose commit fails after named took it (the reflog unwritable): (the last committed
    serial, the withdrawn one)."""
    assert running.update(FQDN, secret, "myip=192.0.2.10") == (200, "good 192.0.2.10\n")
    serial = inst.served_serial()
    with branch_reflog_replaced(inst, Path.mkdir):  # appending to the reflog fails
        assert running.update(FQDN, secret, "myip=192.0.2.11") == (200, "911\n")
    assert "loading the committed zone again" in running.log.getvalue()
    log = named_log(inst)
    assert "adding an RR at 'myvm.dyn.example.test' A 192.0.2.11" in log  # named had taken it
    withdrawn = serial_named_took(log.split("A 192.0.2.11", 1)[1])  # the clock sets it: read, not computed
    assert withdrawn > serial
    return serial, withdrawn


def test_a_commit_that_fails_after_its_update_was_sent_leaves_named_with_the_committed_records(serve, instance):
    """The update goes to named under the branch's lock, before the branch moves; when a write fails then,
    named is loaded from the last commit again and the next commit's serial passes the one named saw."""
    secret = instance.add_host(FQDN)
    running = serve()
    count = instance.commit_count() + 1
    serial, withdrawn = withdraw_one(running, instance, secret)
    assert instance.commit_count() == count
    assert instance.served_serial() == serial
    assert query(instance.dns_port, FQDN, "A") == ["192.0.2.10"]
    served_as_committed(instance)  # the whole zone, SOA included, as the last commit has it
    assert running.update(FQDN, secret, "myip=192.0.2.12") == (200, "good 192.0.2.12\n")
    assert instance.commit_count() == count + 1
    assert instance.served_serial() > withdrawn  # a secondary that saw the withdrawn serial fetches this commit
    assert instance.dig(FQDN) == ["192.0.2.12"]
    served_as_committed(instance)


def test_a_withdrawn_serial_is_kept_across_a_restart_and_passed_by_a_settings_commit(serve, instance):
    """The floor is kept in .git: after a restart, a commit other than an update's (here a settings change,
    with a clock behind every serial, so serials count on from the last) still passes the withdrawn serial."""
    secret = instance.add_host(FQDN)
    running = serve()
    serial, withdrawn = withdraw_one(running, instance, secret)
    running.stop.set()
    running.thread.join(30)
    publisher = build_publisher(instance.config, clock=lambda: 0.0)
    publisher.recover()
    publisher.load()
    assert publisher.zones[instance.zone].serial == serial
    settings = instance.repo / instance.zone / "zone.toml"
    publisher.update_settings(instance.zone, settings.read_text() + "# changed\n", "admin")
    made = publisher.zones[instance.zone].serial
    assert made == withdrawn + 1  # not serial + 1: a secondary that took the withdrawn one fetches this
    assert f"( {made} " in instance.git("show", f"HEAD:{instance.zone}/{instance.zone}.zone")


def test_a_service_killed_after_named_took_an_update_before_its_branch_moved_serves_the_last_commit_again(
        instance, tmp_path):
    """The update reaches named before the branch moves; killed in between, the next start repairs named."""
    secret = instance.add_host(FQDN)
    first, second = ServeProcess(instance, tmp_path / "serve1.log"), ServeProcess(instance, tmp_path / "serve2.log")
    try:
        first.start()
        url = f"{instance.url}/nic/update?myip="
        assert http(url + "192.0.2.10", auth=(FQDN, secret))[:2] == (200, "good 192.0.2.10\n")
        with branch_reflog_replaced(instance, os.mkfifo):  # the branch's lock taken, the update sent: it blocks
            client = threading.Thread(target=lambda: _no_answer(url + "192.0.2.11", FQDN, secret), daemon=True)
            client.start()
            wait_until(lambda: "A 192.0.2.11" in named_log(instance), 10, interval=0.002,
                       what="named to take the update")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
        client.join(30)
        assert "loading the committed zone again" not in (tmp_path / "serve1.log").read_text()  # killed in the window
        kill_named(instance)
        wait_until(lambda: not rndc_answers(instance), 15, what="the killed service's named to go")
        second.start()
        wait_until(lambda: instance.dig(FQDN) == ["192.0.2.10"], 15, what="named to serve the last commit again")
        assert instance.git("grep", "-h", "192.0.2.1", "HEAD", "--", instance.zone).split() == ["myvm", "A", "192.0.2.10"]
        served_as_committed(instance)
    finally:
        first.stop()
        second.stop()
        kill_named(instance)


def _no_answer(url: str, user: str, secret: str) -> None:
    try:
        http(url, auth=(user, secret), timeout=20)
    except (OSError, http_client.HTTPException):
        pass  # killed under it
