"""The service's files in the zones working tree: replaced with a way back, put back as HEAD has them.

A failed publish must leave the working tree as the last commit has it, whatever
else fails meanwhile -- and a full disk fails the rollback's own writes too. So
each file a commit replaces keeps its previous version as a hard link beside it
(a directory entry, no data blocks) until the commit is made: putting it back
is a rename, which needs no free space. A file is deleted only when HEAD does
not have it (the service created it for a commit that never happened); a
committed file is never deleted, whatever fails.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

BACKUP_SUFFIX = ".ddns-prev"


class CommittedFiles(Protocol):
    def committed(self, path: str) -> str | None: ...


def atomic_write(path: Path, text: str, fsync: bool = True) -> None:
    """Temp file in the same directory, fsync, rename: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o644)  # named may run as another user
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def backup_path(path: Path) -> Path:
    """Where PATH's previous version waits while a commit of its new version is made."""
    return path.with_name(f".{path.name}{BACKUP_SUFFIX}")


class Replacement:
    """The file replacements of one commit, each undoable without free space."""

    def __init__(self, fsync: bool = True):
        self.fsync = fsync
        self.kept: list[Path] = []  # backups made by this replacement

    def write(self, path: Path, text: str) -> None:
        """Replace PATH with TEXT; its previous version is kept (hard link) until ``done``.

        The link comes first: a file that cannot be kept is not replaced.
        """
        if path.exists() and backup_path(path) not in self.kept:
            backup = backup_path(path)
            backup.unlink(missing_ok=True)  # a leftover of an older run; HEAD is the truth
            os.link(path, backup)
            self.kept.append(backup)
        atomic_write(path, text, self.fsync)

    def done(self) -> None:
        """The commit is made (or everything is put back): the kept versions go."""
        for backup in self.kept:
            backup.unlink(missing_ok=True)
        self.kept = []


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def put_back(repo: CommittedFiles, rel: str, path: Path, fsync: bool = True, service_file: bool = True) -> bool:
    """Make PATH (REL in the repository) what HEAD has; True if it had to change it.

    Tries what needs no space first: nothing (already so), then renaming the
    kept previous version back, and only then writes HEAD's text. A service
    file HEAD does not have is removed; nothing else is ever removed. Raises
    (OSError, git's error) when it cannot.
    """
    committed = repo.committed(rel)
    backup = backup_path(path)
    changed = True
    if committed is None:
        changed = service_file and path.exists()
        if changed:
            path.unlink(missing_ok=True)
    elif _text(path) == committed:
        changed = False
    elif _text(backup) == committed:
        os.replace(backup, path)
    else:
        atomic_write(path, committed, fsync)
    backup.unlink(missing_ok=True)
    return changed
