"""Thin wrapper around git for the zones repository.

The git CLI (through GitPython's command wrapper) is ~2x faster than
GitPython's own index for a one-line change in a large file; the service's
commits of a few files are made in process with libgit2 (``gitcommit``),
which saves the git process and its whole-index work on the hot path.
Commit messages carry one ``Ddns-Change:`` trailer (JSON) per change, the
machine-readable audit record that ``ddns history`` reads back -- from the
service's own commits only (see ``provenance``).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator

import git
import pygit2
from pygit2.enums import FileMode

from . import errors, private, provenance
from .gitcommit import InProcessCommit, loose_commit_tree
from .provenance import SERVICE_EMAIL, SERVICE_NAME

log = logging.getLogger("ddns.gitrepo")
TRAILER = "Ddns-Change"
# Who made each commit and what it changed, with -z: NUL-separated fields (no ident or path holds a NUL).
_PROVENANCE_FORMAT = "--format=%x00%H %P%x00%cn <%ce>"
# Given to every git command the service runs: no housekeeping in line (see ZonesRepo.maintain).
_NO_AUTO_GC = ("maintenance.auto=false", "gc.auto=0")
# A commit can race a gc in another process: ``prune-packed`` removes an empty objects/XX directory
# while git writes a new object into it (a blob: the first; the commit object: the second, its temp
# file's directory gone). Nothing moved the branch then; the commit is tried again.
_OBJECT_RACES = ("failed to insert into database", "unable to create temporary file: No such file or directory")
_OBJECT_RACE_ATTEMPTS = 3
_OBJECT_ID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # SHA-1 or SHA-256


@dataclass(frozen=True)
class ChangeRecord:
    """One audited change of one record, as written into a commit trailer."""

    host: str
    type: str
    old: str | None
    new: str | None
    actor: str
    client: str
    interface: str
    agent: str = ""
    request: str = ""
    change: int | None = None  # the cluster's changes row this came from (ddns.cluster): applied once

    def summary(self) -> str:
        return _one_line(f"{self.host} {self.type} {self.old or '-'} -> {self.new or '-'} by {self.actor} "
                         f"from {self.client or '-'} via {self.interface}")

    def trailer(self) -> str:
        # the fields read directly: asdict deep-copies each value (0.39 against 0.11 ms for a 23-change message)
        values = {name: getattr(self, name) for name in _RECORD_FIELDS}
        if self.change is None:  # as before without one
            del values["change"]
        return f"{TRAILER}: " + json.dumps(values, separators=(",", ":"), ensure_ascii=True)


_RECORD_FIELDS = tuple(field.name for field in fields(ChangeRecord))


def commit_message(changes: list[ChangeRecord], subject: str | None = None) -> str:
    """Subject, one readable line per change, then one trailer per change."""
    if subject is None:
        if len(changes) == 1:
            c = changes[0]
            subject = _one_line(f"{c.host} {c.type} {c.new or 'deleted'} ({c.interface})")
        else:
            zones = sorted({c.host.split(".", 1)[-1] for c in changes})
            subject = f"{len(changes)} changes in {', '.join(zones)}"
    body = "\n".join(c.summary() for c in changes)
    trailers = "\n".join(c.trailer() for c in changes)
    return f"{subject}\n\n{body}\n\n{trailers}\n"


def _one_line(text: str) -> str:
    """TEXT with non-printable characters escaped: no field can start a line (or forge a trailer)."""
    if text.isprintable():  # nearly always: no character to look at one by one
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _differing_blobs(tree: pygit2.Tree, path: Path, rel: str) -> Iterator[str]:
    """The regular files of TREE (at PATH, REL in the repository) whose content on disk is not their blob."""
    for entry in tree:
        full, name = path / entry.name, f"{rel}/{entry.name}"
        if entry.filemode == FileMode.TREE:
            yield from _differing_blobs(entry.peel(pygit2.Tree), full, name)
        elif entry.filemode in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
            try:
                same = pygit2.hashfile(str(full)) == entry.id
            except (OSError, pygit2.GitError):  # gone, unreadable, a directory now
                same = False
            if not same:
                yield name


def parse_trailers(message: str) -> list[ChangeRecord]:
    """The change records of a commit message; foreign lines are ignored."""
    records = []
    prefix = TRAILER + ": "
    for line in message.splitlines():
        if line.startswith(prefix):
            try:
                data = json.loads(line[len(prefix):])
                records.append(ChangeRecord(**data))
            except (ValueError, TypeError):
                continue
    return records


class SyncConflict(errors.Conflict):
    """The service's commits and the upstream's cannot be combined without a human."""


class PushFailed(errors.Unavailable):
    """The upstream refused a push for another reason than a commit that landed first (full disk, a hook)."""


# What git and the upstream's pre-receive hook say when someone else pushed first: fetch, rebase, push again.
_PUSHED_FIRST = ("(fetch first)", "(non-fast-forward)", "fetch, rebase and push again")


class UntrustedHistory(errors.Unavailable):
    """The history's two logs disagree (a hostile commit?): no change record in it can be believed."""


@dataclass(frozen=True)
class HistoryEntry:
    commit: str
    when: str
    change: ChangeRecord


class ZonesRepo:
    """The zones repository working tree."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._repo = git.Repo(self.path)
        self._git = self._repo.git
        # git commit, merge, rebase and fetch start "git maintenance run --auto" (a process each
        # time, now and then a gc of seconds) in line; the service's commands never do: the
        # serve process runs ``maintain`` from a background thread instead.
        self._git.set_persistent_git_options(c=list(_NO_AUTO_GC))
        self._in_process = InProcessCommit(self.path)

    @property
    def git_dir(self) -> Path:
        """The repository's .git directory (where the service keeps its own small files too)."""
        return Path(self._repo.git_dir)

    @classmethod
    def init(cls, path: Path, fsync: bool = True) -> "ZonesRepo":
        path.mkdir(parents=True, exist_ok=True)
        git.Repo.init(path, initial_branch="main")
        repo = cls(path)
        repo._git.config("user.name", SERVICE_NAME)
        repo._git.config("user.email", SERVICE_EMAIL)
        # A gc started by hand (or ``maintain``) runs in its own process to the end, never
        # detached beside the next command.
        repo._git.config("gc.autoDetach", "false")
        # Each commit writes the whole rendered zone as a loose object; zlib level 1
        # is ~7 ms faster than the default for a 10k-record zone. Packs (gc) keep
        # git's default compression and delta-compress these anyway.
        repo._git.config("core.looseCompression", "1")
        if fsync:
            repo._git.config("core.fsync", "committed")
        return repo

    def maintain(self, timeout: float = 600.0) -> bool:
        """Run git's automatic housekeeping (``gc --auto``: pack loose objects when there are many).

        For a background thread, never under the publisher's lock: git's own
        gc.pid and ref locks keep it safe beside commits. Returns whether it
        finished in time (a gc past TIMEOUT is killed; the next one resumes).
        """
        started = time.monotonic()
        try:
            housekeeper = git.Git(self.path)  # without _NO_AUTO_GC: the repository's gc.auto counts
            housekeeper.set_persistent_git_options(c="gc.autoDetach=false")
            housekeeper.gc("--auto", "--quiet", kill_after_timeout=timeout)
        except git.GitCommandError as exc:
            log.warning("git gc --auto failed: %s", str(exc).strip()[:500])
            return False
        log.info("git gc --auto took %.2f s", time.monotonic() - started)
        return True

    def head(self) -> str | None:
        """HEAD's commit id, None in an empty repository."""
        try:
            return self._read_head()
        except git.GitCommandError:
            return None

    def commit(self, paths: Iterable[str], message: str, author: str | None = None,
               before_branch: Callable[[], None] | None = None) -> str:
        """Commit the working-tree state of PATHS (added, changed or removed); returns the new HEAD.

        Only PATHS go into the commit, whatever else is staged. Files (the hot
        path) are committed in process (``gitcommit``: no git process); what
        it leaves to the CLI (a directory, the first commit, nothing to
        commit) takes ``git commit --only``, new files added first.
        BEFORE_BRANCH: called under the branch's lock before it moves, in process only
        (``InProcessCommit.commit``); a commit the CLI makes never calls it.
        """
        paths = list(paths)
        for attempt in range(_OBJECT_RACE_ATTEMPTS):
            try:
                made = self._in_process.commit(paths, message, author, before_branch)
                break
            except pygit2.GitError as exc:  # e.g. the housekeeper's gc removed an object directory meanwhile
                if attempt == _OBJECT_RACE_ATTEMPTS - 1:
                    raise
                log.warning("in-process commit failed (%s); trying again", exc)
        if made is not None:
            return made
        env = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": SERVICE_EMAIL} if author else {}
        message_file = Path(self._repo.git_dir) / "DDNS_COMMIT_MSG"
        message_file.write_text(message)
        args = ["-q", "--no-verify", "-F", str(message_file), "--only", "--", *paths]
        with self._git.custom_environment(**env):
            for attempt in range(_OBJECT_RACE_ATTEMPTS):
                try:
                    self._commit_only(args, paths)
                    break
                except git.GitCommandError as exc:  # the housekeeper's gc removed an object directory meanwhile
                    if not any(race in str(exc) for race in _OBJECT_RACES) or attempt == _OBJECT_RACE_ATTEMPTS - 1:
                        raise
                    log.warning("git commit raced the housekeeper's gc; trying again")
        return self._read_head()

    def _commit_only(self, args: list[str], paths: list[str]) -> None:
        try:
            self._git.commit(*args)
        except git.GitCommandError as exc:
            if "did not match any file" not in str(exc):
                raise
            self._git.add("-A", "--", *paths)
            self._git.commit(*args)

    def _read_head(self) -> str:
        """HEAD's commit id from the ref file (no process); rev-parse when it is packed."""
        git_dir = Path(self._repo.git_dir)
        head = (git_dir / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            try:
                return (git_dir / head[5:]).read_text().strip()
            except FileNotFoundError:
                return self._git.rev_parse("--verify", "-q", "HEAD")
        return head

    # ---- an upstream remote (the bare repository admins push to) ----------------
    def set_upstream(self, url: str) -> None:
        """Make URL the origin remote; .git/config is only written when it changes (the disk may be full).

        That config holds the URL (credentials, perhaps): it is for this user only.
        """
        private.narrow(Path(self._repo.git_dir) / "config")
        remotes = self._git.remote().split()
        if "origin" in remotes:
            if self._git.config("--get", "remote.origin.url") != url:
                self._git.remote("set-url", "origin", url)
        else:
            self._git.remote("add", "origin", url)

    def has_upstream(self) -> bool:
        """Whether an origin remote is configured (read from .git/config: no process)."""
        return '[remote "origin"]' in (Path(self._repo.git_dir) / "config").read_text()

    def fetch(self, branch: str) -> str | None:
        """Fetch BRANCH from origin; its commit, or None when origin has no such branch yet."""
        self._git.fetch("-q", "origin")
        try:
            return self._git.rev_parse("--verify", "-q", f"origin/{branch}")
        except git.GitCommandError:
            return None

    def is_ancestor(self, ancestor: str, rev: str = "HEAD") -> bool:
        try:
            self._git.merge_base("--is-ancestor", ancestor, rev)
            return True
        except git.GitCommandError:
            return False

    def rebase(self, onto: str) -> None:
        """Replay local commits onto ONTO; on a conflict, abort and raise (nothing changes)."""
        try:
            # keep each change's commit time: audits (git log --since) mean when it happened
            self._git.rebase("-q", "--committer-date-is-author-date", onto)
        except git.GitCommandError as exc:
            try:
                self._git.rebase("--abort")
            except git.GitCommandError:
                pass
            raise SyncConflict(f"cannot rebase the service's commits onto {onto[:12]}: {exc.stderr.strip()}") from exc

    def push(self, branch: str, token: str = "", rev: str = "HEAD") -> bool:
        """Push REV to origin/BRANCH, presenting TOKEN to the hooks; False when rejected because someone pushed first.

        Any other failure raises PushFailed with git's own words: retrying it
        would not help, and "the upstream kept moving" would hide the cause.
        An upstream that takes no push options has no ddns hooks (installing
        them turns the options on): it gets the push without the token.
        """
        env = provenance.push_environment(token)
        try:
            try:
                with self._git.custom_environment(**env):
                    self._git.push("-q", "origin", f"{rev}:refs/heads/{branch}")
            except git.GitCommandError as exc:
                if not env or "does not support push options" not in exc.stderr:
                    raise
                self._git.push("-q", "origin", f"{rev}:refs/heads/{branch}")
            return True
        except git.GitCommandError as exc:
            if any(marker in exc.stderr for marker in _PUSHED_FIRST):
                return False
            raise PushFailed(f"push to the upstream failed: {exc.stderr.strip()}") from exc

    def changed_paths(self, old: str, new: str = "HEAD") -> list[str]:
        return self._git.diff("--name-only", old, new).splitlines()

    def is_clean(self, paths: Iterable[str] = ()) -> bool:
        """No uncommitted change in PATHS; never writes the index (which a full disk would fail)."""
        return not self._git(no_optional_locks=True).status("--porcelain", "--", *paths).strip()

    def changed(self, path: str) -> list[str]:
        """Paths under PATH that differ from HEAD (changed, staged, deleted or untracked); never writes the index."""
        out = self._git(no_optional_locks=True).status("--porcelain", "-z", "--untracked-files=all", "--no-renames",
                                                      "--", path, strip_newline_in_stdout=False)
        return [entry[3:] for entry in out.split("\0") if len(entry) > 3]

    def differing_content(self, directory: str) -> list[str]:
        """Files HEAD has under DIRECTORY whose working-tree content is not HEAD's blob (a missing one too).

        ``git status`` trusts a file whose size and stat times match the
        index; the working tree is not fsynced, so a file system that lost a
        file's data in an unclean stop but kept its size and times would pass
        there. This hashes each file as ``git hash-object`` does and compares
        it with HEAD's tree entry, whatever the index says.
        """
        repo = pygit2.Repository(str(self.path))
        try:
            head = repo.head.target
            top = repo[loose_commit_tree(repo.path, head) or repo[head].peel(pygit2.Commit).tree_id]
            tree = top.peel(pygit2.Tree)[directory].peel(pygit2.Tree)  # a commit's message is not read whole
        except (KeyError, ValueError, pygit2.GitError):  # no commit, no such directory, or not one
            return []
        return list(_differing_blobs(tree, self.path / directory, directory))

    def show(self, rev: str, path: str) -> str:
        """PATH as REV has it, byte for byte (GitPython would drop the final newline)."""
        return self._git.show(f"{rev}:{path}", strip_newline_in_stdout=False)

    def committed(self, path: str, rev: str = "HEAD") -> str | None:
        """PATH as REV has it, or None when REV has no such file (raises when git cannot tell)."""
        try:
            return self.show(rev, path)
        except git.GitCommandError:
            if self._git.ls_tree("--name-only", rev, "--", path).strip():
                raise  # the file is there: git failed to read it
            return None

    def unstage(self, path: str) -> None:
        """Reset PATH in the index to HEAD, so no later commit carries a dropped change."""
        self._git.reset("-q", "HEAD", "--", path)

    def clear_stale_locks(self, wait: float = 10.0) -> list[str]:
        """Remove git lock files whose writer is gone (call only under the publisher's lock).

        Every git writer of this repository runs under that lock, so a lock file
        found there was left by a killed process -- unless a git process still
        runs in this working tree (the child of a killed service finishing its
        commit): that one is waited for, up to WAIT seconds, and while it runs
        its locks stay (the commit then fails and says why).
        """
        if not self._lock_files():
            return []
        deadline = time.monotonic() + wait
        while self.git_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.git_processes():
            return []
        removed = []
        for lock in self._lock_files():
            lock.unlink(missing_ok=True)
            removed.append(str(lock.relative_to(self._repo.git_dir)))
        return removed

    def _lock_files(self) -> list[Path]:
        git_dir = Path(self._repo.git_dir)
        return [p for p in [git_dir / "index.lock", git_dir / "HEAD.lock", *git_dir.glob("refs/heads/*.lock")]
                if p.exists()]

    def git_processes(self) -> list[int]:
        """Pids of git processes working in this working tree (Linux: read from /proc)."""
        top = self.path.resolve()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if not (proc / "comm").read_text().startswith("git"):
                    continue
                cwd = Path(os.readlink(proc / "cwd"))
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if cwd == top or top in cwd.parents:
                pids.append(int(proc.name))
        return pids

    def audit(self, since: str, until: str | None = None, strict: bool = False) -> Iterator[HistoryEntry]:
        """Every change the service committed in a time range, newest first.

        STRICT: an untrusted history raises ``UntrustedHistory`` instead of
        yielding nothing (a caller that must know what was applied, not show it).
        """
        args = [f"--since={since}", f"--grep={TRAILER}: ", "--fixed-strings"]
        if until:
            args.append(f"--until={until}")
        yield from self._entries(args, strict) if self.head() else ()

    def _entries(self, log_args: list[str], strict: bool = False) -> Iterator[HistoryEntry]:
        """The change records of the commits LOG_ARGS select, from the commits the service made only.

        Messages come NUL-separated (a message holds no NUL); who made each
        commit and what it changed come from a second log with the same
        selection. Both must list the same commits, or nothing is trusted.
        """
        fields = self._git.log("-z", "--format=%H%x00%cI%x00%B", *log_args).split("\x00")
        messages = [tuple(fields[i:i + 3]) for i in range(0, len(fields) - 2, 3)]
        made = self._made_by_service(log_args)
        if [m[0] for m in messages] != list(made):
            if strict:
                raise UntrustedHistory("the history's two logs disagree (a hostile commit message or "
                                       "committer?): no change record in it is trusted")
            log.warning("history: the two logs disagree (a hostile commit message?); no change record is trusted")
            return
        for sha, when, message in messages:
            if made[sha]:
                for record in parse_trailers(message):
                    yield HistoryEntry(sha, when, record)

    def _made_by_service(self, log_args: list[str]) -> dict[str, bool]:
        """For each commit LOG_ARGS select, in order: whether the service made it (``provenance.made_by_service``).

        NUL-separated (``-z``), as git names, e-mail addresses and paths hold no
        NUL: each commit is an empty field, "SHA PARENTS", "name <email>", then
        its paths (the first after a newline) up to the next empty field.
        """
        fields = self._git.log("-z", _PROVENANCE_FORMAT, "--name-only", *log_args).split("\x00")
        made: dict[str, bool] = {}
        i = 0
        while i + 2 < len(fields):
            if fields[i]:
                return {}
            header, committer, i = fields[i + 1], fields[i + 2], i + 3
            paths: list[str] = []
            while i < len(fields) and fields[i]:
                paths.append(fields[i] if paths else fields[i].removeprefix("\n"))
                i += 1
            ids = header.split()
            if not ids or not all(_OBJECT_ID.fullmatch(x) for x in ids):
                return {}
            made[ids[0]] = provenance.made_by_service(committer, len(ids) - 1, paths)
        return made

    def history(self, host: str, limit: int | None = None, below: tuple[str, ...] = ()) -> Iterator[HistoryEntry]:
        """Changes of HOST and of the names BELOW it (``_acme-challenge.HOST``), newest first, from commit trailers."""
        if limit is not None:
            yield from itertools.islice(self.history(host, below=below), limit)
            return
        if self.head() is None:
            return
        names = {host} | {f"{label}.{host}" for label in below}
        # Every name ends in HOST: one fixed-string grep selects them all, the exact match filters.
        args = [f"--grep={TRAILER}: ", "--fixed-strings", f"--grep={host}\"", "--all-match"]
        yield from (e for e in self._entries(args) if e.change.host in names)
