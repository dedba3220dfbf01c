#!/usr/bin/env python3
"""End-to-end benchmark of dyndns2 updates: HTTP -> publisher -> Git -> BIND.

For each zone size it builds a fresh instance in a temp dir (real managed
named, real git), registers N hosts, publishes N dynamic records in one
commit, runs ``ddns serve`` as a separate process and measures from a client
process:

  latency   sequential updates, each to a new address: time until the HTTP
            answer, and until BIND answers the new address
  burst     B updates to B distinct hosts from C concurrent keep-alive
            clients started together; throughput, errors, lost updates,
            commits (group commit)
  nochg     repeated same-address updates from C clients for a fixed time
  memory    RSS of the serve process (and of named)

See bench/README.md. Everything talks to 127.0.0.1 only; every loop is
bounded; serve (and through it named) is always stopped at the end.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rdatatype  # noqa: E402

from ddns import cli  # noqa: E402
from ddns.auth import hash_secret, new_secret  # noqa: E402
from ddns.model import Actor, Operation, Outcome, Update  # noqa: E402
from ddns.service import Service  # noqa: E402

ZONE = "bench.example.test"
USER = "bench"
AGENT = "ddns-bench/1.0"
REQUEST_TIMEOUT = 60.0     # one HTTP request (verify_timeout is 5 s)
PHASE_TIMEOUT = 900.0      # one whole phase
SERVED_TIMEOUT = 15.0      # waiting for BIND to serve an address


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- ports, addresses, DNS ----------------------------------------------------
from testkit.instance import free_port  # noqa: E402  (the same loopback ports the tests use)



class Addresses:
    """Globally unique addresses in 10.0.0.0/8 (private: accepted by the default policy)."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._n += 1
            n = self._n
        return str(ipaddress.IPv4Address(0x0A000000 + (n % 0xFFFFFE) + 1))


def dns_a(port: int, name: str, timeout: float = 1.0) -> list[str] | None:
    """The A addresses named serves for NAME (None on timeout / error)."""
    q = dns.message.make_query(name + ".", dns.rdatatype.A)
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None
    return [rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset]


def unserved(port: int, fqdn, expected: dict, timeout: float = SERVED_TIMEOUT) -> dict:
    """The part of EXPECTED (host index -> address) that named on PORT still does not serve after TIMEOUT.

    Each name is queried, the misses again every 50 ms until the deadline.
    """
    pending = dict(expected)
    deadline = time.perf_counter() + timeout
    while pending and time.perf_counter() < deadline:
        for i in list(pending):
            answer = dns_a(port, fqdn(i))
            if answer is not None and pending[i] in answer:
                del pending[i]
            if time.perf_counter() >= deadline:
                break
        if pending:
            time.sleep(0.05)
    return pending


def wait_served(port: int, name: str, address: str, deadline: float) -> tuple[float | None, int]:
    """Poll named until NAME has ADDRESS; returns (perf_counter when seen or None, queries sent)."""
    queries = 0
    while True:
        queries += 1
        answer = dns_a(port, name, timeout=min(1.0, max(0.05, deadline - time.perf_counter())))
        if answer is not None and address in answer:
            return time.perf_counter(), queries
        if time.perf_counter() >= deadline:
            return None, queries
        time.sleep(0.0005)


# ---- /proc ----------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of PID in KiB ({} if gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def proc_cpu(pid: int) -> float:
    """CPU seconds of PID plus its waited-for children (git, rndc, named-checkzone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 2)


# ---- HTTP client -------------------------------------------------------------------
class Client:
    """One dyndns2 client: keep-alive, or with FRESH a new TCP connection per request (as routers do)."""

    def __init__(self, port: int, fresh: bool = False):
        self.port = port
        self.fresh = fresh
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)

    def connect(self) -> None:
        if not self.fresh:
            self.conn.connect()

    def update(self, fqdn: str, secret: str, address: str) -> str:
        """The answer body, or 'ERROR: ...' for a transport failure (no retry)."""
        token = base64.b64encode(f"{fqdn}:{secret}".encode()).decode()
        headers = {"Authorization": "Basic " + token, "User-Agent": AGENT}
        if self.fresh:
            headers["Connection"] = "close"
        try:
            self.conn.request("GET", f"/nic/update?hostname={fqdn}&myip={address}", headers=headers)
            resp = self.conn.getresponse()
            body = resp.read().decode(errors="replace").strip()
            if self.fresh:
                self.conn.close()   # the next request connects again
            if resp.status != 200:
                body = f"HTTP {resp.status}: {body}"
            return body
        except (http.client.HTTPException, OSError) as exc:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
            return f"ERROR: {type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.conn.close()


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


# ---- the instance ----------------------------------------------------------------
@dataclass
class Bench:
    directory: Path
    n_hosts: int
    http_port: int = 0
    dns_port: int = 0
    rndc_port: int = 0
    config_path: Path | None = None
    secrets: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)   # the address each host has now
    proc: subprocess.Popen | None = None
    setup: dict = field(default_factory=dict)
    trace_file: Path | None = None                     # --trace: per-stage samples written by trace_serve.py
    phases: dict = field(default_factory=dict)         # phase -> [monotonic start, end]

    def fqdn(self, i: int) -> str:
        return f"h{i:06d}.{ZONE}"

    @property
    def repo(self) -> Path:
        return self.directory / "zones"

    def commits(self) -> int:
        out = subprocess.run(["git", "-C", str(self.repo), "rev-list", "--count", "HEAD"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return int(out.strip())

    def named_pid(self) -> int | None:
        try:
            return int((self.directory / "bind" / "named.pid").read_text().strip())
        except (OSError, ValueError):
            return None


DISTINCT_SECRETS = 2048   # default --distinct-secrets: a burst of 2,000 consecutive hosts never shares one


def create_instance(bench: Bench, addresses: Addresses, rounds: int, settings: dict,
                    distinct_secrets: int = DISTINCT_SECRETS) -> None:
    """init_instance, N hosts, N records in ONE publish; 100,000 hosts in about half a minute.

    Host i's secret is secrets[i % DISTINCT_SECRETS]: bcrypt is the set-up's
    whole cost (1.5 ms a hash at cost 4, so 100,000 own secrets took minutes),
    and the measured phases never run it (the warm-up fills the auth cache,
    which is keyed by stored hash and secret), so a few thousand distinct
    secrets measure the same request path. The hosts go into the store in one
    transaction (Store.add_hosts); the records through the service's publish,
    one group, one commit, whatever the zone layout.
    """
    bench.http_port, bench.dns_port, bench.rndc_port = free_port(), free_port(), free_port()
    t0 = time.perf_counter()
    cfg = cli.init_instance(bench.directory, bench.http_port, bench.dns_port, bench.rndc_port, zone=ZONE,
                            extra={"security.bcrypt_rounds": rounds, **settings})
    bench.config_path = bench.directory / "ddns.toml"
    service = Service.open(cfg)
    # named is not running yet: publish without reload; `ddns serve` starts named on these files
    # and its start-up reconcile checks that the served serial is the committed one.
    service.publisher.named.settings.rndc = None
    user = service.accounts.add_user(USER)
    t1 = time.perf_counter()

    n = bench.n_hosts
    k = max(1, min(n, distinct_secrets))
    own = [new_secret() for _ in range(k)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # bcrypt releases the GIL
        hashes = list(pool.map(lambda s: hash_secret(s, rounds), own, chunksize=64))
    bench.secrets = [own[i % k] for i in range(n)]
    t2 = time.perf_counter()
    service.store.add_hosts(((bench.fqdn(i), ZONE, user.id, hashes[i % k]) for i in range(n)), time.time(), "bench")
    t3 = time.perf_counter()

    bench.current = [addresses.next() for _ in range(n)]
    actor = Actor("bench", interface="bench")
    changes = [Update(ZONE, tuple(Operation.replace(bench.fqdn(i), "A", [bench.current[i]])), actor=actor) for i in range(n)]
    outcomes = [r.outcome for r in service.publish(changes)]
    t4 = time.perf_counter()
    if any(o != Outcome.PUBLISHED for o in outcomes):
        raise RuntimeError(f"initial publish: {sum(o != Outcome.PUBLISHED for o in outcomes)} updates not PUBLISHED")
    bench.setup = {"init_s": round(t1 - t0, 3), "distinct_secrets": k, "hash_secrets_s": round(t2 - t1, 3),
                   "insert_hosts_s": round(t3 - t2, 3), "initial_publish_s": round(t4 - t3, 3),
                   "commits_after_setup": bench.commits()}
    log(f"set up {n} hosts: {bench.setup}")


def start_serve(bench: Bench, timeout: float = 120.0) -> None:
    log_file = open(bench.directory / "serve.log", "ab")
    command = [sys.executable, "-m", "ddns.cli"]
    if bench.trace_file is not None:
        command = [sys.executable, str(REPO / "bench" / "trace_serve.py"), str(bench.trace_file)]
    bench.proc = subprocess.Popen([*command, "-c", str(bench.config_path), "serve"],
                                  stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  cwd=str(REPO))
    log_file.close()
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bench.proc.poll() is not None:
            raise RuntimeError(f"ddns serve exited:\n{(bench.directory / 'serve.log').read_text()[-3000:]}")
        try:
            status, body = http_get(bench.http_port, "/healthz", timeout=1.0)
            if status == 200:
                bench.setup["serve_start_s"] = round(time.perf_counter() - t0, 3)
                return
            if status == 503:
                log(f"healthz degraded: {body}")
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"ddns serve not healthy after {timeout}s:\n{(bench.directory / 'serve.log').read_text()[-3000:]}")


def stop_serve(bench: Bench) -> None:
    proc = bench.proc
    if proc is None:
        return
    named = bench.named_pid()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # serve stops its managed named
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            log("serve did not stop in 60 s; killing it")
            proc.kill()
            proc.wait(10)
    if named is not None:  # only if serve could not stop the named it started for us
        try:
            cmdline = Path(f"/proc/{named}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return  # gone: serve stopped it
        if "named" in cmdline and str(bench.directory) in cmdline:
            log(f"named {named} still running; terminating it")
            os.kill(named, signal.SIGTERM)


# ---- phases -------------------------------------------------------------------------
def run_clients(bench: Bench, n_clients: int, work: list[list[int]], make_request, stop_at: float | None = None,
                fresh: bool = False):
    """Start N_CLIENTS threads together; client k runs make_request(client, host) over work[k].

    Returns (start perf_counter, list of (host, address, body, t_sent, t_answered)).
    With STOP_AT (perf_counter) each client loops over its hosts until then.
    """
    results: list[list[tuple]] = [[] for _ in range(n_clients)]
    barrier = threading.Barrier(n_clients + 1, timeout=60)
    hard_deadline = time.perf_counter() + PHASE_TIMEOUT

    def worker(k: int) -> None:
        client = Client(bench.http_port, fresh)
        try:
            client.connect()
        except OSError:
            pass  # the first request reconnects and reports the error
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        hosts = work[k]
        if not hosts:
            return
        j = 0
        limit = len(hosts) if stop_at is None else 10_000_000
        while j < limit:
            now = time.perf_counter()
            if now >= hard_deadline or (stop_at is not None and now >= stop_at):
                break
            host = hosts[j % len(hosts)]
            address, body = make_request(client, host)
            results[k].append((host, address, body, now, time.perf_counter()))
            j += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n_clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(max(1.0, hard_deadline - time.perf_counter() + 5))
    return start, [r for rs in results for r in rs]


def phase_warmup(bench: Bench, hosts: list[int], n_clients: int) -> dict:
    """One request per measured host with its current address (nochg): bcrypt once, cache warm."""
    def request(client: Client, i: int):
        return bench.current[i], client.update(bench.fqdn(i), bench.secrets[i], bench.current[i])

    t0 = time.perf_counter()
    work = [hosts[k::n_clients] for k in range(n_clients)]
    _, results = run_clients(bench, n_clients, work, request)
    bad = [r for r in results if not r[2].startswith("nochg")]
    out = {"hosts": len(hosts), "seconds": round(time.perf_counter() - t0, 2), "not_nochg": len(bad)}
    if bad:
        out["first_bad"] = bad[0][2][:200]
    log(f"warm-up: {out}")
    return out


def phase_latency(bench: Bench, hosts: list[int], samples: int, addresses: Addresses, fresh: bool = False) -> dict:
    client = Client(bench.http_port, fresh)
    client.connect()
    http_t, served_t, after_answer_t = [], [], []
    errors, lost, served_at_answer = [], 0, 0
    phase_deadline = time.perf_counter() + PHASE_TIMEOUT
    try:
        for k in range(samples):
            if time.perf_counter() > phase_deadline:
                break
            i = hosts[k % len(hosts)]
            address = addresses.next()
            t0 = time.perf_counter()
            body = client.update(bench.fqdn(i), bench.secrets[i], address)
            t1 = time.perf_counter()
            if body != f"good {address}":
                errors.append(body[:200])
                continue
            bench.current[i] = address
            seen, queries = wait_served(bench.dns_port, bench.fqdn(i), address, t1 + SERVED_TIMEOUT)
            if seen is None:
                lost += 1
                continue
            served_at_answer += queries == 1
            http_t.append(t1 - t0)
            served_t.append(seen - t0)
            after_answer_t.append(seen - t1)
        # the same hosts again with the address they have: the request path without a publish
        nochg_t = []
        for k in range(min(samples, 100)):
            i = hosts[k % len(hosts)]
            t0 = time.perf_counter()
            body = client.update(bench.fqdn(i), bench.secrets[i], bench.current[i])
            if body == f"nochg {bench.current[i]}":
                nochg_t.append(time.perf_counter() - t0)
    finally:
        client.close()
    out = {
        "samples": samples, "errors": len(errors), "lost": lost,
        "nochg_sequential_p50_ms": ms(pct(nochg_t, 50)),
        "http_p50_ms": ms(pct(http_t, 50)), "http_p95_ms": ms(pct(http_t, 95)), "http_max_ms": ms(max(http_t, default=None)),
        "served_p50_ms": ms(pct(served_t, 50)), "served_p95_ms": ms(pct(served_t, 95)),
        "served_max_ms": ms(max(served_t, default=None)),
        "served_on_first_query": served_at_answer,
        "query_after_answer_p50_ms": ms(pct(after_answer_t, 50)),
    }
    if errors:
        out["first_error"] = errors[0]
    log(f"latency: {out}")
    return out


def phase_burst(bench: Bench, hosts: list[int], n_clients: int, addresses: Addresses, fresh: bool = False) -> dict:
    commits_before = bench.commits()
    cpu_before = proc_cpu(bench.proc.pid)
    named = bench.named_pid()
    named_cpu_before = proc_cpu(named) if named else 0.0
    # addresses decided up front so that client threads only send
    planned = {i: addresses.next() for i in hosts}

    def request(client: Client, i: int):
        return planned[i], client.update(bench.fqdn(i), bench.secrets[i], planned[i])

    work = [hosts[k::n_clients] for k in range(n_clients)]
    start, results = run_clients(bench, n_clients, work, request, fresh=fresh)
    end = max((r[4] for r in results), default=start)
    cpu = proc_cpu(bench.proc.pid) - cpu_before
    named_cpu = (proc_cpu(named) - named_cpu_before) if named else 0.0
    commits = bench.commits() - commits_before
    answered = len(results)
    errors = [r for r in results if r[2] != f"good {r[1]}"]
    good = [r for r in results if r[2] == f"good {r[1]}"]
    for host, address, *_ in good:
        bench.current[host] = address
    latencies = [r[4] - r[3] for r in results]
    wall = end - start
    log(f"burst: {answered} answers in {wall:.2f}s, {len(errors)} errors, {commits} commits; verifying")

    # every update (good or not) must be served by BIND; retry the missing until a deadline
    pending = {r[0]: r[1] for r in results}
    pending.update({i: planned[i] for i in hosts if i not in pending})  # never answered
    t_verify = time.perf_counter()
    pending = unserved(bench.dns_port, bench.fqdn, pending)
    all_served = time.perf_counter()
    lost_good = sum(1 for r in good if r[0] in pending)
    out = {
        "updates": len(hosts), "clients": n_clients, "answered": answered, "errors": len(errors),
        "wall_s": round(wall, 3), "updates_per_s": round(answered / wall, 1) if wall > 0 else None,
        "good_per_s": round(len(good) / wall, 1) if wall > 0 else None,
        "req_p50_ms": ms(pct(latencies, 50)), "req_p95_ms": ms(pct(latencies, 95)), "req_max_ms": ms(max(latencies, default=None)),
        "commits": commits, "changes_per_commit": round(len(good) / commits, 1) if commits else None,
        "not_served": len(pending), "lost_good": lost_good,
        "verify_s": round(all_served - t_verify, 3),
        "all_served_after_start_s": round(all_served - start, 3) if not pending else None,
        "serve_cpu_s": round(cpu, 2), "serve_cpu_ms_per_update": round(cpu * 1000 / max(1, answered), 2),
        "named_cpu_s": round(named_cpu, 2),
    }
    if errors:
        kinds: dict[str, int] = {}
        for r in errors:
            kinds[r[2][:60]] = kinds.get(r[2][:60], 0) + 1
        out["error_kinds"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5])
    log(f"burst: {out}")
    return out


def phase_nochg(bench: Bench, hosts: list[int], n_clients: int, seconds: float, fresh: bool = False) -> dict:
    cpu_before = proc_cpu(bench.proc.pid)
    commits_before = bench.commits()

    def request(client: Client, i: int):
        return bench.current[i], client.update(bench.fqdn(i), bench.secrets[i], bench.current[i])

    work = [hosts[k::n_clients] for k in range(n_clients)]
    start = time.perf_counter()
    start, results = run_clients(bench, n_clients, work, request, stop_at=start + seconds + 0.2, fresh=fresh)
    end = max((r[4] for r in results), default=start)
    wall = end - start
    cpu = proc_cpu(bench.proc.pid) - cpu_before
    bad = [r for r in results if r[2] != f"nochg {r[1]}"]
    latencies = [r[4] - r[3] for r in results]
    out = {"clients": n_clients, "seconds": round(wall, 2), "requests": len(results),
           "requests_per_s": round(len(results) / wall, 1) if wall > 0 else None,
           "not_nochg": len(bad), "req_p50_ms": ms(pct(latencies, 50)), "req_p95_ms": ms(pct(latencies, 95)),
           "commits": bench.commits() - commits_before,
           "serve_cpu_ms_per_request": round(cpu * 1000 / max(1, len(results)), 2)}
    if bad:
        out["first_bad"] = bad[0][2][:200]
    log(f"nochg: {out}")
    return out


# ---- one zone size ----------------------------------------------------------------
def run_size(n_hosts: int, args, workdir: Path) -> dict:
    addresses = Addresses()
    bench = Bench(workdir / f"inst-{n_hosts}", n_hosts)
    if args.trace:
        bench.trace_file = workdir / f"trace-{n_hosts}.json"
    result: dict = {"hosts": n_hosts}
    settings = dict(args.setting)
    try:
        create_instance(bench, addresses, args.bcrypt_rounds, settings, args.distinct_secrets)
        start_serve(bench)
        result["setup"] = bench.setup
        log(f"serve pid {bench.proc.pid} on :{bench.http_port}, named :{bench.dns_port} ({bench.setup['serve_start_s']}s)")
        result["rss_after_start_kib"] = proc_status(bench.proc.pid)

        n_lat = min(args.samples, n_hosts)
        n_burst = min(args.burst, n_hosts)
        latency_hosts = list(range(n_lat))
        burst_hosts = [(n_lat + k) % n_hosts for k in range(n_burst)]  # distinct; disjoint if N allows
        if n_burst < args.burst:
            log(f"burst capped at {n_burst} (only {n_hosts} hosts; a burst goes to distinct hosts)")
        def phase(name, fn, *fargs):
            t0 = time.monotonic()
            result[name] = fn(*fargs)
            bench.phases[name] = [t0, time.monotonic()]

        phase("warmup", phase_warmup, bench, sorted(set(latency_hosts) | set(burst_hosts)), args.clients)
        phase("latency", phase_latency, bench, latency_hosts, args.samples, addresses)
        phase("burst", phase_burst, bench, burst_hosts, args.clients, addresses)
        result["rss_after_burst_kib"] = proc_status(bench.proc.pid)
        phase("nochg", phase_nochg, bench, burst_hosts, args.clients, args.nochg_seconds)
        result["rss_end_kib"] = proc_status(bench.proc.pid)
        named = bench.named_pid()
        result["named_rss_kib"] = proc_status(named) if named else {}
        try:
            result["healthz_end"] = json.loads(http_get(bench.http_port, "/healthz")[1])
        except (OSError, ValueError):
            pass
        result["commits_total"] = bench.commits()
    finally:
        stop_serve(bench)
    if bench.trace_file is not None and bench.trace_file.exists():
        result["trace"] = summarize_trace(json.loads(bench.trace_file.read_text()), bench.phases)
    return result


def summarize_trace(samples: dict, phases: dict) -> dict:
    """Per phase and stage: count, p50, p95 and total (ms; batch sizes as counts)."""
    out: dict = {}
    for phase, (t0, t1) in phases.items():
        stages = {}
        for name, pairs in samples.items():
            values = [v for t, v in pairs if t0 <= t <= t1]
            if not values:
                continue
            scale = 1 if name == "pub batch size" else 1000
            stages[name] = {"n": len(values), "p50": round(pct(values, 50) * scale, 2),
                            "p95": round(pct(values, 95) * scale, 2), "sum": round(sum(values) * scale, 1)}
        out[phase] = stages
    return out


# ---- report ----------------------------------------------------------------------
def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(results: list[dict], meta: dict) -> str:
    def g(r, *path):
        for p in path:
            if not isinstance(r, dict) or p not in r:
                return None
            r = r[p]
        return r

    def mib(kib):
        return None if kib is None else round(kib / 1024, 1)

    rows = [
        ("update -> HTTP answer p50 (ms)", lambda r: g(r, "latency", "http_p50_ms"), ""),
        ("update -> served by BIND p50 (ms)", lambda r: g(r, "latency", "served_p50_ms"), "<= 100 (1k), <= 200 (10k)"),
        ("update -> served p95 (ms)", lambda r: g(r, "latency", "served_p95_ms"), ""),
        ("update -> served max (ms)", lambda r: g(r, "latency", "served_max_ms"), ""),
        ("latency samples / errors / lost", lambda r: f"{g(r, 'latency', 'samples')} / {g(r, 'latency', 'errors')} / {g(r, 'latency', 'lost')}", "errors 0, lost 0"),
        ("nochg, one client, sequential p50 (ms)", lambda r: g(r, "latency", "nochg_sequential_p50_ms"), ""),
        ("served on first query after `good`", lambda r: f"{g(r, 'latency', 'served_on_first_query')} / {g(r, 'latency', 'samples')}", "all"),
        ("burst: updates / clients", lambda r: f"{g(r, 'burst', 'updates')} / {g(r, 'burst', 'clients')}", "2,000 / 50"),
        ("burst: throughput (updates/s)", lambda r: g(r, "burst", "updates_per_s"), ">= 200"),
        ("burst: wall time until all answered (s)", lambda r: g(r, "burst", "wall_s"), ""),
        ("burst: request p50 / p95 (ms)", lambda r: f"{fmt(g(r, 'burst', 'req_p50_ms'))} / {fmt(g(r, 'burst', 'req_p95_ms'))}", ""),
        ("burst: errors (answer not `good`)", lambda r: g(r, "burst", "errors"), "0"),
        ("burst: lost (not served by BIND)", lambda r: g(r, "burst", "not_served"), "0"),
        ("burst: all served after start (s)", lambda r: g(r, "burst", "all_served_after_start_s"), ""),
        ("burst: git commits (changes/commit)", lambda r: f"{g(r, 'burst', 'commits')} ({fmt(g(r, 'burst', 'changes_per_commit'))})", "far fewer than updates"),
        ("burst: serve CPU per update (ms)", lambda r: g(r, "burst", "serve_cpu_ms_per_update"), ""),
        ("nochg: requests/s", lambda r: g(r, "nochg", "requests_per_s"), ""),
        ("nochg: p50 (ms) / not-nochg answers", lambda r: f"{fmt(g(r, 'nochg', 'req_p50_ms'))} / {g(r, 'nochg', 'not_nochg')}", "- / 0"),
        ("serve RSS after burst (MiB)", lambda r: mib(g(r, "rss_after_burst_kib", "VmRSS")), "< 172 (peer)"),
        ("serve peak RSS VmHWM (MiB)", lambda r: mib(g(r, "rss_end_kib", "VmHWM")), ""),
        ("named RSS (MiB)", lambda r: mib(g(r, "named_rss_kib", "VmRSS")), ""),
        ("initial publish of N records (s)", lambda r: g(r, "setup", "initial_publish_s"), ""),
    ]
    head = "| metric | " + " | ".join(f"{r['hosts']:,} hosts" for r in results) + " | target |"
    sep = "|---|" + "---|" * len(results) + "---|"
    lines = [head, sep]
    for name, fn, target in rows:
        cells = []
        for r in results:
            try:
                cells.append(fmt(fn(r)))
            except Exception:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")
    for r in results:
        if "trace" not in r:
            continue
        phases = [ph for ph in ("latency", "burst", "nochg") if ph in r["trace"]]
        names = sorted({n for ph in phases for n in r["trace"][ph]})
        lines += ["", f"Per-stage times in the serve process, {r['hosts']:,} hosts (p50 / p95 ms; batch size in changes):", "",
                  "| stage | " + " | ".join(phases) + " |", "|---|" + "---|" * len(phases)]
        for n in names:
            cells = []
            for ph in phases:
                st = r["trace"][ph].get(n)
                cells.append(f"{fmt(st['p50'])} / {fmt(st['p95'])} (n={st['n']})" if st else "-")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Machine: {meta['cpus']} CPUs, load average at start {meta['loadavg_start']}, at end "
                 f"{meta['loadavg_end']}; bcrypt cost {meta['bcrypt_rounds']} for the bench instance; settings {meta['settings'] or 'defaults'}.")
    return "\n".join(lines)


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("use KEY=VALUE, e.g. zones.git_fsync=false")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", default="1000,10000", help="comma-separated zone sizes (hosts = dynamic records)")
    p.add_argument("--samples", type=int, default=200, help="sequential updates for the latency measurement")
    p.add_argument("--burst", type=int, default=2000, help="updates to distinct hosts in the burst (capped at hosts)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients for warm-up, burst and nochg")
    p.add_argument("--nochg-seconds", type=float, default=5.0, help="duration of the nochg measurement")
    p.add_argument("--bcrypt-rounds", type=int, default=4,
                   help="bcrypt cost of the bench instance's host secrets (default 4; the cache makes it irrelevant "
                        "after warm-up, 12 makes setup and warm-up take minutes)")
    p.add_argument("--distinct-secrets", type=int, default=DISTINCT_SECRETS,
                   help="host i uses secret i mod this; the set-up hashes each once (default %(default)s)")
    p.add_argument("--set", dest="setting", action="append", type=parse_setting, default=[], metavar="KEY=VALUE",
                   help="extra instance setting, e.g. --set zones.git_fsync=false (repeatable)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, zones repo) for inspection")
    p.add_argument("--trace", action="store_true",
                   help="run serve through bench/trace_serve.py and report per-stage times (adds a little overhead)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.hosts.split(",") if x.strip()]
    if not sizes or min(sizes) < 1 or args.samples < 1 or args.burst < 1 or args.clients < 1:
        p.error("sizes, samples, burst and clients must be positive")
    for tool in ("named", "rndc", "rndc-confgen", "named-checkzone", "git"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            p.error(f"{tool} is not installed")

    meta = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "bcrypt_rounds": args.bcrypt_rounds, "settings": dict(args.setting), "argv": sys.argv[1:],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def work(workdir: Path) -> list[dict]:
        results = []
        for n in sizes:
            log(f"=== {n} hosts ===")
            results.append(run_size(n, args, workdir))
        return results

    return run_and_report("ddns-bench-", args, meta, work, markdown)


def run_and_report(prefix: str, args, meta: dict, work, markdown, key: str = "results") -> int:
    """WORK(workdir) in a fresh temp dir (kept with --keep); print MARKDOWN(result, META), write --json.

    The load average at the end goes into META whether WORK finished or not.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    log(f"working in {workdir}")
    try:
        result = work(workdir)
    finally:
        meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(result, meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, key: result}, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
