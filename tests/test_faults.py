"""Publishing faults against a real named and a real Git repository.

BIND stopped or unreachable, a service that starts behind what named serves,
broken human-edited input, a SIGKILL in the middle of a burst, a secret
replaced by another process, a commit that fails, and a second writer under
the same lock. No mocks: every fault is made for real (signals, files, locks).
"""
from __future__ import annotations

import http.client as http_client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ddns import bind, shards, zones
from ddns.gitrepo import ZonesRepo, parse_trailers

from conftest import Instance, ServeProcess, port_free, http, kill_named, require, serving, wait_until
from recordsets import as_plain

ZONE = "dyn.example.test"
RENDERED = f"{ZONE}/{ZONE}.zone"
SHARDS = f"{ZONE}/dynamic"
SERVICE_FILES = (RENDERED, SHARDS)


def shard_of(label: str) -> str:
    """The shard file (repository path) that holds LABEL's records."""
    return f"{ZONE}/{shards.shard_path(shards.shard_index(label, shards.DEFAULT_SHARDS), shards.DEFAULT_SHARDS)}"


def service_bytes(inst: Instance) -> dict[str, bytes]:
    """The service's files of the zone (the head and every file under dynamic/), byte for byte."""
    files = [inst.repo / RENDERED, *sorted((inst.repo / SHARDS).iterdir())]
    return {str(p.relative_to(inst.repo)): p.read_bytes() for p in files}


# ---- helpers -------------------------------------------------------------------
def _tool(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path("/usr/sbin", name).exists() else None)
    if found is None:
        pytest.fail(f"required tool missing: {name}")
    return found


def rndc_answers(inst: Instance) -> bool:
    """Whether the instance's control channel answers (named is up)."""
    cmd = [_tool("rndc"), "-s", "127.0.0.1", "-p", str(inst.rndc_port), "-k", str(inst.dir / "bind" / "rndc.key"),
           "status"]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def named_gone(inst: Instance) -> bool:
    return not rndc_answers(inst) and port_free(inst.dns_port)


def stop_named_by_pid_file(inst: Instance, sig: int = signal.SIGTERM) -> None:
    """Stop the instance's named (whoever started it) and wait until it is gone."""
    pid = int((inst.dir / "bind" / "named.pid").read_text().strip())
    os.kill(pid, sig)
    wait_until(lambda: named_gone(inst), 15, what="named to stop")


def own_named(inst: Instance) -> bind.ManagedNamed:
    """A named the test starts itself from the instance's named.conf (not the service's)."""
    cfg = inst.config
    rndc = bind.Rndc(cfg["bind.rndc_server"], cfg["bind.rndc_port"], cfg.path("bind.rndc_key"))
    return bind.ManagedNamed(cfg.path("bind.dir"), rndc, _tool("named"))


@contextmanager
def hidden_rndc_key(inst: Instance):
    """rndc cannot authenticate while the key file is away (named keeps running, keeps its key).

    The publisher key goes away too: a process started meanwhile (the CLI)
    cannot send updates either, so it reloads (bind.publish = auto) and fails.
    """
    keys = [inst.dir / "bind" / "rndc.key", inst.dir / "bind" / "publisher.key"]
    for key in keys:
        key.rename(key.with_name(key.name + ".away"))
    try:
        yield
    finally:
        for key in keys:
            key.with_name(key.name + ".away").rename(key)


def healthz(inst: Instance) -> tuple[int, dict]:
    status, body, _ = http(inst.url + "/healthz", timeout=10)
    return status, json.loads(body)


def degraded(inst: Instance) -> dict | None:
    """/healthz's body when it answers 503 "degraded", else None."""
    status, health = healthz(inst)
    return health if (status, health["status"]) == (503, "degraded") else None


def head_records(inst: Instance) -> dict:
    return as_plain(zones.parse_dynamic(inst.records(ZONE)))


def head_serial(inst: Instance) -> int:
    return zones.serial_of(inst.git("show", f"HEAD:{RENDERED}"))


def porcelain(inst: Instance, *paths: str) -> str:
    return inst.git("status", "--porcelain", "--", *paths)


def stray_files(inst: Instance) -> list[str]:
    """Anything in the zone directory besides the files of a zone (temp files, leftovers; in dynamic/ too)."""
    expected = {"zone.toml", "static.zone", "dynamic", f"{ZONE}.zone"}
    found = [p.name for p in (inst.repo / ZONE).iterdir() if p.name not in expected]
    shard_dir = inst.repo / SHARDS
    found += [f"dynamic/{p.name}" for p in (shard_dir.iterdir() if shard_dir.is_dir() else ())
              if not shards.is_shard_path(f"dynamic/{p.name}")]
    return sorted(found)


def last_changes(inst: Instance) -> list[tuple]:
    return [(c.host, c.type, c.old, c.new, c.interface) for c in parse_trailers(inst.git("log", "-1", "--format=%B"))]


# ---- 1. BIND stopped / unreachable ------------------------------------------------
def test_bind_stopped_update_is_committed_answers_dnserr_and_is_served_after_named_returns(instance, tmp_path):
    inst = instance
    fqdn = f"vm1.{ZONE}"
    secret = inst.add_host(fqdn)
    own = own_named(inst)
    try:
        with serving(inst, {"bind.verify_timeout": 1.0, "publisher.retry_seconds": 0.5}) as r:
            assert r.update(fqdn, secret, "myip=192.0.2.1") == (200, "good 192.0.2.1\n")
            old_serial = inst.served_serial()

            stop_named_by_pid_file(inst)
            before = inst.commit_count()
            started = time.monotonic()
            assert r.update(fqdn, secret, "myip=192.0.2.2") == (200, "dnserr\n")
            assert time.monotonic() - started < 10
            # dnserr means: committed, not served yet
            assert inst.commit_count() == before + 1
            assert last_changes(inst) == [(fqdn, "A", "192.0.2.1", "192.0.2.2", "dyndns2")]
            assert head_records(inst) == {("vm1", "A"): "192.0.2.2"}
            assert porcelain(inst) == ""
            status, health = healthz(inst)
            assert (status, health["status"], health["unserved"]) == (503, "degraded", [ZONE])
            assert health["last_error"]

            # The same address again: nothing new to commit, even though it is not served yet.
            assert r.update(fqdn, secret, "myip=192.0.2.2")[1] in ("nochg 192.0.2.2\n", "dnserr\n")
            assert inst.commit_count() == before + 1

            own.start()  # loads the committed file; the retry loop reloads and verifies
            wait_until(lambda: healthz(inst)[1]["status"] == "ok", 15, what="/healthz to be ok again")
            status, health = healthz(inst)
            assert (status, health["status"], health["unserved"]) == (200, "ok", [])
            assert inst.dig(fqdn, "A") == ["192.0.2.2"]
            assert inst.served_serial() == head_serial(inst) != old_serial

            # and the service publishes normally again
            assert r.update(fqdn, secret, "myip=192.0.2.3") == (200, "good 192.0.2.3\n")
            assert inst.dig(fqdn, "A") == ["192.0.2.3"]
    finally:
        own.stop()
    assert named_gone(inst)


def test_rndc_unreachable_update_answers_dnserr_and_the_retry_loop_reloads(instance):
    """named keeps running with the old zone while rndc fails; the retry loop publishes once rndc works."""
    inst = instance
    fqdn = f"vm1.{ZONE}"
    secret = inst.add_host(fqdn)
    # reloads: incremental updates do not need rndc (test_incremental covers named refusing them)
    with serving(inst, {"bind.verify_timeout": 1.0, "publisher.retry_seconds": 0.5, "bind.publish": "reload"}) as r:
        assert r.update(fqdn, secret, "myip=192.0.2.1") == (200, "good 192.0.2.1\n")
        old_serial = inst.served_serial()
        before = inst.commit_count()
        with hidden_rndc_key(inst):
            assert r.update(fqdn, secret, "myip=192.0.2.2") == (200, "dnserr\n")
            assert inst.commit_count() == before + 1
            assert head_records(inst) == {("vm1", "A"): "192.0.2.2"}
            # named still serves the last zone it loaded
            assert inst.served_serial() == old_serial
            assert inst.dig(fqdn, "A") == ["192.0.2.1"]
            assert healthz(inst)[1]["status"] == "degraded"
            time.sleep(1.2)  # a few retry rounds fail while the key is away
            assert inst.served_serial() == old_serial
        wait_until(lambda: healthz(inst)[1]["status"] == "ok", 15, what="the retry loop to reload")
        assert inst.dig(fqdn, "A") == ["192.0.2.2"]
        assert inst.served_serial() == head_serial(inst)
        assert inst.commit_count() == before + 1  # the retry reloads; it does not commit


# ---- 2. reconcile on start --------------------------------------------------------
def test_change_committed_while_named_is_down_is_served_when_serve_starts(instance):
    inst = instance
    fqdn = f"vm2.{ZONE}"
    inst.add_host(fqdn)
    before = inst.commit_count()
    result = inst.cli("host", "set", fqdn, "192.0.2.20")  # no named runs
    assert result.code == 3, result
    assert "committed" in result.err and "does not serve" in result.err
    assert inst.commit_count() == before + 1
    assert head_records(inst) == {("vm2", "A"): "192.0.2.20"}

    with serving(inst) as r:
        assert f"zone {ZONE}: served" in r.log.getvalue()
        assert inst.dig(fqdn, "A") == ["192.0.2.20"]
        assert inst.served_serial() == head_serial(inst)
        assert healthz(inst)[0] == 200
    assert inst.commit_count() == before + 1


def test_serve_start_reloads_a_zone_named_serves_older(instance, tmp_path):
    """An unmanaged named that runs on with an older serial is reloaded by reconcile."""
    inst = instance
    fqdn = f"vm2.{ZONE}"
    inst.add_host(fqdn)
    own = own_named(inst)
    try:
        own.start()
        old_serial = inst.served_serial()
        assert old_serial == head_serial(inst)
        with hidden_rndc_key(inst):
            result = inst.cli("host", "set", fqdn, "192.0.2.21")
        assert result.code == 3, result
        count = inst.commit_count()
        assert inst.served_serial() == old_serial  # named serves something older than HEAD
        assert inst.dig(fqdn, "A") == []

        with serving(inst, {"bind.managed": False}) as r:
            assert f"zone {ZONE}: served" in r.log.getvalue()
            assert inst.served_serial() == head_serial(inst) != old_serial
            assert inst.dig(fqdn, "A") == ["192.0.2.21"]
            assert healthz(inst)[1]["status"] == "ok"
        assert inst.commit_count() == count  # reloading needs no commit
    finally:
        own.stop()


def test_serve_start_publishes_sources_changed_by_hand(instance):
    """A merged PR (static.zone changed, rendered file not) is re-rendered, committed and served."""
    inst = instance
    static = inst.repo / ZONE / "static.zone"
    static.write_text(static.read_text() + "www IN A 192.0.2.80\n")
    inst.git("commit", "-q", "-am", "Add www (by pull request)")
    count = inst.commit_count()
    with serving(inst) as r:
        assert f"zone {ZONE}: published" in r.log.getvalue()
        assert inst.dig(f"www.{ZONE}", "A") == ["192.0.2.80"]
        assert inst.served_serial() == head_serial(inst)
    assert inst.commit_count() == count + 1
    assert "www IN A 192.0.2.80" in inst.git("show", f"HEAD:{RENDERED}")
    assert porcelain(inst) == ""


# ---- 3. broken input never replaces a good zone -------------------------------------
@pytest.mark.parametrize("broken", [
    "bad IN A 999.1.1.1\n",
    "clash IN CNAME elsewhere.example.\nclash IN TXT \"other data\"\n",
], ids=["bad-address", "cname-and-other-data"])
def test_broken_static_zone_never_replaces_the_served_zone(instance, broken):
    inst = instance
    fqdn = f"vm3.{ZONE}"
    secret = inst.add_host(fqdn)
    with serving(inst) as r:
        assert r.update(fqdn, secret, "myip=192.0.2.30") == (200, "good 192.0.2.30\n")
    good_serial = head_serial(inst)
    rendered = inst.repo / RENDERED
    good_text = rendered.read_bytes()

    static = inst.repo / ZONE / "static.zone"
    static.write_text(static.read_text() + broken)
    inst.git("commit", "-q", "-am", "A broken change, committed by hand")
    count = inst.commit_count()

    with serving(inst) as r:
        log = r.log.getvalue()
        assert f"zone {ZONE}: broken:" in log
        assert ("999.1.1.1" in log) if "999" in broken else ("CNAME and other data" in log)
        assert inst.served_serial() == good_serial
        assert inst.dig(fqdn, "A") == ["192.0.2.30"]
        assert rendered.read_bytes() == good_text

        assert r.update(fqdn, secret, "myip=192.0.2.31") == (200, "911\n")  # not committed: nothing is published from it
        assert inst.commit_count() == count
        assert rendered.read_bytes() == good_text
        assert inst.served_serial() == good_serial
        assert inst.dig(fqdn, "A") == ["192.0.2.30"]
        status, health = healthz(inst)
        assert health["last_error"] and ZONE in health["last_error"]
    assert porcelain(inst) == ""
    assert stray_files(inst) == []


def test_stray_broken_rendered_file_and_temp_files_are_removed_on_start(instance):
    inst = instance
    fqdn = f"vm3.{ZONE}"
    secret = inst.add_host(fqdn)
    with serving(inst) as r:
        assert r.update(fqdn, secret, "myip=192.0.2.32") == (200, "good 192.0.2.32\n")
    good_text = inst.git("show", f"HEAD:{RENDERED}")
    count = inst.commit_count()
    # As if a crash left a half-written zone file in place and temp files beside it.
    rendered = inst.repo / RENDERED
    rendered.write_text(good_text[: len(good_text) // 2] + "\nbad IN A 999.1.1.1 (\n")
    (inst.repo / ZONE / f".{ZONE}.zone.tmp1234").write_text("partial")
    (inst.repo / ZONE / ".dynamic.records.tmp1234").write_text("partial")  # of the old layout
    (inst.repo / SHARDS / ".0a.records.tmp1234").write_text("partial")

    with serving(inst):
        assert rendered.read_text() == good_text
        assert inst.served_serial() == head_serial(inst)
        assert inst.dig(fqdn, "A") == ["192.0.2.32"]
        assert healthz(inst)[1]["status"] == "ok"
    assert inst.commit_count() == count
    assert porcelain(inst) == ""
    assert stray_files(inst) == []


def test_change_staged_but_never_committed_is_dropped_on_start(instance):
    """A kill between ``git add`` and ``git commit``: the change was never acknowledged, HEAD wins."""
    inst = instance
    fqdn = f"vm3.{ZONE}"
    secret = inst.add_host(fqdn)
    with serving(inst) as r:
        assert r.update(fqdn, secret, "myip=192.0.2.34") == (200, "good 192.0.2.34\n")
    count = inst.commit_count()
    dynamic = inst.repo / shard_of("vm3")
    dynamic.write_text("vm3 A 192.0.2.99\n")
    rendered = inst.repo / RENDERED
    serial = head_serial(inst)
    rendered.write_text(rendered.read_text().replace("192.0.2.34", "192.0.2.99")
                        .replace(f"( {serial} ", f"( {serial + 1} "))  # as the publisher writes it
    inst.git("add", "--", *SERVICE_FILES)
    with serving(inst):  # the repository is recovered before the managed named starts
        assert porcelain(inst) == ""
        assert inst.dig(fqdn, "A") == ["192.0.2.34"]
        # named never loaded the uncommitted file: HEAD's serial is served, nothing to re-publish
        assert inst.served_serial() == head_serial(inst) == serial
    assert inst.commit_count() == count
    assert head_records(inst) == {("vm3", "A"): "192.0.2.34"}
    assert "192.0.2.99" not in inst.git("log", "-p", "--format=%B")


def test_committed_broken_rendered_file_is_re_rendered_on_start(instance):
    """Someone committed garbage into the service's rendered file: the sources win."""
    inst = instance
    fqdn = f"vm3.{ZONE}"
    secret = inst.add_host(fqdn)
    with serving(inst) as r:
        assert r.update(fqdn, secret, "myip=192.0.2.33") == (200, "good 192.0.2.33\n")
    rendered = inst.repo / RENDERED
    rendered.write_text(rendered.read_text() + "bad IN A 999.1.1.1\n")
    inst.git("commit", "-q", "-am", "garbage in the rendered file")
    with serving(inst) as r:
        assert f"zone {ZONE}: published" in r.log.getvalue()
        assert "999.1.1.1" not in rendered.read_text()
        assert inst.served_serial() == head_serial(inst)
        assert inst.dig(fqdn, "A") == ["192.0.2.33"]
    assert porcelain(inst) == ""


# ---- 4. SIGKILL in the middle of a burst ----------------------------------------------
@pytest.mark.parametrize("mode", ["incremental", "reload"])
def test_sigkill_during_burst_loses_no_acknowledged_update(instance, tmp_path, monkeypatch, mode):
    inst = instance
    monkeypatch.setenv("DDNS_BIND_PUBLISH", mode)  # for the ddns serve processes
    threads_n, per_thread = 8, 5
    service = inst.open_service()
    service.accounts.add_user("alice")
    hosts: list[list[tuple[str, str, str]]] = []  # per thread: (fqdn, secret, address)
    for t in range(threads_n):
        mine = []
        for k in range(per_thread):
            fqdn = f"b{t}x{k}.{ZONE}"
            _, secret = service.add_host(fqdn, "alice")
            mine.append((fqdn, secret, f"198.51.100.{t * per_thread + k + 1}"))
        hosts.append(mine)

    answers: dict[str, tuple[str, str]] = {}  # fqdn -> (address, answer)
    lock = threading.Lock()
    killed = threading.Event()

    def burst(mine):
        for fqdn, secret, address in mine:  # one update per host: the assertion stays exact
            if killed.is_set():
                return
            try:
                status, body, _ = http(f"{inst.url}/nic/update?myip={address}", auth=(fqdn, secret), timeout=20)
            except (OSError, http_client.HTTPException):
                continue  # killed under it: no (complete) answer
            with lock:
                answers[fqdn] = (address, body.strip())

    first = ServeProcess(inst, tmp_path / "serve1.log")
    second = ServeProcess(inst, tmp_path / "serve2.log")
    named_killed = False
    workers = [threading.Thread(target=burst, args=(mine,), daemon=True) for mine in hosts]
    try:
        first.start()
        for w in workers:
            w.start()
        wait_until(lambda: len(answers) >= 12 or not any(w.is_alive() for w in workers), 60,
                   interval=0.002, what="a dozen answers")
        first.proc.send_signal(signal.SIGKILL)
        killed.set()
        first.proc.wait(10)
        for w in workers:
            w.join(30)
            assert not w.is_alive()
        kill_named(inst)
        named_killed = True
        wait_until(lambda: named_gone(inst), 15, what="the killed service's named to go")
        # A git child of the killed process finishes on its own; a commit killed in process leaves
        # its lock files to the next start.
        wait_until(lambda: not ZonesRepo(inst.repo).git_processes(), 10, what="git to finish")

        with lock:
            acknowledged = {f: a for f, (a, body) in answers.items() if body in (f"good {a}", "dnserr")}
            bodies = sorted({body.split()[0] for _, body in answers.values()})
        assert acknowledged, f"no update was answered before the kill: {answers}"
        assert set(bodies) <= {"good", "dnserr"}, bodies
        unanswered = sum(len(m) for m in hosts) - len(answers)
        assert unanswered > 0, "the kill came after the burst; nothing was tested"

        second.start()
        records = head_records(inst)
        for fqdn, address in sorted(acknowledged.items()):
            label = fqdn.split(".", 1)[0]
            assert records.get((label, "A")) == address, f"acknowledged {fqdn} {address} lost"
            assert inst.dig(fqdn, "A") == [address]
        sent = {fqdn.split(".", 1)[0]: address for mine in hosts for fqdn, _, address in mine}
        for (label, rtype), address in records.items():
            assert rtype == "A" and sent[label] == address  # nothing but what was sent
        # every acknowledged change has its audit trailer
        history = {(c.host, c.new) for c in parse_trailers(inst.git("log", "--format=%B"))}
        assert {(f, a) for f, a in acknowledged.items()} <= history
        assert inst.served_serial() == head_serial(inst)
        served = inst.cli("check", "--served")  # what named serves (AXFR) is exactly what is committed
        assert (served.code, served.out) == (0, f"zone {ZONE}: served as committed\n"), served.err
        assert porcelain(inst) == ""
        assert stray_files(inst) == []
        status, health = healthz(inst)
        assert (status, health["status"]) == (200, "ok")
    finally:
        killed.set()
        if first.proc is not None and first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait(10)
        if not named_killed:
            kill_named(inst)
        second.stop()
    assert named_gone(inst)


# ---- 5. a secret replaced by another process ---------------------------------------------
def test_secret_replaced_by_the_cli_stops_working_at_once(running):
    inst = running.instance
    fqdn = f"vm5.{ZONE}"
    old = inst.add_host(fqdn)
    assert running.update(fqdn, old, "myip=192.0.2.50") == (200, "good 192.0.2.50\n")
    assert running.update(fqdn, old, "myip=192.0.2.50") == (200, "nochg 192.0.2.50\n")  # cached now
    result = inst.cli("host", "secret", fqdn, "--json")
    assert result.code == 0, result
    new = result.json()["secret"]
    assert new != old
    count = inst.commit_count()
    assert running.update(fqdn, old, "myip=192.0.2.51") == (401, "badauth\n")
    assert inst.commit_count() == count
    assert running.update(fqdn, new, "myip=192.0.2.51") == (200, "good 192.0.2.51\n")
    assert running.update(fqdn, old, "myip=192.0.2.52") == (401, "badauth\n")
    assert inst.dig(fqdn, "A") == ["192.0.2.51"]


# ---- 6. a failed commit changes nothing; a stale git lock is cleared while running ---------------
@contextmanager
def index_held_by_a_live_git(inst: Instance):
    """A real git process that holds .git/index.lock while its editor runs (until the block ends)."""
    env = {**os.environ, "GIT_EDITOR": "sleep 120;:"}
    proc = subprocess.Popen(["git", "-C", str(inst.repo), "commit", "-a", "--allow-empty"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    lock = inst.repo / ".git" / "index.lock"
    try:
        wait_until(lock.exists, 10, what="git to take index.lock")
        yield lock
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # git removes its lock when it dies of a signal
        proc.wait(10)


def test_commit_failure_answers_911_changes_nothing_and_healthz_says_why(running):
    """The index is locked by a git process that is alive: the commit fails, nothing changes, /healthz says why."""
    inst = running.instance
    fqdn = f"vm6.{ZONE}"
    secret = inst.add_host(fqdn)
    assert running.update(fqdn, secret, "myip=192.0.2.60") == (200, "good 192.0.2.60\n")
    count, serial = inst.commit_count(), inst.served_serial()
    files = service_bytes(inst)
    with index_held_by_a_live_git(inst) as lock:
        assert running.update(fqdn, secret, "myip=192.0.2.61") == (200, "911\n")
        assert lock.exists()  # a live writer's lock is never taken away
        assert service_bytes(inst) == files
        assert stray_files(inst) == []
        status, health = healthz(inst)
        assert (status, health["status"]) == (503, "degraded")
        assert any("commit failed" in r and "index.lock" in r for r in health["reasons"]), health
    assert porcelain(inst, *SERVICE_FILES) == ""
    assert inst.commit_count() == count
    assert inst.served_serial() == serial
    assert inst.dig(fqdn, "A") == ["192.0.2.60"]
    # in-memory state kept the old address: the retry is a change, not nochg
    assert running.update(fqdn, secret, "myip=192.0.2.61") == (200, "good 192.0.2.61\n")
    assert inst.commit_count() == count + 1
    assert last_changes(inst) == [(fqdn, "A", "192.0.2.60", "192.0.2.61", "dyndns2")]
    assert inst.dig(fqdn, "A") == ["192.0.2.61"]
    assert healthz(inst)[0] == 200


@pytest.mark.parametrize("lock_name", ["index.lock", "refs/heads/main.lock"], ids=["index", "branch"])
def test_stale_git_lock_is_cleared_while_running(running, lock_name):
    """A lock file no live git process holds (its writer was killed) goes at the next publish, not only at start."""
    inst = running.instance
    fqdn = f"vm6.{ZONE}"
    secret = inst.add_host(fqdn)
    assert running.update(fqdn, secret, "myip=192.0.2.62") == (200, "good 192.0.2.62\n")
    count = inst.commit_count()
    lock = inst.repo / ".git" / lock_name
    lock.write_text("")  # fresh: its age says nothing, no process holds it
    assert running.update(fqdn, secret, "myip=192.0.2.63") == (200, "good 192.0.2.63\n")
    assert not lock.exists()
    assert inst.commit_count() == count + 1
    assert inst.dig(fqdn, "A") == ["192.0.2.63"]
    assert healthz(inst)[0] == 200
    assert porcelain(inst) == ""


# ---- 7. another writer under the same lock -------------------------------------------------
def test_another_writer_is_seen_by_the_running_service(running):
    inst = running.instance
    fqdn = f"vm7.{ZONE}"
    secret = inst.add_host(fqdn)
    assert running.update(fqdn, secret, "myip=192.0.2.70") == (200, "good 192.0.2.70\n")
    count = inst.commit_count()

    result = inst.cli("host", "set", fqdn, "192.0.2.71")  # its own Publisher, same flock
    assert result.code == 0, result
    assert inst.commit_count() == count + 1
    assert inst.dig(fqdn, "A") == ["192.0.2.71"]

    assert running.update(fqdn, secret, "myip=192.0.2.71") == (200, "nochg 192.0.2.71\n")
    assert inst.commit_count() == count + 1
    assert running.update(fqdn, secret, "myip=192.0.2.72") == (200, "good 192.0.2.72\n")
    assert inst.commit_count() == count + 2
    assert last_changes(inst) == [(fqdn, "A", "192.0.2.71", "192.0.2.72", "dyndns2")]
    assert inst.dig(fqdn, "A") == ["192.0.2.72"]
    assert inst.served_serial() == head_serial(inst)
    history = inst.cli("history", fqdn, "--json").json()
    assert [(h["old"], h["new"], h["interface"]) for h in history] == [
        ("192.0.2.71", "192.0.2.72", "dyndns2"), ("192.0.2.70", "192.0.2.71", "cli"), (None, "192.0.2.70", "dyndns2")]
    assert porcelain(inst) == ""


def test_stale_git_lock_of_a_killed_writer_is_cleared_on_start(instance):
    """A lock file older than any live git command belongs to a killed process: recovery removes it."""
    fqdn = f"vm8.{ZONE}"
    instance.add_host(fqdn)
    lock = instance.repo / ".git" / "index.lock"
    lock.write_text("")
    old = time.time() - 60
    os.utime(lock, (old, old))
    count = instance.commit_count()
    result = instance.cli("host", "set", fqdn, "192.0.2.80")  # opens the service: recover, then publish
    assert result.code == 3, result.err  # committed; no named runs in this test
    assert not lock.exists()
    assert instance.commit_count() == count + 1
    assert instance.records(ZONE) == "vm8 A 192.0.2.80\n"


# ---- 8. a frozen named: answers within the verify budget ----------------------------------
def test_frozen_named_answers_dnserr_within_the_verify_budget_and_catches_up(instance):
    """named SIGSTOPped: rndc connects but never answers. Updates answer dnserr within about
    bind.verify_timeout, the publisher keeps committing, /healthz is degraded; after SIGCONT
    the retry loop has named serve the last commit."""
    inst = instance
    fqdn = f"vm9.{ZONE}"
    secret = inst.add_host(fqdn)
    budget = 2.0
    with serving(inst, {"bind.verify_timeout": budget, "publisher.retry_seconds": 0.5}) as r:
        assert r.update(fqdn, secret, "myip=192.0.2.90") == (200, "good 192.0.2.90\n")
        pid = int((inst.dir / "bind" / "named.pid").read_text().strip())
        os.kill(pid, signal.SIGSTOP)
        try:
            for n in (1, 2, 3):
                started = time.monotonic()
                assert r.update(fqdn, secret, f"myip=192.0.2.9{n}") == (200, "dnserr\n")
                took = time.monotonic() - started
                assert took < budget + 1.5, f"dnserr after {took:.1f} s (verify budget {budget} s)"
            assert head_records(inst) == {("vm9", "A"): "192.0.2.93"}  # each one committed
            status, health = healthz(inst)
            assert (status, health["status"], health["unserved"]) == (503, "degraded", [ZONE])
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: healthz(inst)[0] == 200, 20, what="the retry loop to catch up")
        assert inst.dig(fqdn, "A") == ["192.0.2.93"]
        assert inst.served_serial() == head_serial(inst)
        assert r.update(fqdn, secret, "myip=192.0.2.94") == (200, "good 192.0.2.94\n")


# ---- 9. the managed named dies with ddns serve; a leftover is replaced, a foreign one refused ----
def named_command(inst: Instance) -> list[str]:
    return [_tool("named"), "-g", "-c", str(inst.dir / "bind" / "named.conf")]


def test_sigkill_of_serve_takes_its_named_with_it(instance, tmp_path):
    inst = instance
    fqdn = f"vm10.{ZONE}"
    secret = inst.add_host(fqdn)
    first = ServeProcess(inst, tmp_path / "serve1.log")
    second = ServeProcess(inst, tmp_path / "serve2.log")
    try:
        first.start()
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        wait_until(lambda: named_gone(inst), 15, what="the killed service's named to stop by itself")
        second.start()  # nothing left in the way
        status, body, _ = http(f"{inst.url}/nic/update?myip=192.0.2.100", auth=(fqdn, secret))
        assert (status, body) == (200, "good 192.0.2.100\n")
        assert inst.dig(fqdn, "A") == ["192.0.2.100"]
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait(10)
        second.stop()
        kill_named(inst)
    assert named_gone(inst)


def test_named_left_over_from_this_instance_is_replaced_on_start(instance):
    """A named running with this instance's named.conf and pid file (its service was killed) is stopped and replaced."""
    inst = instance
    fqdn = f"vm10.{ZONE}"
    secret = inst.add_host(fqdn)
    log = open(inst.dir / "bind" / "leftover.log", "ab")
    leftover = subprocess.Popen(named_command(inst), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_until(lambda: rndc_answers(inst), 15, what="the leftover named to start")
        with serving(inst) as r:
            assert leftover.wait(15) is not None  # stopped by the service's start
            new_pid = int((inst.dir / "bind" / "named.pid").read_text().strip())
            assert new_pid != leftover.pid
            assert r.update(fqdn, secret, "myip=192.0.2.101") == (200, "good 192.0.2.101\n")
            assert inst.dig(fqdn, "A") == ["192.0.2.101"]
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait(10)
    assert named_gone(inst)


def test_foreign_named_on_the_rndc_port_is_refused_with_a_clear_error(instance, tmp_path):
    """A named of another configuration answers on our rndc port (with our key): serve refuses, and leaves it alone."""
    from ddns import cli
    from conftest import free_port, start_serving

    inst = instance
    foreign_dir = tmp_path / "foreign"
    cli.init_instance(foreign_dir, free_port(), free_port(), inst.rndc_port, extra={"zones.upstream": ""})
    shutil.copyfile(inst.dir / "bind" / "rndc.key", foreign_dir / "bind" / "rndc.key")
    log = open(foreign_dir / "bind" / "named.log", "ab")
    foreign = subprocess.Popen([_tool("named"), "-g", "-c", str(foreign_dir / "bind" / "named.conf")],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_until(lambda: rndc_answers(inst), 15, what="the foreign named to start")
        with pytest.raises(RuntimeError) as refused:
            start_serving(inst)
        assert f"did not start answers on rndc port {inst.rndc_port}" in str(refused.value)
        assert foreign.poll() is None  # left alone
    finally:
        foreign.terminate()
        foreign.wait(15)


# ---- 10. a stuck publisher shows in /healthz ------------------------------------------------
def test_healthz_is_degraded_while_the_publisher_is_stuck(instance):
    """Another process holds the publisher's lock: the change waits, and /healthz says so until it is published."""
    import fcntl

    inst = instance
    fqdn = f"vm11.{ZONE}"
    secret = inst.add_host(fqdn)
    with serving(inst, {"publisher.stuck_seconds": 0.5}) as r:
        assert healthz(inst)[0] == 200
        answers: list[tuple[int, str]] = []
        with open(inst.repo / ".git" / "ddns.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as a second writer (a CLI, a hook's apply) would
            try:
                waiter = threading.Thread(target=lambda: answers.append(r.update(fqdn, secret, "myip=192.0.2.110")))
                waiter.start()
                health = wait_until(lambda: degraded(inst), 15, what="/healthz to notice the stuck publisher")
                assert any("publisher is stuck" in reason for reason in health["reasons"]), health
                assert not answers
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        waiter.join(30)
        assert answers == [(200, "good 192.0.2.110\n")]
        assert healthz(inst)[0] == 200


# ---- 11. files that are not what HEAD has are never adopted; a zone that cannot be put back is held ----
@contextmanager
def read_only(directory: Path):
    """DIRECTORY read-only for everyone (a bind mount remounted ro: writes fail with EROFS)."""
    require("mount", "umount")
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_uncommitted_edit_is_never_adopted_and_a_zone_that_cannot_be_put_back_is_held(instance):
    """A writer killed before its commit leaves the head (written first) and a shard edited: the running
    service puts HEAD's files back instead of loading them. Where that fails too (the directory went read-only),
    the zone is held: 911, /healthz says why, nothing committed; once writable it publishes again."""
    inst = instance
    hosts = {f"vm12{c}.{ZONE}": inst.add_host(f"vm12{c}.{ZONE}") for c in "abc"}
    dynamic = inst.repo / shard_of("vm12b")
    rendered = inst.repo / RENDERED
    unacknowledged = "ghost A 192.0.2.250\n"

    def killed_writer() -> None:  # as the publisher writes: the head (a newer serial), then the shard
        serial = head_serial(inst)
        rendered.write_text(rendered.read_text().replace(f"( {serial} ", f"( {serial + 1} "))
        dynamic.write_text(unacknowledged)
    with serving(inst, {"publisher.retry_seconds": 0.3}) as r:
        for n, (fqdn, secret) in enumerate(hosts.items()):
            assert r.update(fqdn, secret, f"myip=192.0.2.12{n}") == (200, f"good 192.0.2.12{n}\n")
        acknowledged = head_records(inst)
        (a, sa), (b, sb), (c, sc) = hosts.items()

        killed_writer()  # vm12b's records gone, a record nobody sent
        assert r.update(a, sa, "myip=192.0.2.130") == (200, "good 192.0.2.130\n")
        acknowledged[("vm12a", "A")] = "192.0.2.130"
        assert head_records(inst) == acknowledged
        assert as_plain(zones.parse_dynamic(inst.tree_records(ZONE))) == acknowledged
        assert "192.0.2.250" not in inst.git("log", "-p", "--format=%B")

        count = inst.commit_count()
        killed_writer()
        with read_only(inst.repo / ZONE):
            assert r.update(b, sb, "myip=192.0.2.131") == (200, "911\n")
            assert inst.commit_count() == count
            health = degraded(inst)
            assert health and ZONE in health["held"] and "Read-only file system" in health["held"][ZONE], health
            assert inst.dig(b, "A") == ["192.0.2.121"]
        wait_until(lambda: healthz(inst)[0] == 200, 15, what="the retry loop to put the zone's files back")
        assert as_plain(zones.parse_dynamic(inst.tree_records(ZONE))) == acknowledged
        assert r.update(b, sb, "myip=192.0.2.131") == (200, "good 192.0.2.131\n")
        acknowledged[("vm12b", "A")] = "192.0.2.131"
        assert head_records(inst) == acknowledged
        assert inst.dig(c, "A") == ["192.0.2.122"]
        assert porcelain(inst) == ""
