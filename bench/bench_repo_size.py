#!/usr/bin/env python3
"""How big the zones repository gets under constant updates.

Publishes N single-record changes (one commit each: the worst case, no group
commit) to a zone of H hosts through the real publisher and real git (no
named: reload and verification are off), pushing to a bare upstream every
--push-every commits as the running service does. Reports the size of the
working repository's .git and of the bare upstream, as the housekeeping (ZonesRepo.maintain, run at
each push here) leaves them, and after an explicit `git gc`.

Usage: python3 bench/bench_repo_size.py [--updates 10000] [--hosts 1000] [--push-every 50]
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

from ddns import cli  # noqa: E402
from ddns.publishing.bindtarget import PublishTarget  # noqa: E402
from ddns.model import Actor, Operation, Update  # noqa: E402
from ddns.publishing.publisher import Publisher  # noqa: E402
from ddns.service import ZONE_TEMPLATES  # noqa: E402
from ddns.gitrepo import ZonesRepo  # noqa: E402


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def count_objects(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "count-objects", "-v"], capture_output=True, text=True).stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=10000)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--push-every", type=int, default=50)
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="ddns-reposize-") as tmp:
        directory = Path(tmp) / "inst"
        cfg = cli.init_instance(directory, 1, 2, 3, extra={"security.bcrypt_rounds": 4, "zones.git_fsync": False})
        zone = "dyn.example.test"
        repo = ZonesRepo(cfg.path("zones.repo"))
        bare = Path(cfg.upstream)
        publisher = Publisher(repo, [ZONE_TEMPLATES], PublishTarget(rndc=None), fsync=False)
        publisher.load()
        actor = Actor("bench", interface="bench")
        publisher.apply([Update(zone, tuple(Operation.replace(f"h{i:05d}.{zone}", "A", [f"10.0.{i // 256 % 256}.{i % 256}"])),
                                actor=actor) for i in range(args.hosts)])
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
        zone_file = (directory / "zones" / zone / f"{zone}.zone").stat().st_size
        mib = 2**20
        print(f"| {args.updates:,} single-record commits to a {args.hosts:,}-host zone ({zone_file / 1024:.0f} KiB file) | working .git | bare upstream |")
        print("|---|---|---|")
        print(f"| before | {start_git / mib:.1f} MiB | {start_bare / mib:.1f} MiB |")
        print(f"| after, as gc --auto left it | {auto_git / mib:.1f} MiB | {auto_bare / mib:.1f} MiB |")
        print(f"| after `git gc` | {gc_git / mib:.1f} MiB | {gc_bare / mib:.1f} MiB |")
        print(f"\n{args.updates / elapsed:.0f} commits/s without named; loose objects after gc --auto:\n")
        print(count_objects(directory / "zones"))


if __name__ == "__main__":
    main()
