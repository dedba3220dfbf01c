#!/usr/bin/env python3
"""Where one service commit's time goes: ``git commit --only`` against the in-process commit.

Builds a zones repository as ``ddns init`` makes it (``ZonesRepo.init``: fsync
on or off) with one zone of N records in 256 shards, then times, for
``--commits`` commits each touching the head and one shard as the publisher
does:

  git-version   starting a git process that does nothing (``git version``)
  git-status    ``git status --porcelain`` (index refresh, no write)
  cli-commit    ``git commit -q --no-verify --only -- HEAD_FILE SHARD`` (today's commit)
  inproc        ``ZonesRepo.commit`` (the in-process commit, libgit2)

and with ``--trace2`` one CLI commit's GIT_TRACE2_PERF regions. Prints
wall median and p90 and the CPU median (this process and its children) in
milliseconds: on a busy machine the CPU column is the one to compare. fsync's own cost is what ``--fsync on`` adds
over ``--fsync off``. Everything is local files; nothing is left behind.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddns.gitrepo import ZonesRepo  # noqa: E402

ZONE = "bench.example.test"
SHARDS = 256


def build(root: Path, records: int, fsync: bool) -> ZonesRepo:
    """A zones repository with one zone of RECORDS records in SHARDS shard files, committed."""
    repo = ZonesRepo.init(root, fsync=fsync)
    shard_dir = root / ZONE / "dynamic"
    shard_dir.mkdir(parents=True)
    lines: dict[int, list[str]] = {}
    for i in range(records):
        lines.setdefault(i % SHARDS, []).append(f"h{i:06d} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n")
    for index, text in lines.items():
        (shard_dir / f"{index:02x}.records").write_text("".join(text))
    (root / ZONE / f"{ZONE}.zone").write_text(head(1))
    (root / ZONE / "zone.toml").write_text("")
    repo.commit(["."], "Start\n")
    return repo


def head(serial: int) -> str:
    includes = "".join(f"$INCLUDE dynamic/{i:02x}.records\n" for i in range(SHARDS))
    return f"@ 3600 IN SOA ns1 hostmaster {serial} 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\n{includes}"


def touch(root: Path, n: int) -> list[str]:
    """Change the head's serial and one shard's first line, as one update does."""
    shard = f"{ZONE}/dynamic/{n % SHARDS:02x}.records"
    path = root / shard
    text = path.read_text().split("\n", 1)
    path.write_text(f"{text[0].split(' ')[0]} A 10.255.{n >> 8 & 255}.{n & 255}\n{text[1]}")
    (root / ZONE / f"{ZONE}.zone").write_text(head(n + 2))
    return [f"{ZONE}/{ZONE}.zone", shard]


def cpu() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each of RUNS calls of FN."""
    wall, used = [], []
    for n in range(runs):
        started, cpu_started = time.perf_counter(), cpu()
        fn(n)
        wall.append((time.perf_counter() - started) * 1000)
        used.append((cpu() - cpu_started) * 1000)
    return wall, used


def report(name: str, measured: tuple[list[float], list[float]]) -> None:
    wall, used = sorted(measured[0]), measured[1]
    print(f"| {name} | {statistics.median(wall):.2f} | {wall[int(len(wall) * 0.9)]:.2f} | {statistics.median(used):.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--commits", type=int, default=100)
    p.add_argument("--fsync", choices=("on", "off"), default="on")
    p.add_argument("--trace2", action="store_true", help="print one CLI commit's GIT_TRACE2_PERF regions")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddns-gitcommit-") as tmp:
        root = Path(tmp) / "zones"
        repo = build(root, args.records, args.fsync == "on")
        git = ["git", "-c", "maintenance.auto=false", "-c", "gc.auto=0"]
        run = lambda *cmd, **kw: subprocess.run([*git, *cmd], cwd=root, check=True, capture_output=True, **kw)  # noqa: E731
        print(f"{args.records} records, fsync {args.fsync}, {args.commits} commits each")
        print(f"load average {os.getloadavg()}")
        print("| step | wall median ms | wall p90 ms | CPU median ms |\n|---|---|---|---|")
        report("git-version", timed(lambda n: run("version"), args.commits))
        report("git-status", timed(lambda n: run("status", "--porcelain"), args.commits))

        def cli(n: int) -> None:
            paths = touch(root, n)
            run("commit", "-q", "--no-verify", "-m", f"change {n}", "--only", "--", *paths)
        report("cli-commit", timed(cli, args.commits))

        def inproc(n: int) -> None:
            paths = touch(root, n + 10_000)
            repo.commit(paths, f"change {n}\n", author="bench")
        report("inproc", timed(inproc, args.commits))
        if args.trace2:
            paths = touch(root, 99_999)
            env = {**os.environ, "GIT_TRACE2_PERF": str(Path(tmp) / "trace2")}
            run("commit", "-q", "--no-verify", "-m", "traced", "--only", "--", *paths, env=env)
            print((Path(tmp) / "trace2").read_text())


if __name__ == "__main__":
    main()
