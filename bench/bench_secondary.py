#!/usr/bin/env python3
"""Update -> served on a secondary: how long after ``good`` a BIND secondary of the hidden primary answers it.

Per run: an instance (``ddns init``, SQLite, one process) with N hosts in one
zone and the catalog zone on, ``ddns serve`` as its own process notifying a
second ``named`` configured only from ``ddns secondary config`` (loopback,
high ports, a temp directory). Then ``--samples`` updates, one at a time, to
distinct hosts over dyndns2 (``/nic/update``, keep-alive); per update the
secondary is polled every 0.5 ms from the moment ``good`` arrives until it
serves the new address:

  answer     request sent -> ``good`` (what a client waits for)
  secondary  ``good`` -> the secondary serves it (NOTIFY, SOA query, IXFR)
  total      request sent -> the secondary serves it

Prints a Markdown table (p50 / p95 / max per run and mode) with the load
average at start and end. Every process started is stopped at the end;
loopback only.

    python3 bench/bench_secondary.py [--hosts 1000] [--samples 300] [--runs 3] [--modes incremental,reload]
"""
from __future__ import annotations

import argparse
import os
import sys
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench_updates import (REPO, Addresses, Bench, Client, create_instance, free_port, log, ms, pct,  # noqa: E402
                           start_serve, stop_serve, wait_served)

from ddns import bind  # noqa: E402
from testkit.secondary import SecondaryNamed  # noqa: E402

CATALOG = "catalog.ddns.invalid"


def start_secondary(bench: Bench, directory: Path, port: int) -> SecondaryNamed:
    """The instance's secondary, its named.conf printed by ``ddns secondary config`` (a process of its own)."""
    secondary = SecondaryNamed(directory, port)
    with open(secondary.conf, "w") as out:
        subprocess.run([sys.executable, "-m", "ddns.cli", "-c", str(bench.config_path), "secondary", "config",
                        "--listen", "127.0.0.1", "--port", str(port), "--dir", str(directory)],
                       stdout=out, check=True, cwd=str(REPO))
    return secondary.start()


def one_run(workdir: Path, hosts: int, samples: int, mode: str) -> dict:
    """One instance, its secondary, SAMPLES updates; the three timings' percentiles (ms)."""
    bench = Bench(workdir / "instance", hosts)
    addresses = Addresses()
    secondary_port = free_port()
    create_instance(bench, addresses, 4, {"bind.catalog_zone": CATALOG, "bind.publish": mode,
                                          "bind.also_notify": [f"127.0.0.1 port {secondary_port}"]})
    secondary = None
    try:
        start_serve(bench)
        secondary = start_secondary(bench, workdir / "secondary", secondary_port)
        serial = bind.served_serial("bench.example.test", "127.0.0.1", bench.dns_port)
        secondary.wait_serving("bench.example.test", serial)
        client = Client(bench.http_port)
        client.connect()
        answer, second, total, lost = [], [], [], 0
        for k in range(samples):
            i = k % hosts
            address = addresses.next()
            t0 = time.perf_counter()
            body = client.update(bench.fqdn(i), bench.secrets[i], address)
            t1 = time.perf_counter()
            if not body.startswith("good"):
                raise RuntimeError(f"update {k} answered {body!r}")
            seen, _ = wait_served(secondary.port, bench.fqdn(i), address, t1 + 10.0)
            if seen is None:
                lost += 1
                continue
            answer.append(t1 - t0)
            second.append(seen - t1)
            total.append(seen - t0)
        client.close()
        return {"mode": mode, "hosts": hosts, "samples": samples, "not_served_in_10s": lost,
                **{f"{name}_{p}": ms(pct(values, p)) for name, values in
                   (("answer", answer), ("secondary", second), ("total", total)) for p in (50, 95)},
                "secondary_max": ms(max(second, default=None))}
    finally:
        if secondary is not None:
            secondary.stop()
        stop_serve(bench)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="incremental,reload")
    parser.add_argument("--keep", action="store_true", help="keep the temp directories")
    args = parser.parse_args()
    load_start = os.getloadavg()
    rows = []
    for mode in args.modes.split(","):
        for run in range(args.runs):
            workdir = Path(tempfile.mkdtemp(prefix=f"ddns-bench-secondary-{mode}-"))
            try:
                log(f"run {run + 1}/{args.runs} ({mode}) in {workdir}")
                rows.append(one_run(workdir, args.hosts, args.samples, mode))
                log(str(rows[-1]))
            finally:
                if not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
    load_end = os.getloadavg()
    print("| mode | run | answer p50 / p95 | good -> secondary p50 / p95 / max | request -> secondary p50 / p95 |")
    print("|---|---|---|---|---|")
    for n, row in enumerate(rows):
        print(f"| {row['mode']} | {n % args.runs + 1} | {row['answer_50']} / {row['answer_95']} ms "
              f"| {row['secondary_50']} / {row['secondary_95']} / {row['secondary_max']} ms "
              f"| {row['total_50']} / {row['total_95']} ms |")
    print(f"\n{args.hosts} hosts, {args.samples} sequential updates a run, SQLite, one serve process; "
          f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
          f"not served within 10 s: {sum(r['not_served_in_10s'] for r in rows)}")


if __name__ == "__main__":
    main()
