#!/usr/bin/env python3
"""Soak test: minutes of mixed load against a real ``ddns serve``, with injected faults.

One instance in a temp dir (real managed named, real git, SQLite), ``ddns
serve`` as a separate process, and client threads on loopback sending a mix
of dyndns2 updates (changing and unchanged addresses, wrong secrets), portal
page loads with a logged-in session and JSON API calls. A fault thread
injects, in turn, a SIGSTOPped named, a held ``.git/index.lock`` and an
exclusively locked SQLite database, each for a few seconds. A sampler reads
the RSS of serve and named from /proc.

The summary: RSS at start / middle / end (memory must stay flat), answers by
kind, unexpected errors (during a fault, dnserr / 911 / 503 are expected and
counted apart), latency percentiles, and the end state: every host's address
served by named as the last accepted update set it, the zone valid for
named-checkzone, the repository clean, a last update answered good.

Everything talks to 127.0.0.1; every loop is bounded by --minutes; serve (and
through it named) and the temp dir are removed at the end whatever happens.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_updates as bu  # noqa: E402  (instance set-up, serve process, /proc and DNS helpers)

from ddns import bind  # noqa: E402
from ddns.service import Service  # noqa: E402
from ddns import config as configmod  # noqa: E402

ZONE = bu.ZONE
VIEWER = "viewer"
VIEWER_PASSWORD = "soak-viewer-password"
VIEWER_HOSTS = 5
WEIGHTS = {"update": 25, "nochg": 30, "badauth": 10, "portal": 20, "api": 15}
FAULTS = ("named-stop", "git-lock", "db-lock")
FAULT_GRACE = 8.0          # seconds after a fault during which its after-effects are still expected
REQUEST_TIMEOUT = 60.0
# Wrong secrets all come from 127.0.0.1: without these, the client address would be blocked (abuse).
SOAK_SETTINGS = {"security.max_failures": 10**9, "security.max_client_failures": 10**9}


# ---- HTTP --------------------------------------------------------------------------------
class Conn:
    """A keep-alive connection that reconnects after a transport error."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)

    def send(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
        """(status, body text, headers); status 0 and the error text for a transport failure."""
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            return resp.status, resp.read().decode(errors="replace"), resp.headers
        except (http.client.HTTPException, OSError) as exc:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
            return 0, f"{type(exc).__name__}: {exc}", {}

    def close(self) -> None:
        self.conn.close()


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(),
            "User-Agent": bu.AGENT}


def portal_login(conn: Conn) -> str:
    """Log the viewer in (GET /login for the CSRF token, POST /login); returns the Cookie header."""
    status, body, headers = conn.send("GET", "/login")
    cookie = headers.get("Set-Cookie", "").split(";")[0] if headers else ""
    match = re.search(r'name="csrf_token" value="([^"]+)"', body)
    if status != 200 or not match:
        raise RuntimeError(f"login page: {status} {body[:200]}")
    form = urllib.parse.urlencode({"csrf_token": match[1], "next": "/", "username": VIEWER,
                                   "password": VIEWER_PASSWORD}).encode()
    status, body, headers = conn.send("POST", "/login", {"Cookie": cookie,
                                                         "Content-Type": "application/x-www-form-urlencoded"}, form)
    if status != 303:
        raise RuntimeError(f"login: {status} {body[:200]}")
    return headers.get("Set-Cookie", "").split(";")[0]


# ---- results -----------------------------------------------------------------------------
@dataclass
class Sample:
    kind: str
    verdict: str      # "ok", "fault" (expected during a fault), "error" (unexpected)
    answer: str       # short form of the answer, e.g. "good", "401 badauth", "200", "503"
    t0: float
    t1: float


@dataclass
class Soak:
    bench: bu.Bench
    args: argparse.Namespace
    viewer_hosts: list[str] = field(default_factory=list)
    token: str = ""
    samples: list[Sample] = field(default_factory=list)
    faults: list[tuple[str, float, float]] = field(default_factory=list)   # (kind, start, end) monotonic
    memory: list[tuple[float, dict, dict]] = field(default_factory=list)   # (t, serve, named)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def in_fault(self, t0: float, t1: float) -> bool:
        with self.lock:
            windows = list(self.faults)
        return any(t0 <= end + FAULT_GRACE and t1 >= start for _, start, end in windows)

    def record(self, kind: str, ok: bool, faulty: bool, answer: str, t0: float) -> None:
        t1 = time.monotonic()
        verdict = "ok" if ok else "fault" if faulty and self.in_fault(t0, t1) else "error"
        with self.lock:
            self.samples.append(Sample(kind, verdict, answer[:80], t0, t1))


# ---- set-up ------------------------------------------------------------------------------
def prepare(soak: Soak) -> None:
    """The bench instance (bench_updates), plus a viewer with a password, a few hosts and an API token."""
    bench, args = soak.bench, soak.args
    bu.create_instance(bench, bu.Addresses(), args.bcrypt_rounds, {**SOAK_SETTINGS, **dict(args.setting)})
    service = Service.open(configmod.load(bench.config_path, environ={}))
    viewer = service.accounts.add_user(VIEWER, VIEWER_PASSWORD)
    for k in range(VIEWER_HOSTS):
        host, _ = service.add_host(f"v{k}.{ZONE}", VIEWER)
        soak.viewer_hosts.append(host.fqdn)
    soak.token = service.accounts.new_api_token(viewer, "soak")


# ---- load --------------------------------------------------------------------------------
def worker(soak: Soak, k: int, hosts: list[int], addresses: bu.Addresses, end: float) -> None:
    """One client: a seeded mix of requests until END, over its own hosts (no host is shared)."""
    bench, rng = soak.bench, random.Random(soak.args.seed * 1000 + k)
    conn = Conn(bench.http_port)
    cookie = ""
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    try:
        while time.monotonic() < end and not soak.stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            i = rng.choice(hosts)
            t0 = time.monotonic()
            if kind in ("update", "nochg"):
                address = addresses.next() if kind == "update" else bench.current[i]
                status, body, _ = conn.send("GET", f"/nic/update?myip={address}", basic(bench.fqdn(i), bench.secrets[i]))
                body = body.strip()
                expected = f"{'good' if kind == 'update' else 'nochg'} {address}"
                if status == 200 and (body == expected or body == "dnserr"):
                    bench.current[i] = address  # dnserr: committed, named will serve it
                soak.record(kind, status == 200 and body == expected, body in ("dnserr", "911") or status == 503,
                            f"{status} {body}", t0)
            elif kind == "badauth":
                status, body, _ = conn.send("GET", "/nic/update?myip=10.255.0.1", basic(bench.fqdn(i), "wrong-secret"))
                soak.record(kind, status == 401 and body.strip() == "badauth", status == 503, f"{status} {body.strip()}", t0)
            elif kind == "portal":
                if not cookie:
                    try:
                        cookie = portal_login(conn)
                    except RuntimeError as exc:
                        soak.record("login", False, True, str(exc), t0)
                        soak.stop.wait(0.5)  # no tight loop while logins fail
                        continue
                path = rng.choice(["/", f"/hosts/{rng.choice(soak.viewer_hosts)}", "/tokens"])
                status, body, _ = conn.send("GET", path, {"Cookie": cookie})
                ok = status == 200 and (soak.viewer_hosts[0] in body if path == "/" else True)
                if status == 303:
                    cookie = ""  # the session ended: log in again next time
                soak.record(kind, ok, status == 503, f"{status} {path.split('/')[1] or '/'}", t0)
            else:
                path = rng.choice(["/api/v1/hosts", "/api/v1/domains", f"/api/v1/hosts/{rng.choice(soak.viewer_hosts)}"])
                status, body, _ = conn.send("GET", path, {"Authorization": "Bearer " + soak.token})
                soak.record(kind, status == 200 and body.startswith(("[", "{")), status == 503, f"{status}", t0)
            if soak.args.think:
                time.sleep(rng.uniform(0, 2 * soak.args.think))
    finally:
        conn.close()


# ---- faults ------------------------------------------------------------------------------
def fault_named_stop(soak: Soak, seconds: float) -> None:
    pid = soak.bench.named_pid()
    if pid is None:
        raise RuntimeError("no named pid")
    os.kill(pid, signal.SIGSTOP)
    try:
        soak.stop.wait(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def fault_git_lock(soak: Soak, seconds: float) -> None:
    lock = soak.bench.repo / ".git" / "index.lock"
    for _ in range(100):  # git itself may hold it for a few milliseconds
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            time.sleep(0.01)
    else:
        raise RuntimeError("index.lock never free")
    try:
        soak.stop.wait(seconds)
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)


def fault_db_lock(soak: Soak, seconds: float) -> None:
    db = sqlite3.connect(soak.bench.directory / "ddns.sqlite3", timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        soak.stop.wait(seconds)
        db.execute("ROLLBACK")
    finally:
        db.close()


def fault_loop(soak: Soak, end: float) -> None:
    """Every --fault-every seconds the next fault, for --fault-seconds; never past END."""
    actions = {"named-stop": fault_named_stop, "git-lock": fault_git_lock, "db-lock": fault_db_lock}
    n = 0
    while not soak.stop.wait(soak.args.fault_every):
        if time.monotonic() + soak.args.fault_seconds + FAULT_GRACE >= end:
            return
        kind = FAULTS[n % len(FAULTS)]
        n += 1
        start = time.monotonic()
        with soak.lock:
            soak.faults.append((kind, start, start + soak.args.fault_seconds + 60))  # until it really ends
        try:
            actions[kind](soak, soak.args.fault_seconds)
        except Exception as exc:  # a fault that could not be injected is reported, the soak goes on
            bu.log(f"fault {kind} not injected: {exc}")
        with soak.lock:
            soak.faults[-1] = (kind, start, time.monotonic())
        bu.log(f"fault {kind} for {soak.faults[-1][2] - start:.1f}s")


def sample_memory(soak: Soak, end: float) -> None:
    while time.monotonic() < end and not soak.stop.is_set():
        named = soak.bench.named_pid()
        soak.memory.append((time.monotonic(), proc_info(soak.bench.proc.pid), proc_info(named) if named else {}))
        soak.stop.wait(soak.args.sample_seconds)


def proc_info(pid: int) -> dict:
    """VmRSS / VmHWM (KiB, from bench_updates.proc_status), threads and open descriptors."""
    info = dict(bu.proc_status(pid))
    try:
        info["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        info["threads"] = int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)[1])
    except (OSError, TypeError):
        pass
    return info


# ---- the end state -------------------------------------------------------------------------
def final_checks(soak: Soak) -> dict:
    """After the load: healthy, every host served as last accepted, zone valid, repo clean, one good update."""
    bench = soak.bench
    out: dict = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, body = bu.http_get(bench.http_port, "/healthz")
        except OSError as exc:
            status, body = 0, str(exc)
        if status == 200:
            break
        time.sleep(0.5)
    out["healthz"] = status
    pending = set(range(bench.n_hosts))
    deadline = time.monotonic() + 30  # a dnserr answer is served once named has reloaded the zone
    while pending and time.monotonic() < deadline:
        pending = {i for i in pending if bu.dns_a(bench.dns_port, bench.fqdn(i)) != [bench.current[i]]}
        time.sleep(0.25 if pending else 0)
    wrong = [(bench.fqdn(i), bench.current[i], bu.dns_a(bench.dns_port, bench.fqdn(i))) for i in sorted(pending)]
    out["hosts_not_served_as_set"] = len(wrong)
    if wrong:
        out["first_wrong"] = wrong[:3]
    rendered = bench.repo / ZONE / f"{ZONE}.zone"
    out["named_checkzone"] = bind.check_zone(ZONE, rendered) or "ok"
    out["git_status"] = subprocess.run(["git", "-C", str(bench.repo), "status", "--porcelain"], capture_output=True,
                                       text=True, timeout=60).stdout.strip() or "clean"
    address = "192.0.2.77"  # never one of the soak's 10.x addresses: this update must answer good
    conn = Conn(bench.http_port)
    status, body, _ = conn.send("GET", f"/nic/update?myip={address}", basic(bench.fqdn(0), bench.secrets[0]))
    conn.close()
    out["last_update"] = f"{status} {body.strip()}"
    out["last_update_ok"] = status == 200 and body.strip() == f"good {address}"
    out["commits"] = bench.commits()
    log_text = (bench.directory / "serve.log").read_text(errors="replace")
    out["serve_log_tracebacks"] = log_text.count("Traceback")
    return out


# ---- report ---------------------------------------------------------------------------------
def summarize(soak: Soak, wall: float, final: dict, load: tuple) -> dict:
    by_kind: dict[str, dict] = {}
    for s in soak.samples:
        entry = by_kind.setdefault(s.kind, {"n": 0, "ok": 0, "fault": 0, "error": 0, "answers": {}, "ms": []})
        entry["n"] += 1
        entry[s.verdict] += 1
        if s.verdict != "ok":
            entry["answers"][s.answer] = entry["answers"].get(s.answer, 0) + 1
        entry["ms"].append((s.t1 - s.t0) * 1000)
    for entry in by_kind.values():
        values = entry.pop("ms")
        entry.update({p: round(bu.pct(values, q), 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))})
        entry["max"] = round(max(values), 1)
    mem = soak.memory
    pick = {"start": mem[0], "middle": mem[len(mem) // 2], "end": mem[-1]} if mem else {}
    memory = {name: {"serve_rss_mib": round(m[1].get("VmRSS", 0) / 1024, 1),
                     "named_rss_mib": round(m[2].get("VmRSS", 0) / 1024, 1),
                     "serve_fds": m[1].get("fds"), "serve_threads": m[1].get("threads")}
              for name, m in pick.items()}
    serve_rss = [m[1].get("VmRSS", 0) for m in mem if m[1]]
    named_rss = [m[2].get("VmRSS", 0) for m in mem if m[2]]
    # The first half includes the caches filling up (secrets, sessions, templates); the second must not grow.
    flat = bool(serve_rss) and serve_rss[-1] <= serve_rss[len(serve_rss) // 2] * 1.1 + 5 * 1024
    fault_counts: dict[str, int] = {}
    for kind, _, _ in soak.faults:
        fault_counts[kind] = fault_counts.get(kind, 0) + 1
    unexpected = sum(e["error"] for e in by_kind.values())
    passed = unexpected == 0 and flat and final["healthz"] == 200 and not final["hosts_not_served_as_set"] \
        and final["named_checkzone"] == "ok" and final["git_status"] == "clean" and final["last_update_ok"]
    return {"minutes": round(wall / 60, 2), "hosts": soak.bench.n_hosts, "clients": soak.args.clients,
            "seed": soak.args.seed, "requests": len(soak.samples),
            "requests_per_s": round(len(soak.samples) / wall, 1) if wall else None,
            "by_kind": by_kind, "unexpected_errors": unexpected, "faults": fault_counts,
            "memory": memory, "serve_rss_max_mib": round(max(serve_rss, default=0) / 1024, 1),
            "named_rss_max_mib": round(max(named_rss, default=0) / 1024, 1), "memory_flat": flat,
            "final": final, "load_avg_start_end": load, "passed": passed}


def print_summary(r: dict) -> None:
    print(f"## soak: {r['minutes']} min, {r['hosts']} hosts, {r['clients']} clients, seed {r['seed']}, "
          f"load average {r['load_avg_start_end'][0]} -> {r['load_avg_start_end'][1]}\n")
    print("| memory | start | middle | end |\n|---|---|---|---|")
    for key, label in (("serve_rss_mib", "serve RSS (MiB)"), ("named_rss_mib", "named RSS (MiB)"),
                       ("serve_fds", "serve open fds"), ("serve_threads", "serve threads")):
        print(f"| {label} | " + " | ".join(str(r["memory"].get(p, {}).get(key)) for p in ("start", "middle", "end")) + " |")
    print(f"\nserve RSS max {r['serve_rss_max_mib']} MiB, named RSS max {r['named_rss_max_mib']} MiB; "
          f"flat: {'yes' if r['memory_flat'] else 'NO'}\n")
    print("| kind | requests | ok | expected during a fault | unexpected | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, e in sorted(r["by_kind"].items()):
        print(f"| {kind} | {e['n']} | {e['ok']} | {e['fault']} | {e['error']} | {e['p50']} | {e['p95']} | "
              f"{e['p99']} | {e['max']} |")
    print(f"\n{r['requests']} requests ({r['requests_per_s']}/s); faults injected: {r['faults']}; "
          f"unexpected errors: {r['unexpected_errors']}")
    for kind, e in sorted(r["by_kind"].items()):
        if e["answers"]:
            print(f"- {kind}, answers other than ok: {dict(sorted(e['answers'].items(), key=lambda kv: -kv[1])[:6])}")
    print(f"\nend state: {json.dumps(r['final'])}")
    print(f"\nresult: {'PASS' if r['passed'] else 'FAIL'}")


def run(args: argparse.Namespace, workdir: Path) -> dict:
    soak = Soak(bu.Bench(workdir / "inst", args.hosts), args)
    load_start = os.getloadavg()[0]
    try:
        prepare(soak)
        bu.start_serve(soak.bench)
        bu.log(f"serve pid {soak.bench.proc.pid} on :{soak.bench.http_port}, named :{soak.bench.dns_port}")
        warm = bu.phase_warmup(soak.bench, list(range(args.hosts)), args.clients)
        if warm["not_nochg"]:
            raise RuntimeError(f"warm-up: {warm}")
        addresses = bu.Addresses()
        for _ in range(args.hosts):
            addresses.next()  # past the set-up's addresses: every update below changes the address
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        threads = [threading.Thread(target=worker, args=(soak, k, list(range(k, args.hosts, args.clients)), addresses, end),
                                    daemon=True) for k in range(args.clients)]
        threads += [threading.Thread(target=fault_loop, args=(soak, end), daemon=True),
                    threading.Thread(target=sample_memory, args=(soak, end), daemon=True)]
        for t in threads:
            t.start()
        while time.monotonic() < end and not soak.stop.is_set():
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            bu.log(f"{len(soak.samples)} requests, {sum(s.verdict == 'error' for s in soak.samples)} unexpected")
        soak.stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT + 30)
        wall = time.monotonic() - t0
        final = final_checks(soak)
        soak.memory.append((time.monotonic(), proc_info(soak.bench.proc.pid),
                            proc_info(soak.bench.named_pid()) if soak.bench.named_pid() else {}))
        return summarize(soak, wall, final, (round(load_start, 2), round(os.getloadavg()[0], 2)))
    finally:
        soak.stop.set()
        named = soak.bench.named_pid()
        if named:
            try:
                os.kill(named, signal.SIGCONT)  # never leave a stopped named behind
            except ProcessLookupError:
                pass
        bu.stop_serve(soak.bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    parser.add_argument("--hosts", type=int, default=200, help="hosts updated by dyndns2 (default 200)")
    parser.add_argument("--clients", type=int, default=6, help="client threads (default 6)")
    parser.add_argument("--think", type=float, default=0.02, help="mean pause between a client's requests, s")
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between injected faults")
    parser.add_argument("--fault-seconds", type=float, default=4.0, help="how long each fault lasts")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="how often RSS is sampled")
    parser.add_argument("--seed", type=int, default=1, help="seed of the clients' request mix")
    parser.add_argument("--bcrypt-rounds", type=int, default=4, help="bcrypt cost of the secrets (set-up speed)")
    parser.add_argument("--set", dest="setting", action="append", default=[], type=bu.parse_setting,
                        metavar="KEY=VALUE", help="extra setting of the instance (repeatable)")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (instance, serve.log)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ddns-soak-"))
    try:
        result = run(args, workdir)
    finally:
        if args.keep:
            bu.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_summary(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
