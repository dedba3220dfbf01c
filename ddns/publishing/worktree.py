"""The service's files in the zones working tree: replaced with a way back, put back as HEAD has them.

A failed publish must leave the working tree as the last commit has it, whatever
else fails meanwhile -- and a full disk fails the rollback's own writes too. So
each file a commit replaces keeps its previous version as a hard link beside it
(a directory entry, no data blocks) until the commit is made: putting it back
is a rename, which needs no free space. A file is deleted only when HEAD does
not have it (the service created it for a commit that never happened); a
committed file is never deleted, whatever fails (a shard a commit empties is
removed the same way: its previous version waits as a hard link).

A zone's service files are its head, the old layout's ``dynamic.records`` and
the shard files under ``dynamic/``; of those only the ones git reports as
changed are put back (one ``git status``, not one ``git show`` per shard).

A commit writes one file per touched shard; inside ``Replacement.together``
they are written to temp files and only then renamed into place, in the
order they were written. A commit's files are not fsynced (``replacing``):
git reads them for the commit's blobs, and those, the trees, the commit and
the branch are fsynced by the commit itself (core.fsync). The working tree
is a copy of HEAD that ``Publisher.recover`` puts back at every start, so a
file a power loss left old or empty after its commit costs nothing; an
fsync of it on every commit (0.5-1 ms of the update's latency here) bought
nothing.
"""
from __future__ import annotations

import itertools
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Protocol

from .. import shards, zones

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so

BACKUP_SUFFIX = ".ddns-prev"


class CommittedFiles(Protocol):
    def committed(self, path: str) -> str | None: ...


class Repository(CommittedFiles, Protocol):
    def head(self) -> str | None: ...
    def unstage(self, path: str) -> None: ...
    def changed(self, path: str) -> list[str]: ...


def atomic_write(path: Path, text: str, fsync: bool = True) -> None:
    """Temp file in the same directory, fsync, rename: readers see old or new, never half."""
    fd, tmp = _write_temp(path, text)
    try:
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        _discard(fd, tmp)
        raise


_temp_names = itertools.count()


def _write_temp(path: Path, text: str) -> tuple[int, str]:
    """TEXT in a new temp file beside PATH: its still open descriptor (for an fsync) and its name.

    The name is ``.NAME.PID-N`` (what ``Publisher.recover`` clears after a
    crash); one taken by a leftover falls back to a random one.
    """
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}-{next(_temp_names)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # a zone's dynamic/ before its first shard
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except FileExistsError:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # named may run as another user
        with os.fdopen(fd, "w", closefd=False) as f:
            f.write(text)
    except BaseException:
        _discard(fd, tmp)
        raise
    return fd, tmp


def _discard(fd: int, tmp: str) -> None:
    """Close FD (unless -1) and remove the temp file TMP, whatever is left of it."""
    if fd >= 0:
        os.close(fd)
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def backup_path(path: Path) -> Path:
    """Where PATH's previous version waits while a commit of its new version is made."""
    return path.with_name(f".{path.name}{BACKUP_SUFFIX}")


class Replacement:
    """The file replacements of one commit, each undoable without free space (not fsynced: see the module)."""

    def __init__(self):
        self.kept: list[Path] = []  # backups made by this replacement
        self._staged: list[tuple[int, str, Path | None]] | None = None  # in ``together``: (fd, temp, path) or a removal

    def write(self, path: Path, text: str) -> None:
        """Replace PATH with TEXT; its previous version is kept (hard link) until ``done``.

        The link comes first: a file that cannot be kept is not replaced.
        """
        self._keep(path)
        if self._staged is None:
            atomic_write(path, text, fsync=False)
        else:
            self._staged.append((*_write_temp(path, text), path))

    def remove(self, path: Path) -> None:
        """Remove PATH (a shard the commit empties); its previous version is kept until ``done``."""
        if not path.exists():
            return
        self._keep(path)
        if self._staged is None:
            path.unlink()
        else:
            self._staged.append((-1, str(path), None))

    def _keep(self, path: Path) -> None:
        backup = backup_path(path)
        if backup in self.kept:
            return
        try:
            os.link(path, backup)
        except FileNotFoundError:  # nothing to keep: a new file
            return
        except FileExistsError:  # a leftover of an older run; HEAD is the truth
            backup.unlink()
            os.link(path, backup)
        self.kept.append(backup)

    @contextmanager
    def together(self) -> Iterator[None]:
        """The writes and removals of the block land at its end, in order.

        Until then no file of the repository changed: when the block fails,
        the temp files go and the caller puts back nothing.
        """
        self._staged = []
        try:
            yield
            for i, (fd, tmp, path) in enumerate(self._staged):
                if path is None:
                    Path(tmp).unlink(missing_ok=True)
                else:
                    self._staged[i] = (-1, tmp, path)
                    os.close(fd)
                    os.replace(tmp, path)
                self._staged[i] = (-1, tmp, None)  # landed: nothing to discard
        finally:
            for fd, tmp, path in self._staged:
                if path is not None:
                    _discard(fd, tmp)
            self._staged = None

    def done(self) -> None:
        """The commit is made (or everything is put back): the kept versions go. A backup that cannot be
        removed is logged, not raised: the commit stands (a failure here reported it failed, and named was
        withdrawn from it), and ``Publisher.recover`` clears leftovers at the next start."""
        for backup in self.kept:
            try:
                backup.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot remove %s (left for the next start): %s", backup, exc)
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


class ServiceFiles:
    """The files the service writes in each zone, kept as HEAD has them: a zone where that fails is held.

    No commit is made from a held zone's files until they are put back
    (``writable`` tries again). Used under the publisher's lock only: while it
    is held, a new HEAD is the holder's own commit.
    """

    def __init__(self, repo: Repository, root: Path, on_error: Callable[[str], None], fsync: bool = True):
        self.repo = repo
        self.root = root
        self.fsync = fsync
        self.held: dict[str, str] = {}  # zones whose files could not be put back, and why
        self._on_error = on_error

    def unstage(self, rel: str) -> None:
        """Reset REL in the index (a dropped change must not ride along with a later commit)."""
        try:
            self.repo.unstage(rel)
        except Exception as exc:  # e.g. index.lock held: then nothing was staged by us either
            log.warning("cannot reset %s in the index: %s", rel, exc)

    @contextmanager
    def replacing(self, zone_names: list[str], extra: tuple[str, ...] = ()) -> Iterator[Replacement]:
        """File replacements for one commit of ZONE_NAMES (and EXTRA, paths of human-edited files).

        When the block fails, every file goes back to what HEAD has, or, when
        that fails too, the zone is held: no commit is made from its files until
        they are put back. The in-memory state is never reloaded from them.
        The files are not fsynced: the commit makes its own objects durable (see the module).
        """
        files = Replacement()
        head = self.repo.head()
        try:
            yield files
        except BaseException:
            if self.repo.head() == head:
                self.put_back(zone_names, extra)
                files.done()
                raise
            # we hold the lock, so the new HEAD is our commit: git failed after making it
            log.warning("git failed after committing %s; the commit stands", self.repo.head())
        files.done()

    def service_files(self, zone: str) -> list[str]:
        """ZONE's service files that may differ from HEAD: the head, the old dynamic.records, changed shards."""
        prefix = f"{zone}/"
        changed = [rel for rel in self.repo.changed(f"{zone}/{shards.SHARD_DIR}")
                   if rel.startswith(prefix) and shards.is_shard_path(rel[len(prefix):])]
        return [f"{zone}/{zones.rendered_file(zone)}", f"{zone}/{zones.DYNAMIC_FILE}", *changed]

    def is_service_file(self, zone: str, rel: str) -> bool:
        """Whether REL (in the repository) is one of ZONE's files the service writes (not a human's)."""
        prefix = f"{zone}/"
        return (rel in (f"{zone}/{zones.rendered_file(zone)}", f"{zone}/{zones.DYNAMIC_FILE}")
                or (rel.startswith(prefix) and shards.is_shard_path(rel[len(prefix):])))

    def put_back(self, zone_names: list[str], extra: tuple[str, ...] = ()) -> None:
        """Put the files of ZONE_NAMES back as HEAD has them; hold the zones where that fails."""
        for zone in zone_names:
            errors = []
            try:
                files = [(rel, self.root / rel, True) for rel in self.service_files(zone)]
            except Exception as exc:  # git broken: the zone cannot be proven to be what HEAD has
                files = []
                errors.append(f"cannot list the changed files of {zone}: {exc}")
            files += [(rel, self.root / rel, False) for rel in extra if rel.startswith(f"{zone}/")]
            for rel, path, service_file in files:
                try:
                    if put_back(self.repo, rel, path, self.fsync, service_file):
                        log.warning("%s differed from HEAD (never committed): put back", rel)
                        self.unstage(rel)
                except Exception as exc:  # disk full, git broken: keep trying the others
                    errors.append(f"cannot put back {rel}: {exc}")
            if errors:
                self.held[zone] = "; ".join(errors)
                message = f"zone {zone} is held: {self.held[zone]}"
                self._on_error(message)
                log.error("%s", message)
            elif self.held.pop(zone, None) is not None:
                log.warning("zone %s: its files are what HEAD has again; publishing resumes", zone)

    def writable(self, zone: str) -> bool:
        """Whether commits may be made from ZONE's files (a held zone is put back first)."""
        if zone in self.held:
            self.put_back([zone], (f"{zone}/{zones.SETTINGS_FILE}",))
        return zone not in self.held
