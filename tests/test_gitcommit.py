"""ddns.gitcommit: the service's commit of a few files in process (libgit2), checked against what
``git commit --only`` did: the tree, the index, identities, message, reflog, no hooks, fsync,
a branch moved by another writer, and the CLI's sync/rebase working on top of it."""
import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from conftest import require
from ddns import gitcommit
from ddns.gitcommit import BranchLocked, HeadMoved, cleanup_message, ident_part
from ddns.gitrepo import SERVICE_EMAIL, SERVICE_NAME, ZonesRepo

ZONE = "dyn.example.test"
HEAD_FILE = f"{ZONE}/{ZONE}.zone"


def git(repo: Path, *args: str, **kw) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, **kw).stdout


@pytest.fixture
def repo(tmp_path: Path) -> ZonesRepo:
    """A zones repository with one commit (a head, two shards, zone.toml), as the service has one."""
    require("git")
    repo = ZonesRepo.init(tmp_path / "zones", fsync=False)
    write(repo, HEAD_FILE, "@ SOA 1\n")
    write(repo, f"{ZONE}/zone.toml", "")
    write(repo, f"{ZONE}/dynamic/00.records", "a A 192.0.2.1\n")
    write(repo, f"{ZONE}/dynamic/01.records", "b A 192.0.2.2\n")
    repo.commit(["."], "Start\n")
    return repo


@pytest.fixture
def in_process_only(monkeypatch):
    """Fail the test if a commit falls back to the git CLI."""
    def no_cli(self, args, paths):
        raise AssertionError(f"the CLI was used for {paths}")
    monkeypatch.setattr(ZonesRepo, "_commit_only", no_cli)


def write(repo: ZonesRepo, rel: str, text: str) -> None:
    path = repo.path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def files_at(repo: ZonesRepo, rev: str = "HEAD") -> dict[str, str]:
    return {p: git(repo.path, "show", f"{rev}:{p}") for p in git(repo.path, "ls-tree", "-r", "--name-only", rev).split()}


def test_changed_files_are_committed_in_process_and_the_tree_is_clean(repo, in_process_only):
    before = git(repo.path, "rev-parse", "HEAD").strip()
    write(repo, HEAD_FILE, "@ SOA 2\n")
    write(repo, f"{ZONE}/dynamic/00.records", "a A 192.0.2.9\n")
    head = repo.commit([HEAD_FILE, f"{ZONE}/dynamic/00.records"], "a A 192.0.2.9\n\nbody\n", author="host:a")
    assert head == git(repo.path, "rev-parse", "HEAD").strip() == repo.head()
    assert git(repo.path, "rev-parse", "HEAD^").strip() == before
    assert files_at(repo)[HEAD_FILE] == "@ SOA 2\n"
    assert files_at(repo)[f"{ZONE}/dynamic/00.records"] == "a A 192.0.2.9\n"
    assert git(repo.path, "diff", "--name-only", "HEAD^", "HEAD").split() == [HEAD_FILE, f"{ZONE}/dynamic/00.records"]
    assert git(repo.path, "status", "--porcelain") == ""
    assert git(repo.path, "diff", "--cached", "--name-only") == ""
    assert "dangling" not in git(repo.path, "fsck", "--no-dangling") and repo.is_clean()


def test_only_the_paths_go_in_whatever_else_is_staged(repo, in_process_only):
    write(repo, f"{ZONE}/zone.toml", "staged = 1\n")
    write(repo, f"{ZONE}/dynamic/01.records", "b A 198.51.100.1\n")
    git(repo.path, "add", f"{ZONE}/zone.toml", f"{ZONE}/dynamic/01.records")  # staged by someone else
    write(repo, f"{ZONE}/dynamic/01.records", "b A 192.0.2.77\n")  # and then changed again in the tree
    write(repo, f"{ZONE}/dynamic/00.records", "a A 192.0.2.9\n")
    repo.commit([f"{ZONE}/dynamic/00.records", f"{ZONE}/dynamic/01.records"], "two shards\n")
    committed = files_at(repo)
    assert committed[f"{ZONE}/zone.toml"] == ""  # staged, not one of the paths: not committed, still staged
    assert committed[f"{ZONE}/dynamic/01.records"] == "b A 192.0.2.77\n"  # a path: the working tree's state
    assert git(repo.path, "status", "--porcelain").splitlines() == [f"M  {ZONE}/zone.toml"]
    assert git(repo.path, "show", f":{ZONE}/zone.toml") == "staged = 1\n"


def test_removed_paths_leave_the_tree_and_the_index(repo, in_process_only):
    (repo.path / ZONE / "dynamic" / "01.records").unlink()
    write(repo, HEAD_FILE, "@ SOA 3\n")
    repo.commit([HEAD_FILE, f"{ZONE}/dynamic/01.records"], "b deleted\n")
    assert f"{ZONE}/dynamic/01.records" not in files_at(repo)
    assert git(repo.path, "diff", "--name-status", "HEAD^", "HEAD").splitlines() == [
        f"M\t{HEAD_FILE}", f"D\t{ZONE}/dynamic/01.records"]
    assert git(repo.path, "ls-files", f"{ZONE}/dynamic").split() == [f"{ZONE}/dynamic/00.records"]
    assert git(repo.path, "status", "--porcelain") == ""


def test_the_last_file_of_a_directory_removed_removes_the_directory(repo, in_process_only):
    for shard in ("00", "01"):
        (repo.path / ZONE / "dynamic" / f"{shard}.records").unlink()
    repo.commit([f"{ZONE}/dynamic/00.records", f"{ZONE}/dynamic/01.records"], "no dynamic records\n")
    assert git(repo.path, "ls-tree", "--name-only", "HEAD", f"{ZONE}/").split() == [HEAD_FILE, f"{ZONE}/zone.toml"]
    assert git(repo.path, "status", "--porcelain") == ""


def test_new_files_in_new_directories(repo, in_process_only):
    write(repo, "new.example.test/dynamic/ab.records", "c A 192.0.2.3\n")
    write(repo, f"{ZONE}/dynamic/7f.records", "d AAAA 2001:db8::1\n")
    repo.commit(["new.example.test/dynamic/ab.records", f"{ZONE}/dynamic/7f.records"], "new shards\n")
    committed = files_at(repo)
    assert committed["new.example.test/dynamic/ab.records"] == "c A 192.0.2.3\n"
    assert committed[f"{ZONE}/dynamic/7f.records"] == "d AAAA 2001:db8::1\n"
    assert git(repo.path, "status", "--porcelain", "--untracked-files=all") == ""


def test_an_executable_file_keeps_its_mode(repo, in_process_only):
    write(repo, f"{ZONE}/dynamic/00.records", "x\n")
    os.chmod(repo.path / ZONE / "dynamic" / "00.records", 0o755)
    repo.commit([f"{ZONE}/dynamic/00.records"], "mode\n")
    assert git(repo.path, "ls-tree", "HEAD", f"{ZONE}/dynamic/00.records").startswith("100755 blob ")
    assert git(repo.path, "status", "--porcelain") == ""


def test_author_and_committer_as_the_cli_made_them(repo, in_process_only):
    write(repo, HEAD_FILE, "@ SOA 4\n")
    repo.commit([HEAD_FILE], "by an actor\n", author="key:ops-key")
    write(repo, HEAD_FILE, "@ SOA 5\n")
    repo.commit([HEAD_FILE], "by the service\n")
    log = git(repo.path, "log", "-2", "--format=%an <%ae>|%cn <%ce>|%at %ct|%ai").splitlines()
    assert [line.split("|")[:2] for line in log] == [
        [f"{SERVICE_NAME} <{SERVICE_EMAIL}>", f"{SERVICE_NAME} <{SERVICE_EMAIL}>"],
        [f"key:ops-key <{SERVICE_EMAIL}>", f"{SERVICE_NAME} <{SERVICE_EMAIL}>"]]
    at, ct = log[0].split("|")[2].split()
    assert at == ct


@pytest.mark.parametrize("name", ["alice", " .alice; ", "a<b>c", "krb5:host/a.example.test@EXAMPLE.TEST",
                                  "Zoë Ünïcode", "x\ny", "'quoted'"])
def test_identity_normalised_as_git_does(tmp_path, name):
    require("git")
    made = {}
    for how in ("cli", "in-process"):
        zr = ZonesRepo.init(tmp_path / how, fsync=False)
        write(zr, "f", "1\n")
        zr.commit(["."], "first\n")
        write(zr, "f", "2\n")
        if how == "cli":
            zr.commit(["."], "second\n", author=name)  # a directory pathspec: the CLI
        else:
            zr.commit(["f"], "second\n", author=name)
        made[how] = git(zr.path, "log", "-1", "--format=%an <%ae>")
    assert made["in-process"] == made["cli"]


def test_an_identity_git_would_refuse_is_left_to_the_cli(repo):
    assert ident_part(" .;<> ") == ""
    write(repo, HEAD_FILE, "@ SOA 6\n")
    with pytest.raises(Exception, match="disallowed characters|empty ident"):
        repo.commit([HEAD_FILE], "nobody\n", author=" .;<> ")


@pytest.mark.parametrize("message", [
    "subject\n\nbody\n", "subject", "\n\n  subject  \n\n\n\nbody\t \n\n", "a\r\nb\r\n", "x\n \n \ny\n",
    "subject\n\n# not a comment here\n", "tab\tin line \x0b\n"])
def test_message_cleaned_up_as_git_commit_F_does(message):
    require("git")
    stripped = subprocess.run(["git", "stripspace"], input=message.encode(), capture_output=True, check=True).stdout
    assert cleanup_message(message).encode() == stripped


def test_message_stored_as_cleaned_up(repo, in_process_only):
    write(repo, HEAD_FILE, "@ SOA 7\n")
    repo.commit([HEAD_FILE], "\nsubject  \n\n\n\nbody\n\n")
    assert git(repo.path, "log", "-1", "--format=%B") == "subject\n\nbody\n\n"  # %B adds one newline


def test_reflog_names_the_commit(repo, in_process_only):
    write(repo, HEAD_FILE, "@ SOA 8\n")
    head = repo.commit([HEAD_FILE], "a A 192.0.2.8 (dyndns2)\n\nbody\n")
    for ref in ("HEAD", "main"):
        entry = git(repo.path, "reflog", "-1", "--format=%H %gs", ref).strip()
        assert entry == f"{head} commit: a A 192.0.2.8 (dyndns2)"
    assert (repo.path / ".git" / "logs" / "refs" / "heads" / "main").read_text().splitlines()[-1].split("\t")[0] \
        .endswith(f"{SERVICE_NAME} <{SERVICE_EMAIL}> " + git(repo.path, "log", "-1", "--format=%ct %cd",
                                                             "--date=format:%z").strip())


def test_no_hook_runs(repo, in_process_only):
    hooks = repo.path / ".git" / "hooks"
    for hook in ("pre-commit", "commit-msg", "prepare-commit-msg", "post-commit", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> \"$(git rev-parse --git-dir)/hooks-ran\"\n")
        (hooks / hook).chmod(0o755)
    write(repo, HEAD_FILE, "@ SOA 9\n")
    repo.commit([HEAD_FILE], "no hooks\n")
    assert git(repo.path, "log", "-1", "--format=%s") == "no hooks\n"
    assert not (repo.path / ".git" / "hooks-ran").exists()


def test_a_branch_moved_before_the_commit_is_not_overwritten(repo, monkeypatch):
    """Another writer commits after the plan was made: HeadMoved, its commit stays, our index is not written,
    and BEFORE_BRANCH (the publisher's send to named) is never called."""
    real = gitcommit.updated_tree
    moved = []

    def meanwhile(*args):
        if moved:  # updated_tree recurses: the other writer commits once
            return real(*args)
        moved.append(1)
        write(repo, f"{ZONE}/zone.toml", "other = 1\n")
        git(repo.path, "-c", "user.name=other", "-c", "user.email=o@example.test", "commit", "-qm", "other",
            "--", f"{ZONE}/zone.toml")
        return real(*args)
    monkeypatch.setattr(gitcommit, "updated_tree", meanwhile)
    write(repo, HEAD_FILE, "@ SOA 10\n")
    sent = []
    with pytest.raises(HeadMoved):
        repo.commit([HEAD_FILE], "ours\n", before_branch=lambda: sent.append("ours"))
    assert sent == []  # named never hears of a commit whose branch moved
    assert git(repo.path, "log", "-1", "--format=%s") == "other\n"
    assert git(repo.path, "status", "--porcelain").splitlines() == [f" M {HEAD_FILE}"]  # ours: not staged
    monkeypatch.setattr(gitcommit, "updated_tree", real)
    repo.commit([HEAD_FILE], "ours again\n")
    assert git(repo.path, "log", "-2", "--format=%s").split() == ["ours", "again", "other"]
    assert git(repo.path, "status", "--porcelain") == ""


def test_a_branch_locked_by_another_writer_is_left_alone(repo):
    """The branch is locked (another writer is updating it): the commit fails, nothing moves, the lock stays."""
    lock = repo.path / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    before = git(repo.path, "rev-parse", "HEAD").strip()
    write(repo, HEAD_FILE, "@ SOA 11\n")
    seen = []

    def before_branch() -> None:  # under our lock, the branch not moved yet
        seen.append((lock.read_text().strip(), git(repo.path, "rev-parse", "HEAD").strip()))
    with pytest.raises(BranchLocked, match="main.lock"):
        repo.commit([HEAD_FILE], "ours\n", before_branch=before_branch)
    assert seen == []  # a held (or stale) lock: named never hears of the commit
    assert lock.exists() and git(repo.path, "rev-parse", "HEAD").strip() == before
    assert git(repo.path, "status", "--porcelain").splitlines() == [f" M {HEAD_FILE}"]
    lock.unlink()
    made = repo.commit([HEAD_FILE], "ours\n", before_branch=before_branch)
    assert seen == [(made, before)]  # called once the lock holds the new value, before the branch moved
    assert git(repo.path, "status", "--porcelain") == ""


def test_a_branch_lock_held_for_a_moment_is_waited_for(repo, monkeypatch, in_process_only):
    """The housekeeper's pack-refs holds the branch's lock briefly: the commit waits as git does."""
    lock = repo.path / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    pauses = []

    def pack_refs_done(seconds):  # the other writer lets go while the commit waits
        pauses.append(seconds)
        lock.unlink(missing_ok=True)
    monkeypatch.setattr(gitcommit.time, "sleep", pack_refs_done)
    write(repo, HEAD_FILE, "@ SOA 15\n")
    repo.commit([HEAD_FILE], "waited\n")
    assert len(pauses) == 1 and git(repo.path, "log", "-1", "--format=%s") == "waited\n"
    assert git(repo.path, "status", "--porcelain") == ""


def test_a_failed_write_is_tried_again(repo, monkeypatch, in_process_only):
    """libgit2 failing to write (the housekeeper's gc removed an object directory): the commit is tried again."""
    real = gitcommit.InProcessCommit._commit
    calls = []

    def flaky(self, *args):
        calls.append(1)
        if len(calls) == 1:
            raise pygit2.GitError("failed to create temporary file: No such file or directory")
        return real(self, *args)
    monkeypatch.setattr(gitcommit.InProcessCommit, "_commit", flaky)
    write(repo, HEAD_FILE, "@ SOA 12\n")
    repo.commit([HEAD_FILE], "retried\n")
    assert len(calls) == 2 and git(repo.path, "log", "-1", "--format=%s") == "retried\n"
    assert git(repo.path, "status", "--porcelain") == ""


def test_commits_after_a_gc_packed_and_pruned_everything(repo, in_process_only):
    """The libgit2 repository stays open across the housekeeper's gc in another process."""
    write(repo, HEAD_FILE, "@ SOA 13\n")
    repo.commit([HEAD_FILE], "before gc\n")
    git(repo.path, "gc", "-q", "--prune=now")
    assert not list((repo.path / ".git" / "objects").glob("??/*"))
    write(repo, HEAD_FILE, "@ SOA 14\n")
    repo.commit([HEAD_FILE], "after gc\n")
    git(repo.path, "fsck", "--strict")
    assert git(repo.path, "status", "--porcelain") == ""


class LookupsSeen:
    """A pygit2.Repository that records the objects looked up by id (repo[oid])."""

    def __init__(self, real: pygit2.Repository):
        self.real, self.looked_up = real, []

    def __getitem__(self, oid):
        self.looked_up.append(str(oid))
        return self.real[oid]

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_the_parent_commit_is_not_read_whole(repo, in_process_only):
    """A commit's message may be megabytes (a publish of 100,000 changes lists each): the parent's tree is
    taken from the head of its loose object, then from the commit made here, never by reading the commit."""
    write(repo, f"{ZONE}/zone.toml", "other = 1\n")
    big = "many changes\n\n" + "".join(f"h{i:06d} A 192.0.2.1 -> 192.0.2.2\n" for i in range(20000))
    git(repo.path, "-c", "user.name=other", "-c", "user.email=o@example.test", "commit", "-q", "-F", "-",
        "--", f"{ZONE}/zone.toml", input=big)
    other = git(repo.path, "rev-parse", "HEAD").strip()
    seen = LookupsSeen(repo._in_process.repo)
    repo._in_process._repo = seen
    for serial in (20, 21):
        write(repo, HEAD_FILE, f"@ SOA {serial}\n")
        repo.commit([HEAD_FILE], f"serial {serial}\n")
    ours = git(repo.path, "rev-parse", "HEAD^").strip()
    assert other not in seen.looked_up and ours not in seen.looked_up
    assert files_at(repo)[f"{ZONE}/zone.toml"] == "other = 1\n" and files_at(repo)[HEAD_FILE] == "@ SOA 21\n"
    assert git(repo.path, "log", "-3", "--format=%s").split("\n")[:3] == ["serial 21", "serial 20", "many changes"]
    assert git(repo.path, "status", "--porcelain") == ""


@pytest.mark.parametrize("name, offset, message", [("Jörg Ü", -330, "subject ü\n\nbody\n"), ("host:a", 0, "s\n"),
                                                    ("b c", 120, "x\n")])
def test_commit_object_is_the_one_libgit2_writes(tmp_path, name, offset, message):
    """The commit written without pygit2's create_commit (which reads each parent whole) is byte for byte its own."""
    lib = pygit2.init_repository(str(tmp_path / "r"))
    tree = lib.TreeBuilder().write()
    first = pygit2.Signature("a", "a@example.test", 1, 0)
    parent = lib.create_commit(None, first, first, "first\n", tree, [])
    author = pygit2.Signature(name, "a@example.test", 1796168588, offset)
    committer = pygit2.Signature("c", "c@example.test", 1796168589, -offset)
    assert gitcommit.commit_object(tree, parent, author, committer, message) == \
        lib.create_commit_string(author, committer, message, tree, [parent]).encode()


PEAK_AFTER_A_COMMIT = """
import sys
from pathlib import Path
from ddns.gitrepo import ZonesRepo

def peak_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))

repo = ZonesRepo(Path(sys.argv[1]))
repo._in_process.repo.index.read(False)  # libgit2 and the index loaded before the measure
before = peak_kib()
(repo.path / sys.argv[2]).write_text("@ SOA 30\\n")
repo.commit([sys.argv[2]], "after a big one\\n")
print(peak_kib() - before)
"""


def test_a_commit_on_a_huge_head_commit_does_not_hold_it(repo):
    """The first commit after a publish of 100,000 changes (a commit of ~24 MB) did, in the serve process,
    hold its message several times over (a peak of +70 MiB); now it costs the process less than half of it once."""
    write(repo, f"{ZONE}/zone.toml", "other = 3\n")
    line = "h000000.dyn.example.test A 192.0.2.1 -> 192.0.2.2 by host:h000000.dyn.example.test via dyndns2\n"
    message = "many changes\n\n" + line * (16 * 2**20 // len(line))
    git(repo.path, "commit", "-q", "-F", "-", "--", f"{ZONE}/zone.toml", input=message)
    out = subprocess.run([sys.executable, "-c", PEAK_AFTER_A_COMMIT, str(repo.path), HEAD_FILE], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert git(repo.path, "log", "-1", "--format=%s") == "after a big one\n"
    assert int(out.stdout) < len(message) // 2 // 1024, out.stdout


def test_loose_commit_tree_reads_only_loose_commits(repo):
    """The tree id from a loose commit's first bytes; None for a packed commit, another object, nothing."""
    head = pygit2.Oid(hex=git(repo.path, "rev-parse", "HEAD").strip())
    git_dir = str(repo.path / ".git")
    assert str(gitcommit.loose_commit_tree(git_dir, head)) == git(repo.path, "rev-parse", "HEAD^{tree}").strip()
    blob = pygit2.Oid(hex=git(repo.path, "rev-parse", f"HEAD:{HEAD_FILE}").strip())
    assert gitcommit.loose_commit_tree(git_dir, blob) is None
    assert gitcommit.loose_commit_tree(git_dir, pygit2.Oid(hex="1" * 40)) is None
    git(repo.path, "gc", "-q", "--prune=now")
    assert gitcommit.loose_commit_tree(git_dir, head) is None


def test_a_packed_head_made_elsewhere_is_built_on(repo, in_process_only):
    """HEAD made by another writer and packed by a gc: its tree comes from libgit2, and the commit builds on it."""
    write(repo, f"{ZONE}/zone.toml", "other = 2\n")
    git(repo.path, "-c", "user.name=other", "-c", "user.email=o@example.test", "commit", "-qm", "other",
        "--", f"{ZONE}/zone.toml")
    git(repo.path, "gc", "-q", "--prune=now")
    write(repo, HEAD_FILE, "@ SOA 22\n")
    repo.commit([HEAD_FILE], "on a packed head\n")
    assert files_at(repo)[f"{ZONE}/zone.toml"] == "other = 2\n" and files_at(repo)[HEAD_FILE] == "@ SOA 22\n"
    assert git(repo.path, "status", "--porcelain") == ""


def test_what_the_cli_does_is_left_to_it(repo, monkeypatch):
    """A directory, nothing to commit, no commit yet: the CLI, with its own errors."""
    cli = []
    real = ZonesRepo._commit_only
    monkeypatch.setattr(ZonesRepo, "_commit_only", lambda self, args, paths: (cli.append(paths), real(self, args, paths)))
    write(repo, f"{ZONE}/dynamic/01.records", "e A 192.0.2.5\n")
    repo.commit([ZONE], "a directory\n")
    assert cli == [[ZONE]] and git(repo.path, "status", "--porcelain") == ""
    with pytest.raises(Exception, match="nothing to commit|no changes added"):
        repo.commit([HEAD_FILE], "nothing changed\n")
    with pytest.raises(Exception, match="did not match"):
        repo.commit(["no/such/file"], "nothing there\n")
    assert len(cli) == 3


def test_sync_rebases_and_pushes_in_process_commits(repo, tmp_path, in_process_only):
    """The CLI's fetch, rebase and push on top of in-process commits: linear history, clean tree."""
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(upstream))
    repo.set_upstream(str(upstream))
    assert repo.push("main")
    human = tmp_path / "human"
    git(tmp_path, "clone", "-q", str(upstream), str(human))
    (human / ZONE / "static.zone").write_text("www A 192.0.2.80\n")
    git(human, "add", f"{ZONE}/static.zone")
    git(human, "-c", "user.name=admin", "-c", "user.email=admin@example.test", "commit", "-qm", "static www")
    git(human, "push", "-q", "origin", "main")
    for serial in (20, 21):
        write(repo, HEAD_FILE, f"@ SOA {serial}\n")
        repo.commit([HEAD_FILE], f"serial {serial}\n")
    upstream_head = repo.fetch("main")
    repo.rebase(upstream_head)
    assert git(repo.path, "log", "--format=%s", "-3").splitlines() == ["serial 21", "serial 20", "static www"]
    assert git(repo.path, "status", "--porcelain") == "" and repo.is_clean()
    write(repo, HEAD_FILE, "@ SOA 22\n")
    repo.commit([HEAD_FILE], "after the rebase\n")  # the libgit2 repository sees the rebased branch
    assert git(repo.path, "rev-parse", "HEAD^").strip() == git(repo.path, "rev-parse", "HEAD@{1}").strip()
    assert git(repo.path, "log", "--format=%s", "-2").splitlines() == ["after the rebase", "serial 21"]
    assert repo.push("main")
    assert git(upstream, "log", "--format=%s", "-1", "main") == "after the rebase\n"
    assert git(repo.path, "status", "--porcelain") == ""


FSYNC_SCRIPT = """
import sys
from pathlib import Path
from ddns.gitrepo import ZonesRepo
repo = ZonesRepo(Path(sys.argv[1]))
(repo.path / sys.argv[2]).write_text("changed\\n")
sys.stderr.write("COMMIT-STARTS\\n"); sys.stderr.flush()
print(repo.commit([sys.argv[2], "new/dir/file"], "fsync\\n"))
"""


@pytest.mark.parametrize("fsync", [True, False])
def test_objects_and_ref_fsynced_when_the_repository_asks(tmp_path, fsync):
    """Under strace: with core.fsync each new object and the branch's new value are fsynced before the
    branch is replaced; without it nothing is."""
    require("git")
    require("strace")
    repo = ZonesRepo.init(tmp_path / "zones", fsync=fsync)
    write(repo, "a", "1\n")
    repo.commit(["."], "first\n")
    write(repo, "new/dir/file", "new\n")
    trace = tmp_path / "strace.txt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(["strace", "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,rename,link,write", "-o", str(trace),
                          sys.executable, "-c", FSYNC_SCRIPT, str(repo.path), "a"],
                         capture_output=True, text=True, env=env, check=True)
    head = out.stdout.strip()
    calls = trace.read_text().split("COMMIT-STARTS", 1)[1].splitlines()
    synced = [line.split("<", 1)[1].split(">", 1)[0] for line in calls if "fsync(" in line or "fdatasync(" in line]
    listed = git(repo.path, "rev-list", "--objects", "HEAD", "--not", "HEAD^").splitlines()
    new_ids = [line.split()[0] for line in listed]
    assert len(new_ids) == 6  # the commit, the root tree, new/, new/dir/, the blobs of a and new/dir/file
    if not fsync:
        assert synced == []
        return
    git_dir = str(repo.path / ".git")
    ref_update = next(i for i, line in enumerate(calls) if "refs/heads/main.lock" in line and "rename(" in line)
    synced_before = [line.split("<", 1)[1].split(">", 1)[0] for line in calls[:ref_update] if "fsync(" in line]
    for oid in new_ids:
        assert f"{git_dir}/objects/{oid[:2]}/{oid[2:]}" in synced_before, f"object {oid} not fsynced before the branch moved"
    assert f"{git_dir}/refs/heads/main.lock" in synced_before
    assert len(synced) == 7  # as many as git makes: each object, the branch
    assert head == git(repo.path, "rev-parse", "HEAD").strip()


def test_the_tree_lookup_finds_what_a_lookup_by_path_finds(repo):
    """Each directory read once, the same entries as ``path in tree`` / ``tree[path]``: files at every depth,
    directories, and paths that are missing or go through a file."""
    git_repo = pygit2.Repository(str(repo.path))
    tree = git_repo[git_repo.head.target].peel(pygit2.Tree)
    lookup = gitcommit.tree_lookup(git_repo, tree)
    paths = [HEAD_FILE, f"{ZONE}/zone.toml", f"{ZONE}/dynamic/00.records", f"{ZONE}/dynamic/01.records",
             f"{ZONE}/dynamic", ZONE, f"{ZONE}/dynamic/02.records", f"{ZONE}/nothing/00.records", "nothing",
             f"{HEAD_FILE}/below", f"{ZONE}/zone.toml/x/y"]
    for path in paths:
        found, expected = lookup(path), tree[path] if path in tree else None
        assert (found is None) == (expected is None), path
        if found is not None:
            assert (found.id, found.filemode) == (expected.id, expected.filemode), path
    assert sum(lookup(p) is not None for p in paths) == 6
