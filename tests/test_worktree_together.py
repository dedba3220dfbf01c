"""Replacement.together: a group's files land only together, at the end of the block; a failure leaves nothing."""
from __future__ import annotations

import os

import pytest

from ddns.publishing import worktree
from ddns.publishing.worktree import Replacement, Spares, backup_path


def names(directory) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_writes_land_in_order_after_the_block_with_backups(tmp_path):
    a, b, gone = tmp_path / "a.records", tmp_path / "b.records", tmp_path / "c.records"
    a.write_text("old a\n")
    gone.write_text("old c\n")
    files = Replacement()
    with files.together():
        files.write(a, "new a\n")
        files.write(b, "new b\n")
        files.remove(gone)
        assert a.read_text() == "old a\n" and not b.exists() and gone.exists()  # nothing landed yet
    assert (a.read_text(), b.read_text(), gone.exists()) == ("new a\n", "new b\n", False)
    assert backup_path(a).read_text() == "old a\n" and backup_path(gone).read_text() == "old c\n"
    files.done()
    assert names(tmp_path) == {"a.records", "b.records"}


def test_a_failing_block_changes_nothing_and_leaves_no_temp_file(tmp_path):
    a = tmp_path / "a.records"
    a.write_text("old a\n")
    files = Replacement()
    with pytest.raises(RuntimeError):
        with files.together():
            files.write(a, "new a\n")
            files.write(tmp_path / "dynamic" / "00.records", "new shard\n")  # makes dynamic/
            raise RuntimeError("render failed")
    files.done()
    assert a.read_text() == "old a\n"
    assert names(tmp_path) == {"a.records", "dynamic"} and names(tmp_path / "dynamic") == set()


def test_a_leftover_temp_name_falls_back_to_a_random_one(tmp_path, monkeypatch):
    a = tmp_path / "a.records"
    monkeypatch.setattr(worktree, "_temp_names", iter([7]))
    (tmp_path / f".a.records.{os.getpid()}-7").write_text("leftover of a killed run\n")
    worktree.atomic_write(a, "new\n")
    assert a.read_text() == "new\n"
    assert (tmp_path / f".a.records.{os.getpid()}-7").read_text() == "leftover of a killed run\n"


def test_a_backup_that_cannot_be_removed_after_the_commit_is_logged_not_raised(tmp_path, caplog):
    """done() runs once the commit is made: a failure there must not turn it into a failed commit."""
    path = tmp_path / "a.zone"
    path.write_text("old\n")
    files = Replacement()
    files.write(path, "new\n")
    backup = backup_path(path)
    backup.unlink()
    backup.mkdir()  # unlink of it fails (IsADirectoryError), as an I/O error would
    files.done()
    assert path.read_text() == "new\n" and files.kept == []
    assert f"cannot remove {backup}" in caplog.text


def test_a_later_write_reuses_the_previous_version_s_file_in_place(tmp_path):
    """The version a commit replaced waits in the spares; the next write of that path writes over it
    (no file created or deleted) and takes exactly the new text, shorter or longer."""
    spares = Spares.open(tmp_path / "spares", tmp_path)
    a = tmp_path / "a.records"
    a.write_text("first version, a long one\n")
    inodes = [a.stat().st_ino]
    for text in ("second\n", "third, longer than the second\n", "4\n"):
        files = Replacement(spares=spares)
        with files.together():
            files.write(a, text)
        files.done()
        assert a.read_text() == text and names(tmp_path) == {"a.records", "spares"}
        inodes.append(a.stat().st_ino)
    assert inodes[0] == inodes[2] != inodes[1] == inodes[3]  # after the first write two files take turns
    assert a.stat().st_mode & 0o777 == 0o644


def test_a_spare_with_another_name_or_no_file_is_never_written_over(tmp_path):
    spares = Spares.open(tmp_path / "spares", tmp_path)
    a, b, other = tmp_path / "a.records", tmp_path / "b.records", tmp_path / "other"
    a.write_text("old a\n")
    b.write_text("old b\n")
    other.write_text("someone else's file\n")
    os.link(other, spares.path(a))  # a spare that is another file too
    os.symlink(other, spares.path(b))  # a spare that is a symbolic link
    files = Replacement(spares=spares)
    files.write(a, "new a\n")  # outside ``together``: written and landed at once
    files.write(b, "new b\n")
    files.done()
    assert (a.read_text(), b.read_text(), other.read_text()) == ("new a\n", "new b\n", "someone else's file\n")
    assert not b.is_symlink() and os.stat(other).st_nlink == 1


def test_a_put_back_commit_leaves_its_backups_nowhere(tmp_path):
    """After a failed commit the backups were put back (renamed into place): done finds nothing to move."""
    spares = Spares.open(tmp_path / "spares", tmp_path)
    a = tmp_path / "a.records"
    a.write_text("old a\n")
    files = Replacement(spares=spares)
    with files.together():
        files.write(a, "new a\n")
    os.replace(backup_path(a), a)  # what put_back does without free space
    files.done()
    assert a.read_text() == "old a\n" and names(spares.directory) == set() and names(tmp_path) == {"a.records", "spares"}
