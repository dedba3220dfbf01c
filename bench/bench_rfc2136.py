#!/usr/bin/env python3
"""Benchmark of RFC 2136 updates signed with TSIG: DNS UPDATE -> served by BIND.

The same load goes to two targets, each built fresh in a temp dir with N A
records in one zone and one TSIG key per host (a key named exactly the host,
allowed to change its own A record):

  ddns   a ddns instance: ``ddns serve`` as its own process, updates sent to
         its listener (``dnsupdate.port``); NOERROR means committed to Git
         and served by its managed named, with an audit trailer.
  bind   the floor: a plain private named with the zone as a primary and
         ``update-policy { grant * self * A; }``. BIND applies an update in
         about a millisecond, into its journal; no Git, no audit.

Per target and zone size, each of ``--runs`` rounds measures:

  latency  sequential updates from one client, each host to a new address:
           time until NOERROR, and until the target's named serves it
  burst    B signed updates to B distinct hosts from C clients started
           together; throughput, errors (timeouts, any rcode but NOERROR)
           and lost updates: every acknowledged update must be served by
           named at the end and, for ddns, be in the dynamic records at HEAD

Clients are dnspython (dns.update, dns.tsigkeyring, dns.query.udp/tcp).
Everything talks to 127.0.0.1; every loop is bounded; every process started
is stopped at the end. See bench/README.md.
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import dns.exception  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.tsig  # noqa: E402
import dns.tsigkeyring  # noqa: E402
import dns.update  # noqa: E402

import bench_updates as bu  # noqa: E402  (ports, addresses, served polling, percentiles, serve process)
from ddns import gitops  # noqa: E402  (bench_updates puts the checkout on the path)

ZONE = bu.ZONE
TTL = 60
ALGORITHM = "hmac-sha256"
UPDATE_TIMEOUT = 30.0   # one update; ddns waits for named to serve it (bind.verify_timeout 5 s)
log = bu.log


@dataclass
class Target:
    """Where updates go and where "served" is checked; subclasses build and stop it."""

    kind: str
    directory: Path
    n_hosts: int
    update_port: int = 0
    query_port: int = 0
    secrets: dict[int, bytes] = field(default_factory=dict)   # host index -> TSIG secret
    setup: dict = field(default_factory=dict)

    def fqdn(self, i: int) -> str:
        return f"h{i:06d}.{ZONE}"

    def keyring(self, i: int) -> dict:
        return {dns.name.from_text(self.fqdn(i)): dns.tsig.Key(self.fqdn(i), self.secrets[i], ALGORITHM)}

    def commits(self) -> int | None:
        return None

    def missing_in_git(self, expected: dict[int, str]) -> int | None:
        """How many of EXPECTED (host -> address) HEAD does not hold; None: no Git."""
        return None

    def pid(self) -> int | None:
        return None

    def stop(self) -> None:
        raise NotImplementedError


def new_secret() -> bytes:
    return os.urandom(32)


# ---- (b) the floor: plain BIND with update-policy ------------------------------------
class BindFloor(Target):
    def start(self, addresses: bu.Addresses, keyed: list[int]) -> None:
        d = self.directory.resolve()
        d.mkdir(parents=True)
        self.update_port = self.query_port = bu.free_port()
        t0 = time.perf_counter()
        self.secrets = {i: new_secret() for i in keyed}
        lines = [f"$ORIGIN {ZONE}.", f"$TTL {TTL}",
                 f"@ SOA ns1 hostmaster {int(time.time())} 3600 600 86400 {TTL}", "@ NS ns1", "ns1 A 127.0.0.1"]
        lines += [f"h{i:06d} A {addresses.next()}" for i in range(self.n_hosts)]
        (d / "zone.db").write_text("\n".join(lines) + "\n")
        keys = "".join(f'key "{self.fqdn(i)}" {{ algorithm {ALGORITHM}; secret "{base64.b64encode(s).decode()}"; }};\n'
                       for i, s in self.secrets.items())
        (d / "named.conf").write_text(f"""options {{
    directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";
    managed-keys-directory "{d}"; listen-on port {self.update_port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
    recursion no; dnssec-validation no; notify no;
}};
{keys}zone "{ZONE}" {{ type primary; file "{d}/zone.db"; update-policy {{ grant * self * A; }}; }};
""")
        log_file = open(d / "named.log", "ab")
        self.proc = subprocess.Popen(["named", "-g", "-c", str(d / "named.conf")], stdout=log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log_file.close()
        deadline = time.monotonic() + 60
        while bu.dns_a(self.query_port, self.fqdn(0), timeout=0.5) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"named did not start:\n{(d / 'named.log').read_text()[-3000:]}")
            time.sleep(0.05)
        self.setup = {"start_s": round(time.perf_counter() - t0, 3)}

    def pid(self) -> int | None:
        return self.proc.pid

    def stop(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# ---- (a) ddns: its listener, Git and the managed named ---------------------------------------
class Ddns(Target):
    """bench_updates' instance (N hosts, N records in one commit), one host key per measured host."""

    def start(self, addresses: bu.Addresses, keyed: list[int]) -> None:
        from ddns import config
        from ddns.service import Service

        self.bench = bu.Bench(self.directory, self.n_hosts)
        self.update_port = bu.free_port()
        bu.create_instance(self.bench, addresses, 4, {"dnsupdate.port": self.update_port,
                                                      "dnsupdate.listen": "127.0.0.1"})
        t0 = time.perf_counter()
        service = Service.open(config.load(self.bench.config_path, environ={}))
        for i in keyed:
            _, secret = service.add_key(None, self.fqdn(i))
            self.secrets[i] = base64.b64decode(secret)
        self.setup = {**self.bench.setup, "add_keys_s": round(time.perf_counter() - t0, 3)}
        bu.start_serve(self.bench)
        self.query_port = self.bench.dns_port
        self.setup["serve_start_s"] = self.bench.setup["serve_start_s"]

    def commits(self) -> int | None:
        return self.bench.commits()

    def missing_in_git(self, expected: dict[int, str]) -> int | None:
        text = gitops.committed_zone(self.bench.repo, ZONE)  # the head with its shards assembled
        held: dict[str, set[str]] = {}
        for line in text.splitlines():   # LABEL [TTL] TYPE RDATA (a shard's lines, in place)
            parts = line.split()
            if len(parts) >= 3 and parts[-2] == "A":
                held.setdefault(parts[0], set()).add(parts[-1])
        return sum(1 for i, address in expected.items() if address not in held.get(f"h{i:06d}", ()))

    def pid(self) -> int | None:
        return self.bench.proc.pid if self.bench.proc else None

    def stop(self) -> None:
        if hasattr(self, "bench"):
            bu.stop_serve(self.bench)


# ---- the client ------------------------------------------------------------------------
@dataclass
class Signed:
    """One update, built and signed (its TSIG time is when it was built: within the fudge)."""

    message: dns.update.UpdateMessage
    wire: bytes
    keyring: dict


def build_update(target: Target, i: int, address: str) -> Signed:
    """The signed update replacing host I's A record with ADDRESS."""
    fqdn, keyring = target.fqdn(i) + ".", target.keyring(i)
    update = dns.update.UpdateMessage(ZONE + ".", keyring=keyring, keyname=fqdn, keyalgorithm=ALGORITHM)
    update.delete(fqdn, "A")
    update.add(fqdn, TTL, "A", address)
    return Signed(update, update.to_wire(), keyring)


def exchange(target: Target, signed: Signed, tcp: bool) -> str:
    """Send SIGNED, verify the answer's signature; the rcode's name, or 'ERROR: ...' (no retry)."""
    destination = ("127.0.0.1", target.update_port)
    expiration = time.time() + UPDATE_TIMEOUT
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
            sock.settimeout(UPDATE_TIMEOUT)
            if tcp:
                sock.connect(destination)
                dns.query.send_tcp(sock, signed.wire, expiration)
                response, _ = dns.query.receive_tcp(sock, expiration, keyring=signed.keyring,
                                                    request_mac=signed.message.mac)
            else:
                dns.query.send_udp(sock, signed.wire, destination, expiration)
                response, _ = dns.query.receive_udp(sock, destination, expiration, keyring=signed.keyring,
                                                    request_mac=signed.message.mac, query=signed.message)
    except (dns.exception.DNSException, OSError) as exc:
        return f"ERROR: {type(exc).__name__}: {exc}"
    return dns.rcode.to_text(response.rcode())


def phase_latency(target: Target, hosts: list[int], samples: int, addresses: bu.Addresses,
                  current: dict[int, str], tcp: bool) -> dict:
    answer_t, served_t = [], []
    errors, lost, first_query = [], 0, 0
    deadline = time.perf_counter() + bu.PHASE_TIMEOUT
    for k in range(samples):
        if time.perf_counter() > deadline:
            break
        i, address = hosts[k % len(hosts)], addresses.next()
        signed = build_update(target, i, address)
        t0 = time.perf_counter()
        rcode = exchange(target, signed, tcp)
        t1 = time.perf_counter()
        if rcode != "NOERROR":
            errors.append(rcode[:200])
            continue
        current[i] = address
        seen, queries = bu.wait_served(target.query_port, target.fqdn(i), address, t1 + bu.SERVED_TIMEOUT)
        if seen is None:
            lost += 1
            continue
        first_query += queries == 1
        answer_t.append(t1 - t0)
        served_t.append(seen - t0)
    out = {"samples": samples, "errors": len(errors), "lost": lost, "served_on_first_query": first_query,
           "answer_p50_ms": bu.ms(bu.pct(answer_t, 50)), "answer_p95_ms": bu.ms(bu.pct(answer_t, 95)),
           "served_p50_ms": bu.ms(bu.pct(served_t, 50)), "served_p95_ms": bu.ms(bu.pct(served_t, 95)),
           "served_max_ms": bu.ms(max(served_t, default=None))}
    if errors:
        out["first_error"] = errors[0]
    log(f"{target.kind} latency: {out}")
    return out


def run_burst(target: Target, work: list[list[int]], planned: dict[int, str], tcp: bool) -> tuple[float, list]:
    """Client k sends work[k] back to back; all start together. (start, [(host, rcode, t0, t1)]).

    The updates are built and signed before the start (dnspython takes ~0.7 ms of
    CPU to build and sign one, which on a small machine would measure the client);
    every answer's signature is still verified.
    """
    signed = {i: build_update(target, i, planned[i]) for hosts in work for i in hosts}
    results: list[list[tuple]] = [[] for _ in work]
    barrier = threading.Barrier(len(work) + 1, timeout=60)
    hard_deadline = time.perf_counter() + bu.PHASE_TIMEOUT

    def client(k: int) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        for i in work[k]:
            t0 = time.perf_counter()
            if t0 >= hard_deadline:
                break
            results[k].append((i, exchange(target, signed[i], tcp), t0, time.perf_counter()))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(len(work))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(max(1.0, hard_deadline - time.perf_counter() + UPDATE_TIMEOUT + 5))
    return start, [r for rs in results for r in rs]


def phase_burst(target: Target, hosts: list[int], n_clients: int, addresses: bu.Addresses,
                current: dict[int, str], tcp: bool) -> dict:
    commits_before = target.commits()
    pid = target.pid()
    cpu_before = bu.proc_cpu(pid) if pid else 0.0
    planned = {i: addresses.next() for i in hosts}   # decided up front: client threads only send
    start, results = run_burst(target, [hosts[k::n_clients] for k in range(n_clients)], planned, tcp)
    end = max((r[3] for r in results), default=start)
    cpu = (bu.proc_cpu(pid) - cpu_before) if pid else 0.0
    acked = {r[0]: planned[r[0]] for r in results if r[1] == "NOERROR"}
    errors = [r for r in results if r[1] != "NOERROR"]
    current.update(acked)
    wall = end - start
    commits = target.commits()
    # Every acknowledged update must be served: query each name, retry the misses until a deadline.
    pending = bu.unserved(target.query_port, target.fqdn, acked)
    latencies = [r[3] - r[2] for r in results]
    out = {"updates": len(hosts), "clients": n_clients, "answered": len(results), "errors": len(errors),
           "wall_s": round(wall, 3), "updates_per_s": round(len(results) / wall, 1) if wall > 0 else None,
           "req_p50_ms": bu.ms(bu.pct(latencies, 50)), "req_p95_ms": bu.ms(bu.pct(latencies, 95)),
           "lost_not_served": len(pending), "lost_not_in_git": target.missing_in_git(acked),
           "commits": None if commits is None else commits - commits_before,
           "server_cpu_ms_per_update": round(cpu * 1000 / max(1, len(results)), 2)}
    if errors:
        kinds: dict[str, int] = {}
        for r in errors:
            kinds[r[1][:60]] = kinds.get(r[1][:60], 0) + 1
        out["error_kinds"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5])
    log(f"{target.kind} burst: {out}")
    return out


# ---- one target, one zone size ----------------------------------------------------------
TARGETS: dict[str, type[Target]] = {"bind": BindFloor, "ddns": Ddns}


def run_target(kind: str, n_hosts: int, args, workdir: Path) -> dict:
    addresses = bu.Addresses()
    n_lat, n_burst = min(args.samples, n_hosts), min(args.burst, n_hosts)
    latency_hosts = list(range(n_lat))
    burst_hosts = [(n_lat + k) % n_hosts for k in range(n_burst)]   # distinct; disjoint if N allows
    target = TARGETS[kind](kind, workdir / f"{kind}-{n_hosts}", n_hosts)
    result: dict = {"target": kind, "hosts": n_hosts, "runs": []}
    current: dict[int, str] = {}
    try:
        target.start(addresses, sorted(set(latency_hosts) | set(burst_hosts)))
        result["setup"] = target.setup
        for run in range(args.runs):
            log(f"--- {kind}, {n_hosts} hosts, run {run + 1}/{args.runs} ---")
            result["runs"].append({
                "latency": phase_latency(target, latency_hosts, args.samples, addresses, current, args.tcp),
                "burst": phase_burst(target, burst_hosts, args.clients, addresses, current, args.tcp)})
    finally:
        target.stop()
    return result


# ---- report ------------------------------------------------------------------------------
ROWS = [
    ("update -> NOERROR p50 (ms)", "latency", "answer_p50_ms", ""),
    ("update -> served p50 (ms)", "latency", "served_p50_ms", "<= 25 (1k)"),
    ("update -> served p95 (ms)", "latency", "served_p95_ms", ""),
    ("latency errors / lost", "latency", ("errors", "lost"), "0 / 0"),
    ("burst: updates/s", "burst", "updates_per_s", ">= 500"),
    ("burst: request p50 / p95 (ms)", "burst", ("req_p50_ms", "req_p95_ms"), ""),
    ("burst: errors", "burst", "errors", "0"),
    ("burst: lost (not served / not in Git)", "burst", ("lost_not_served", "lost_not_in_git"), "0 / 0"),
    ("burst: commits", "burst", "commits", ""),
    ("burst: server CPU per update (ms)", "burst", "server_cpu_ms_per_update", ""),
]


def value_range(values: list) -> str:
    """'v' when all runs agree, 'lo-hi' otherwise; '-' for no value."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return bu.fmt(lo) if lo == hi else f"{bu.fmt(lo)}-{bu.fmt(hi)}"


def markdown(results: list[dict], meta: dict) -> str:
    head = "| metric | " + " | ".join(f"{r['target']}, {r['hosts']:,} records" for r in results) + " | target |"
    lines = [head, "|---|" + "---|" * len(results) + "---|"]
    for label, phase, keys, goal in ROWS:
        cells = []
        for r in results:
            parts = [keys] if isinstance(keys, str) else list(keys)
            cells.append(" / ".join(value_range([run[phase].get(k) for run in r["runs"]]) for k in parts))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")
    lines += ["", f"Ranges over {meta['runs']} runs per column; burst {meta['burst']} updates (at most one per record) from {meta['clients']} "
              f"clients ({'TCP' if meta['tcp'] else 'UDP'}), latency {meta['samples']} sequential updates. "
              f"Machine: {meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="bind,ddns", help="comma-separated: bind (the floor), ddns")
    p.add_argument("--hosts", default="1000,10000", help="comma-separated zone sizes (A records)")
    p.add_argument("--samples", type=int, default=200, help="sequential updates for the latency measurement")
    p.add_argument("--burst", type=int, default=2000, help="updates to distinct hosts in the burst (capped at hosts)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients in the burst")
    p.add_argument("--runs", type=int, default=3, help="rounds of latency + burst per target and size")
    p.add_argument("--tcp", action="store_true", help="send updates over TCP (default UDP, as nsupdate)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, zones) for inspection")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.hosts.split(",") if x.strip()]
    kinds = [k.strip() for k in args.targets.split(",") if k.strip()]
    if not sizes or min(sizes) < 1 or min(args.samples, args.burst, args.clients, args.runs) < 1:
        p.error("sizes, samples, burst, clients and runs must be positive")
    if unknown := [k for k in kinds if k not in TARGETS]:
        p.error(f"unknown target(s) {unknown}; known: {sorted(TARGETS)}")
    for tool in ("named", "named-checkzone", "rndc-confgen", "git"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            p.error(f"{tool} is not installed")
    meta = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()], "runs": args.runs,
            "burst": args.burst, "clients": args.clients, "samples": args.samples, "tcp": args.tcp,
            "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def work(workdir: Path) -> list[dict]:
        results = []
        for n in sizes:
            for kind in kinds:
                log(f"=== {kind}, {n} hosts ===")
                results.append(run_target(kind, n, args, workdir))
        return results

    return bu.run_and_report("ddns-bench-rfc2136-", args, meta, work, markdown)


if __name__ == "__main__":
    sys.exit(main())
