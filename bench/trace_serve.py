#!/usr/bin/env python3
"""``ddns serve`` with per-stage timers, for bench_updates.py --trace.

Usage: python3 bench/trace_serve.py OUT.json -c CONFIG serve

Samples carry time.monotonic() (system-wide on Linux), so the bench can
split them by phase. Wraps (in this process only; the service code is unchanged) the functions an
update passes through as serve runs them (PublisherThread: Publisher.commit under the lock, then
wait_served and the answers in a watcher thread) and, when serve stops, writes every sample to OUT.json:

  request thread:  handle_update (whole dyndns2 handling), authenticate,
                   nochg check (Updates._from_snapshot, per update, on either path),
                   service.publish (queue wait + group publish), store.record_updates
                   (batched SQLite write)
  HTTP loop:       loop nochg (Service.unchanged_now: the whole memory decision of a
                   nochg the loop thread may answer; a nochg answered there passes
                   through none of the request thread's wrappers)
  publisher, one sample per group unless said:
                   batch size; apply (deciding the group's updates); format (a shard's
                   text made whole) and splice (its changed lines put into its last
                   text), per shard; render (per zone); write (per file written alone); files
                   (the group's files written and renamed); git commit (with
                   the first zone's update sent under the branch's lock, before it
                   moves); zone change (the diff handed to named, per zone); named
                   message (building the RFC 2136 update); named publish (per zone:
                   named's answer to the update sent ahead, or a later zone's
                   update and answer, or a full load); rndc reload (per full
                   load); group under the lock (all of the above) and group
                   CPU (the publisher thread's CPU time under the lock:
                   under a loaded machine the wall time also counts waiting for a core);
                   wait served; answer (wait served returned -> every waiter
                   woken); group total (commit start -> answered)
  any thread:      gc gen0/1/2 (each cyclic garbage collection, by generation)
"""
from __future__ import annotations

import gc
import json
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddns import cli, dyndns2, gitrepo, service as servmod, shards, store as storemod, updates as updmod, zones  # noqa: E402
from ddns.publishing import (bindtarget, committer, incremental, publish_queue, publisher as pubmod,  # noqa: E402
                             worktree)

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
    updmod.Updates._from_snapshot = timed("req nochg check", updmod.Updates._from_snapshot)
    servmod.Service.unchanged_now = timed("loop nochg", servmod.Service.unchanged_now)
    storemod.Store.record_updates = timed("flush record_updates", storemod.Store.record_updates)

    shards.format_shard = timed("pub format", shards.format_shard)
    shards.splice_shard = timed("pub splice", shards.splice_shard)
    zones.render_zone = timed("pub render", zones.render_zone)
    worktree.atomic_write = timed("pub write", worktree.atomic_write)
    worktree.Replacement.together = timed_context("pub files", worktree.Replacement.together)
    committer.zone_change = timed("pub zone change", committer.zone_change)
    incremental.update_message = timed("pub named message", incremental.update_message)
    gitrepo.ZonesRepo.commit = timed("pub git commit", gitrepo.ZonesRepo.commit)
    bindtarget.BindTarget.reload = timed("pub rndc reload", bindtarget.BindTarget.reload)
    bindtarget.BindTarget.publish = timed("pub named publish", bindtarget.BindTarget.publish)
    pubmod.Publisher.wait_served = timed("pub wait served", pubmod.Publisher.wait_served)
    install_group_stages()
    gc.callbacks.append(_gc_timer)


_gc_started: dict[int, float] = {}


def _gc_timer(phase: str, info: dict) -> None:
    """Each collection's pause, by generation (callbacks run in the collecting thread, under the GIL)."""
    if phase == "start":
        _gc_started[threading.get_ident()] = time.perf_counter()
    elif (t0 := _gc_started.pop(threading.get_ident(), None)) is not None:
        record(f"gc gen{info['generation']}", time.perf_counter() - t0)


def timed_context(name: str, fn):
    """Like ``timed`` for a context manager: from entering it to leaving it."""
    @contextmanager
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            with fn(*a, **kw) as value:
                yield value
        finally:
            record(name, time.perf_counter() - t0)
    wrapper.__wrapped__ = fn
    return wrapper


_group = threading.local()  # the publisher thread's group in progress: time spent deciding


def install_group_stages() -> None:
    """apply (the decide loop, summed per group), the group under the lock, the answer, the group total."""
    orig_decide, orig_commit = committer.Committer._decide, pubmod.Publisher.commit
    orig_settle, orig_wait = publish_queue.PublisherThread._settle, pubmod.Publisher.wait_served

    def decide(self, update, *rest):
        t0 = time.perf_counter()
        try:
            return orig_decide(self, update, *rest)
        finally:
            _group.apply = getattr(_group, "apply", 0.0) + time.perf_counter() - t0

    def commit(self, updates):
        record("pub batch size", len(updates))
        _group.apply, t0, cpu0 = 0.0, time.perf_counter(), time.thread_time()
        try:
            batch = orig_commit(self, updates)
        finally:
            record("pub apply", _group.apply)
            record("pub group under lock", time.perf_counter() - t0)
            record("pub group CPU", time.thread_time() - cpu0)
        batch.trace_started = t0
        return batch

    def wait_served(self, *a, **kw):
        try:
            return orig_wait(self, *a, **kw)
        finally:
            _group.waited = time.perf_counter()

    def settle(self, batch, committed, served=None):
        _group.waited = None
        if served is not None:  # named took the group's updates: answered with no wait
            record("pub wait served", 0.0)
            _group.waited = time.perf_counter()
        try:
            return orig_settle(self, batch, committed, served)
        finally:
            now = time.perf_counter()
            if _group.waited is not None:
                record("pub answer", now - _group.waited)
            if hasattr(committed, "trace_started"):
                record("pub group total", now - committed.trace_started)

    committer.Committer._decide = decide
    pubmod.Publisher.commit = commit
    pubmod.Publisher.wait_served = wait_served
    publish_queue.PublisherThread._settle = settle


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
