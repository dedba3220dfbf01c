#!/usr/bin/env python3
"""Benchmark of the portal's pages and the JSON API, against the real service.

For each number of hosts H it builds a fresh instance (real managed named,
real git) in a temp dir, gives one user H hosts with an address each, runs
``ddns serve`` in this process (testkit.instance's ``start_serving``), logs
in with a local account and times, from a keep-alive client on loopback:

  login      POST /login (one bcrypt check at the configured cost)
  overview   GET /          (every host, with what BIND serves: 2 DNS queries a host)
  host       GET /hosts/X   (one host, its history read from git)
  api-list   GET /api/v1/hosts with a personal token
  secret     POST /hosts/X/secret (bcrypt hash of the new secret)

Every loop is bounded (--samples); everything talks to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from testkit.instance import Instance, free_port, start_serving  # noqa: E402
from ddns import cli  # noqa: E402
from ddns.auth import hash_secret, new_secret  # noqa: E402
from ddns.model import Actor, Operation, Update  # noqa: E402
from ddns.service import Service  # noqa: E402
from ddns import config as configmod  # noqa: E402

ZONE = "bench.example.test"


def timed(fn, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{statistics.median(ms):.1f} / {p95:.1f}"


def run(hosts: int, samples: int, rounds: int) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="ddns-bench-portal-") as tmp:
        directory = Path(tmp) / "inst"
        instance = Instance(directory, directory / "ddns.toml", free_port(), free_port(), free_port(), ZONE)
        cli.init_instance(directory, instance.http_port, instance.dns_port, instance.rndc_port, ZONE,
                          extra={"security.bcrypt_rounds": rounds, "portal.max_secret_actions": 10 * samples,
                                 "zones.git_fsync": False})
        config_path = directory / "ddns.toml"
        service = Service.open(configmod.load(config_path, environ={}))
        service.accounts.add_user("bench", "bench-password")
        user = service.store.user("bench")
        fast_hash = hash_secret(new_secret(), 4)  # set-up only: the pages never check host secrets
        for i in range(hosts):
            service.store.add_host(f"h{i:05d}.{ZONE}", ZONE, user.id, fast_hash, time.time())
        service.publish([Update(ZONE, tuple(Operation.replace(f"h{i:05d}.{ZONE}", "A", [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"])),
                                actor=Actor("bench")) for i in range(hosts)])
        running = start_serving(instance)
        try:
            base = running.service.config.public_url
            http = requests.Session()

            def csrf(path: str) -> str:
                return re.search(r'name="csrf_token" value="([^"]+)"', http.get(base + path, timeout=60).text)[1]

            def login():
                http.cookies.clear()
                r = http.post(base + "/login", data={"username": "bench", "password": "bench-password",
                                                     "csrf_token": csrf("/login"), "next": "/"},
                              allow_redirects=False, timeout=60)
                assert r.status_code == 303, r.text

            results = {"login": summary(timed(login, max(3, samples // 10)))}
            results["overview"] = summary(timed(lambda: http.get(base + "/", timeout=120).raise_for_status(), samples))
            host = f"h00000.{ZONE}"
            results["host"] = summary(timed(lambda: http.get(f"{base}/hosts/{host}", timeout=60).raise_for_status(),
                                            samples))
            r = http.post(base + "/tokens", data={"name": "bench", "csrf_token": csrf("/tokens")}, timeout=60)
            token = re.search(r'<code id="new-token">([^<]+)</code>', r.text)[1]
            auth = {"Authorization": f"Bearer {token}"}
            results["api-list"] = summary(timed(
                lambda: http.get(base + "/api/v1/hosts", headers=auth, timeout=120).raise_for_status(), samples))
            token_form = csrf(f"/hosts/{host}")
            results["secret"] = summary(timed(
                lambda: http.post(f"{base}/hosts/{host}/secret", data={"csrf_token": token_form},
                                  timeout=60).raise_for_status(), max(3, samples // 10)))
            return results
        finally:
            running.stop.set()
            running.thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="10,100,1000", help="comma-separated host counts of the one user")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--bcrypt-rounds", type=int, default=12, help="cost of login and new-secret hashes")
    args = parser.parse_args()
    counts = [int(h) for h in args.hosts.split(",")]
    columns = {h: run(h, args.samples, args.bcrypt_rounds) for h in counts}
    print("| ms, p50 / p95 | " + " | ".join(f"{h} hosts" for h in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for row in ("login", "overview", "host", "api-list", "secret"):
        print(f"| {row} | " + " | ".join(columns[h][row] for h in counts) + " |")


if __name__ == "__main__":
    main()
