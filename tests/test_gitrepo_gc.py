"""git's housekeeping kept off the hot path: the service's git commands never
start ``gc``/``maintenance`` in line, ``ZonesRepo.maintain`` runs it, and a gc
racing commits loses none of them. The serve loop that calls it is in
ddns.background (tested here with a stand-in publisher)."""
import hashlib
import subprocess
import threading
import time

import pytest

from ddns.background import Background
from ddns.gitrepo import ZonesRepo
from test_gitrepo import git, repo  # noqa: F401  (repo: the fixture, a fresh zones repository)


def write_and_commit(repo: ZonesRepo, n: int) -> str:
    (repo.path / "z").mkdir(exist_ok=True)
    (repo.path / "z" / "dynamic.records").write_text(f"h{n} A 192.0.2.{n % 250}\n")
    return repo.commit(["z"], f"change {n}\n")


def loose_objects_in_17(repo: ZonesRepo, count: int) -> None:
    """Write COUNT loose blobs whose ids start with 17: the directory git's gc --auto samples."""
    written, i = 0, 0
    while written < count:
        content = f"filler {i}\n".encode()
        i += 1
        if hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest().startswith("17"):
            subprocess.run(["git", "-C", str(repo.path), "hash-object", "-w", "--stdin"], input=content,
                           check=True, capture_output=True)
            written += 1


def test_service_commits_start_no_housekeeping_but_plain_git_does(repo, tmp_path, monkeypatch):
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    for n in range(3):
        write_and_commit(repo, n)
    service_trace = trace.read_text()
    assert "git commit" in service_trace
    assert "maintenance" not in service_trace and " gc " not in service_trace
    # the control: the same commit by plain git starts it (so the assertion above can fail)
    (repo.path / "z" / "dynamic.records").write_text("other\n")
    git(repo.path, "commit", "-qam", "plain")
    assert "maintenance run --auto" in trace.read_text()


def test_maintain_packs_when_git_finds_it_due(repo):
    git(repo.path, "config", "gc.auto", "1")  # due with 2 loose objects in objects/17
    write_and_commit(repo, 1)
    loose_objects_in_17(repo, 2)
    write_and_commit(repo, 2)
    assert any((repo.path / ".git" / "objects" / "17").iterdir())  # the commit did not collect
    assert repo.maintain(timeout=60)
    assert "packs: 1" in git(repo.path, "count-objects", "-v")


def test_maintain_with_nothing_due_leaves_the_objects(repo):
    write_and_commit(repo, 1)
    assert repo.maintain(timeout=60)
    assert "packs: 0" in git(repo.path, "count-objects", "-v")


def test_maintain_failing_returns_false(repo):
    git(repo.path, "config", "gc.auto", "many")  # git gc dies on it
    assert repo.maintain(timeout=60) is False


def test_gc_racing_commits_loses_none(repo):
    """A full gc (repack, pack-refs, prune of old loose objects) over and over while commits land: every
    commit stays in HEAD. (``--prune=now`` would not be safe: it may delete a commit's new blob before
    the commit refers to it; gc --auto keeps git's two weeks of grace.)"""
    heads, gcs, done = [], [0], threading.Event()

    def collect():
        while not done.is_set():
            subprocess.run(["git", "-C", str(repo.path), "gc", "--quiet"], check=True,
                           capture_output=True)
            gcs[0] += 1

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        n = 0
        while n < 60 or gcs[0] < 3:  # bounded: a gc takes well under a second here
            heads.append(write_and_commit(repo, n))
            n += 1
            assert n < 5000
    finally:
        done.set()
        collector.join(60)
    assert gcs[0] >= 3
    history = set(git(repo.path, "rev-list", "HEAD").split())
    assert set(heads) <= history
    assert git(repo.path, "rev-parse", "HEAD").strip() == heads[-1]
    assert git(repo.path, "show", "HEAD:z/dynamic.records") == f"h{n - 1} A 192.0.2.{(n - 1) % 250}\n"
    git(repo.path, "fsck", "--strict", "--no-dangling")


class StandInRepo:
    def __init__(self):
        self.current = "a"
        self.maintained = threading.Event()

    def head(self):
        return self.current

    def maintain(self, timeout):
        self.maintained.set()
        return True


class StandInPublisher:
    def __init__(self, last_publish):
        self.repo = StandInRepo()
        self.last_publish = last_publish
        self.clock = time.time


class BusyQueue:
    """As PublisherThread: queue_length is a property."""

    @property
    def queue_length(self):
        return 3


def gc_loop(publisher, busy: bool) -> Background:
    background = Background({"zones.gc_seconds": 0.05}, publisher, sync=None, reconcile=None, flush_seen=None)
    background.publisher_thread = BusyQueue() if busy else None
    threading.Thread(target=background._gc_loop, daemon=True).start()
    return background


@pytest.mark.parametrize("busy", [False, True])
def test_gc_loop_collects_once_head_moved_idle_or_not(busy):
    publisher = StandInPublisher(last_publish=time.time() + (3600 if busy else -3600))
    background = gc_loop(publisher, busy)
    try:
        publisher.repo.current = "b"
        assert publisher.repo.maintained.wait(30)
    finally:
        background._stop.set()
