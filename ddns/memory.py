"""How ``ddns serve`` uses malloc: one arena instead of one per thread, freed memory given back.

glibc gives each thread's first allocation an arena of its own, up to eight
per core; serve runs ~100 threads (64 HTTP workers, each with its own SQLite
connection, the RFC 2136 pool, the fsync pools), so at 100k hosts a load left
16 arenas holding ~20 MiB, a third of it free and not returned. The GIL runs
one thread's Python at a time and glibc's per-thread cache serves most small
allocations without the arena's lock, so one arena costs no measurable CPU:
at 100k hosts (bench/startup.py's load, 4 starts each, alternated) serve's
RSS at the end was 96-97 MiB with one arena, 100 with two, 102-104 with
glibc's 16, at the same CPU per update and per ``nochg``. The cap is set
before the first thread starts (arenas already made stay). An operator's
``MALLOC_ARENA_MAX`` (read by glibc itself at exec) wins. Elsewhere than
glibc both functions do nothing.
"""
from __future__ import annotations

import ctypes
import os
from typing import Mapping

ARENAS = 1
_M_ARENA_MAX = -8  # glibc's mallopt parameter

try:
    _LIBC = ctypes.CDLL(None)
    _MALLOPT, _TRIM = _LIBC.mallopt, _LIBC.malloc_trim
except (OSError, AttributeError):  # not glibc
    _MALLOPT = _TRIM = None


def limit_arenas(environ: Mapping[str, str] = os.environ, arenas: int = ARENAS) -> bool:
    """Cap malloc's arenas at ARENAS unless MALLOC_ARENA_MAX is set; whether the cap was set here."""
    if _MALLOPT is None or "MALLOC_ARENA_MAX" in environ:
        return False
    return bool(_MALLOPT(_M_ARENA_MAX, arenas))


def give_back() -> None:
    """Return malloc's free pages to the system (``malloc_trim``): after the start's load and reconcile,
    whose transient lists and texts would otherwise stay counted in the process's RSS."""
    if _TRIM is not None:
        _TRIM(0)
