#!/usr/bin/env python3
"""Where the milliseconds of ONE publish go (Publisher.apply with one change).

Builds an instance per zone size (real named started directly, real git),
publishes N records, then applies --runs single-record changes and times
each stage by wrapping the functions Publisher.apply calls (no service code
is changed):

  format      shards.format_shard (a shard's text made whole)
  splice      shards.splice_shard (the changed labels' lines put into the shard's last text)
  render      Jinja render of the zone's head file
  write       the working tree's temp files (worktree._write_temp: a spare written over,
              or a new file; not fsynced: the commit's objects are; a full load's copy
              writes its temp file through it too)
  git commit  ZonesRepo.commit, in process: blobs, trees, commit, the zone's RFC 2136
              update sent to named under the branch lock, the fsyncs, the branch, the index
  git fsyncs  gitcommit.fsync_together inside it (the new objects and the branch lock, at once)
  named       BindTarget.publish: named's answer to the update sent ahead, or a full load
  copy        named's copy of the zone written (bindtarget's atomic_write: temp file, fsync
              with zones.git_fsync, rename) -- full loads only, part of named
  rndc reload the control-channel command (ddns.rndc, no process) -- full loads only
  verify      Publisher.wait_served (returns at once when named took the update; after a
              full load it polls the served serial, re-asks named to reload)
  served      when named really served the serial after a full load, found by a close poll
              (every 0.2 ms) of a separate thread started right after rndc returns
  late        verify - served: how long the answer left after named served
  cpu         CPU time of the publishing thread (time.thread_time);
              "of which waiting for named": its CPU inside wait_served (the serial polls)

With --group N it applies --runs groups of N changes to distinct hosts
instead (what a burst's group is: ~20-25 changes), with incremental
publishing as ``ddns serve`` has it, and reports per stage the publishing
thread's CPU time (time.thread_time) per group and per update; stages nest
(indented ones are part of the one above); --shards sets zones.shards:

  decide        Committer._decide for every update of the group (records.apply)
  sharded       the group's records as the new ShardedRecords (only the touched shards copied)
  files         writing the head and the shards: render, format (a shard's
                text made whole) or splice (the changed labels' lines put
                into its last text), the temp files (write temp: a spare written
                over, or a new file), backups (keep) and the renames (none
                of it fsynced: the commit's objects are)
  message       the commit message (summary lines, one trailer per change)
  git commit    the in-process commit (blobs, trees, commit, the fsyncs, branch, index); inside it,
                under the branch lock before the fsyncs, the first zone's RFC 2136 update built
                (build: a group of one zone has no other) and sent to named
  backups gone  Replacement.done: the kept previous versions moved to the spares
  zone change   the diff handed to named
  named         BindTarget.publish: named's answer to the update sent ahead (or a full load)

Usage: python3 bench/profile_publish.py [--hosts 1000,10000] [--runs 30] [--no-fsync] [--cprofile]
                                       [--group N [--shards COUNT]]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_updates import Addresses, ZONE, free_port  # noqa: E402
from ddns import bind, cli, gitcommit, gitrepo, shards, zones  # noqa: E402
from ddns.publishing import bindtarget, committer, incremental, publisher as pubmod, worktree, zonestate  # noqa: E402
from ddns.model import Actor, Operation, Outcome, Update  # noqa: E402
from ddns.service import Service  # noqa: E402

T: dict[str, list[float]] = defaultdict(list)
_cur: dict[str, float] = defaultdict(float)


def timed(name: str, fn, cpu: str | None = None):
    """FN, its wall time added to _cur[NAME] (and its thread's CPU time to _cur[CPU], when given)."""
    def wrapper(*a, **kw):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            _cur[name] += time.perf_counter() - t0
            if cpu:
                _cur[cpu] += time.thread_time() - c0
    return wrapper


class RndcProxy:
    def __init__(self, rndc, on_reload):
        self._rndc = rndc
        self._on_reload = on_reload

    def reload(self, zone, timeout=10.0):
        t0 = time.perf_counter()
        self._rndc.reload(zone, timeout=timeout)
        _cur["rndc reload"] += time.perf_counter() - t0
        self._on_reload(zone)

    def __getattr__(self, name):
        return getattr(self._rndc, name)


@contextmanager
def instance(n: int, fsync: bool, workdir: Path, extra: dict | None = None) -> Iterator[tuple]:
    """A fresh instance with its named started and N records published: (publisher, DNS port, addresses,
    actor, seconds the initial publish took); named is stopped at the end."""
    addresses = Addresses()
    directory = workdir / f"p-{n}"
    http_port, dns_port, rndc_port = free_port(), free_port(), free_port()
    cfg = cli.init_instance(directory, http_port, dns_port, rndc_port, zone=ZONE,
                            extra={"security.bcrypt_rounds": 4, "zones.git_fsync": fsync,
                                   "bind.verify_timeout": 30.0, **(extra or {})})  # a 100k zone on a loaded machine
    rndc = bind.Rndc("127.0.0.1", rndc_port, cfg.path("bind.rndc_key"))
    named = bind.ManagedNamed(cfg.path("bind.dir"), rndc)
    named.start()
    try:
        pub = Service.open(cfg).publisher
        pub.reconcile()
        t0 = time.perf_counter()
        actor = Actor("bench", interface="bench")
        outcomes = [r.outcome for r in pub.apply([
            Update(ZONE, tuple(Operation.replace(f"h{i:06d}.{ZONE}", "A", [addresses.next()])), actor=actor)
            for i in range(n)])]
        initial = time.perf_counter() - t0
        assert all(o == Outcome.PUBLISHED for o in outcomes), outcomes[:3]
        yield pub, dns_port, addresses, actor, initial
    finally:
        named.stop()


def profile_size(n: int, runs: int, fsync: bool, workdir: Path, use_cprofile: bool) -> dict:
    with instance(n, fsync, workdir) as (pub, dns_port, addresses, actor, initial):
        # wrap what _apply_locked calls
        served_at: dict[str, float] = {}

        def on_reload(zone):
            serial = pub.zones[zone].serial
            t_reload = time.perf_counter()

            def poll():
                deadline = t_reload + 5
                while time.perf_counter() < deadline:
                    if bind.served_serial(zone, "127.0.0.1", dns_port, timeout=0.5) == serial:
                        served_at["t"] = time.perf_counter() - t_reload
                        return
                    time.sleep(0.0002)
            th = threading.Thread(target=poll)
            th.start()
            served_at["thread"] = th

        pub.repo.commit = timed("git commit", pub.repo.commit)
        pub.named.settings.rndc = RndcProxy(pub.named.settings.rndc, on_reload)
        originals = [(obj, attr, getattr(obj, attr)) for _, obj, attr in SINGLE_STAGES]
        for (label, obj, attr), (_, _, fn) in zip(SINGLE_STAGES, originals):
            setattr(obj, attr, timed(label, fn, cpu="verify cpu" if label == "verify" else None))
        prof = cProfile.Profile() if use_cprofile else None
        try:
            for k in range(runs):
                _cur.clear()
                served_at.clear()
                change = Update(ZONE, tuple(Operation.replace(f"h{k % n:06d}.{ZONE}", "A", [addresses.next()])), actor=actor)
                t0, cpu0 = time.perf_counter(), time.thread_time()
                if prof:
                    prof.enable()
                out = [r.outcome for r in pub.apply([change])]
                if prof:
                    prof.disable()
                total = time.perf_counter() - t0
                T[f"{n}:cpu"].append(time.thread_time() - cpu0)
                assert out == [Outcome.PUBLISHED], out
                if "thread" in served_at:
                    served_at["thread"].join(6)
                for key, v in _cur.items():
                    T[f"{n}:{key}"].append(v)
                T[f"{n}:served"].append(served_at.get("t", float("nan")))
                T[f"{n}:late"].append(_cur["verify"] - served_at.get("t", float("nan")))
                T[f"{n}:total"].append(total)
                known = sum(v for key, v in _cur.items() if key not in NESTED)
                T[f"{n}:other"].append(total - known)
        finally:
            for obj, attr, fn in originals:
                setattr(obj, attr, fn)
        if prof:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
            print(f"--- cProfile of {runs} single-change publishes, {n} records ---\n{s.getvalue()}", file=sys.stderr)
        size = (pub.root / ZONE / f"{ZONE}.zone").stat().st_size
        committed = getattr(pub, "_committed_text", None)
        flat = len(committed(ZONE).encode()) if committed else size
        return {"initial_publish_s": initial, "zone_bytes": size, "flat_bytes": flat}


# single-change mode: (label, object, attribute) of each stage timed (see the module); the rndc reload is
# RndcProxy's. NESTED: stages inside another one (left out of "other").
SINGLE_STAGES = [
    ("format", shards, "format_shard"),
    ("splice", shards, "splice_shard"),
    ("render", zones, "render_zone"),
    ("write", worktree, "_write_temp"),
    ("git fsyncs", gitcommit, "fsync_together"),
    ("named", bindtarget.BindTarget, "publish"),
    ("copy", bindtarget, "atomic_write"),
    ("verify", pubmod.Publisher, "wait_served"),
]
NESTED = ("git fsyncs", "copy", "rndc reload", "verify cpu")


# --group: (label, object, attribute) of each stage timed; indented labels are part of the one above.
GROUP_STAGES = [
    ("decide", committer.Committer, "_decide"),
    ("sharded", zonestate.ZoneReader, "sharded"),
    ("files", worktree.Replacement, "together"),
    ("  render", zones, "render_zone"),
    ("  format", shards, "format_shard"),
    ("  splice", shards, "splice_shard"),
    ("  write temp", worktree, "_write_temp"),
    ("  keep", worktree.Replacement, "_keep"),
    ("message", committer, "commit_message"),
    ("git commit", gitrepo.ZonesRepo, "commit"),
    ("  build", incremental, "update_message"),
    ("backups gone", worktree.Replacement, "done"),
    ("zone change", committer, "zone_change"),
    ("named", bindtarget.BindTarget, "publish"),
]


def cpu_timed(label: str, fn, context: bool = False):
    """FN with its thread's CPU time added to _cur[LABEL], its wall time to _cur[LABEL wall] (CONTEXT: FN
    makes a context manager; its block counts)."""
    def add(c0: float, t0: float) -> None:
        _cur[label] += time.thread_time() - c0
        _cur[f"{label} wall"] += time.perf_counter() - t0

    if context:
        @contextmanager
        def managed(*a, **kw):
            c0, t0 = time.thread_time(), time.perf_counter()
            try:
                with fn(*a, **kw) as value:
                    yield value
            finally:
                add(c0, t0)
        return managed

    def wrapper(*a, **kw):
        c0, t0 = time.thread_time(), time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            add(c0, t0)
    return wrapper


def profile_groups(n: int, runs: int, group: int, fsync: bool, workdir: Path, use_cprofile: bool,
                   shard_count: int | None = None) -> dict:
    """RUNS groups of GROUP changes to distinct hosts, applied one after the other; CPU per stage in T.
    SHARD_COUNT: zones.shards (None: the default)."""
    extra = {"zones.shards": shard_count} if shard_count else None
    with instance(n, fsync, workdir, extra) as (pub, _, addresses, actor, initial):
        originals = [(obj, attr, getattr(obj, attr)) for _, obj, attr in GROUP_STAGES]
        for (label, obj, attr), (_, _, fn) in zip(GROUP_STAGES, originals):
            setattr(obj, attr, cpu_timed(label, fn, context=attr == "together"))
        prof = cProfile.Profile() if use_cprofile else None
        try:
            for k in range(runs):
                _cur.clear()
                changes = [Update(ZONE, tuple(Operation.replace(f"h{(k * group + j) % n:06d}.{ZONE}", "A",
                                                                [addresses.next()])), actor=actor)
                           for j in range(group)]
                t0, cpu0 = time.perf_counter(), time.thread_time()
                if prof:
                    prof.enable()
                out = [r.outcome for r in pub.apply(changes)]
                if prof:
                    prof.disable()
                T[f"{n}:group cpu"].append(time.thread_time() - cpu0)
                T[f"{n}:group cpu wall"].append(time.perf_counter() - t0)
                assert out == [Outcome.PUBLISHED] * group, out[:3]
                for label, _, _ in GROUP_STAGES:
                    T[f"{n}:{label}"].append(_cur[label])
                    T[f"{n}:{label} wall"].append(_cur[f"{label} wall"])
        finally:
            for obj, attr, fn in originals:
                setattr(obj, attr, fn)
        if prof:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(40)
            print(f"--- cProfile of {runs} groups of {group}, {n} records ---\n{s.getvalue()}", file=sys.stderr)
        return {"initial_publish_s": initial}


def print_groups(sizes: list[int], runs: int, group: int, fsync: bool, load_start: float) -> None:
    print(f"Median ms per group of {group} changes, {runs} groups: the publishing thread's CPU, per group / per "
          f"change, and the wall time per group (fsync {'on' if fsync else 'off'}; "
          f"load average {load_start:.2f} -> {os.getloadavg()[0]:.2f}):\n")
    print("| stage | " + " | ".join(f"{n:,} records: CPU / per change / wall" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for label in ["group cpu", *(label for label, _, _ in GROUP_STAGES)]:
        cells = []
        for n in sizes:
            cpu, wall = statistics.median(T[f"{n}:{label}"]) * 1000, statistics.median(T[f"{n}:{label} wall"]) * 1000
            cells.append(f"{cpu:.2f} / {cpu / group:.3f} / {wall:.1f}")
        print(f"| {'**all of the group**' if label == 'group cpu' else label} | " + " | ".join(cells) + " |")


STAGES = ["format", "splice", "render", "write", "git commit", "git fsyncs", "named", "copy",
          "rndc reload", "verify", "served", "late", "other", "total", "cpu", "verify cpu"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", default="1000,10000")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--no-fsync", action="store_true", help="zones.git_fsync=false (no fsync of git objects or named's copies)")
    p.add_argument("--cprofile", action="store_true", help="also print a cProfile of the publishes (to stderr)")
    p.add_argument("--group", type=int, default=1, help="changes per publish (>1: the group profile, see above)")
    p.add_argument("--shards", type=int, default=None, help="zones.shards for the group profile (default: the setting's)")
    args = p.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    load_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="ddns-profile-"))
    meta = {}
    try:
        for n in sizes:
            if args.group > 1:
                meta[n] = profile_groups(n, args.runs, args.group, not args.no_fsync, workdir, args.cprofile, args.shards)
            else:
                meta[n] = profile_size(n, args.runs, not args.no_fsync, workdir, args.cprofile)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.group > 1:
        print_groups(sizes, args.runs, args.group, not args.no_fsync, load_start)
        return 0
    print(f"Median ms per single-change publish over {args.runs} runs "
          f"(fsync {'off' if args.no_fsync else 'on'}; load average {load_start:.2f} -> {os.getloadavg()[0]:.2f}):\n")
    print("| stage | " + " | ".join(f"{n:,} records" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for stage in STAGES:
        cells = []
        for n in sizes:
            v = [x for x in T.get(f"{n}:{stage}", []) if x == x]
            cells.append(f"{statistics.median(v) * 1000:.1f}" if v else "-")
        label = {"write": "write (working tree, not fsynced)", "git fsyncs": "  of which fsyncs",
                 "copy": "  of which named's copy (full loads)", "rndc reload": "  of which rndc reload",
                 "served": "(named served after rndc)",
                 "late": "answer after named served",
                 "other": "other (python)", "cpu": "publisher CPU (its thread)",
                 "verify cpu": "  of which waiting for named (polls)"}.get(stage, stage)
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| zone file size (KiB) | " + " | ".join(f"{meta[n]['zone_bytes'] / 1024:.0f}" for n in sizes) + " |")
    print("| zone assembled (KiB) | " + " | ".join(f"{meta[n]['flat_bytes'] / 1024:.0f}" for n in sizes) + " |")
    print("| initial publish of N records (ms) | " + " | ".join(f"{meta[n]['initial_publish_s'] * 1000:.0f}" for n in sizes) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
