#!/usr/bin/env python3
"""Update latency while idle and slow clients hold connections open (slowloris), against the real service.

Builds a fresh instance (real managed named, real git) in a temp dir, registers
one host, runs ``ddns serve`` in this process (testkit.instance's
``start_serving``) and, for each scenario IDLE/SLOW_HEADERS/SLOW_BODIES, opens
that many connections to it on loopback: idle ones send nothing, slow ones send
a header line or one body byte every --every seconds (testkit.hostile's
``Attack``). Meanwhile it times --samples legitimate updates (``nochg``, a fresh
connection each, Basic auth with a warm secret cache). Every loop is bounded;
everything talks to 127.0.0.1 and is closed at the end of its scenario.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.hostile import Attack, basic, exchange, get  # noqa: E402
from testkit.instance import Instance, free_port, start_serving  # noqa: E402
from ddns import cli  # noqa: E402

HOST = "vm.dyn.example.test"  # the one host the scenarios update


def update_ms(port: int, secret: str) -> float:
    """One update on a fresh connection, in ms (a failed or missing answer counts as its time, and is reported)."""
    started = time.perf_counter()
    try:
        answer = exchange(port, get(b"/nic/update?myip=192.0.2.10", b"Authorization: " + basic(HOST, secret)),
                          timeout=30)
        ok = answer.body == b"nochg 192.0.2.10\n"
    except OSError:
        ok = False
    ms = (time.perf_counter() - started) * 1000
    if not ok:
        print(f"  update failed after {ms:.0f} ms", file=sys.stderr)
    return ms


def scenario(port: int, secret: str, counts: tuple[int, int, int], samples: int, every: float) -> list[float]:
    idle, slow_headers, slow_bodies = counts
    with Attack(port, idle, slow_headers, slow_bodies, every=every, rounds=int(600 / every)):
        time.sleep(min(1.0, every))  # let the slow ones start dripping
        return [update_ms(port, secret) for _ in range(samples)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="0/0/0,200/0/0,0/70/0,0/0/70,300/100/64,500/200/100",
                        help="comma-separated IDLE/SLOW_HEADERS/SLOW_BODIES connection counts")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between a slow client's drips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddns-bench-slowloris-") as tmp:
        directory = Path(tmp) / "inst"
        instance = Instance(directory, directory / "ddns.toml", free_port(), free_port(), free_port())
        cli.init_instance(directory, instance.http_port, instance.dns_port, instance.rndc_port,
                          extra={"security.bcrypt_rounds": 4, "zones.git_fsync": False})
        secret = instance.add_host(HOST)
        running = start_serving(instance)
        try:
            assert running.update(HOST, secret, "myip=192.0.2.10")[0] == 200
            load = os.getloadavg()[0]
            print("| idle / slow headers / slow bodies | p50 ms | p95 ms | max ms |")
            print("|---|---|---|---|")
            for text in args.scenarios.split(","):
                counts = tuple(int(n) for n in text.split("/"))
                ms = sorted(scenario(instance.http_port, secret, counts, args.samples, args.every))
                p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
                print(f"| {text} | {statistics.median(ms):.1f} | {p95:.1f} | {ms[-1]:.1f} |", flush=True)
            print(f"\nload average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end")
        finally:
            running.stop.set()
            running.thread.join(60)


if __name__ == "__main__":
    main()
