"""Racing writers of the zones repository (docs/ARCHITECTURE.md: the publisher's lock).

The service commits dynamic updates and pushes them to the bare upstream
(zones.git) while admins push their own commits there; the upstream's hooks,
the periodic fetch and the webhook bring the admins' commits back into the
service's working clone (fetch, rebase, re-render, push). Everything is real:
a managed named, the installed pre-receive / post-receive hooks running
`ddns hook` in their own processes, git over the local file transport, HTTP
over loopback. No mocks.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ddns import bind, gitops, provenance, shards, zones
from ddns.gitrepo import SyncConflict, parse_trailers
from ddns.model import Outcome
from ddns.service import Service

from conftest import Instance, http, require, serving, wait_until
from recordsets import as_plain

ZONE = "dyn.example.test"
STATIC = f"{ZONE}/{zones.STATIC_FILE}"


def shard_of(label: str) -> str:
    """The shard file (repository path) that holds LABEL's records."""
    return f"{ZONE}/{shards.shard_path(shards.shard_index(label, shards.DEFAULT_SHARDS), shards.DEFAULT_SHARDS)}"


def records_at(repo: Path, rev: str) -> dict:
    """ZONE's dynamic records at REV of REPO (all its shards)."""
    files = {p[len(ZONE) + 1:]: b.decode() for _, p, b in gitops.tree_files(repo, rev, f"{ZONE}/")}
    return as_plain(gitops.zone_records_in(files))


def rogue_edit(work: Path, label: str) -> None:
    """Someone bypassing the hooks writes the shard of LABEL by hand (the one the service's commit wrote too)."""
    path = work / shard_of(label)
    path.parent.mkdir(exist_ok=True)
    path.write_text("evil A 192.0.2.66\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "rogue: edit the dynamic records by hand")
RENDERED = f"{ZONE}/{zones.rendered_file(ZONE)}"
ROOT = Path(__file__).resolve().parent.parent  # this checkout: the hooks must run its ddns


# ---- helpers -------------------------------------------------------------------
def git_env(**extra: str) -> dict[str, str]:
    """The environment of an admin's git: hooks run this checkout's ddns; no service token unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "DDNS_SERVICE_PUSH"}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra)
    return env


def git(repo: Path, *args: str, check: bool = True, env: dict | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=env or git_env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} in {repo.name} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def out(repo: Path, *args: str) -> str:
    return git(repo, *args).stdout.strip()


def bare(inst: Instance) -> Path:
    return inst.dir / "zones.git"


def clone(inst: Instance, dest: Path, who: str = "Alice Admin") -> Path:
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare(inst)), str(dest)], check=True,
                   capture_output=True, env=git_env(), timeout=60)
    git(dest, "config", "user.name", who)
    git(dest, "config", "user.email", who.split()[0].lower() + "@example.test")
    return dest


def commit_static(work: Path, subject: str, line: str, at_top: bool = False) -> str:
    """An admin's commit adding LINE to static.zone (at the end, or right after its first line)."""
    path = work / STATIC
    lines = path.read_text().splitlines(keepends=True)
    if at_top:
        lines.insert(1, line + "\n")
    else:
        lines.append(line + "\n")
    path.write_text("".join(lines))
    git(work, "commit", "-q", "-m", subject, "--", STATIC)
    return out(work, "rev-parse", "HEAD")


_RETRYABLE = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref", "failed to lock")


def push_as_admin(work: Path, attempts: int = 10) -> int:
    """Push HEAD to main like an admin: on a rejection, `git pull --rebase` and push again.

    Returns how many times the push was rejected. A push the hooks refuse fails the test.
    """
    for attempt in range(attempts):
        proc = git(work, "push", "-q", "origin", "HEAD:main", check=False, timeout=120)
        if proc.returncode == 0:
            return attempt
        if "hook declined" in proc.stderr or not any(s in proc.stderr for s in _RETRYABLE):
            raise AssertionError(f"push refused for another reason than a race:\n{proc.stderr}")
        git(work, "pull", "-q", "--rebase", "origin", "main", timeout=60)
    raise AssertionError(f"push still rejected after {attempts} attempts")


def push_bypassing_hooks(inst: Instance, work: Path) -> str:
    """Push with the service's token: both hooks let it through untouched (no validation, no publish)."""
    git(work, "push", "-q", "origin", "HEAD:main", env=git_env(**provenance.push_environment(inst.config["zones.push_token"])))
    return out(work, "rev-parse", "HEAD")


def is_ancestor(repo: Path, ancestor: str, rev: str) -> bool:
    return git(repo, "merge-base", "--is-ancestor", ancestor, rev, check=False).returncode == 0


def upstream_main(inst: Instance) -> str:
    return out(bare(inst), "rev-parse", "refs/heads/main")


def service_has(inst: Instance, commit: str) -> bool:
    return is_ancestor(inst.repo, commit, "HEAD")


def served_serial(inst: Instance) -> int | None:
    try:
        return inst.served_serial()
    except Exception:  # a timeout while named reloads
        return None


def head_serial(inst: Instance, repo: Path | None = None, rev: str = "HEAD") -> int | None:
    return zones.serial_of(out(repo or inst.repo, "show", f"{rev}:{RENDERED}"))




def register(inst: Instance, labels: list[str]) -> dict[str, str]:
    """Register hosts LABEL.ZONE; returns fqdn -> secret."""
    service = inst.open_service()
    service.accounts.add_user("alice")
    return {f"{label}.{ZONE}": service.add_host(f"{label}.{ZONE}", "alice")[1] for label in labels}


def dyndns2(inst: Instance, fqdn: str, secret: str, address: str) -> str:
    status, body, _ = http(f"{inst.url}/nic/update?hostname={fqdn}&myip={address}", auth=(fqdn, secret), timeout=30)
    return body.strip() if status == 200 else f"HTTP {status} {body.strip()}"


# ---- 1 + 4. a burst of updates races three admin pushes -------------------------------------
def test_burst_of_updates_races_admin_pushes_nothing_lost_history_linear(instance, tmp_path):
    inst = instance
    require("git", "named")
    n_hosts, n_threads = 30, 6
    secrets = register(inst, [f"h{i:02d}" for i in range(n_hosts)])
    hosts = sorted(secrets)
    rng = random.Random(8)
    plan = {fqdn: [f"10.{k}.0.{i + 1}" for k in range(2 + i % 2)] for i, fqdn in enumerate(hosts)}  # 2-3 each
    statics = {"adm1": "203.0.113.1", "adm2": "203.0.113.2", "adm3": "203.0.113.3"}

    answers: list[tuple[str, str, str, float]] = []  # (fqdn, address, answer, when)
    answers_lock = threading.Lock()
    samples: list[str] = []  # zones.git's main, seen now and then during the race
    stop_sampling = threading.Event()
    admin_log: dict[str, object] = {}

    def sampler() -> None:
        while not stop_sampling.wait(0.05):
            proc = git(bare(inst), "rev-parse", "refs/heads/main", check=False)
            if proc.returncode == 0:
                samples.append(proc.stdout.strip())

    admins_done = threading.Event()

    def burst(mine: list[str]) -> None:
        # Three rounds at least, then on until the admins' pushes are done (at most 40 s): the pushes
        # land during the burst however fast either side is. Each round moves every host to its next
        # address (2-3 each, cycling), so every answer is good.
        until = time.monotonic() + 40
        k = 0
        while k < 3 or (not admins_done.is_set() and time.monotonic() < until):
            for fqdn in mine:
                address = plan[fqdn][k % len(plan[fqdn])]
                answer = dyndns2(inst, fqdn, secrets[fqdn], address)
                with answers_lock:
                    answers.append((fqdn, address, answer, time.monotonic()))
                time.sleep(rng.uniform(0.15, 0.45))
            k += 1

    def admin(a: Path, b: Path) -> None:
        try:
            admin_pushes(a, b)
        finally:
            admins_done.set()

    def admin_pushes(a: Path, b: Path) -> None:
        # push 1: from A, up to date
        admin_log["c1"] = commit_static(a, "admin: add adm1 (push 1)", f"adm1 IN A {statics['adm1']}")
        admin_log["r1"] = push_as_admin(a)
        admin_log["p1"] = out(a, "rev-parse", "HEAD")
        admin_log["t1"] = time.monotonic()
        samples.append(upstream_main(inst))
        # push 2: from B, cloned before push 1 and the burst: it must pull --rebase first
        commit_static(b, "admin: add adm2 (push 2, from a clone that is behind)", f"adm2 IN A {statics['adm2']}",
                      at_top=True)
        admin_log["r2"] = push_as_admin(b)
        admin_log["c2"] = out(b, "rev-parse", "HEAD")
        admin_log["t2"] = time.monotonic()
        samples.append(upstream_main(inst))
        # push 3: from A again, now behind the service's pushes and push 2
        commit_static(a, "admin: add adm3 (push 3)", f"adm3 IN A {statics['adm3']}")
        admin_log["r3"] = push_as_admin(a)
        admin_log["c3"] = out(a, "rev-parse", "HEAD")
        admin_log["t3"] = time.monotonic()
        samples.append(upstream_main(inst))

    with serving(inst):
        a = clone(inst, tmp_path / "admin-a")
        b = clone(inst, tmp_path / "admin-b", who="Bob Admin")
        samples.append(upstream_main(inst))
        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(n_threads + 1) as pool:
                workers = [pool.submit(burst, hosts[t::n_threads]) for t in range(n_threads)]
                wait_until(lambda: len(answers) >= n_threads, 20, what="the burst to start")
                admin_job = pool.submit(admin, a, b)
                for f in workers + [admin_job]:
                    f.result(timeout=120)
            burst_end = max(w for *_, w in answers)
            # The service pushes its last commits within about a second.
            wait_until(lambda: upstream_main(inst) == out(inst.repo, "rev-parse", "HEAD"), 10,
                       what="zones.git to catch up with the service's HEAD")
        finally:
            stop_sampling.set()
            sampling.join(10)
        elapsed = time.monotonic() - started

        # ---- the race really happened
        assert admin_log["r2"] >= 1, "the clone that was behind was never rejected: nothing raced"
        # Admins are not starved while the service pushes every half second (pre-receive's lock).
        assert min(admin_log["t1"], admin_log["t2"], admin_log["t3"]) < burst_end, \
            f"no admin push landed during the burst ({admin_log}, burst ended {burst_end - started:.1f}s in)"

        # ---- every update answered good is in Git (both repositories) and served, last address wins
        bodies = sorted({ans.split()[0] if ans else "" for _, _, ans, _ in answers})
        assert bodies == ["good"], f"unexpected answers: {[x for x in answers if not x[2].startswith('good')]}"
        last = {fqdn: address for fqdn, address, _, _ in answers}  # each host's updates come from one client, in order
        assert sorted(last) == hosts and len(answers) >= sum(len(v) for v in plan.values())
        head = out(inst.repo, "rev-parse", "HEAD")
        final = upstream_main(inst)
        assert final == head
        for repo in (inst.repo, bare(inst)):
            records = records_at(repo, head)
            assert records == {(f.split(".", 1)[0], "A"): addr for f, addr in last.items()}, repo.name
            trailers = {(c.host, c.new) for c in parse_trailers(out(repo, "log", "--format=%B", head))}
            missing = {(f, addr) for f, addr, _, _ in answers} - trailers
            assert not missing, f"acknowledged updates without their commit in {repo.name}: {sorted(missing)}"
        for fqdn, addr in last.items():
            assert inst.dig(fqdn) == [addr], fqdn

        # ---- the admins' records are at HEAD and served
        static_text = out(inst.repo, "show", f"HEAD:{STATIC}")
        for label, addr in statics.items():
            assert f"{label} IN A {addr}" in static_text
        wait_until(lambda: served_serial(inst) == head_serial(inst), 10, what="named to serve HEAD's serial")
        for label, addr in statics.items():
            assert inst.dig(f"{label}.{ZONE}") == [addr], label
        status, _, _ = http(inst.url + "/healthz", timeout=10)
        assert status == 200

        # ---- linear history, no admin commit lost, clean tree, no rebase left behind
        for repo in (inst.repo, bare(inst)):
            assert out(repo, "log", "--merges", "--oneline", "main") == "", f"merge commits in {repo.name}"
            subjects = out(repo, "log", "--format=%s", "main").splitlines()
            for n in (1, 2, 3):
                assert sum(s.startswith(f"admin: add adm{n} ") for s in subjects) == 1, (repo.name, n)
        for key in ("p1", "c2", "c3"):  # what the admins pushed is in the history as they pushed it
            assert is_ancestor(bare(inst), admin_log[key], final), key
        assert out(inst.repo, "status", "--porcelain") == ""
        git_dir = inst.repo / ".git"
        assert not (git_dir / "rebase-merge").exists() and not (git_dir / "rebase-apply").exists()

        # ---- 4. no force push: every main zones.git ever had is an ancestor of the final one
        seen = list(dict.fromkeys(samples))
        assert len(seen) >= 5, f"too few distinct upstream states sampled: {len(seen)}"
        rewritten = [s for s in seen if not is_ancestor(bare(inst), s, final)]
        assert not rewritten, f"zones.git lost commits (force push?): {rewritten}"
        authors = set(out(bare(inst), "log", "--format=%an", "main").splitlines())
        assert {"Alice Admin", "Bob Admin"} <= authors
    assert elapsed < 60, f"the race took {elapsed:.1f}s"


# ---- 2. the upstream taken in by the periodic fetch and by the webhook --------------------
def test_periodic_fetch_takes_in_a_push_that_bypassed_the_hooks(instance, tmp_path):
    inst = instance
    with serving(inst, {"zones.sync_seconds": 1.0}) as r:
        # no webhook secret configured: the endpoint is off
        status, _, _ = r.request("/hooks/zones", method="POST", data=b"{}", headers={"X-Gitlab-Token": ""})
        assert status == 404
        work = clone(inst, tmp_path / "admin")
        commit_static(work, "admin: add periodic", "periodic IN A 203.0.113.21")
        pushed = push_bypassing_hooks(inst, work)
        t0 = time.monotonic()
        wait_until(lambda: inst.dig(f"periodic.{ZONE}") == ["203.0.113.21"], 3.0, what="the periodic fetch")
        took = time.monotonic() - t0
        assert service_has(inst, pushed)
        wait_until(lambda: upstream_main(inst) == out(inst.repo, "rev-parse", "HEAD"), 5, what="the re-render pushed")
        assert is_ancestor(bare(inst), pushed, upstream_main(inst))
        assert out(inst.repo, "log", "--merges", "--oneline") == ""
    assert took < 3.0


def test_webhook_triggers_the_fetch_only_with_the_right_secret(instance, tmp_path):
    inst = instance
    secret = "s3cret"
    with serving(inst, {"zones.sync_seconds": 3600, "zones.webhook_secret": secret}) as r:
        work = clone(inst, tmp_path / "admin")

        # GitLab / Gitea style: a token header
        commit_static(work, "admin: add hooked", "hooked IN A 203.0.113.31")
        first = push_bypassing_hooks(inst, work)
        time.sleep(1.5)  # three turns of the sync loop: nothing fetches by itself
        assert not service_has(inst, first) and inst.dig(f"hooked.{ZONE}") == []
        status, _, _ = r.request("/hooks/zones", method="POST", data=b"{}", headers={"X-Gitlab-Token": "wrong"})
        assert status == 403
        status, _, _ = r.request("/hooks/zones", method="POST", data=b"{}")  # no credentials at all
        assert status == 403
        time.sleep(1.5)
        assert not service_has(inst, first) and inst.dig(f"hooked.{ZONE}") == [], "a refused webhook fetched"
        status, body, _ = r.request("/hooks/zones", method="POST", data=b"{}", headers={"X-Gitlab-Token": secret})
        assert status == 202, body
        wait_until(lambda: inst.dig(f"hooked.{ZONE}") == ["203.0.113.31"], 3, what="the webhook's fetch")
        assert service_has(inst, first)
        wait_until(lambda: upstream_main(inst) == out(inst.repo, "rev-parse", "HEAD"), 5, what="the re-render pushed")
        git(work, "pull", "-q", "--rebase", "origin", "main")

        # GitHub style: an HMAC of the body
        commit_static(work, "admin: add signed", "signed IN A 203.0.113.32")
        second = push_bypassing_hooks(inst, work)
        body = b'{"ref":"refs/heads/main","after":"' + second.encode() + b'"}'
        wrong = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
        status, _, _ = r.request("/hooks/zones", method="POST", data=body,
                                 headers={"X-Hub-Signature-256": wrong, "Content-Type": "application/json"})
        assert status == 403
        time.sleep(1.5)
        assert not service_has(inst, second), "a badly signed webhook fetched"
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        status, _, _ = r.request("/hooks/zones", method="POST", data=body,
                                 headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"})
        assert status == 202
        wait_until(lambda: inst.dig(f"signed.{ZONE}") == ["203.0.113.32"], 3, what="the signed webhook's fetch")
        assert service_has(inst, second)
        wait_until(lambda: upstream_main(inst) == out(inst.repo, "rev-parse", "HEAD"), 5, what="the re-render pushed")


# ---- 3. a real conflict changes nothing ----------------------------------------------------
def _tracked_files(repo: Path) -> dict[str, bytes]:
    return {p: (repo / p).read_bytes() for p in out(repo, "ls-files").splitlines()}


def test_real_conflict_raises_and_changes_nothing(instance, tmp_path):
    inst = instance
    cfg = inst.config
    register(inst, ["c1"])
    fqdn = f"c1.{ZONE}"
    rndc = bind.Rndc(cfg["bind.rndc_server"], cfg["bind.rndc_port"], cfg.path("bind.rndc_key"))
    named = bind.ManagedNamed(cfg.path("bind.dir"), rndc, cfg["bind.named"])
    named.start()
    try:
        service = Service.open(cfg)  # no threads: nothing pushes behind the test's back
        assert service.set_address(fqdn, "192.0.2.10", actor="test") == Outcome.PUBLISHED
        assert inst.dig(fqdn) == ["192.0.2.10"]
        upstream_before = upstream_main(inst)
        assert out(inst.repo, "rev-parse", "HEAD") != upstream_before  # the service's commit is not pushed

        # someone bypasses the hooks and edits the service's file upstream
        work = clone(inst, tmp_path / "rogue", who="Mallory Rogue")
        rogue_edit(work, "c1")
        rogue = push_bypassing_hooks(inst, work)

        head = out(inst.repo, "rev-parse", "HEAD")
        files = _tracked_files(inst.repo)
        serial = served_serial(inst)
        with pytest.raises(SyncConflict):
            service.sync()

        assert out(inst.repo, "rev-parse", "HEAD") == head
        assert out(inst.repo, "symbolic-ref", "HEAD") == "refs/heads/main"
        git_dir = inst.repo / ".git"
        assert not (git_dir / "rebase-merge").exists() and not (git_dir / "rebase-apply").exists()
        assert out(inst.repo, "status", "--porcelain") == ""
        assert _tracked_files(inst.repo) == files
        assert upstream_main(inst) == rogue, "the service overwrote the upstream"
        assert served_serial(inst) == serial
        assert inst.dig(fqdn) == ["192.0.2.10"] and inst.dig(f"evil.{ZONE}") == []

        # the service keeps working on its own clone; the conflict stays reported
        assert service.set_address(fqdn, "192.0.2.11", actor="test") == Outcome.PUBLISHED
        assert inst.dig(fqdn) == ["192.0.2.11"]
        with pytest.raises(SyncConflict):
            service.sync()
        assert upstream_main(inst) == rogue
        assert out(inst.repo, "status", "--porcelain") == ""
    finally:
        named.stop()


def test_serve_starts_despite_a_conflict_keeps_serving_and_catches_up_once_resolved(instance, tmp_path):
    """A conflict found at start must not keep named down; the unpushed commits land once a human resolves it."""
    inst = instance
    secrets = register(inst, ["c2"])
    fqdn = f"c2.{ZONE}"
    service = Service.open(inst.config)  # no named yet: committed, not served (dnserr)
    assert service.set_address(fqdn, "192.0.2.20", actor="test") in (Outcome.PUBLISHED, Outcome.UNSERVED)
    work = clone(inst, tmp_path / "rogue", who="Mallory Rogue")
    rogue_edit(work, "c2")
    rogue = push_bypassing_hooks(inst, work)
    head = out(inst.repo, "rev-parse", "HEAD")

    with serving(inst, {"zones.sync_seconds": 1.0}) as r:
        assert inst.dig(fqdn) == ["192.0.2.20"] and inst.dig(f"evil.{ZONE}") == []
        status, body, _ = r.request("/healthz")  # degraded while the upstream cannot be synced
        assert status == 503 and "sync with the upstream failed" in json.loads(body)["sync_error"], body
        assert upstream_main(inst) == rogue

        # updates go on while the syncer keeps failing; nothing reaches the upstream
        assert r.update(fqdn, secrets[fqdn], "myip=192.0.2.21") == (200, "good 192.0.2.21\n")
        time.sleep(1.5)
        assert upstream_main(inst) == rogue, "the service overwrote the upstream"
        with r.service.publisher.locked():  # the syncer's rebase (tried, aborted) moves HEAD meanwhile
            assert is_ancestor(inst.repo, head, "HEAD")
            assert not (inst.repo / ".git" / "rebase-merge").exists()
            assert out(inst.repo, "status", "--porcelain") == ""

        # the operator reverts the hand edit: the service rebases, pushes, and loses nothing
        git(work, "revert", "--no-edit", "HEAD")
        fixed = push_bypassing_hooks(inst, work)
        def service_head() -> str:
            with r.service.publisher.locked():  # a finished state, never the middle of a rebase
                return out(inst.repo, "rev-parse", "HEAD")

        wait_until(lambda: is_ancestor(bare(inst), fixed, service_head()) and upstream_main(inst) == service_head(), 5,
                   what="the service to catch up after the fix")
        records = records_at(bare(inst), "main")
        assert records == {("c2", "A"): "192.0.2.21"}
        wait_until(lambda: r.request("/healthz")[0] == 200, 5, what="/healthz to be ok once the upstream syncs")
        trailers = {(c.host, c.new) for c in parse_trailers(out(bare(inst), "log", "--format=%B", "main"))}
        assert {(fqdn, "192.0.2.20"), (fqdn, "192.0.2.21")} <= trailers
        assert is_ancestor(bare(inst), rogue, "main")
        assert out(bare(inst), "log", "--merges", "--oneline", "main") == ""
        assert inst.dig(fqdn) == ["192.0.2.21"] and inst.dig(f"evil.{ZONE}") == []
