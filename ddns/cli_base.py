"""What every ``ddns`` command module shares: its environment (streams, environment, working directory) and exit statuses.

Apart from ddns.cli so that the command modules (``cli_serve``, ``cli_db``, ...)
import it without importing the parser that imports them.
"""
from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, TextIO


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1          # the request was refused or failed; nothing changed
    USAGE = 2          # bad arguments or configuration
    PUBLISH_FAILED = 3  # committed, but BIND does not serve it yet


@dataclass
class Env:
    """What a command may touch: streams, environment, working directory."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    cwd: Path = field(default_factory=Path.cwd)

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def err(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)
