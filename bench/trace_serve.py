#!/usr/bin/env python3
"""``ddns serve`` with per-stage timers, for bench_updates.py --trace.

Usage: python3 bench/trace_serve.py OUT.json -c CONFIG serve

Samples carry time.monotonic() (system-wide on Linux), so the bench can
split them by phase. Wraps (in this process only; the service code is unchanged) the functions an
update passes through and, when serve stops, writes every sample to OUT.json:

  request thread:  handle_update (whole dyndns2 handling), authenticate,
                   publisher.current (nochg check), service.publish (queue wait +
                   group publish), store.record_updates (batched SQLite write)
  publisher:       apply (one group), batch size, format, render, write,
                   git commit, rndc reload, wait served
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddns import bind, cli, dyndns2, gitrepo, service as servmod, store as storemod, zones  # noqa: E402
from ddns.publishing import publisher as pubmod, worktree

SAMPLES: dict[str, list[tuple[float, float]]] = defaultdict(list)  # name -> [(time.monotonic() at end, value)]
_lock = threading.Lock()


def record(name: str, value: float) -> None:
    with _lock:
        SAMPLES[name].append((time.monotonic(), value))


def timed(name: str, fn):
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            record(name, time.perf_counter() - t0)
    wrapper.__wrapped__ = fn
    return wrapper


def install() -> None:
    dyndns2.handle_update = timed("req handle_update", dyndns2.handle_update)
    servmod.Service.authenticate = timed("req authenticate", servmod.Service.authenticate)
    servmod.Service.publish = timed("req publish (wait)", servmod.Service.publish)
    pubmod.Publisher.current = timed("req current", pubmod.Publisher.current)
    storemod.Store.record_updates = timed("flush record_updates", storemod.Store.record_updates)

    orig_apply = pubmod.Publisher.apply

    def apply(self, changes):
        record("pub batch size", len(changes))
        t0 = time.perf_counter()
        try:
            return orig_apply(self, changes)
        finally:
            record("pub apply", time.perf_counter() - t0)
    pubmod.Publisher.apply = apply
    zones.format_dynamic = timed("pub format", zones.format_dynamic)
    zones.render_zone = timed("pub render", zones.render_zone)
    worktree.atomic_write = timed("pub write", worktree.atomic_write)
    pubmod.Publisher.wait_served = timed("pub wait served", pubmod.Publisher.wait_served)
    bind.Rndc.reload = timed("pub rndc reload", bind.Rndc.reload)

    orig_init = gitrepo.ZonesRepo.__init__

    def repo_init(self, path):
        orig_init(self, path)
        git = self._git

        class Proxy:
            def __getattr__(_, name):
                attr = getattr(git, name)
                if name in ("add", "commit", "rev_parse"):
                    return timed("pub git " + name.replace("_", "-"), attr)
                return attr
        self._git = Proxy()
    gitrepo.ZonesRepo.__init__ = repo_init


def main() -> int:
    out = Path(sys.argv[1])
    install()
    try:
        return cli.main(sys.argv[2:])
    finally:
        with _lock:
            out.write_text(json.dumps(SAMPLES))


if __name__ == "__main__":
    sys.exit(main())
