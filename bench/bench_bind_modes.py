#!/usr/bin/env python3
"""The BIND stage alone: how long ``BindTarget`` takes to have named serve one commit, per mode and zone size.

Per zone size N a private named (loopback, high ports) serves a zone of N A
records from its copy, with the publisher key and ``update-policy``. Each
sample is one commit's change of one host, handed to ``BindTarget`` as the
publisher does (``publish`` then ``wait_served``), timed until named serves
it (checked with a query of the host afterwards, outside the timing):

  incremental  one TSIG-signed RFC 2136 update on the kept-open connection;
  reload       the copy rewritten from the committed text and ``rndc reload``,
               the served serial polled.

No Git, no rendering, no HTTP: what remains of an update's latency in named
and in the BIND side of the publisher. Prints a Markdown table (p50 / p95 per
mode and size over ``--samples``) with the load average. Loopback only; every
process started is stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddns import bind  # noqa: E402
from ddns.publishing.bindtarget import BindTarget, PublishTarget  # noqa: E402
from ddns.publishing.zonechange import RRsetChange, ZoneChange  # noqa: E402
from ddns.records import RecordSet  # noqa: E402

ZONE = "bench.example.test"
SOA = f"ns1.{ZONE}. hostmaster.{ZONE}. {{serial}} 3600 600 86400 60"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def address(i: int, k: int) -> str:
    return f"10.{(k >> 8) & 255}.{k & 255}.{i % 250 + 1}"


class Zone:
    """The committed zone: N hosts, their current addresses and the serial; its text as one file."""

    def __init__(self, n: int):
        self.n = n
        self.serial = 1000
        self.current = {i: address(i, 0) for i in range(n)}

    def text(self) -> str:
        lines = [f"$ORIGIN {ZONE}.", "$TTL 3600", f"@ IN SOA {SOA.format(serial=self.serial)}", "@ IN NS ns1",
                 "ns1 IN A 127.0.0.1"]
        lines += [f"h{i} 60 IN A {a}" for i, a in self.current.items()]
        return "\n".join(lines) + "\n"

    def change(self, i: int, new: str) -> ZoneChange:
        old = self.current[i]
        self.current[i] = new
        self.serial += 1
        return ZoneChange(ZONE, self.serial, SOA.format(serial=self.serial), 3600,
                          (RRsetChange(f"h{i}.{ZONE}", "A", RecordSet((old,)), RecordSet((new,)), 60),))


def run(n: int, mode: str, samples: int, workdir: Path) -> list[float]:
    d = workdir / f"{mode}-{n}"
    copies = d / "zones"
    copies.mkdir(parents=True)
    key = bind.create_publisher_key(d / "publisher.key")
    bind.create_rndc_key(d)
    port, rndc_port = free_port(), free_port()
    zone = Zone(n)
    (copies / f"{ZONE}.zone").write_text(zone.text())
    (d / "zones.conf").write_text(bind.zones_conf({ZONE: copies / f"{ZONE}.zone"},
                                                  update_key="ddns-publisher" if mode == "incremental" else None))
    (d / "named.conf").write_text(bind.named_conf(d, d / "zones.conf", "127.0.0.1", port, rndc_port, key))
    rndc = bind.Rndc("127.0.0.1", rndc_port, d / "rndc.key")
    target = BindTarget(PublishTarget(rndc=rndc, dns_port=port, verify_timeout=10.0, zone_dir=copies, mode=mode,
                                      update_key=key, fsync=False),
                        newest=lambda z: zone.serial, on_error=lambda m: None, committed=lambda z: zone.text())
    times = []
    with bind.ManagedNamed(d, rndc):
        deadline = time.monotonic() + 60
        while bind.served_serial(ZONE, "127.0.0.1", port) != zone.serial:
            if time.monotonic() > deadline:
                raise RuntimeError(f"named does not serve {ZONE}")
            time.sleep(0.05)
        for k in range(1, samples + 1):
            i = k % n
            change = zone.change(i, address(i, k))
            start = time.perf_counter()
            if not target.publish(change, target.deadline()) or ZONE not in target.wait_served({ZONE: change.serial}):
                raise RuntimeError(f"sample {k}: named did not serve serial {change.serial}")
            times.append((time.perf_counter() - start) * 1000)
            served = bind.served_records(f"h{i}.{ZONE}", "A", "127.0.0.1", port)
            if served != [change.changes[0].new.rdatas[0]]:
                raise RuntimeError(f"sample {k}: named serves {served} for h{i}")
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", default="1000,10000,100000", help="comma-separated zone sizes")
    p.add_argument("--samples", type=int, default=100, help="commits per mode and size")
    p.add_argument("--modes", default="incremental,reload")
    args = p.parse_args(argv)
    load_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="ddns-bind-modes-"))
    rows = []
    try:
        for n in [int(x) for x in args.hosts.split(",")]:
            for mode in args.modes.split(","):
                samples = args.samples if mode == "incremental" or n <= 10000 else max(5, args.samples // 10)
                t = sorted(run(n, mode, samples, workdir))
                rows.append(f"| {n:,} | {mode} | {samples} | {statistics.median(t):.2f} | {t[int(len(t) * 0.95) - 1]:.2f} | {t[-1]:.2f} |")
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("| records | mode | commits | publish -> served p50 (ms) | p95 | max |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average at start {[round(x, 2) for x in load_start]}, at end {[round(x, 2) for x in os.getloadavg()]}; "
          f"{os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
