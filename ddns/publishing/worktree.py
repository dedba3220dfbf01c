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

Once a commit is made the kept previous versions are not deleted but moved
to ``.git/ddns-spare`` (one name per path), and the next write of that path
writes its temp file over that file in place: a commit then creates and
deletes no file for the shards it rewrites (both cost far more than the
writing, see ``Replacement``). A spare is only ever written over when it is
a regular file with no other name, moved beside its path first: it reaches the
path only by the rename that lands its new text. Not fsynced, a written-over
spare may keep its size and times but lose its data in a power loss; the
start's content check (``Publisher.recover``) puts such a file back. The
spares are emptied at a process's first commit (``Spares``), and kept only
when named reads its own copies of the zones (``bind.zone_dir``): a reader
of the working tree itself would see a file it holds open rewritten.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Protocol

from .. import shards, zones

log = logging.getLogger("ddns.publisher")  # a part of the publisher: its log lines say so

BACKUP_SUFFIX = ".ddns-prev"
SPARE_DIR = "ddns-spare"  # in the git directory (``ServiceFiles.spares``)


class CommittedFiles(Protocol):
    def committed(self, path: str) -> str | None: ...


class Repository(CommittedFiles, Protocol):
    def head(self) -> str | None: ...
    def unstage(self, path: str) -> None: ...
    def changed(self, path: str) -> list[str]: ...


def atomic_write(path: Path, text: str, fsync: bool = True, spare: tuple[int, str] | None = None) -> None:
    """Temp file in the same directory, fsync, rename: readers see old or new, never half.

    SPARE: an open file of nobody's to write instead of a new one (``Spares.take``).
    """
    fd, tmp = _write_temp(path, text, spare)
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


def _temp_name(path: Path) -> str:
    """``.NAME.PID-N`` beside PATH: what ``Publisher.recover`` clears after a crash."""
    return f"{path.parent}/.{path.name}.{os.getpid()}-{next(_temp_names)}"


def _write_temp(path: Path, text: str, spare: tuple[int, str] | None = None) -> tuple[int, str]:
    """TEXT in a temp file beside PATH: its still open descriptor (for an fsync) and its name.

    SPARE (descriptor, temp name): a file of nobody's written over in place
    instead of a new one. Else a new file named by ``_temp_name``; one taken
    by a leftover falls back to a random one.
    """
    if spare is not None:
        fd, tmp = spare
    else:
        tmp = _temp_name(path)
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
        if spare is not None:  # what is left of its older, longer text goes
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
    except BaseException:
        _discard(fd, tmp)
        raise
    return fd, tmp


class Spares:
    """Earlier versions of the service's files, kept in DIRECTORY for later writes of the same paths to write over.

    One file per path, named by a hash of the path relative to ROOT (the
    repository): a moved repository's spares are not kept under names no
    path has any more. Nothing found in DIRECTORY is trusted: ``open`` empties
    it (spares of shards a reshard or a removed zone no longer writes, of an
    older run), and a spare is only taken when it is a regular file of one
    link, moved beside its path under a temp name: it reaches the path only
    by the rename that lands its new text, never written where it lies.
    """

    def __init__(self, directory: Path, root: Path):
        self.directory = directory
        self.root = root
        self._names: dict[str, str] = {}  # path -> its spare's (as many as the service's files)

    @classmethod
    def open(cls, directory: Path, root: Path) -> Spares | None:
        """DIRECTORY emptied (made if missing) as ROOT's spares; None where that cannot be done (new files then)."""
        try:
            if stat.S_ISDIR(os.lstat(directory).st_mode):
                shutil.rmtree(directory)
            else:  # a symbolic link, a file: not where spares go
                directory.unlink()
        except (FileNotFoundError, NotADirectoryError):  # none yet; .git a file (a linked work tree)
            pass
        except OSError as exc:
            log.warning("cannot empty %s: %s; no spares are kept", directory, exc)
            return None
        try:
            directory.mkdir()
        except OSError:  # .git a file, a full disk: new files, as before
            return None
        return cls(directory, root)

    def path(self, path: Path) -> str:
        """Where PATH's spare waits: a fixed name per path relative to the repository (worked out once a path:
        it was a third of a write's CPU time)."""
        key = str(path)
        spare = self._names.get(key)
        if spare is None:
            rel = os.path.relpath(key, self.root)  # never raises: a path outside the repository is ``../``-named
            spare = self._names[key] = os.path.join(
                self.directory, hashlib.blake2b(os.fsencode(rel), digest_size=16).hexdigest())
        return spare

    def take(self, path: Path) -> tuple[int, str] | None:
        """PATH's spare, moved beside PATH under a temp name and opened for writing: (descriptor, name).

        None when there is none, or it is anything but a regular file of one
        link (a FIFO would block the open, a directory or a symbolic link is
        not ours to write, a file with another name too must never be written
        over): then a new file is made, and the spares' name for it is removed
        (a directory stays), never what it points to or another name of it.
        """
        spare = self.path(path)
        try:
            found = os.lstat(spare)
        except OSError:  # none kept (the common case after the start)
            return None
        if not _plain(found):  # our name for it goes (a directory stays, named where no spare can go)
            _unlink_quietly(spare)
            return None
        tmp = _temp_name(path)
        try:
            os.rename(spare, tmp)
        except OSError:  # PATH's directory is gone
            return None
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # swapped since the lstat: whatever it is goes back
            _rename_back(tmp, spare)
            return None
        opened = os.fstat(fd)
        if _plain(opened) and (opened.st_dev, opened.st_ino) == (found.st_dev, found.st_ino):
            return fd, tmp
        os.close(fd)
        _rename_back(tmp, spare)
        return None

    def keep(self, backup: Path, path: Path) -> bool:
        """Move BACKUP, PATH's previous version, to PATH's spare; False when it is not there or cannot go.

        A backup of a file a failed commit never replaced is another name of
        the live file still: that one is no spare (and a rename onto another
        name of the same file does nothing, which would leave it in place).
        """
        try:
            if os.lstat(backup).st_nlink != 1:
                return False
            os.replace(backup, self.path(path))
            return True
        except OSError:  # put back already (a failed commit), the directory gone, a directory in the way
            return False


def _plain(info: os.stat_result) -> bool:
    """A regular file of one link: the only kind of spare that is written over."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:  # a directory, gone already
        pass


def _rename_back(tmp: str, spare: str) -> None:
    """A spare found not to be one after it was moved beside its path: back to where it was found."""
    try:
        os.rename(tmp, spare)
    except OSError as exc:
        log.warning("cannot move %s back to %s: %s", tmp, spare, exc)


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
    """The file replacements of one commit, each undoable without free space (not fsynced: see the module).

    SPARES (a directory on the same file system, outside the working tree;
    None: none): where ``done`` moves the previous versions instead of
    deleting them, and where a later write of the same path takes its file
    from, to write it over in place. A file created and another deleted per
    written file and commit cost more CPU than the writing (~0.1-0.3 ms each
    on ext4, whose inode allocator steps over every recently deleted inode);
    renames and links cost a few microseconds.
    """

    def __init__(self, spares: Spares | None = None):
        self.spares = spares
        self.kept: list[tuple[Path, Path]] = []  # (backup, the path it keeps) made by this replacement
        self._staged: list[tuple[int, str, Path | None]] | None = None  # in ``together``: (fd, temp, path) or a removal

    def write(self, path: Path, text: str) -> None:
        """Replace PATH with TEXT; its previous version is kept (hard link) until ``done``.

        The link comes first: a file that cannot be kept is not replaced.
        """
        self._keep(path)
        spare = None if self.spares is None else self.spares.take(path)
        if self._staged is None:
            atomic_write(path, text, False, spare)
        else:
            self._staged.append((*_write_temp(path, text, spare), path))

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
        if any(kept == backup for kept, _ in self.kept):
            return
        try:
            os.link(path, backup)
        except FileNotFoundError:  # nothing to keep: a new file
            return
        except FileExistsError:  # a leftover of an older run; HEAD is the truth
            backup.unlink()
            os.link(path, backup)
        self.kept.append((backup, path))

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
        """The commit is made (or everything is put back): the kept versions go, to the spares if there are any.
        One that cannot be removed is logged, not raised: the commit stands (a failure here reported it failed,
        and named was withdrawn from it), and ``Publisher.recover`` clears leftovers at the next start."""
        for backup, path in self.kept:
            try:
                if self.spares is None or not self.spares.keep(backup, path):
                    backup.unlink(missing_ok=True)  # a put back one (a failed commit) is gone already
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

    def __init__(self, repo: Repository, root: Path, on_error: Callable[[str], None], fsync: bool = True,
                 spares: bool = True):
        self.repo = repo
        self.root = root
        self.fsync = fsync
        self.held: dict[str, str] = {}  # zones whose files could not be put back, and why
        self._on_error = on_error
        self._spares: Spares | None = None  # opened at the first commit (``spares``)
        self._spares_wanted = spares

    def spares(self) -> Spares | None:
        """The earlier versions whose files later writes reuse (``Replacement``), in ``.git/ddns-spare``:
        outside the working tree (git never lists it), on its file system. Emptied once, at the first
        commit (``Spares.open``); None where that fails, or when not wanted: named reads the working
        tree itself (no ``bind.zone_dir``), and a file it holds open must never change under it."""
        if self._spares_wanted:
            self._spares_wanted = False
            self._spares = Spares.open(self.root / ".git" / SPARE_DIR, self.root)
        return self._spares

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
        files = Replacement(spares=self.spares())
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
        changed = [rel for rel in self.repo.changed(f"{zone}/{shards.SHARD_DIR}") if self.is_service_file(zone, rel)]
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
