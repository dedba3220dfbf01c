"""static.zone publishes what it shows, and only that: real hooks, ``ddns check``, ``ddns apply``, named.

``$INCLUDE`` would make named read a file of the server, ``$GENERATE`` makes
records nobody reviewed, an ``$ORIGIN`` or a name outside the zone is dropped
by named without a word, and a static record on a host's name joins the
host's records. Each is refused with the file and line to fix, by the one
check that pre-receive, ``ddns check`` and the publisher share.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ddns import provenance

from conftest import Instance, serving, wait_until
from test_gitops_hooks import (ZONE, admin_clone, append, assert_accepted, assert_refused, bare, commit, git,
                               line_of, pull, push, state, static_path)

ROOT = Path(__file__).resolve().parent.parent  # this checkout: subprocesses must run its ddns
STATIC = static_path()


def ddns(inst: Instance, *args: str) -> subprocess.CompletedProcess:
    """``python -m ddns.cli -c CONFIG ARGS`` as its own process, as CI and post-receive run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DDNS_SERVICE_PUSH", None)
    return subprocess.run([sys.executable, "-m", "ddns.cli", "-c", str(inst.config_path), *args],
                          capture_output=True, text=True, cwd=str(inst.dir), env=env, timeout=120)


def push_past_the_hooks(inst: Instance, clone: Path) -> None:
    """What an older version let through: the service's token skips pre-receive and post-receive."""
    env = {**os.environ, **provenance.push_environment(inst.config["zones.push_token"])}
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True, timeout=60,
                   capture_output=True, env=env)


def taken_in_by_the_service(running) -> None:
    """Make the running service take the upstream's branch in (as its push loop may, before ``ddns apply``).

    ``ddns apply`` must then still report every zone as it is, whoever took the push in first.
    """
    inst = running.instance
    upstream = git(bare(inst), "rev-parse", "main").stdout.strip()
    running.service.request_sync()
    wait_until(lambda: subprocess.run(["git", "-C", str(inst.repo), "merge-base", "--is-ancestor", upstream, "HEAD"],
                                      capture_output=True).returncode == 0, 30, what="the service to take the push in")


def refused(inst: Instance, clone: Path, line: int, message: str) -> None:
    """The push is refused naming static.zone and LINE, changes nothing; ``ddns check`` says the same."""
    before = state(inst)
    out = assert_refused(push(clone))
    assert f"remote: ddns: error: {STATIC}:{line}: {message}" in out, out
    assert "Traceback" not in out, out
    assert state(inst) == before, "a refused push changed something"
    proc = ddns(inst, "check", "--repo", str(clone), "--plan")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"error: {STATIC}:{line}: {message}" in proc.stdout and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


def secret_zone_file(tmp_path: Path) -> Path:
    """A file on the server that is valid zone data: what $INCLUDE would publish."""
    path = tmp_path / "server-secret.zone"
    path.write_text("leak IN TXT \"read from the server's disk\"\nleak IN A 192.0.2.66\n")
    return path


def test_include_and_generate_are_refused_by_pre_receive_and_check(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    for directive in (f"$INCLUDE {secret_zone_file(tmp_path)}", "$GENERATE 1-20 gen$ A 192.0.2.$"):
        append(clone, STATIC, "ok IN A 192.0.2.1\n" + directive + "\n")
        commit(clone, directive.split()[0])
        refused(inst, clone, line_of((clone / STATIC).read_text(), directive),
                f"{directive.split()[0]} is not allowed (only $TTL and $ORIGIN)")
        git(clone, "reset", "-q", "--hard", "HEAD~1")
    assert inst.dig("leak." + ZONE, "A") == [] and inst.dig("gen1." + ZONE, "A") == []


def test_include_that_reached_the_branch_is_not_published_by_apply(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, STATIC, f"$INCLUDE {secret_zone_file(tmp_path)}\n")
    line = line_of((clone / STATIC).read_text(), "$INCLUDE")
    commit(clone, "An include")
    push_past_the_hooks(inst, clone)
    served = inst.served_serial()
    proc = ddns(inst, "apply", "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    assert status[ZONE] == f"broken: {STATIC.split('/')[1]}:{line}: $INCLUDE is not allowed (only $TTL and $ORIGIN)"
    assert inst.dig("leak." + ZONE, "A") == [] and inst.served_serial() == served
    assert "leak" not in inst.git("show", f"HEAD:{ZONE}/{ZONE}.zone")


def test_origin_outside_the_zone_is_refused_and_inside_it_is_published(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, STATIC, "$ORIGIN other.test.\nwww IN A 192.0.2.70\n")
    commit(clone, "Records for another zone")
    refused(inst, clone, line_of((clone / STATIC).read_text(), "$ORIGIN"),
            "$ORIGIN other.test. is outside the zone dyn.example.test. (named would drop its records)")
    git(clone, "reset", "-q", "--hard", "HEAD~1")

    append(clone, STATIC, "www.example.net. IN A 192.0.2.71\n")
    commit(clone, "An absolute name elsewhere")
    refused(inst, clone, line_of((clone / STATIC).read_text(), "www.example.net."),
            "the name www.example.net. is outside the zone")
    git(clone, "reset", "-q", "--hard", "HEAD~1")

    append(clone, STATIC, f"$ORIGIN office.{ZONE}.\nprinter IN A 192.0.2.72\n$ORIGIN {ZONE}.\nafter IN A 192.0.2.73\n")
    commit(clone, "The office")
    proc = ddns(inst, "check", "--repo", str(clone), "--plan")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| + | `printer.office` | A | 3600 192.0.2.72 |" in proc.stdout and "| + | `after` | A |" in proc.stdout
    out = assert_accepted(push(clone))
    assert f"remote: ddns: zone {ZONE}: published" in out, out
    assert inst.dig(f"printer.office.{ZONE}", "A") == ["192.0.2.72"]
    assert inst.dig(f"after.{ZONE}", "A") == ["192.0.2.73"]


def test_static_record_on_a_host_name_is_refused(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)  # a branch from before the host's record: ddns check must know it anyway
    git(clone, "checkout", "-q", "-b", "pr")
    append(clone, STATIC, "vm IN TXT \"a static record\"\nvm IN A 192.0.2.99\n")
    commit(clone, "Static records on a host's name")
    line = line_of((clone / STATIC).read_text(), "vm IN TXT")
    secret = inst.add_host("vm." + ZONE)
    assert running.update("vm." + ZONE, secret, "myip=192.0.2.82") == (200, "good 192.0.2.82\n")
    wait_until(lambda: "vm A" in inst.records(ZONE, "main", bare(inst)),
               10.0, what="the service's push of the host's record")
    git(clone, "fetch", "-q", "origin")
    message = "vm: the name of a registered host (dynamic records); static records there would join its records"
    proc = ddns(inst, "check", "--repo", str(clone), "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["errors"] == [f"{STATIC}:{line}: {message}"]
    git(clone, "rebase", "-q", "origin/main")
    refused(inst, clone, line, message)
    assert sorted(inst.dig("vm." + ZONE, "A")) == ["192.0.2.82"] and inst.dig("vm." + ZONE, "TXT") == []


def test_publisher_never_merges_static_and_host_records(running, tmp_path):
    inst = running.instance
    secret = inst.add_host("vm." + ZONE)
    assert running.update("vm." + ZONE, secret, "myip=192.0.2.82") == (200, "good 192.0.2.82\n")
    db_secret = inst.add_host("db." + ZONE)  # registered, no address yet
    clone = admin_clone(inst, tmp_path)
    pull(inst, clone)

    # a static db record passes the checks (no host record has that name yet) ...
    append(clone, STATIC, "db IN A 192.0.2.50\n")
    commit(clone, "A static db")
    assert_accepted(push(clone))
    assert inst.dig("db." + ZONE, "A") == ["192.0.2.50"]
    # ... so the host db may no longer put its address there: refused, nothing committed
    head = inst.git("rev-parse", "HEAD")
    status, body = running.update("db." + ZONE, db_secret, "myip=192.0.2.51")
    assert (status, body) == (200, "911\n")
    assert inst.git("rev-parse", "HEAD") == head and inst.dig("db." + ZONE, "A") == ["192.0.2.50"]

    # a static vm record that got past the hooks breaks the zone instead of joining vm's records
    pull(inst, clone)
    append(clone, STATIC, "vm IN A 192.0.2.99\n")
    line = line_of((clone / STATIC).read_text(), "vm IN A")
    commit(clone, "A static vm")
    push_past_the_hooks(inst, clone)
    taken_in_by_the_service(running)
    proc = ddns(inst, "apply", "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)[ZONE].startswith(f"broken: static.zone:{line}: vm: the name of a registered host")
    assert inst.dig("vm." + ZONE, "A") == ["192.0.2.82"]


def test_pre_receive_knows_hosts_the_service_has_not_pushed_yet(instance, tmp_path):
    """The hook checks against the service's clone, not only against what reached the pushed-to repository."""
    with serving(instance, {"zones.push_seconds": 3600.0, "zones.sync_seconds": 3600.0}) as running:
        clone = admin_clone(instance, tmp_path)
        secret = instance.add_host("vm." + ZONE)
        assert running.update("vm." + ZONE, secret, "myip=192.0.2.82") == (200, "good 192.0.2.82\n")
        assert "vm" not in instance.records(ZONE, "main", bare(instance))  # not pushed yet
        append(clone, STATIC, "vm IN A 192.0.2.99\n")
        commit(clone, "A static vm")
        out = assert_refused(push(clone))
        assert f"remote: ddns: error: {STATIC}:{line_of((clone / STATIC).read_text(), 'vm IN A')}: vm: the name of a " \
               "registered host" in out, out
        assert instance.dig("vm." + ZONE, "A") == ["192.0.2.82"]


def test_symbolic_links_are_refused_and_never_followed(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    server_file = tmp_path / "server-file.zone"  # valid for the zone: only the link itself can be refused
    server_file.write_text((clone / STATIC).read_text() + secret_zone_file(tmp_path).read_text())
    (clone / STATIC).unlink()
    (clone / STATIC).symlink_to(server_file)
    commit(clone, "static.zone from the server's disk")
    before = state(inst)
    out = assert_refused(push(clone))
    assert f"remote: ddns: error: {STATIC}: is a symbolic link: make it a file" in out, out
    assert state(inst) == before
    proc = ddns(inst, "check", "--repo", str(clone), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["errors"] == [f"{STATIC}: is a symbolic link: make it a file"]

    push_past_the_hooks(inst, clone)
    taken_in_by_the_service(running)
    proc = ddns(inst, "apply", "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)[ZONE] == "broken: static.zone: is a symbolic link: make it a file"
    assert inst.dig("leak." + ZONE, "A") == []
    assert "leak" not in inst.git("show", f"HEAD:{ZONE}/{ZONE}.zone")
