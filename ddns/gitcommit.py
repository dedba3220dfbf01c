"""The service's commit of a few files, in process (libgit2 through pygit2): ``git commit --only`` without a process.

A publisher commit touches the head and a shard or two. As a ``git commit``
process it took 10-15 ms, most of it not the work: starting git, reading and
refreshing the whole index, rebuilding every tree of the cache, writing the
index twice. Here the new tree is HEAD's tree with the touched blobs put in
(only the directories on their paths are rewritten, unchanged files are not
hashed again; the parent commit is never read whole: its message may be tens of
megabytes), the branch moves only if it still points at the parent, and
the index on disk gets the committed entries (with their stat data) for those
paths and nothing else, so later git commands (status, rebase, the hooks) see
a clean tree.

What ``git commit -q --no-verify -F MSG --only -- PATHS`` does, kept: only
PATHS go in, whatever else is staged; a path gone from the working tree is
removed; the author is the one given (the service's e-mail) or the usual
GIT_AUTHOR_* / user.* identity, the committer GIT_COMMITTER_* or user.*; the
message is cleaned up as ``--cleanup=whitespace`` does; no hook runs; the
branch is moved as git moves it (``update_branch``: its lock file, the old
value checked under it, both reflogs ``commit: SUBJECT``); with
``core.fsync`` set each new object and the branch's new value are fsynced
before the branch is replaced -- the seven fsyncs git makes, issued at once
from a few threads with ``os.fsync`` (``fsync_together``), so the journal is
committed once and the other threads run meanwhile (libgit2's own fsync
option would add a directory fsync per object and fsync the reflogs, one
after the other inside calls that hold the GIL). Anything beyond that --
a directory or "." as a path, no commit yet, a commit that would change
nothing, an identity git would refuse, a date or cleanup set from outside --
is left to the CLI (``plan`` returns None), which behaves as before.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pygit2
from pygit2.enums import FileMode, ObjectType

from . import errors
from .provenance import SERVICE_EMAIL

log = logging.getLogger("ddns.git")

# Characters git strips from both ends of an identity's name and e-mail (ident.c ``crud``).
_CRUD = set(".,:;<>\"\\'")
# What git's own isspace() is (sane-ctype.h): a message line loses these at its end.
_GIT_SPACE = " \t\n\r"
# Settings under which git would commit differently than this module does: left to the CLI.
_CLI_ONLY_CONFIG = ("commit.gpgsign", "commit.cleanup", "i18n.commitEncoding")
_CLI_ONLY_ENV = ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "GIT_INDEX_FILE", "GIT_DIR", "GIT_WORK_TREE")
_OFF_FSYNC = ("", "none", "false", "0")
_REF_LOCK_WAIT = 0.1  # seconds, git's default core.filesRefLockTimeout
# fsync_together's threads (started at the first use)
_FSYNC_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ddns-fsync")


class HeadMoved(errors.Conflict):
    """The branch moved between reading it and committing on it (another writer): nothing was committed."""


class BranchLocked(errors.Busy):
    """Another writer holds the branch's lock file (or a killed one left it): nothing was committed."""


@dataclass(frozen=True)
class Plan:
    """What one commit will do: the branch, its parent, and each path's new state."""

    branch: str                       # refs/heads/...
    parent: pygit2.Oid
    tree: pygit2.Oid                  # the parent's tree
    added: tuple[str, ...]            # in the working tree: its blob goes in
    removed: tuple[str, ...]          # gone from the working tree, in HEAD: leaves the tree


class InProcessCommit:
    """Commits a few files of one working tree (see the module); one per ZonesRepo."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._repo: pygit2.Repository | None = None
        self._lock = threading.Lock()
        self._tip: tuple[pygit2.Oid, pygit2.Oid] | None = None  # the last commit made here and its tree

    @property
    def repo(self) -> pygit2.Repository:
        if self._repo is None:
            self._repo = pygit2.Repository(str(self.path))
        return self._repo

    def commit(self, paths: list[str], message: str, author: str | None,
               before_branch: Callable[[], None] | None = None) -> str | None:
        """Commit the working-tree state of PATHS; the new commit's id, or None when nothing was done and
        the CLI must do it (see the module).

        BEFORE_BRANCH is called once every object of the commit is written,
        the branch's lock is taken and the branch found unmoved, before the
        fsyncs and the branch's move (``update_branch``): what can still fail
        then is only a write (the publisher sends named the commit's update
        there, so that named applies it meanwhile; a racing push, a held or
        stale lock never reach named).

        Raises HeadMoved when the branch moved meanwhile (nothing committed),
        pygit2.GitError when libgit2 cannot write (the caller may retry: the
        objects already written do no harm, the branch and index are untouched).
        """
        with self._lock:
            config = self.repo.config.snapshot()  # one read of the config files for every key below
            message = cleanup_message(message)
            who = identities(config, author)
            plan = self.plan(paths, config) if message and who else None
            if plan is None:
                return None
            made = None
            try:
                made = self._commit(plan, message, *who, config, before_branch)
            finally:
                if made is None:  # nothing committed: the index in memory forgets what _commit added
                    self.repo.index.read(True)
            return made

    def plan(self, paths: list[str], config: pygit2.Config) -> Plan | None:
        """What committing PATHS would do, or None when the CLI must do it (see the module)."""
        repo = self.repo
        if (any(os.environ.get(name) for name in _CLI_ONLY_ENV) or repo.head_is_unborn or repo.head_is_detached
                or any(_config(config, key) for key in _CLI_ONLY_CONFIG)
                or os.path.exists(os.path.join(repo.path, "index.lock"))):
            return None
        head = repo.references["HEAD"].resolve()
        tree_id = self._tree_of(head.target)
        tree = repo[tree_id].peel(pygit2.Tree)
        index = repo.index
        index.read(False)  # again only if another process rewrote it (libgit2 checks its stamp)
        in_tree = tree_lookup(repo, tree)
        added, removed = [], []
        for path in paths:
            if not _plain(path):
                return None
            full = os.path.join(self.path, path)  # strings, not pathlib: this runs for every path of every commit
            entry = in_tree(path)
            in_head = entry is not None
            if in_head and entry.filemode == FileMode.TREE:
                return None
            if os.path.lexists(full):
                if os.path.isdir(full) and not os.path.islink(full):
                    return None
                if not in_head and path not in index and repo.path_is_ignored(path):
                    return None  # git refuses to add an ignored file: let it say so
                added.append(path)
            elif in_head:
                removed.append(path)
            else:
                return None  # matches no file: git says so
        return Plan(head.name, head.target, tree_id, tuple(dict.fromkeys(added)), tuple(dict.fromkeys(removed)))

    def _tree_of(self, commit: pygit2.Oid) -> pygit2.Oid:
        """COMMIT's tree, without reading the whole commit where it can: a commit's message may be tens of
        megabytes (one publish of 100,000 changes lists each), and libgit2 holds it twice while parsing it.

        The last commit made here is known; another (the first after a start, a merged push) is read from
        the head of its loose object; a packed one, through libgit2.
        """
        if self._tip is not None and self._tip[0] == commit:
            return self._tip[1]
        return loose_commit_tree(self.repo.path, commit) or self.repo[commit].peel(pygit2.Commit).tree_id

    def _commit(self, plan: Plan, message: str, author: pygit2.Signature, committer: pygit2.Signature,
                config: pygit2.Config, before_branch: Callable[[], None] | None = None) -> str | None:
        """PLAN's objects (fsynced if asked), then the branch (only from the plan's parent), then the index."""
        repo = self.repo
        index = repo.index  # read by plan() just now
        changes: dict[str, tuple[pygit2.Oid, int] | None] = {}
        for path in plan.added:
            index.add(path)  # hashes the file once, writes its blob, takes its stat data
            entry = index[path]
            changes[path] = (entry.id, entry.mode)
        for path in plan.removed:
            if path in index:
                index.remove(path)
            changes[path] = None
        written: list[pygit2.Oid] = [c[0] for c in changes.values() if c is not None]
        tree = updated_tree(repo, repo[plan.tree].peel(pygit2.Tree), changes, written) or repo.TreeBuilder().write()
        if tree == plan.tree:
            return None  # nothing to commit: git says so
        # written as git writes it, not with create_commit: pygit2 reads each parent whole first
        new = repo.odb.write(ObjectType.COMMIT, commit_object(tree, plan.parent, author, committer, message))
        objects = os.path.join(repo.path, "objects")
        durable = ([os.path.join(objects, h[:2], h[2:]) for h in dict.fromkeys(map(str, [*written, tree, new]))]
                   if wants_fsync(config) else None)
        update_branch(Path(repo.path), plan.branch, plan.parent, new, committer,
                      f"commit: {message.split(chr(10), 1)[0]}", durable, _config(config, "core.logAllRefUpdates"),
                      before_branch)
        self._tip = (new, tree)
        try:
            index.write()
        except pygit2.GitError as exc:  # the commit is in: reporting it failed would be the lie
            log.error("commit %s made, but the index could not be written (git status may show it staged): %s", new, exc)
        return str(new)


def tree_lookup(repo: pygit2.Repository, tree: pygit2.Tree) -> Callable[[str], pygit2.Object | None]:
    """PATH's entry in TREE (None: none) by a lookup that reads each directory on the way once.

    A lookup by path from the top parses every tree above the entry again:
    ``path in tree`` and ``tree[path]`` for a commit's 24 paths took 2.8 ms
    of CPU (two 256-entry ``dynamic/`` trees parsed per path), one read of
    each directory 0.07 ms.
    """
    directories: dict[str, pygit2.Tree | None] = {"": tree}

    def directory(rel: str) -> pygit2.Tree | None:
        if rel not in directories:
            parent, _, name = rel.rpartition("/")
            entry = entry_in(directory(parent), name)
            directories[rel] = (repo[entry.id].peel(pygit2.Tree)
                                if entry is not None and entry.filemode == FileMode.TREE else None)
        return directories[rel]

    def lookup(path: str) -> pygit2.Object | None:
        parent, _, name = path.rpartition("/")
        return entry_in(directory(parent), name)
    return lookup


def entry_in(tree: pygit2.Tree | None, name: str) -> pygit2.Object | None:
    """The entry NAME (one path component) of TREE; None when there is none (or no TREE)."""
    return tree[name] if tree is not None and name in tree else None


def loose_commit_tree(git_dir: str, commit: pygit2.Oid) -> pygit2.Oid | None:
    """The tree of COMMIT from its loose object's first bytes (``commit SIZE\\0tree HEX\\n``); None when it
    is not loose (packed, or in an alternate) or does not start so."""
    hexid = str(commit)
    try:
        with open(os.path.join(git_dir, "objects", hexid[:2], hexid[2:]), "rb") as f:
            head = zlib.decompressobj().decompress(f.read(4096), 200)
    except (OSError, zlib.error):
        return None
    kind, _, rest = head.partition(b"\0")
    line = rest.split(b"\n", 1)[0]
    if not kind.startswith(b"commit ") or not line.startswith(b"tree "):
        return None
    try:
        return pygit2.Oid(hex=line[5:].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def update_branch(git_dir: Path, branch: str, old: pygit2.Oid, new: pygit2.Oid, who: pygit2.Signature,
                  message: str, durable: list[str] | None, log_all: str | None,
                  before_move: Callable[[], None] | None = None) -> None:
    """Move BRANCH from OLD to NEW as git does: under its lock file (BRANCH.lock, which git and libgit2
    respect), only if it still is OLD, the reflogs of the branch and of HEAD appended meanwhile.

    DURABLE (None: no fsync): the new objects, fsynced together with the
    branch's new value before it replaces the old one. BEFORE_MOVE: called
    once the lock is held and the branch found at OLD, before those fsyncs
    (not at all when the branch is locked or moved: nothing was committed).
    """
    ref = git_dir / branch
    lock = ref.with_name(ref.name + ".lock")
    fd = _take_lock(lock)
    try:
        try:
            current = _branch_target(git_dir, branch)  # read under the lock: nobody moves it meanwhile
            if current != str(old):
                raise HeadMoved(f"{branch} moved to {current[:12]} while committing on {str(old)[:12]}")
            os.write(fd, f"{new}\n".encode())
        finally:
            os.close(fd)
        if before_move is not None:
            before_move()
        if durable is not None:
            fsync_together([*durable, lock])
        entry = (f"{old} {new} {who.name} <{who.email}> {who.time} {_offset(who.offset)}\t"
                 f"{' '.join(message.split())}\n")
        for log in (git_dir / "logs" / branch, git_dir / "logs" / "HEAD"):
            if log.exists() or (log_all or "true").lower() not in ("false", "no", "off", "0"):
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "a", encoding="utf-8") as out:
                    out.write(entry)
        os.replace(lock, ref)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def _take_lock(lock: Path) -> int:
    """Create LOCK (O_EXCL), waiting up to _REF_LOCK_WAIT as git does (core.filesRefLockTimeout): the
    housekeeper's ``pack-refs`` holds a branch's lock for a moment."""
    deadline, pause = time.monotonic() + _REF_LOCK_WAIT, 0.001
    while True:
        try:
            return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise BranchLocked(f"{lock.name[:-5]} is locked by another writer ({lock.name} exists)") from None
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def fsync_together(paths: list[str | Path]) -> None:
    """fsync PATHS at once, from a few threads (the GIL is released): the file system commits its
    journal once for all of them, not once each (six small objects: ~3 ms instead of ~25 ms on a busy
    disk here). A path gone meanwhile is skipped (a gc packed that object: the pack is fsynced)."""
    list(_FSYNC_POOL.map(_fsync_path, paths))


def _fsync_path(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _branch_target(git_dir: Path, branch: str) -> str:
    """BRANCH's commit id: its loose ref file, else its line in packed-refs ("" if neither)."""
    try:
        return (git_dir / branch).read_text().strip()
    except FileNotFoundError:
        pass
    try:
        for line in (git_dir / "packed-refs").read_text().splitlines():
            oid, _, name = line.partition(" ")
            if name == branch:
                return oid
    except FileNotFoundError:
        pass
    return ""


def commit_object(tree: pygit2.Oid, parent: pygit2.Oid, author: pygit2.Signature, committer: pygit2.Signature,
                  message: str) -> bytes:
    """The commit object git writes for these (``commit_tree``): tree, parent, both identities, the message."""
    def ident(who: pygit2.Signature) -> str:
        return f"{who.name} <{who.email}> {who.time} {_offset(who.offset)}"
    return (f"tree {tree}\nparent {parent}\nauthor {ident(author)}\ncommitter {ident(committer)}\n\n"
            f"{message}").encode()


def _offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def updated_tree(repo: pygit2.Repository, tree: pygit2.Tree | None,
                 changes: dict[str, tuple[pygit2.Oid, int] | None], written: list[pygit2.Oid]) -> pygit2.Oid | None:
    """TREE with CHANGES (path -> (blob, mode), or None: removed); only the trees on changed paths are
    written (their ids appended to WRITTEN). None when the result is empty (a subtree then disappears, as
    in git)."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    below: dict[str, dict[str, tuple[pygit2.Oid, int] | None]] = {}
    for path, change in changes.items():
        name, sep, rest = path.partition("/")
        if sep:
            below.setdefault(name, {})[rest] = change
        elif change is None:
            if builder.get(name) is not None:
                builder.remove(name)
        else:
            builder.insert(name, change[0], change[1])
    for name, inner in below.items():
        entry = builder.get(name)
        old = repo[entry.id].peel(pygit2.Tree) if entry is not None and entry.filemode == FileMode.TREE else None
        sub = updated_tree(repo, old, inner, written)
        if sub is None:
            if entry is not None:
                builder.remove(name)
        else:
            builder.insert(name, sub, FileMode.TREE)
    if tree is not None and len(builder) == 0:
        return None
    written.append(builder.write())
    return written[-1]


def cleanup_message(message: str) -> str:
    """MESSAGE as ``git commit -F`` stores it (cleanup "whitespace"): lines without trailing blanks,
    runs of empty lines made one, none at either end, a final newline; "" when nothing is left."""
    lines: list[str] = []
    for line in message.split("\n"):
        line = line.rstrip(_GIT_SPACE)
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "".join(f"{line}\n" for line in lines)


def ident_part(value: str) -> str:
    """An identity's name or e-mail as git writes it: crud stripped from both ends, no '<', '>' or newline."""
    start, end = 0, len(value)
    while start < end and (ord(value[start]) <= 32 or value[start] in _CRUD):
        start += 1
    while end > start and (ord(value[end - 1]) <= 32 or value[end - 1] in _CRUD):
        end -= 1
    return "".join(ch for ch in value[start:end] if ch not in "<>\n")


def identities(config: pygit2.Config, author: str | None) -> tuple[pygit2.Signature, pygit2.Signature] | None:
    """(author, committer) as git would make them now, or None when git would refuse one (empty name or e-mail).

    AUTHOR given: that name with the service's e-mail (as ``ZonesRepo.commit``
    passes it in GIT_AUTHOR_*); else GIT_AUTHOR_* or user.*. The committer:
    GIT_COMMITTER_* or user.*. Both carry the same time and the local offset.
    """
    user, email = _config(config, "user.name"), _config(config, "user.email")
    if author:
        a_name, a_email = author, SERVICE_EMAIL
    else:
        a_name, a_email = os.environ.get("GIT_AUTHOR_NAME", user), os.environ.get("GIT_AUTHOR_EMAIL", email)
    c_name, c_email = os.environ.get("GIT_COMMITTER_NAME", user), os.environ.get("GIT_COMMITTER_EMAIL", email)
    parts = [ident_part(v or "") for v in (a_name, a_email, c_name, c_email)]
    if not all(parts[i] for i in (0, 1, 2, 3)):
        return None
    now = int(time.time())
    offset = time.localtime(now).tm_gmtoff // 60
    return (pygit2.Signature(parts[0], parts[1], now, offset),
            pygit2.Signature(parts[2], parts[3], now, offset))


def wants_fsync(config: pygit2.Config) -> bool:
    """Whether the repository's config asks git to fsync what a commit writes (core.fsync, or the older
    core.fsyncObjectFiles)."""
    value = (_config(config, "core.fsync") or "").strip().lower()
    components = [c.strip() for c in value.split(",") if c.strip()]
    if any(c not in _OFF_FSYNC and not c.startswith("-") for c in components):
        return True
    return (_config(config, "core.fsyncObjectFiles") or "").lower() in ("true", "yes", "on", "1")


def _config(config: pygit2.Config, key: str) -> str | None:
    try:
        return config[key]
    except KeyError:
        return None


def _plain(path: str) -> bool:
    """A path of one file relative to the top: no ".", "..", empty or absolute parts (those go to the CLI)."""
    parts = path.split("/")
    return bool(path) and all(p not in ("", ".", "..") for p in parts) and "\\" not in path
