#!/usr/bin/env python3
"""How big the zones repository gets under constant updates.

Publishes N single-record changes (one commit each: the worst case, no group
commit) to a zone of H hosts through the real publisher and real git (no
named: reload and verification are off), pushing to a bare upstream every
--push-every commits as the running service does. Reports the size of the
working repository's .git and of the bare upstream, as the housekeeping (ZonesRepo.maintain, run at
each push here) leaves them, and after an explicit `git gc`; the last line is
issue 11's row (goal: at most 50 MB packed after 10,000 updates to 100k records).

The zone is set up in one group commit (all hosts in one commit), then each
update is its own commit: it rewrites the head and one shard (ddns.shards).

Usage: python3 bench/bench_repo_size.py [--updates 10000] [--hosts 100000] [--push-every 50] [--shards 256]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddns import cli, shards  # noqa: E402
from ddns.publishing.committer import rewrite_zone  # noqa: E402
from ddns.publishing.worktree import Replacement  # noqa: E402
from ddns.records import RecordSet  # noqa: E402
from ddns.publishing.bindtarget import PublishTarget  # noqa: E402
from ddns.model import Actor, Operation, Update  # noqa: E402
from ddns.publishing.publisher import Publisher  # noqa: E402
from ddns.wiring import ZONE_TEMPLATES  # noqa: E402
from ddns.gitrepo import ZonesRepo  # noqa: E402


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def count_objects(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "count-objects", "-v"], capture_output=True, text=True).stdout


def bulk_setup(publisher: Publisher, zone: str, hosts: int) -> None:
    """HOSTS records written as the publisher writes them, in one commit with a short message (a group
    commit of that size would carry one audit trailer per host)."""
    records = {(f"h{i:05d}", "A"): RecordSet((f"10.0.{i // 256 % 256}.{i % 256}",)) for i in range(hosts)}
    with publisher.locked():
        state = publisher.cache.zones[zone]
        found = shards.ShardedRecords.of(records, publisher.reader.shard_count)
        files = Replacement()
        paths = rewrite_zone(files, publisher.reader, zone, state, found, state.serial + 1)
        publisher.repo.commit(paths, f"Bench set-up: {hosts} hosts\n")
        files.done()
    publisher.load()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=10000)
    p.add_argument("--hosts", type=int, default=100000)
    p.add_argument("--push-every", type=int, default=50)
    p.add_argument("--shards", type=int, default=256)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="ddns-reposize-") as tmp:
        directory = Path(tmp) / "inst"
        cfg = cli.init_instance(directory, 1, 2, 3, extra={"security.bcrypt_rounds": 4, "zones.git_fsync": False})
        zone = "dyn.example.test"
        repo = ZonesRepo(cfg.path("zones.repo"))
        bare = Path(cfg.upstream)
        publisher = Publisher(repo, [ZONE_TEMPLATES], PublishTarget(rndc=None), fsync=False, shard_count=args.shards)
        publisher.load()
        actor = Actor("bench", interface="bench")
        t_setup = time.perf_counter()
        bulk_setup(publisher, zone, args.hosts)
        print(f"set-up: {args.hosts:,} hosts in one commit, {time.perf_counter() - t_setup:.1f} s", file=sys.stderr)
        token = cfg["zones.push_token"]
        publisher.push("main", token)
        start_git, start_bare = du(directory / "zones" / ".git"), du(bare)
        t0 = time.perf_counter()
        for n in range(args.updates):
            i = n % args.hosts
            address = f"10.{1 + n // 65536 % 200}.{n // 256 % 256}.{n % 256}"
            publisher.apply([Update(zone, tuple(Operation.replace(f"h{i:05d}.{zone}", "A", [address])), actor=actor)])
            if (n + 1) % args.push_every == 0:
                publisher.push("main", token)
                repo.maintain()  # serve's housekeeper thread: the commits themselves never gc
            if (n + 1) % 1000 == 0:
                print(f"{n + 1} updates, .git {du(directory / 'zones' / '.git') / 2**20:.1f} MiB, "
                      f"bare {du(bare) / 2**20:.1f} MiB, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        publisher.push("main", token)
        elapsed = time.perf_counter() - t0
        auto_git, auto_bare = du(directory / "zones" / ".git"), du(bare)
        subprocess.run(["git", "-C", str(directory / "zones"), "gc", "-q"], check=True)
        subprocess.run(["git", "-C", str(bare), "gc", "-q"], check=True)
        gc_git, gc_bare = du(directory / "zones" / ".git"), du(bare)
        zone_dir = directory / "zones" / zone
        head_size = (zone_dir / f"{zone}.zone").stat().st_size
        shard_sizes = [p.stat().st_size for p in (zone_dir / "dynamic").glob("*.records")]
        flat_size = len(publisher._committed_text(zone).encode())
        mib = 2**20
        print(f"| {args.updates:,} single-record commits to a {args.hosts:,}-host zone ({flat_size / 1024:.0f} KiB "
              f"assembled: a {head_size / 1024:.1f} KiB head, {len(shard_sizes)} shards of "
              f"{min(shard_sizes) / 1024:.1f}-{max(shard_sizes) / 1024:.1f} KiB) | working .git | bare upstream |")
        print("|---|---|---|")
        print(f"| before | {start_git / mib:.1f} MiB | {start_bare / mib:.1f} MiB |")
        print(f"| after, as gc --auto left it | {auto_git / mib:.1f} MiB | {auto_bare / mib:.1f} MiB |")
        print(f"| after `git gc` | {gc_git / mib:.1f} MiB | {gc_bare / mib:.1f} MiB |")
        print(f"\n{args.updates / elapsed:.0f} commits/s without named; loose objects after gc --auto:\n")
        print(count_objects(directory / "zones"))
        print(f"| repository size after {args.updates:,} single-record updates to a {args.hosts:,}-record zone "
              f"| {auto_bare / 1e6:.1f} MB as gc --auto left it, {gc_bare / 1e6:.1f} MB packed (git gc) | <= 50 MB |")


if __name__ == "__main__":
    main()
