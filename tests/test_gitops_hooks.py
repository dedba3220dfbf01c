"""GitOps for admins (README: Git workflow for admins), end to end with real git and a real named.

An admin clones the bare zones repository, commits and pushes: pre-receive
validates (named-checkzone, guard rails, service-only files), post-receive
publishes, and BIND serves the result. Nothing is mocked.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from ddns import provenance
from ddns.zones import default_zone_files

from conftest import Instance, require, wait_until

ZONE = "dyn.example.test"


# ---- helpers -------------------------------------------------------------------------------

def git(repo: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    full_env.pop("DDNS_SERVICE_PUSH", None)  # never push as the service
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=full_env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def rev(repo: Path, what: str = "HEAD") -> str:
    return git(repo, "rev-parse", "--verify", what).stdout.strip()


def bare(inst: Instance) -> Path:
    return inst.dir / "zones.git"


def bare_main(inst: Instance) -> str:
    return rev(bare(inst), "refs/heads/main")


def admin_clone(inst: Instance, tmp_path: Path, name: str = "admin") -> Path:
    """A clone of the bare zones repository, as an admin has it, with a git identity."""
    require("git")
    clone = tmp_path / name
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare(inst)), str(clone)], check=True,
                   capture_output=True, timeout=60)
    git(clone, "config", "user.name", "Zone Admin")
    git(clone, "config", "user.email", "admin@example.test")
    return clone


def edit(clone: Path, path: str, text: str) -> None:
    target = clone / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def append(clone: Path, path: str, text: str) -> None:
    """Append TEXT to PATH of CLONE (created, with its directory, when missing)."""
    target = clone / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((target.read_text() if target.exists() else "") + text)


def commit(clone: Path, message: str) -> str:
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", message)
    return rev(clone)


def push(clone: Path, *options: str) -> subprocess.CompletedProcess:
    """git push origin HEAD:main (with push options); returns the process (not checked)."""
    args = ["push", "--porcelain"]
    for opt in options:
        args += ["-o", opt]
    return git(clone, *args, "origin", "HEAD:refs/heads/main", check=False)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def assert_accepted(proc: subprocess.CompletedProcess) -> str:
    out = output(proc)
    assert proc.returncode == 0, f"push refused:\n{out}"
    return out


def assert_refused(proc: subprocess.CompletedProcess) -> str:
    out = output(proc)
    assert proc.returncode != 0, f"push accepted:\n{out}"
    assert "pre-receive hook declined" in out, out
    return out


def served_soa_serial(inst: Instance, zone: str = ZONE) -> int | None:
    answers = inst.dig(zone, "SOA")
    return int(answers[0].split()[2]) if answers else None


def soa_rcode(inst: Instance, zone: str) -> tuple[int | None, list[str]]:
    """(rcode, SOA answers) of an SOA query; rcode None when named did not answer at all."""
    q = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
    try:
        response = dns.query.udp(q, "127.0.0.1", port=inst.dns_port, timeout=2)
    except dns.exception.Timeout:
        return None, []
    return response.rcode(), [r.to_text() for rrset in response.answer for r in rrset
                              if rrset.rdtype == dns.rdatatype.SOA]


def state(inst: Instance) -> tuple[str, int | None, str]:
    """What a refused push must leave alone: the bare ref, the served serial, the service's HEAD."""
    return bare_main(inst), served_soa_serial(inst), rev(inst.repo)


def assert_published_linearly(inst: Instance, admin_commit: str) -> None:
    """The admin commit, then the service's re-render commit on top, in the bare repo and the working tree."""
    head = wait_until(lambda: bare_main(inst) if bare_main(inst) == rev(inst.repo) else None, 10.0,
                      what="the service's commits to reach the bare repository")
    for repo in (bare(inst), inst.repo):
        assert git(repo, "merge-base", "--is-ancestor", admin_commit, head, check=False).returncode == 0
        assert git(repo, "log", "--merges", "--format=%H", head).stdout.strip() == ""
        after = git(repo, "log", "--format=%H %an %s", f"{admin_commit}..{head}").stdout.splitlines()
        assert after, f"no service commit after the admin commit in {repo.name}"
        assert any(" ddns Re-render " in line for line in after), after
        assert git(repo, "log", "-1", "--format=%an", admin_commit).stdout.strip() == "Zone Admin"


def pull(inst: Instance, clone: Path) -> None:
    """Wait until the service pushed its commits (every zones.push_seconds), then rebase the clone onto them."""
    wait_until(lambda: bare_main(inst) == rev(inst.repo), 10.0, what="the service's commits to reach the bare repository")
    git(clone, "pull", "-q", "--rebase", "origin", "main")


def static_path(zone: str = ZONE) -> str:
    return f"{zone}/static.zone"


def settings_path(zone: str = ZONE) -> str:
    return f"{zone}/zone.toml"


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# ---- 1. valid changes are published ----------------------------------------------------------

def test_push_of_a_static_record_is_validated_planned_published_and_linear(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, static_path(), "www IN A 192.0.2.80\n")
    admin = commit(clone, "Add www")

    out = assert_accepted(push(clone))
    assert "remote: ddns: ### dyn.example.test (changed)" in out, out
    assert "1 added, 0 removed, 0 changed" in out
    assert "| + | `www` | A | 3600 192.0.2.80 |" in out
    assert f"remote: ddns: zone {ZONE}: published" in out
    assert inst.dig("www." + ZONE, "A") == ["192.0.2.80"]
    assert_published_linearly(inst, admin)
    # the re-rendered file in Git is what named serves
    rendered = inst.git("show", f"HEAD:{ZONE}/{ZONE}.zone")
    assert "www IN A 192.0.2.80" in rendered
    assert f"( {served_soa_serial(inst)} " in rendered


def test_push_of_a_ttl_change_is_published(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, static_path(), "web IN A 192.0.2.81\n")
    commit(clone, "Add web")
    assert_accepted(push(clone))
    secret = inst.add_host("vm." + ZONE)
    assert running.update("vm." + ZONE, secret, "myip=192.0.2.82") == (200, "good 192.0.2.82\n")
    pull(inst, clone)

    settings = (clone / settings_path()).read_text()
    assert "ttl = 3600" in settings and "dynamic_ttl = 60" in settings
    settings = settings.replace("dynamic_ttl = 60", "dynamic_ttl = 120").replace("ttl = 3600", "ttl = 7200", 1)
    edit(clone, settings_path(), settings)
    admin = commit(clone, "Longer TTLs")

    out = assert_accepted(push(clone))
    assert "| ~ | `web` | A | 3600 192.0.2.81 → 7200 192.0.2.81 |" in out, out
    assert "| ~ | `vm` | A | 60 192.0.2.82 → 120 192.0.2.82 |" in out
    assert f"remote: ddns: zone {ZONE}: published" in out
    q = dns.message.make_query("web." + ZONE + ".", dns.rdatatype.A)
    answer = dns.query.udp(q, "127.0.0.1", port=inst.dns_port, timeout=2).answer
    assert [rrset.ttl for rrset in answer] == [7200]
    q = dns.message.make_query("vm." + ZONE + ".", dns.rdatatype.A)
    answer = dns.query.udp(q, "127.0.0.1", port=inst.dns_port, timeout=2).answer
    assert [(rrset.ttl, [r.to_text() for r in rrset]) for rrset in answer] == [(120, ["192.0.2.82"])]
    assert_published_linearly(inst, admin)
    # the host's record still lives in the service's file, untouched by the admin's commit
    assert inst.records(ZONE) == "vm A 192.0.2.82\n"


# ---- 2. broken zones are rejected, nothing changes ---------------------------------------------

def _refused_without_change(inst: Instance, clone: Path) -> str:
    before = state(inst)
    out = assert_refused(push(clone))
    assert state(inst) == before, "a refused push changed something"
    return out


def test_bad_address_is_rejected_with_file_and_line(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, static_path(), "ok IN A 192.0.2.1\nbad IN A 999.1.1.1\n")
    commit(clone, "Broken address")
    line = line_of((clone / static_path()).read_text(), "999.1.1.1")
    out = _refused_without_change(inst, clone)
    assert f"remote: ddns: error: {ZONE}/static.zone:{line}: " in out, out
    assert "bad dotted quad" in out
    assert inst.dig("ok." + ZONE, "A") == []


def test_cname_and_other_data_is_rejected(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, static_path(), "alias IN A 192.0.2.2\nalias IN CNAME www.example.org.\n")
    commit(clone, "CNAME and other data")
    out = _refused_without_change(inst, clone)
    line = line_of((clone / static_path()).read_text(), "CNAME")
    assert f"remote: ddns: error: {ZONE}/static.zone:{line}: alias.{ZONE}: CNAME and other data" in out, out


def test_zone_without_usable_ns_is_rejected(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    settings = (clone / settings_path()).read_text()
    # No name servers in zone.toml (the default ns1.ZONE applies), and its glue removed from static.zone.
    edit(clone, settings_path(), "\n".join(line for line in settings.splitlines() if not line.startswith("nameservers"))
         + "\nnameservers = []\n")
    static = (clone / static_path()).read_text()
    edit(clone, static_path(), "".join(line for line in static.splitlines(keepends=True) if not line.startswith("ns1 ")))
    commit(clone, "No name servers")
    out = _refused_without_change(inst, clone)
    assert "remote: ddns: error:" in out
    assert "NS" in out.split("remote: ddns: error:", 1)[1], out


def test_toml_syntax_error_is_rejected_naming_zone_toml(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, settings_path(), "ttl = = 5\n")
    commit(clone, "Broken TOML")
    line = line_of((clone / settings_path()).read_text(), "= =")
    out = _refused_without_change(inst, clone)
    assert f"remote: ddns: error: {ZONE}/zone.toml: " in out, out
    assert f"line {line}" in out


# ---- 3. guard rails --------------------------------------------------------------------------

def _zone_with_twelve_records(inst: Instance, clone: Path) -> None:
    append(clone, static_path(), "".join(f"r{i} IN A 192.0.2.{100 + i}\n" for i in range(12)))
    commit(clone, "Twelve hosts")
    assert_accepted(push(clone))
    assert inst.dig("r11." + ZONE, "A") == ["192.0.2.111"]
    pull(inst, clone)


def _delete_eight(clone: Path, message: str) -> None:
    static = (clone / static_path()).read_text()
    edit(clone, static_path(), "".join(line for line in static.splitlines(keepends=True)
                                       if not any(line.startswith(f"r{i} ") for i in range(8))))
    commit(clone, message)


def test_mass_deletion_is_refused_unless_forced_by_push_option(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    _zone_with_twelve_records(inst, clone)
    _delete_eight(clone, "Drop eight hosts")

    out = _refused_without_change(inst, clone)
    assert f"remote: ddns: refused: {ZONE}: 8 of 14 record sets would be deleted or rewritten" in out, out
    assert "git push -o ddns-force" in out and "Ddns-Force: yes" in out
    assert inst.dig("r0." + ZONE, "A") == ["192.0.2.100"]

    out = assert_accepted(push(clone, "ddns-force"))
    assert f"remote: ddns: forced: {ZONE}: 8 of 14" in out, out
    assert "0 added, 8 removed, 0 changed (of 14 record sets)" in out
    for i in range(8):
        assert inst.dig(f"r{i}." + ZONE, "A") == []
    assert inst.dig("r8." + ZONE, "A") == ["192.0.2.108"]


def test_mass_deletion_is_accepted_with_a_force_trailer(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    _zone_with_twelve_records(inst, clone)
    _delete_eight(clone, "Drop eight hosts\n\nDdns-Force: yes")
    out = assert_accepted(push(clone))
    assert f"remote: ddns: forced: {ZONE}: 8 of 14" in out, out
    assert [inst.dig(f"r{i}." + ZONE, "A") for i in (0, 7)] == [[], []]
    assert inst.dig("r11." + ZONE, "A") == ["192.0.2.111"]


def test_apex_ns_change_is_refused_unless_forced(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    settings = (clone / settings_path()).read_text()
    assert f'nameservers = ["ns1.{ZONE}."]' in settings
    edit(clone, settings_path(), settings.replace(f'nameservers = ["ns1.{ZONE}."]',
                                                  f'nameservers = ["ns1.{ZONE}.", "ns2.{ZONE}."]'))
    append(clone, static_path(), "ns2 IN A 127.0.0.2\n")
    commit(clone, "A second name server")

    out = _refused_without_change(inst, clone)
    assert f"remote: ddns: refused: {ZONE}: the apex NS records would change" in out, out
    assert inst.dig(ZONE, "NS") == [f"ns1.{ZONE}."]

    out = assert_accepted(push(clone, "ddns-force"))
    assert f"remote: ddns: forced: {ZONE}: the apex NS records would change" in out
    assert inst.dig(ZONE, "NS") == [f"ns1.{ZONE}.", f"ns2.{ZONE}."]


# ---- 4. what only the service may do -------------------------------------------------------------

def test_edits_of_service_files_are_refused_even_when_forced(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    # the head, a shard, any other file under dynamic/, and the old layout's dynamic.records
    for path in (f"{ZONE}/{ZONE}.zone", f"{ZONE}/dynamic/00.records", f"{ZONE}/dynamic/notes.txt",
                 f"{ZONE}/dynamic.records"):
        git(clone, "reset", "-q", "--hard", "origin/main")
        append(clone, path, "evil IN A 192.0.2.66\n" if path.endswith(".zone") else "evil A 192.0.2.66\n")
        commit(clone, f"Sneak into {path}")
        out = _refused_without_change(inst, clone)
        assert f"remote: ddns: error: {path}: written by the service only" in out, out
        out = assert_refused(push(clone, "ddns-force"))
        assert "written by the service only" in out
    assert inst.dig("evil." + ZONE, "A") == []


def test_forged_audit_trailer_is_refused(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, static_path(), "mail2 IN A 192.0.2.25\n")
    commit(clone, 'Add mail2\n\nDdns-Change: {"host":"victim.dyn.example.test","type":"A","old":null,'
                  '"new":"192.0.2.66","actor":"victim","client":"","interface":"dyndns2"}')
    out = _refused_without_change(inst, clone)
    assert "remote: ddns: error: a pushed commit carries a Ddns-Change trailer" in out, out
    assert inst.dig("mail2." + ZONE, "A") == []
    assert inst.cli("history", "victim." + ZONE, "--json").json() == []


def test_a_pusher_who_reads_the_repository_cannot_push_as_the_service(running, tmp_path):
    """Whatever the bare repository holds, presented as the service's token, opens nothing."""
    inst = running.instance
    token = inst.config["zones.push_token"]
    repo_files = [f for f in bare(inst).rglob("*") if f.is_file()]
    assert repo_files and not [f for f in repo_files if token.encode() in f.read_bytes()]
    values = [line.split(" ", 1)[1] for line in git(bare(inst), "config", "--get-regexp", r"^ddns\.").stdout.splitlines()]
    assert values
    clone = admin_clone(inst, tmp_path)
    append(clone, f"{ZONE}/dynamic/00.records", "evil A 192.0.2.66\n")
    commit(clone, 'Sneak in\n\nDdns-Change: {"host":"evil.dyn.example.test","type":"A","old":null,'
                  '"new":"192.0.2.66","actor":"victim","client":"","interface":"dyndns2"}')
    before = state(inst)
    for value in values:
        # as the old hooks took it (an environment variable) and as the service presents it (a push option)
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "DDNS_SERVICE_PUSH": value}
        proc = subprocess.run(["git", "-C", str(clone), "push", "--porcelain", "-o", f"ddns-service-token={value}",
                               "origin", "HEAD:refs/heads/main"], capture_output=True, text=True, env=env, timeout=120)
        assert_refused(proc)
        assert state(inst) == before, f"a push presenting {value!r} changed something"
    assert inst.dig("evil." + ZONE, "A") == []
    assert inst.cli("history", "evil." + ZONE, "--json").json() == []


def test_the_service_token_as_a_push_option_passes_the_hooks(running, tmp_path):
    """The service's presentation works from any clone (push options reach the hooks on every transport)."""
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, static_path(), "svc IN A 192.0.2.77\n")
    sha = commit(clone, "Through the service's door")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **provenance.push_environment(inst.config["zones.push_token"])}
    env.pop("DDNS_SERVICE_PUSH", None)
    proc = subprocess.run(["git", "-C", str(clone), "push", "--porcelain", "origin", "HEAD:refs/heads/main"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, output(proc)
    assert "ddns:" not in output(proc)  # no validation ran, nothing was published by post-receive
    assert bare_main(inst) == sha


def test_deleting_main_is_refused(running, tmp_path):
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    before = state(inst)
    proc = git(clone, "push", "origin", ":refs/heads/main", check=False)
    out = output(proc)
    assert proc.returncode != 0, out
    assert "ddns: refusing to delete refs/heads/main" in out, out
    assert state(inst) == before


# ---- 5. adding and removing zones ----------------------------------------------------------------

def domains(inst: Instance) -> list[str]:
    return [d["zone"] for d in inst.cli("domain", "list", "--json").json()]


def test_zone_added_and_removed_by_push(running, tmp_path):
    inst = running.instance
    new = "new.example.test"
    clone = admin_clone(inst, tmp_path)
    settings, static = default_zone_files(new, None, "127.0.0.1")
    edit(clone, settings_path(new), settings)
    edit(clone, static_path(new), static)
    admin = commit(clone, f"Add zone {new}")

    out = assert_accepted(push(clone))
    assert f"remote: ddns: ### {new} (added)" in out, out
    assert f"remote: ddns: zone {new}: published" in out, out
    rcode, soa = soa_rcode(inst, new)
    assert rcode == dns.rcode.NOERROR and len(soa) == 1, (rcode, soa)
    assert inst.dig(f"ns1.{new}", "A") == ["127.0.0.1"]
    assert new in domains(inst)
    assert_published_linearly(inst, admin)
    assert (inst.repo / new / f"{new}.zone").exists() and inst.records(new) == ""  # no hosts yet: no shards
    # The running service's own sync (what its loop runs every zones.sync_seconds) keeps the zone
    # that the post-receive hook, another process, published: it stays open for hosts.
    running.service.sync()
    assert new in domains(inst)

    secret = inst.add_host("h1." + new)
    assert running.update("h1." + new, secret, "myip=192.0.2.55") == (200, "good 192.0.2.55\n")
    assert inst.dig("h1." + new, "A") == ["192.0.2.55"]

    # removal of a whole zone: refused unless forced
    pull(inst, clone)
    git(clone, "rm", "-q", settings_path(new), static_path(new))
    commit(clone, f"Remove zone {new}")
    before = state(inst)
    out = assert_refused(push(clone))
    assert f"remote: ddns: refused: {new}: the whole zone would be removed" in out, out
    assert state(inst) == before
    assert inst.dig("h1." + new, "A") == ["192.0.2.55"]

    out = assert_accepted(push(clone, "ddns-force"))
    assert f"remote: ddns: zone {new}: removed" in out, out
    rcode, soa = soa_rcode(inst, new)
    assert soa == [] and rcode != dns.rcode.NOERROR, (rcode, soa)
    assert inst.dig("h1." + new, "A") == []
    assert new not in domains(inst)
    running.service.sync()  # ... and does not bring the removed zone back
    assert new not in domains(inst)
    assert soa_rcode(inst, new)[1] == []
    assert not (inst.repo / new).exists() or not any((inst.repo / new).iterdir())
    last = inst.git("log", "-1", "--format=%an%n%s", "--", f"{new}/{new}.zone").splitlines()
    assert last == ["ddns", f"Remove zone {new}"]
    assert inst.git("ls-tree", "-r", "--name-only", "HEAD", f"{new}/").strip() == ""
    wait_until(lambda: bare_main(inst) == rev(inst.repo), 10.0, what="the removal to reach the bare repository")
    assert git(bare(inst), "log", "--merges", "--format=%H", "main").stdout.strip() == ""
    # the other zone is untouched
    assert served_soa_serial(inst) is not None


# ---- 6. installing the hooks -----------------------------------------------------------------------

def test_hooks_install_into_a_fresh_bare_repository(instance, tmp_path):
    target = tmp_path / "other.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(target)], check=True, capture_output=True)
    git(target, "config", "ddns.servicetoken", instance.config["zones.push_token"])  # as older versions left it
    r = instance.cli("hooks", "install", str(target))
    assert r.code == 0, r.err
    for name in ("pre-receive", "post-receive"):
        hook = target / "hooks" / name
        assert hook.is_file()
        assert os.access(hook, os.X_OK), f"{name} is not executable"
        assert hook.read_text().startswith("#!/bin/sh")
    assert git(target, "config", "ddns.config").stdout.strip() == str(instance.config_path.resolve())
    token = instance.config["zones.push_token"]
    assert git(target, "config", "ddns.servicetokenhash").stdout.strip() == hashlib.sha256(token.encode()).hexdigest()
    assert git(target, "config", "ddns.servicetoken", check=False).returncode == 1  # the plain token is nowhere
    assert token not in (target / "config").read_text()
    assert git(target, "config", "receive.advertisePushOptions").stdout.strip() == "true"

