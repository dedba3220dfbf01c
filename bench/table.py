#!/usr/bin/env python3
"""Issue 11's whole table in one command: ddns beside the floor, per zone size.

Per zone size N, in one run of this command:

  ddns    bench_updates' instance (N hosts, N records in one commit, ``ddns
          serve`` as its own process). Each of ``--runs`` rounds measures,
          once with a fresh TCP connection per request (as routers do) and
          once with keep-alive: update -> served latency, a burst of
          ``--burst`` distinct hosts from ``--clients`` clients, nochg
          throughput from the Python client, and nochg throughput from ``wrk``
          (bench/nochg.lua: every request another host's credentials), with
          the CPU of the client beside the CPU of serve and of named.
  floor   the same updates as RFC 2136 (TSIG, TCP) to a plain named with
          ``update-policy`` (bench_rfc2136's bind target), ``--runs`` rounds.
  reload  named's reload time: a static zone of N records, ``rndc reload``
          until the new serial is served, ``--reloads`` times.

It prints one Markdown table (cells: the range over the runs; "fresh /
keep-alive" where both were measured) with the load average at start and
end. See bench/README.md. Loopback only, every loop bounded, every process
started is stopped at the end.
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_rfc2136 as rfc  # noqa: E402
import bench_updates as bu  # noqa: E402

from ddns import bind  # noqa: E402

MODES = (("fresh", True), ("keepalive", False))
WRK_TIMEOUT = 120.0
log = bu.log


def self_cpu() -> float:
    """CPU seconds of this process (every client thread), user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def with_client_cpu(requests_key: str, fn, *args, **kwargs) -> dict:
    """FN's result with the client's CPU per request (ms) beside it, requests counted by REQUESTS_KEY."""
    before = self_cpu()
    out = fn(*args, **kwargs)
    out["client_cpu_ms_per_request"] = round((self_cpu() - before) * 1000 / max(1, out.get(requests_key) or 0), 3)
    return out


# ---- nochg with wrk ------------------------------------------------------------------
def write_hosts_file(bench: bu.Bench, hosts: list[int], path: Path) -> None:
    """One line per host for nochg.lua: the nochg request path and its Basic credentials."""
    lines = []
    for i in hosts:
        fqdn, address = bench.fqdn(i), bench.current[i]
        token = base64.b64encode(f"{fqdn}:{bench.secrets[i]}".encode()).decode()
        lines.append(f"/nic/update?hostname={fqdn}&myip={address} {token}")
    path.write_text("\n".join(lines) + "\n")


def parse_wrk(text: str) -> dict:
    """Requests/s, requests, latency p50 / p99 (ms), socket errors and non-nochg answers from wrk's output."""
    def number(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    def latency(p: str) -> float | None:
        m = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return None if not m else round(float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)], 3)

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"requests_per_s": number(r"Requests/sec:\s+([\d.]+)"), "requests": number(r"(\d+) requests in"),
            "req_p50_ms": latency("50"), "req_p99_ms": latency("99"),
            "socket_errors": sum(int(x) for x in socket_errors.groups()) if socket_errors else 0,
            "non_2xx": int(number(r"Non-2xx or 3xx responses:\s+(\d+)") or 0),
            "not_nochg": None if number(r"not_nochg (\d+)") is None else int(number(r"not_nochg (\d+)"))}


def phase_wrk(bench: bu.Bench, hosts: list[int], fresh: bool, args, workdir: Path) -> dict:
    """wrk for --nochg-seconds against HOSTS with their current addresses; CPU of wrk and of serve."""
    hosts_file = workdir / f"wrk-hosts-{bench.n_hosts}.txt"
    write_hosts_file(bench, hosts, hosts_file)
    command = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.clients), "-d", f"{args.nochg_seconds:g}s",
               "--timeout", "10s", "--latency", "-s", str(BENCH / "nochg.lua"),
               f"http://127.0.0.1:{bench.http_port}/", "--", str(hosts_file), "close" if fresh else "keep"]
    serve_before = bu.proc_cpu(bench.proc.pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=args.nochg_seconds + WRK_TIMEOUT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    serve_cpu = bu.proc_cpu(bench.proc.pid) - serve_before
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr[-2000:]}")
    out = parse_wrk(proc.stdout)
    n = max(1, int(out["requests"] or 0))
    out.update({"client_cpu_ms_per_request": round(wrk_cpu * 1000 / n, 3),
                "serve_cpu_ms_per_request": round(serve_cpu * 1000 / n, 3)})
    log(f"wrk ({'fresh' if fresh else 'keep-alive'}): {out}")
    return out


# ---- the three parts -----------------------------------------------------------------
def run_ddns(n_hosts: int, args, workdir: Path) -> dict:
    addresses = bu.Addresses()
    bench = bu.Bench(workdir / f"ddns-{n_hosts}", n_hosts)
    n_lat, n_burst = min(args.samples, n_hosts), min(args.burst, n_hosts)
    latency_hosts = list(range(n_lat))
    burst_hosts = [(n_lat + k) % n_hosts for k in range(n_burst)]   # distinct; disjoint if N allows
    result: dict = {"hosts": n_hosts, "burst_hosts": n_burst, "runs": []}
    try:
        t0 = time.perf_counter()
        bu.create_instance(bench, addresses, args.bcrypt_rounds, {}, args.distinct_secrets)
        bu.start_serve(bench)
        result["setup"] = {**bench.setup, "total_s": round(time.perf_counter() - t0, 1)}
        result["warmup"] = bu.phase_warmup(bench, sorted(set(latency_hosts) | set(burst_hosts)), args.clients)
        for run in range(args.runs):
            rounds = {}
            for mode, fresh in MODES:
                log(f"--- ddns, {n_hosts} hosts, run {run + 1}/{args.runs}, {mode} ---")
                rounds[mode] = {
                    "latency": bu.phase_latency(bench, latency_hosts, args.samples, addresses, fresh=fresh),
                    "burst": with_client_cpu("answered", bu.phase_burst, bench, burst_hosts, args.clients,
                                             addresses, fresh=fresh),
                    "nochg": with_client_cpu("requests", bu.phase_nochg, bench, burst_hosts, args.clients,
                                             args.nochg_seconds, fresh=fresh),
                    "wrk": phase_wrk(bench, burst_hosts, fresh, args, workdir)}
            result["runs"].append(rounds)
        result["rss_end_kib"] = bu.proc_status(bench.proc.pid)
        named = bench.named_pid()
        result["named_rss_kib"] = bu.proc_status(named) if named else {}
    finally:
        bu.stop_serve(bench)
    return result


def run_floor(n_hosts: int, args, workdir: Path) -> dict:
    """bench_rfc2136's bind target: latency and burst over TCP, --runs rounds."""
    args_rfc = argparse.Namespace(samples=args.samples, burst=args.burst, clients=args.clients, runs=args.runs, tcp=True)
    return rfc.run_target("bind", n_hosts, args_rfc, workdir)


def zone_text(n_hosts: int, serial: int) -> str:
    lines = [f"$ORIGIN {bu.ZONE}.", f"$TTL {rfc.TTL}", f"@ SOA ns1 hostmaster {serial} 3600 600 86400 {rfc.TTL}",
             "@ NS ns1", "ns1 A 127.0.0.1"]
    lines += [f"h{i:06d} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n_hosts)]
    return "\n".join(lines) + "\n"


def run_reload(n_hosts: int, args, workdir: Path) -> dict:
    """named's reload time for a static zone of N records: ``rndc reload`` until the new serial is served.

    The private named is ddns.bind's (named_conf, create_rndc_key, ManagedNamed): the same
    configuration ddns serve runs, with the zone as a plain file instead of the Git tree.
    """
    d = (workdir / f"reload-{n_hosts}").resolve()
    d.mkdir(parents=True)
    port, rndc_port = bu.free_port(), bu.free_port()
    zone_file, zones = d / "zone.db", d / "zones.conf"
    serial = 1
    zone_file.write_text(zone_text(n_hosts, serial))
    zones.write_text(bind.zones_conf({bu.ZONE: zone_file}))
    (d / "named.conf").write_text(bind.named_conf(d, zones, "127.0.0.1", port, rndc_port))
    named = bind.ManagedNamed(d, bind.Rndc("127.0.0.1", rndc_port, bind.create_rndc_key(d)))
    times = []
    with named:
        for _ in range(args.reloads):
            serial += 1
            zone_file.write_text(zone_text(n_hosts, serial))   # written before the clock starts
            t0 = time.perf_counter()
            named.rndc.reload(bu.ZONE)
            deadline = t0 + bu.SERVED_TIMEOUT
            while bind.served_serial(bu.ZONE, "127.0.0.1", port) != serial and time.perf_counter() < deadline:
                time.sleep(0.0005)
            if time.perf_counter() >= deadline:
                raise RuntimeError(f"named did not serve serial {serial} of {n_hosts} records in {bu.SERVED_TIMEOUT}s")
            times.append(time.perf_counter() - t0)
    out = {"hosts": n_hosts, "reloads": len(times), "p50_ms": bu.ms(bu.pct(times, 50)),
           "min_ms": bu.ms(min(times)), "max_ms": bu.ms(max(times))}
    log(f"reload: {out}")
    return out


# ---- report ----------------------------------------------------------------------------
def cell(runs: list[dict], *path) -> str:
    """The range over RUNS of the value at PATH ('fresh / keep-alive' when PATH starts with a mode of MODES)."""
    def get(run, keys):
        for k in keys:
            run = run.get(k) if isinstance(run, dict) else None
        return run

    if path[0] == "*":
        return " / ".join(rfc.value_range([get(r, (mode, *path[1:])) for r in runs]) for mode, _ in MODES)
    return rfc.value_range([get(r, path) for r in runs])


def derived(result: dict) -> None:
    """Per-update named CPU of each burst (named_cpu_s / answered), added in place."""
    for run in result["ddns"]["runs"]:
        for mode, _ in MODES:
            b = run[mode]["burst"]
            b["named_cpu_ms_per_update"] = round(b["named_cpu_s"] * 1000 / max(1, b["answered"]), 2)


def markdown(results: list[dict], meta: dict) -> str:
    def mib(kib):
        return "-" if kib is None else bu.fmt(round(kib / 1024, 1))

    rows = [
        ("update → served p50 (ms), fresh / keep-alive", lambda d, f, r: cell(d, "*", "latency", "served_p50_ms"), "≤ 8 (≤ 10 at 100k)"),
        ("update → HTTP answer p50 (ms)", lambda d, f, r: cell(d, "*", "latency", "http_p50_ms"), ""),
        ("update → served p95 (ms)", lambda d, f, r: cell(d, "*", "latency", "served_p95_ms"), ""),
        ("latency errors + lost", lambda d, f, r: " / ".join(
            rfc.value_range([(x[m]["latency"]["errors"] or 0) + (x[m]["latency"]["lost"] or 0) for x in d]) for m, _ in MODES), "0"),
        ("floor: RFC 2136 to plain BIND, update → served p50 (ms)", lambda d, f, r: cell(f, "latency", "served_p50_ms"), ""),
        ("burst (hosts / clients)", lambda d, f, r: f"{bu.fmt(r['ddns']['burst_hosts'])} / {meta['clients']}", "2,000 / 50"),
        ("burst: updates/s", lambda d, f, r: cell(d, "*", "burst", "updates_per_s"), "≥ 2,000 at 10k, 100k"),
        ("burst: errors", lambda d, f, r: cell(d, "*", "burst", "errors"), "0"),
        ("burst: lost (not served)", lambda d, f, r: cell(d, "*", "burst", "not_served"), "0"),
        ("burst: git commits", lambda d, f, r: cell(d, "*", "burst", "commits"), ""),
        ("floor: burst updates/s / errors / lost", lambda d, f, r: " / ".join(
            cell(f, "burst", k) for k in ("updates_per_s", "errors", "lost_not_served")), ""),
        ("server CPU per update, burst: serve (ms)", lambda d, f, r: cell(d, "*", "burst", "serve_cpu_ms_per_update"), "≤ 1.5 in all"),
        ("… named's share apart (ms)", lambda d, f, r: cell(d, "*", "burst", "named_cpu_ms_per_update"), ""),
        ("floor: named CPU per update (ms)", lambda d, f, r: cell(f, "burst", "server_cpu_ms_per_update"), ""),
        ("client CPU per burst update (ms, incl. the served check)", lambda d, f, r: cell(d, "*", "burst", "client_cpu_ms_per_request"), ""),
        ("nochg req/s, wrk", lambda d, f, r: cell(d, "*", "wrk", "requests_per_s"), "≥ 3,000"),
        ("nochg wrk: not nochg + socket errors", lambda d, f, r: " / ".join(
            rfc.value_range([(x[m]["wrk"]["not_nochg"] or 0) + x[m]["wrk"]["socket_errors"] for x in d]) for m, _ in MODES), "0"),
        ("nochg wrk: p50 (ms)", lambda d, f, r: cell(d, "*", "wrk", "req_p50_ms"), ""),
        ("nochg wrk: client / serve CPU per request (ms)", lambda d, f, r: " ; ".join(
            f"{cell(d, '*', 'wrk', k)}" for k in ("client_cpu_ms_per_request", "serve_cpu_ms_per_request")), ""),
        ("nochg req/s, Python client", lambda d, f, r: cell(d, "*", "nochg", "requests_per_s"), ""),
        ("nochg Python: not nochg", lambda d, f, r: cell(d, "*", "nochg", "not_nochg"), "0"),
        ("nochg Python: client / serve CPU per request (ms)", lambda d, f, r: " ; ".join(
            f"{cell(d, '*', 'nochg', k)}" for k in ("client_cpu_ms_per_request", "serve_cpu_ms_per_request")), ""),
        ("serve RSS at end / peak (MiB)", lambda d, f, r: f"{mib(r['ddns'].get('rss_end_kib', {}).get('VmRSS'))} / "
                                                          f"{mib(r['ddns'].get('rss_end_kib', {}).get('VmHWM'))}", "≤ 100 at 100k"),
        ("named RSS (MiB)", lambda d, f, r: mib(r["ddns"].get("named_rss_kib", {}).get("VmRSS")), ""),
        ("floor: named reload p50 (min–max) (ms)", lambda d, f, r: f"{bu.fmt(r['reload']['p50_ms'])} "
                                                                    f"({bu.fmt(r['reload']['min_ms'])}–{bu.fmt(r['reload']['max_ms'])})", ""),
        ("set-up: ddns instance + serve start (s)", lambda d, f, r: bu.fmt(r["ddns"]["setup"]["total_s"]), ""),
        ("load average (1 min) when this size ended", lambda d, f, r: bu.fmt(r["loadavg"][0]), ""),
    ]
    lines = ["| | " + " | ".join(f"{r['hosts']:,} records" for r in results) + " | goal |",
             "|---|" + "---|" * len(results) + "---|"]
    for label, fn, goal in rows:
        cells = []
        for r in results:
            try:
                cells.append(fn(r["ddns"]["runs"], r["floor"]["runs"], r))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")
    lines += ["", f"Ranges over {meta['runs']} runs per size (one instance per size; \"a / b\": a fresh TCP connection per "
              f"request / keep-alive; \"x ; y\": client ; server). Latency {meta['samples']} sequential updates; nochg "
              f"{meta['nochg_seconds']:g} s from {meta['clients']} connections (wrk: {meta['wrk_threads']} threads); floor over "
              f"TCP, a connection per update; reload {meta['reloads']} times. Machine: {meta['cpus']} CPUs, load average "
              f"at start {meta['loadavg_start']}, at end {meta['loadavg_end']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", default="1000,10000", help="comma-separated zone sizes (e.g. 1000,10000,100000)")
    p.add_argument("--runs", type=int, default=3, help="rounds per size (each: both connection modes, and the floor)")
    p.add_argument("--samples", type=int, default=200, help="sequential updates for the latency rows")
    p.add_argument("--burst", type=int, default=2000, help="updates to distinct hosts in a burst (capped at hosts)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (burst, nochg) and wrk connections")
    p.add_argument("--nochg-seconds", type=float, default=5.0, help="duration of each nochg measurement")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk's threads")
    p.add_argument("--reloads", type=int, default=5, help="rndc reloads timed per size")
    p.add_argument("--bcrypt-rounds", type=int, default=4, help="bcrypt cost of the bench hosts' secrets (see bench_updates)")
    p.add_argument("--distinct-secrets", type=int, default=bu.DISTINCT_SECRETS,
                   help="host i uses secret i mod this (see bench_updates.create_instance)")
    p.add_argument("--json", help="also write every number as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, zones) for inspection")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.hosts.split(",") if x.strip()]
    if not sizes or min(sizes) < 1 or min(args.runs, args.samples, args.burst, args.clients, args.reloads,
                                          args.wrk_threads) < 1 or args.nochg_seconds <= 0:
        p.error("sizes, runs, samples, burst, clients, reloads, wrk threads and seconds must be positive")
    for tool in ("named", "rndc-confgen", "named-checkzone", "git", "wrk"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            p.error(f"{tool} is not installed")
    meta = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()], "runs": args.runs,
            "samples": args.samples, "burst": args.burst, "clients": args.clients, "nochg_seconds": args.nochg_seconds,
            "wrk_threads": args.wrk_threads, "reloads": args.reloads, "bcrypt_rounds": args.bcrypt_rounds,
            "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def work(workdir: Path) -> list[dict]:
        results = []
        for n in sizes:
            log(f"=== {n} records ===")
            result = {"hosts": n, "ddns": run_ddns(n, args, workdir), "floor": run_floor(n, args, workdir),
                      "reload": run_reload(n, args, workdir), "loadavg": [round(x, 2) for x in os.getloadavg()]}
            derived(result)
            results.append(result)
        return results

    return bu.run_and_report("ddns-bench-table-", args, meta, work, markdown)


if __name__ == "__main__":
    sys.exit(main())
