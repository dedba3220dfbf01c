"""The spares (ddns.publishing.worktree.Spares): nothing found among them is trusted, opened unchecked or kept.

A regression of the FIFO cases would block in open(), the writer waiting for
a reader forever: those writes run in a thread (``finishes``), and one still
waiting after its bound fails the test instead of hanging it.
"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Callable

import pytest

from ddns.publishing import worktree
from ddns.publishing.worktree import Replacement, Spares


def finishes(action: Callable[[], object], within: float = 30.0) -> object:
    """ACTION's result, run in a thread; a test failure when it is still running after WITHIN seconds."""
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["result"] = action()
        except BaseException as exc:  # handed to the test below
            done["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(within)
    assert not worker.is_alive(), "blocked (a FIFO opened for writing waits for a reader)"
    if "error" in done:
        raise done["error"]
    return done["result"]


def names(directory) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.fixture
def spares(tmp_path) -> Spares:
    (tmp_path / "repo").mkdir()
    return Spares.open(tmp_path / "spares", tmp_path / "repo")


def plant(kind: str, spare, outside) -> None:
    """A hostile entry of KIND at SPARE; OUTSIDE is a file that must stay as it is."""
    spare = Path(spare)
    if kind == "fifo":
        os.mkfifo(spare)
    elif kind == "directory":
        spare.mkdir()
        (spare / "inside").write_text("a directory's file\n")
    elif kind == "symlink":
        os.symlink(outside, spare)
    else:
        os.link(outside, spare)  # a file with another name too


@pytest.mark.parametrize("together", [True, False])
@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink", "hardlink"])
def test_a_spare_that_is_no_plain_file_is_never_opened_and_a_new_file_is_written(tmp_path, spares, kind, together):
    a = spares.root / "a.records"
    a.write_text("old a\n")
    outside = tmp_path / "outside"
    outside.write_text("someone else's file\n")
    plant(kind, spares.path(a), outside)
    files = Replacement(spares=spares)

    def write() -> None:
        if together:
            with files.together():
                files.write(a, "new a\n")
        else:
            files.write(a, "new a\n")
    finishes(write)
    assert a.read_text() == "new a\n" and not a.is_symlink() and os.stat(a).st_nlink == 1
    assert names(spares.root) == {"a.records", ".a.records.ddns-prev"}  # no temp file, nothing moved in
    files.done()
    assert outside.read_text() == "someone else's file\n" and os.stat(outside).st_nlink == 1
    spare = Path(spares.path(a))
    if kind == "directory":  # left as found; the previous version had nowhere to go
        assert names(spare) == {"inside"} and (spare / "inside").read_text() == "a directory's file\n"
    else:  # the previous version took its name: a spare of ours now
        assert _plain_file(spare) and spare.read_text() == "old a\n"
    assert names(spares.root) == {"a.records"}


def test_a_fifo_swapped_in_after_the_check_is_not_waited_for_and_goes_back(spares, monkeypatch):
    """Between the lstat and the open a FIFO took the spare's place: the open does not wait for a reader."""
    a = spares.root / "a.records"
    os.mkfifo(spares.path(a))
    monkeypatch.setattr(worktree, "_plain", lambda info: True)  # the check saw a plain file
    assert finishes(lambda: spares.take(a)) is None
    assert stat.S_ISFIFO(os.lstat(spares.path(a)).st_mode) and names(spares.root) == set()


def test_spares_are_named_by_the_path_in_the_repository(tmp_path):
    one, other = tmp_path / "one", tmp_path / "moved" / "one"
    rel = "dyn.example.test/dynamic/00.records"
    assert Spares(tmp_path / "s", one).path(one / rel) == Spares(tmp_path / "s", other).path(other / rel)
    assert Spares(tmp_path / "s", one).path(one / rel) != Spares(tmp_path / "s", one).path(one / "x/dynamic/00.records")


def test_open_empties_the_spares_and_follows_no_link(tmp_path):
    directory = tmp_path / "spares"
    directory.mkdir()
    (directory / "0123").write_text("a spare of a shard no longer written\n")
    (directory / "sub").mkdir()
    (directory / "sub" / "f").write_text("x\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("someone else's\n")
    os.symlink(outside, directory / "link")
    assert Spares.open(directory, tmp_path) is not None
    assert names(directory) == set() and (outside / "keep").read_text() == "someone else's\n"
    directory.rmdir()
    os.symlink(outside, directory)  # the spares' directory itself a link: replaced by a directory of ours
    spares = Spares.open(directory, tmp_path)
    assert spares is not None and not directory.is_symlink() and directory.is_dir()
    assert names(outside) == {"keep"}


def test_no_spares_where_the_directory_cannot_be_made(tmp_path):
    (tmp_path / ".git").write_text("gitdir: elsewhere\n")  # a linked work tree's .git is a file
    assert Spares.open(tmp_path / ".git" / worktree.SPARE_DIR, tmp_path) is None


def _plain_file(path) -> bool:
    info = os.lstat(path)
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def test_a_failed_commit_s_backups_are_no_spares_and_leave_nothing_behind(spares):
    """A write that never landed keeps a backup that is another name of the live file: it is removed, not
    kept as a spare (the next commit's backup of the same file would be renamed onto it: a rename that does
    nothing, and the backup would stay in the working tree)."""
    a = spares.root / "a.records"
    a.write_text("committed\n")
    for n in range(2):  # without and with a spare of a
        files = Replacement(spares=spares)
        with pytest.raises(OSError):
            with files.together():
                files.write(a, "never lands\n")
                raise OSError(28, "No space left on device")
        files.done()
        assert a.read_text() == ("committed\n" if n == 0 else "landed 0\n") and os.stat(a).st_nlink == 1
        assert names(spares.root) == {"a.records"}
        files = Replacement(spares=spares)
        with files.together():
            files.write(a, f"landed {n}\n")
        files.done()
        assert a.read_text() == f"landed {n}\n" and os.stat(a).st_nlink == 1
        assert names(spares.root) == {"a.records"} and _plain_file(spares.path(a))
