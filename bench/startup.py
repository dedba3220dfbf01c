#!/usr/bin/env python3
"""Start-up time and memory of ``ddns serve``, per zone size.

Per size N (hosts, each with one A record in one zone) one instance is built
(bench_updates.create_instance: about half a minute at 100k), then ``--runs``
times ``ddns serve`` is started as its own process and, from its exec on,
polled every few milliseconds until:

  http      the first ``/nic/update`` (nochg, host 0's own credentials) is answered
  rfc2136   the RFC 2136 listener answers a DNS message (any rcode)
  named     named serves host 0's address (named's own load of the zone;
            named starts on its copies while serve loads the zones)

then the serve RSS is read right away ("start"), and again after a load:
the warm-up (one nochg per measured host: bcrypt once each), a burst of
``--burst`` updates to distinct hosts from ``--clients`` clients, and
``--nochg-seconds`` of nochg from the same clients ("load", with VmHWM, the
peak; VmHWM is also read after the start, the warm-up and the burst, so the
phase the peak came in is the first whose value is the peak's). The serve process is stopped (SIGTERM) after each run.

It prints one Markdown table: the range over the runs per cell, the load
average at start and end. Loopback only, every loop bounded, every process
started is stopped at the end. See bench/README.md.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rdatatype  # noqa: E402

import bench_updates as bu  # noqa: E402

POLL = 0.005          # between probes
START_TIMEOUT = 300.0  # the whole start-up, per run
log = bu.log


def answered_update(port: int, fqdn: str, secret: str, address: str) -> str | None:
    """The body of one /nic/update answer, None while nothing listens or answers."""
    token = base64.b64encode(f"{fqdn}:{secret}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"/nic/update?hostname={fqdn}&myip={address}", headers={"Authorization": "Basic " + token})
        resp = conn.getresponse()
        return resp.read().decode(errors="replace").strip() if resp.status == 200 else None
    except (http.client.HTTPException, OSError):
        return None
    finally:
        conn.close()


def listener_answers(port: int) -> bool:
    """Whether the RFC 2136 listener on PORT answers a query for the zone's SOA (with whatever rcode)."""
    query = dns.message.make_query(bu.ZONE + ".", dns.rdatatype.SOA)
    try:
        dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
        return True
    except (dns.exception.DNSException, OSError):
        return False


def start_timed(bench: bu.Bench, update_port: int) -> dict:
    """Start ``ddns serve``; seconds from exec until each of http, rfc2136, named answered, serve's CPU until http."""
    log_file = open(bench.directory / "serve.log", "ab")
    t0 = time.perf_counter()
    bench.proc = subprocess.Popen([sys.executable, "-m", "ddns.cli", "-c", str(bench.config_path), "serve"],
                                  stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  cwd=str(bu.REPO))
    log_file.close()
    fqdn, secret, address = bench.fqdn(0), bench.secrets[0], bench.current[0]
    probes = {"http_s": lambda: answered_update(bench.http_port, fqdn, secret, address) is not None,
              "rfc2136_s": lambda: listener_answers(update_port),
              "named_s": lambda: address in (bu.dns_a(bench.dns_port, fqdn, timeout=0.2) or [])}
    seen: dict = {}
    while len(seen) < len(probes):
        if bench.proc.poll() is not None:
            raise RuntimeError(f"ddns serve exited:\n{(bench.directory / 'serve.log').read_text()[-3000:]}")
        if time.perf_counter() - t0 > START_TIMEOUT:
            raise RuntimeError(f"not all of {list(probes)} answered within {START_TIMEOUT} s: {seen}")
        for key, probe in probes.items():
            if key not in seen and probe():
                seen[key] = round(time.perf_counter() - t0, 3)
                if key == "http_s":  # CPU is what a busy machine changes least
                    seen["serve_cpu_s"] = round(bu.proc_cpu(bench.proc.pid), 2)
                elif key == "named_s" and (named := bench.named_pid()) is not None:
                    seen["named_cpu_s"] = round(bu.proc_cpu(named), 2)
        time.sleep(POLL)
    body = answered_update(bench.http_port, fqdn, secret, address)
    if not (body or "").startswith("nochg"):
        raise RuntimeError(f"host 0's own address was not nochg after start: {body!r}")
    return seen


def mib(status: dict, key: str) -> float | None:
    return round(status[key] / 1024, 1) if key in status else None


def one_run(bench: bu.Bench, update_port: int, args, addresses: bu.Addresses) -> dict:
    """One start, the RSS right after it and after the load; serve stopped at the end."""
    try:
        out = start_timed(bench, update_port)
        status = bu.proc_status(bench.proc.pid)
        out["rss_start_mib"], out["hwm_start_mib"] = mib(status, "VmRSS"), mib(status, "VmHWM")
        n_burst = min(args.burst, bench.n_hosts - 1)
        hosts = list(range(1, n_burst + 1))
        warm = bu.phase_warmup(bench, hosts, args.clients)
        out["hwm_warmup_mib"] = mib(bu.proc_status(bench.proc.pid), "VmHWM")
        burst = bu.phase_burst(bench, hosts, args.clients, addresses)
        out["hwm_burst_mib"] = mib(bu.proc_status(bench.proc.pid), "VmHWM")
        nochg = bu.phase_nochg(bench, hosts, args.clients, args.nochg_seconds)
        status = bu.proc_status(bench.proc.pid)
        out.update({"rss_load_mib": mib(status, "VmRSS"), "rss_peak_mib": mib(status, "VmHWM"),
                    "load_errors": warm["not_nochg"] + burst.get("errors", 0) + nochg.get("not_nochg", 0),
                    "burst_updates_per_s": burst.get("updates_per_s"), "nochg_per_s": nochg.get("requests_per_s")})
        named = bench.named_pid()
        out["named_rss_mib"] = mib(bu.proc_status(named), "VmRSS") if named else None
    finally:
        bu.stop_serve(bench)
    log(f"{bench.n_hosts} hosts: {out}")
    return out


def span(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


ROWS = (("serve exec → first /nic/update answered (s)", "http_s"),
        ("serve exec → RFC 2136 listener answers (s)", "rfc2136_s"),
        ("serve exec → named serves the zone (s)", "named_s"),
        ("serve CPU until then, its git / named-checkzone included (s)", "serve_cpu_s"),
        ("named CPU until it serves the zone (s)", "named_cpu_s"),
        ("serve RSS after start (MiB)", "rss_start_mib"),
        ("serve RSS after warm-up + burst + nochg (MiB)", "rss_load_mib"),
        ("serve RSS peak, VmHWM (MiB)", "rss_peak_mib"),
        ("… VmHWM after the start / the warm-up / the burst (MiB)", ("hwm_start_mib", "hwm_warmup_mib", "hwm_burst_mib")),
        ("errors during the load", "load_errors"),
        ("named RSS (MiB)", "named_rss_mib"))


def table(results: dict[int, list[dict]], setups: dict[int, dict]) -> str:
    sizes = sorted(results)
    lines = ["| | " + " | ".join(f"{n:,} hosts" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for title, key in ROWS:
        keys = key if isinstance(key, tuple) else (key,)  # several: "a / b / c", each a range over the runs
        lines.append(f"| {title} | " + " | ".join(" / ".join(span([r.get(k) for r in results[n]]) for k in keys)
                                                   for n in sizes) + " |")
    lines.append("| set-up: instance built (s) | " + " | ".join(f"{setups[n]['total_s']:g}" for n in sizes) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", default="1000,10000,100000", help="comma-separated zone sizes")
    p.add_argument("--runs", type=int, default=3, help="starts per size")
    p.add_argument("--burst", type=int, default=500, help="updates to distinct hosts in the load's burst")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients of the load")
    p.add_argument("--nochg-seconds", type=float, default=5.0, help="duration of the load's nochg part")
    p.add_argument("--bcrypt-rounds", type=int, default=4, help="bcrypt cost of the hosts' secrets")
    p.add_argument("--distinct-secrets", type=int, default=bu.DISTINCT_SECRETS,
                   help="host i uses secret i mod this (see bench_updates.create_instance)")
    p.add_argument("--json", help="also write every number as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, zones) for inspection")
    args = p.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="ddns-startup-"))
    load_start = os.getloadavg()
    results: dict[int, list[dict]] = {}
    setups: dict[int, dict] = {}
    addresses = bu.Addresses()
    try:
        for n in sizes:
            bench = bu.Bench(workdir / f"ddns-{n}", n)
            update_port = bu.free_port()
            t0 = time.perf_counter()
            bu.create_instance(bench, addresses, args.bcrypt_rounds, {"dnsupdate.port": update_port}, args.distinct_secrets)
            setups[n] = {**bench.setup, "total_s": round(time.perf_counter() - t0, 1)}
            results[n] = [one_run(bench, update_port, args, addresses) for _ in range(args.runs)]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    load_end = os.getloadavg()
    print(table(results, setups))
    print(f"\nRanges over {args.runs} starts per size; load: warm-up + {args.burst} updates from {args.clients} clients "
          f"+ {args.nochg_seconds:g} s nochg. Machine: {os.cpu_count()} CPUs, load average at start "
          f"{[round(x, 2) for x in load_start]}, at end {[round(x, 2) for x in load_end]}.")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "setups": setups, "argv": sys.argv[1:],
                                               "loadavg_start": load_start, "loadavg_end": load_end}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
