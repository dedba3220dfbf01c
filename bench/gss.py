#!/usr/bin/env python3
"""Benchmark of GSS-TSIG (RFC 3645): TKEY negotiation, Kerberos-signed update -> served, a burst.

One fresh ddns instance (bench_rfc2136's ``Ddns`` target: ``ddns serve`` as its
own process, N A records in one zone) with GSS-TSIG on, a real MIT KDC on
loopback (testkit/kdc.py) and clients of testkit/gssclient.py (dnspython +
python-gssapi) holding tickets for ``host/hNNNNNN.ZONE@BENCH.TEST``, which
may change their own host (krb5-self through ``kerberos.realm``). Per run:

  negotiate  sequential TKEY negotiations over TCP by one client (a fresh
             initiator each; the service ticket comes from the ccache after
             the first), each context deleted again: time until the signed
             TKEY answer is verified
  latency    sequential GSS-signed updates over TCP from one context, each
             to a new address: time until NOERROR, and until named serves it
  burst      B updates from C clients started together, a context each,
             each client updating its own host back to back; throughput,
             errors and lost updates (every acknowledged final address must
             be served and in the dynamic records at HEAD)

Updates are signed when sent (a GSS MIC takes microseconds; dnspython's
message building is the client's main cost). Everything talks to 127.0.0.1,
every loop is bounded, every process started is stopped. See bench/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import dns.exception  # noqa: E402
import dns.rcode  # noqa: E402
import dns.update  # noqa: E402

import bench_rfc2136 as br  # noqa: E402  (the ddns target, ranges)
import bench_updates as bu  # noqa: E402  (addresses, served polling, percentiles; puts the repository on the path)
from testkit import gssclient  # noqa: E402
from testkit.kdc import start_kdc, stop_kdc  # noqa: E402

ZONE = bu.ZONE
REALM = "BENCH.TEST"
TARGET = f"DNS/ns1.{ZONE}@{REALM}"
KRB5_VARS = ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5RCACHEDIR")
log = bu.log


class Tickets:
    """Host principals made on the KDC and one ccache each (kinit -kt)."""

    def __init__(self, kdc, directory: Path):
        self.kdc, self.directory = kdc, directory
        self.ccaches: dict[int, Path] = {}

    def ccache(self, i: int) -> Path:
        if i not in self.ccaches:
            name = f"host/h{i:06d}.{ZONE}"
            keytab = self.directory / f"h{i:06d}.keytab"
            principal = self.kdc.principal(name, keytab)
            self.ccaches[i] = self.directory / f"h{i:06d}.cc"
            self.kdc.kinit(keytab, principal, self.ccaches[i])
        return self.ccaches[i]


def replace_a(i: int, address: str) -> dns.update.UpdateMessage:
    fqdn = f"h{i:06d}.{ZONE}."
    update = dns.update.UpdateMessage(ZONE + ".")
    update.delete(fqdn, "A")
    update.add(fqdn, br.TTL, "A", address)
    return update


def send(port: int, session: gssclient.Session, i: int, address: str) -> str:
    """One GSS-signed update, its answer verified; the rcode's name or 'ERROR: ...' (no retry)."""
    try:
        return dns.rcode.to_text(gssclient.send(port, replace_a(i, address), session).rcode())
    except (dns.exception.DNSException, OSError, gssclient.Refused) as exc:
        return f"ERROR: {type(exc).__name__}: {exc}"


def phase_negotiate(port: int, ccache: Path, count: int) -> dict:
    times, errors = [], []
    deadline = time.perf_counter() + bu.PHASE_TIMEOUT
    for _ in range(count):
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        try:
            session = gssclient.negotiate(port, ccache, TARGET)
        except (gssclient.Refused, OSError, dns.exception.DNSException) as exc:
            errors.append(str(exc)[:200])
            continue
        times.append(time.perf_counter() - t0)
        gssclient.delete(port, session)
    out = {"negotiations": count, "errors": len(errors), "p50_ms": bu.ms(bu.pct(times, 50)),
           "p95_ms": bu.ms(bu.pct(times, 95))}
    if errors:
        out["first_error"] = errors[0]
    log(f"negotiate: {out}")
    return out


def phase_latency(target: br.Ddns, session: gssclient.Session, i: int, samples: int,
                  addresses: bu.Addresses) -> dict:
    answer_t, served_t, errors, lost = [], [], [], 0
    deadline = time.perf_counter() + bu.PHASE_TIMEOUT
    for _ in range(samples):
        if time.perf_counter() > deadline:
            break
        address = addresses.next()
        t0 = time.perf_counter()
        rcode = send(target.update_port, session, i, address)
        t1 = time.perf_counter()
        if rcode != "NOERROR":
            errors.append(rcode[:200])
            continue
        seen, _ = bu.wait_served(target.query_port, target.fqdn(i), address, t1 + bu.SERVED_TIMEOUT)
        if seen is None:
            lost += 1
            continue
        answer_t.append(t1 - t0)
        served_t.append(seen - t0)
    out = {"samples": samples, "errors": len(errors), "lost": lost,
           "answer_p50_ms": bu.ms(bu.pct(answer_t, 50)), "served_p50_ms": bu.ms(bu.pct(served_t, 50)),
           "served_p95_ms": bu.ms(bu.pct(served_t, 95))}
    if errors:
        out["first_error"] = errors[0]
    log(f"latency: {out}")
    return out


def phase_burst(target: br.Ddns, sessions: dict[int, gssclient.Session], total: int,
                addresses: bu.Addresses) -> dict:
    hosts = sorted(sessions)
    work = {i: [addresses.next() for _ in range(total // len(hosts) + (k < total % len(hosts)))]
            for k, i in enumerate(hosts)}
    results: list[tuple[int, str, str, float, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(hosts) + 1, timeout=60)
    hard_deadline = time.perf_counter() + bu.PHASE_TIMEOUT
    commits_before = target.commits()

    def client(i: int) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        for address in work[i]:
            t0 = time.perf_counter()
            if t0 >= hard_deadline:
                break
            rcode = send(target.update_port, sessions[i], i, address)
            with lock:
                results.append((i, address, rcode, t0, time.perf_counter()))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in hosts]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(max(1.0, hard_deadline - time.perf_counter() + br.UPDATE_TIMEOUT + 5))
    wall = max((r[4] for r in results), default=start) - start
    errors = [r for r in results if r[2] != "NOERROR"]
    final = {i: work[i][-1] for i in hosts if all(r[2] == "NOERROR" for r in results if r[0] == i)}
    pending = bu.unserved(target.query_port, target.fqdn, final)
    latencies = [r[4] - r[3] for r in results]
    out = {"updates": total, "clients": len(hosts), "answered": len(results), "errors": len(errors),
           "wall_s": round(wall, 3), "updates_per_s": round(len(results) / wall, 1) if wall > 0 else None,
           "req_p50_ms": bu.ms(bu.pct(latencies, 50)), "req_p95_ms": bu.ms(bu.pct(latencies, 95)),
           "lost_not_served": len(pending), "lost_not_in_git": target.missing_in_git(final),
           "commits": target.commits() - commits_before}
    if errors:
        out["first_error"] = errors[0][2][:200]
    log(f"burst: {out}")
    return out


def run(args, workdir: Path) -> dict:
    kdc = start_kdc(workdir / "kdc", REALM)
    saved = {name: os.environ.get(name) for name in (*KRB5_VARS, "DDNS_KERBEROS_KEYTAB", "DDNS_KERBEROS_REALM")}
    target = br.Ddns("ddns", workdir / "ddns", args.hosts)
    result: dict = {"hosts": args.hosts, "runs": []}
    try:
        keytab = workdir / "dns.keytab"
        kdc.principal(f"DNS/ns1.{ZONE}", keytab)
        # the clients (this process) and ddns serve (its child) find the KDC and the keytab here
        os.environ.update({name: kdc.env[name] for name in KRB5_VARS})
        os.environ.update({"DDNS_KERBEROS_KEYTAB": str(keytab), "DDNS_KERBEROS_REALM": REALM})
        addresses = bu.Addresses()
        target.start(addresses, [])
        result["setup"] = target.setup
        tickets = Tickets(kdc, workdir)
        clients = list(range(1, 1 + args.clients))
        for i in [0, *clients]:
            tickets.ccache(i)
        for n in range(args.runs):
            log(f"--- run {n + 1}/{args.runs} ---")
            negotiate = phase_negotiate(target.update_port, tickets.ccache(0), args.negotiations)
            session = gssclient.negotiate(target.update_port, tickets.ccache(0), TARGET)
            latency = phase_latency(target, session, 0, args.samples, addresses)
            gssclient.delete(target.update_port, session)
            sessions = {i: gssclient.negotiate(target.update_port, tickets.ccache(i), TARGET) for i in clients}
            burst = phase_burst(target, sessions, args.burst, addresses)
            for s in sessions.values():
                gssclient.delete(target.update_port, s)
            result["runs"].append({"negotiate": negotiate, "latency": latency, "burst": burst})
    finally:
        target.stop()
        stop_kdc(kdc)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return result


ROWS = [
    ("TKEY negotiation p50 / p95 (ms)", "negotiate", ("p50_ms", "p95_ms")),
    ("GSS-signed update -> NOERROR p50 (ms)", "latency", ("answer_p50_ms",)),
    ("GSS-signed update -> served p50 / p95 (ms)", "latency", ("served_p50_ms", "served_p95_ms")),
    ("latency errors / lost", "latency", ("errors", "lost")),
    ("burst: updates/s", "burst", ("updates_per_s",)),
    ("burst: request p50 / p95 (ms)", "burst", ("req_p50_ms", "req_p95_ms")),
    ("burst: errors / lost (not served / not in Git)", "burst", ("errors", "lost_not_served", "lost_not_in_git")),
    ("burst: commits", "burst", ("commits",)),
]


def markdown(result: dict, meta: dict) -> str:
    lines = [f"| metric | ddns, {result['hosts']:,} records |", "|---|---|"]
    for label, phase, keys in ROWS:
        lines.append(f"| {label} | " + " / ".join(br.value_range([r[phase].get(k) for r in result["runs"]])
                                                   for k in keys) + " |")
    lines += ["", f"Ranges over {meta['runs']} runs; negotiation {meta['negotiations']} sequential, latency "
              f"{meta['samples']} sequential updates, burst {meta['burst']} updates from {meta['clients']} clients "
              f"(a context each, TCP). Machine: {meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, "
              f"at end {meta['loadavg_end']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=1000, help="zone size (A records)")
    p.add_argument("--negotiations", type=int, default=50, help="sequential TKEY negotiations")
    p.add_argument("--samples", type=int, default=100, help="sequential GSS-signed updates for the latency")
    p.add_argument("--burst", type=int, default=500, help="updates in the burst")
    p.add_argument("--clients", type=int, default=20, help="clients (contexts, hosts) in the burst")
    p.add_argument("--runs", type=int, default=3, help="rounds of the three phases")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, zones, KDC) for inspection")
    args = p.parse_args(argv)
    if min(args.negotiations, args.samples, args.burst, args.clients, args.runs) < 1 or args.clients >= args.hosts:
        p.error("counts must be positive and clients fewer than hosts")
    meta = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()], **vars(args)}
    return bu.run_and_report("ddns-bench-gss-", args, meta, lambda workdir: run(args, workdir), markdown,
                             key="result")


if __name__ == "__main__":
    sys.exit(main())
