"""Every node's clone follows the upstream; a newly elected publisher starts from exactly what it has.

In a cluster the upstream (``zones.upstream``) is the truth of what was
published: the active publisher pushes each group before it answers it. So a
node never keeps commits of its own that the upstream lacks: ``follow`` resets
the clone to the upstream's branch (a former active's unpushed commits were
never answered, their rows are still queued, and the next active applies them
from the table). ``applied_ids`` reads which rows the upstream already has,
from the trailers of the service's commits (``gitrepo.ChangeRecord.change``).
"""
from __future__ import annotations

import logging
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from .. import errors
from ..gitrepo import UntrustedHistory, ZonesRepo

log = logging.getLogger("ddns.cluster")

# Commit times come from the publishers' clocks: rows this much older than the oldest queued one are
# looked for too, so a skewed clock does not hide a commit.
CLOCK_SLACK = timedelta(hours=1)


class NoUpstream(errors.Invalid):
    """A cluster node without zones.upstream, or an upstream without the branch."""


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL).stdout
    except subprocess.CalledProcessError as exc:
        raise errors.Unavailable(f"git {args[0]} in {repo.name} failed: {exc.stderr.strip()}") from exc


def ensure_clone(path: Path, upstream: str, fsync: bool = True) -> None:
    """A working tree at PATH with UPSTREAM as origin (made empty if missing: ``follow`` fills it)."""
    if not upstream:
        raise NoUpstream("a cluster node needs zones.upstream: the repository all nodes share")
    if not (path / ".git").exists():
        ZonesRepo.init(path, fsync=fsync)
    ZonesRepo(path).set_upstream(upstream)


def follow(path: Path, branch: str) -> str:
    """Make the clone at PATH exactly the upstream's BRANCH (fetch, reset, clean); returns its commit.

    Under the publisher's lock (the caller's). Files the reset removes or
    rewrites are seen by the zone cache's stamps.
    """
    _git(path, "fetch", "-q", "origin")
    try:
        commit = _git(path, "rev-parse", "--verify", "-q", f"origin/{branch}").strip()
    except errors.Unavailable as exc:
        raise NoUpstream(f"the upstream has no branch {branch}: initialise it first (ddns init)") from exc
    head = _git(path, "rev-parse", "-q", "--verify", "HEAD").strip() if _has_head(path) else ""
    if head != commit:
        if head and _git(path, "rev-list", "--count", f"{commit}..{head}").strip() != "0":
            log.warning("discarding this node's commits the upstream does not have (%s..%s): "
                        "their changes are still queued", commit[:12], head[:12])
        _git(path, "checkout", "-q", "-f", "-B", branch, commit)
    _git(path, "clean", "-q", "-fd")
    return commit


def follow_locked(publisher, branch: str) -> str:
    """``follow`` for PUBLISHER's clone, under its lock: nothing reads or commits the clone half-reset."""
    with publisher.lock.held():
        return follow(publisher.root, branch)


def _has_head(path: Path) -> bool:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "-q", "--verify", "HEAD"], capture_output=True,
                          stdin=subprocess.DEVNULL).returncode == 0


def applied_ids(repo: ZonesRepo, since: datetime) -> set[int]:
    """The change ids in trailers of the service's commits since SINCE (less the slack), as HEAD has them.

    A history that cannot be trusted raises ``UntrustedHistory``: an empty
    answer would make the new publisher apply again what the upstream has.
    """
    moment = (since - CLOCK_SLACK).timestamp()
    try:
        return {entry.change.change for entry in repo.audit(f"@{int(moment)}", strict=True)
                if entry.change.change is not None}
    except UntrustedHistory as exc:
        raise UntrustedHistory(f"refusing to take over: which queued changes the upstream has is unknown ({exc}); "
                               "repair the upstream's history, then start the publisher again") from exc
