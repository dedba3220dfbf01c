"""Where the publisher says how long its stages took and which part failed.

The publisher knows no metrics library (and no protocol): it calls an
``Observer`` it was given, whose two callables default to doing nothing. The
service connects them to its metrics (``ddns.metrics``); tests and tools
leave them alone or record what they are told.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


def _ignore(*_args: object) -> None:
    """The default: nobody listens."""


@dataclass
class Observer:
    """STAGE(name, seconds): one stage of a publish took that long; ERROR(component): "git" or "named" failed."""

    stage: Callable[[str, float], None] = _ignore
    error: Callable[[str], None] = _ignore

    def since(self, name: str, start: float) -> float:
        """Report stage NAME as having taken from START (``time.perf_counter()``) until now; returns now."""
        now = time.perf_counter()
        self.stage(name, now - start)
        return now

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Report the block's duration as stage NAME (also when it raises: a failed stage took time too)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage(name, time.perf_counter() - start)
