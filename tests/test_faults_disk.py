"""A full disk under the zones repository: a real size-limited filesystem (tmpfs).

Whatever fails while the disk is full -- the temp file, the rename, git's
objects, the rollback's own writes -- every acknowledged record stays in
the zone's shard files, in Git's HEAD, in what named serves and in what is pushed
upstream; a failed update answers 911 and changes nothing.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from ddns import gitops, shards, zones

from conftest import Instance, ServeProcess, require, serving, tree_records, wait_until
from recordsets import as_plain

ZONE = "dyn.example.test"
RENDERED = f"{ZONE}/{ZONE}.zone"
HOSTS = 8


@contextmanager
def on_small_disk(directory: Path, filler: str, size: str = "16m"):
    """DIRECTORY moved onto a tmpfs of SIZE (unmounted at the end); FILLER is where it is filled."""
    require("mount", "umount")
    saved = directory.with_name(directory.name + ".saved")
    directory.rename(saved)
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        shutil.copytree(saved, directory, symlinks=True, dirs_exist_ok=True)
        yield Disk(directory / filler)
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def repo_on_small_disk(inst: Instance):
    """The instance's zones repository (the service's clone) on a tmpfs; filled inside .git, which Git ignores."""
    return on_small_disk(inst.repo, ".git/test-filler")


class Disk:
    """Fills the tmpfs with one file (inside .git, so Git never sees it) and frees it again."""

    def __init__(self, filler: Path):
        self.filler = filler

    def fill(self, leave: int = 0) -> None:
        """Write until ENOSPC, then free LEAVE bytes again."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (1 << 20, 4096, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * chunk)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        break
            if leave:
                os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def records_at(repo: Path, rev: str) -> dict:
    files = {p[len(ZONE) + 1:]: b.decode() for _, p, b in gitops.tree_files(repo, rev, f"{ZONE}/")}
    return as_plain(gitops.zone_records_in(files))


def test_full_disk_loses_no_acknowledged_record(instance):
    inst = instance
    secrets = {f"h{i}.{ZONE}": inst.add_host(f"h{i}.{ZONE}") for i in range(HOSTS)}
    acknowledged: dict[str, str] = {}  # label -> address answered good
    with repo_on_small_disk(inst) as disk, serving(inst, {"zones.push_seconds": 0.2}) as r:
        for i, (fqdn, secret) in enumerate(secrets.items()):
            assert r.update(fqdn, secret, f"myip=192.0.2.{i + 1}") == (200, f"good 192.0.2.{i + 1}\n")
            acknowledged[fqdn.split(".")[0]] = f"192.0.2.{i + 1}"
        base = git(inst.repo, "rev-parse", "HEAD").strip()

        # Full, then a little free space each round: the write, the rename, git's
        # objects or the rollback fails in turn. Every answer is good or 911; with
        # space again, the next update publishes everything acknowledged.
        answers = set()
        for n, leave in enumerate([0, 512, 4096, 8192, 16384, 32768, 65536, 131072]):
            fqdn = f"h{n % HOSTS}.{ZONE}"
            address = f"198.51.100.{n + 1}"
            disk.fill(leave)
            status, body = r.update(fqdn, secrets[fqdn], f"myip={address}")
            answers.add(body.split()[0])
            assert (status, body) in ((200, "911\n"), (200, f"good {address}\n"), (200, "dnserr\n")), body
            if body != "911\n":
                acknowledged[fqdn.split(".")[0]] = address
            else:
                status, health, _ = r.request("/healthz")
                assert status == 503 and "commit failed" in health, health
            disk.free()

            other = f"h{(n + 1) % HOSTS}.{ZONE}"
            address = f"203.0.113.{n + 1}"
            assert r.update(other, secrets[other], f"myip={address}") == (200, f"good {address}\n"), f"leave={leave}"
            acknowledged[other.split(".")[0]] = address
            expected = {(label, "A"): address for label, address in acknowledged.items()}
            assert as_plain(zones.parse_dynamic(tree_records(inst.repo / ZONE))) == expected, f"leave={leave}"
            assert records_at(inst.repo, "HEAD") == expected, f"leave={leave}"
        assert "911" in answers, answers

        assert git(inst.repo, "status", "--porcelain", "--", ZONE) == ""
        for label, address in acknowledged.items():
            assert inst.dig(f"{label}.{ZONE}", "A") == [address], label
        # the in-memory state is the acknowledged one: the same address again is nochg
        assert r.update(f"h1.{ZONE}", secrets[f"h1.{ZONE}"], f"myip={acknowledged['h1']}") == \
            (200, f"nochg {acknowledged['h1']}\n")

        upstream = inst.dir / "zones.git"
        head = git(inst.repo, "rev-parse", "HEAD").strip()
        wait_until(lambda: git(upstream, "rev-parse", "refs/heads/main").strip() == head, 15,
                   what="the service to push its commits")
        for commit in git(upstream, "rev-list", f"{base}..main").split():
            pushed = records_at(upstream, commit)
            assert {label for label, _ in pushed} == set(acknowledged), f"commit {commit} lost records: {pushed}"
        wait_until(lambda: r.request("/healthz")[0] == 200, 15, what="/healthz to be ok again")


def test_start_on_a_full_disk_refuses_rather_than_deleting_committed_files(instance, tmp_path):
    """A crash left an uncommitted edit; on a full disk recovery cannot put HEAD's file back:
    the service refuses to start (and deletes nothing), and starts cleanly once there is space."""
    inst = instance
    secrets = {f"h{i}.{ZONE}": inst.add_host(f"h{i}.{ZONE}") for i in range(3)}
    with repo_on_small_disk(inst) as disk:
        with serving(inst) as r:
            for i, (fqdn, secret) in enumerate(secrets.items()):
                assert r.update(fqdn, secret, f"myip=192.0.2.{i + 1}") == (200, f"good 192.0.2.{i + 1}\n")
        committed = records_at(inst.repo, "HEAD")
        count = git(inst.repo, "rev-list", "--count", "HEAD")
        dynamic = inst.repo / ZONE / shards.shard_path(shards.shard_index("h0", shards.DEFAULT_SHARDS), shards.DEFAULT_SHARDS)
        dynamic.write_text(dynamic.read_text() + "h9 A 192.0.2.99\n")  # written, never committed
        disk.fill()

        serve = ServeProcess(inst, tmp_path / "serve.log")
        try:
            try:
                serve.start()
                started = True
            except RuntimeError as exc:
                started = False
                message = str(exc)
            assert not started, "serve started on a full disk from files it could not recover"
            assert "cannot recover zone dyn.example.test" in message and "No space left" in message, message
            assert dynamic.exists() and (inst.repo / RENDERED).exists()
            assert records_at(inst.repo, "HEAD") == committed
            assert git(inst.repo, "rev-list", "--count", "HEAD") == count

            disk.free()
            serve.start()
            assert as_plain(zones.parse_dynamic(tree_records(inst.repo / ZONE))) == committed
            for i, fqdn in enumerate(secrets):
                assert inst.dig(fqdn, "A") == [f"192.0.2.{i + 1}"]
            assert records_at(inst.repo, "HEAD") == committed
            assert git(inst.repo, "rev-list", "--count", "HEAD") == count
        finally:
            serve.stop()


def test_push_to_a_full_upstream_reports_the_git_error_and_is_not_retried(instance):
    """The upstream's disk is full: the push fails at once with git's words, not as "the upstream kept moving"."""
    inst = instance
    fqdn = f"h1.{ZONE}"
    inst.add_host(fqdn)
    upstream = inst.dir / "zones.git"
    with on_small_disk(upstream, "test-filler") as disk:
        assert inst.cli("host", "set", fqdn, "192.0.2.1").code == 3  # committed; no named runs here
        service = inst.open_service()
        disk.fill()
        try:
            service.sync()
            raised = None
        except Exception as exc:
            raised = exc
        assert raised is not None, "the push to a full upstream succeeded"
        assert type(raised).__name__ == "PushFailed", repr(raised)
        assert "kept moving" not in str(raised)
        assert "unpack" in str(raised) or "No space left" in str(raised), str(raised)
        disk.free()
        service.sync()  # space again: the same push goes through
        head = git(inst.repo, "rev-parse", "HEAD").strip()
        assert git(upstream, "rev-parse", "refs/heads/main").strip() == head
        assert records_at(upstream, "main") == {("h1", "A"): "192.0.2.1"}
