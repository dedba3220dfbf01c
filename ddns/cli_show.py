"""``ddns show ZONE [REV]``: a zone as committed at a revision, for auditors (registered by ddns.cli).

The repository holds each zone as a small head file that includes its
shards (``ddns.shards``); this prints them assembled into one file, exactly
what BIND served after that commit. A revision of the old layout prints its
head, which was the whole zone.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import errors, gitops

if TYPE_CHECKING:
    from .cli import Env
    from .config import Config

LoadConfig = Callable[[argparse.Namespace, "Env"], "Config"]


def register(sub: argparse._SubParsersAction, command: Callable[..., argparse.ArgumentParser],
             load_config: LoadConfig) -> None:
    """Add ``show``; COMMAND is ddns.cli's way of adding one."""
    p = command("show", lambda a, e: _show(a, e, load_config),
                "print a zone as committed at a revision (default HEAD), its shards assembled")
    p.add_argument("zone")
    p.add_argument("rev", nargs="?", default="HEAD")
    p.add_argument("--repo", help="the zones repository (default: zones.repo of the configuration)")


def _show(args: argparse.Namespace, env: "Env", load_config: LoadConfig) -> int:
    repo = Path(args.repo) if args.repo else load_config(args, env).path("zones.repo")
    zone = args.zone.lower().rstrip(".")
    if not zone or "/" in zone or zone.startswith("."):
        raise errors.Invalid(f"{args.zone!r} is no zone name")
    env.stdout.write(gitops.committed_zone(repo, zone, args.rev))
    env.stdout.flush()
    return 0
