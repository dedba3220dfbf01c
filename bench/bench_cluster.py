#!/usr/bin/env python3
"""Benchmark of a cluster on one machine: two web nodes, two publisher nodes, PostgreSQL, a bare upstream.

Each run builds a fresh cluster in a temp dir (the nodes are real ``ddns
serve --role`` processes, each publisher with its managed named; a
PostgreSQL started with initdb + pg_ctl on a loopback port) and measures
from client threads:

  latency   sequential dyndns2 updates through the web nodes (alternating),
            each to a new address: until the HTTP answer, and until the
            active publisher's named answers the new address
  burst     B updates to B distinct hosts from C keep-alive clients, half
            through each web node: throughput, answers, commits
  failover  SIGKILL of the active publisher, then updates sent at once
            through a web node: time from the kill to the first ``good``,
            and until the standby's /healthz says active

Everything talks to 127.0.0.1 only; every loop is bounded; every process is
stopped at the end. See bench/README.md.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import ipaddress
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.cluster import ZONE, make_node, make_seed, upstream_trailers  # noqa: E402
from testkit.instance import Instance  # noqa: E402
from testkit.pgserver import start_postgres, stop_postgres  # noqa: E402



def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Client:
    """One keep-alive HTTP connection to a web node."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def update(self, fqdn: str, secret: str, address: str) -> str:
        auth = base64.b64encode(f"{fqdn}:{secret}".encode()).decode()
        try:
            self.conn.request("GET", f"/nic/update?hostname={fqdn}&myip={address}",
                              headers={"Authorization": "Basic " + auth})
            return self.conn.getresponse().read().decode().strip()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            return f"error {exc}"


def _seed(directory: Path, url: str, hosts: int) -> tuple[Instance, list[tuple[str, str]]]:
    seed = make_seed(directory, url)
    service = seed.open_service()
    service.accounts.add_user("bench")
    return seed, [(f"b{i}.{ZONE}", service.add_host(f"b{i}.{ZONE}", "bench")[1]) for i in range(hosts)]


def _address(n: int) -> str:
    """A distinct private address per N (dyndns2.allow_private is on by default)."""
    return str(ipaddress.IPv4Address(0x0A000000 + n + 1))


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def run_once(workdir: Path, burst: int, clients: int, latency_n: int) -> dict:
    pg = start_postgres()
    nodes = {}
    try:
        url = pg.create_database()
        seed, hosts = _seed(workdir / "seed", url, max(burst, latency_n))
        for name, role in (("pub1", "publisher"), ("pub2", "publisher"), ("web1", "web"), ("web2", "web")):
            nodes[name] = make_node(seed, url, name, role, 4711)
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            node.wait_up()
        _wait(lambda: any(nodes[n].active() for n in ("pub1", "pub2")), 60)
        active = next(n for n in ("pub1", "pub2") if nodes[n].active())
        webs = [Client(nodes["web1"].http_port), Client(nodes["web2"].http_port)]

        answered, served = [], []
        for i in range(latency_n):
            fqdn, secret = hosts[i]
            address = _address(100_000 + i)
            start = time.monotonic()
            answer = webs[i % 2].update(fqdn, secret, address)
            answered.append(time.monotonic() - start)
            if answer == f"good {address}":
                _wait(lambda: nodes[active].dig(fqdn) == [address], 10)
                served.append(time.monotonic() - start)

        results: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(clients)

        def worker(c: int) -> None:
            client = Client(nodes["web1" if c % 2 else "web2"].http_port)
            mine = hosts[c::clients][: burst // clients]
            barrier.wait(30)
            got = [client.update(fqdn, secret, _address(200_000 + c * 1000 + k)) for k, (fqdn, secret) in enumerate(mine)]
            with lock:
                results.extend(got)

        commits_before = len(upstream_trailers(seed))
        threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        burst_seconds = time.monotonic() - start
        commits = len(upstream_trailers(seed)) - commits_before

        standby = "pub2" if active == "pub1" else "pub1"
        fqdn, secret = hosts[0]
        client = Client(nodes["web1"].http_port)
        killed = time.monotonic()
        nodes[active].kill()
        first_good = None
        for k in range(200):
            if client.update(fqdn, secret, _address(300_000 + k)).startswith("good"):
                first_good = time.monotonic() - killed
                break
        _wait(lambda: nodes[standby].active(), 60)
        return {
            "latency_answer_p50": _pct(answered, 0.5), "latency_answer_p95": _pct(answered, 0.95),
            "latency_served_p50": _pct(served, 0.5), "latency_served_p95": _pct(served, 0.95),
            "burst_seconds": burst_seconds, "burst_per_second": len(results) / burst_seconds,
            "burst_good": sum(r.startswith("good") for r in results), "burst_answers": len(results),
            "burst_commits": commits, "failover_first_good": first_good,
        }
    finally:
        for node in nodes.values():
            node.stop()
        stop_postgres(pg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--latency", type=int, default=50, help="sequential updates for the latency numbers")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (the nodes' logs)")
    args = parser.parse_args()
    runs = []
    for n in range(args.runs):
        tmp = Path(tempfile.mkdtemp(prefix="ddns-bench-cluster-"))
        try:
            result = run_once(tmp, args.burst, args.clients, args.latency)
        finally:
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        runs.append(result)
        print(f"run {n + 1}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in result.items()), flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        if values:
            print(f"{key}: {min(values):.3f} .. {max(values):.3f} (median {statistics.median(values):.3f})")


if __name__ == "__main__":
    main()
