#!/usr/bin/env python3
"""The same ddns app behind three HTTP servers, side by side: nochg with wrk.

One prepared instance (bench_updates' ``create_instance``: N hosts, N records
in one commit) is served in turn by

  builtin   ``ddns serve`` itself (ddns.httpserver: asyncio + h11, worker threads)
  granian   Granian's WSGI interface, one worker process, ``--threads`` blocking threads
  gunicorn  gunicorn's gthread worker, one worker process, ``--threads`` threads

For granian and gunicorn the worker process loads ``app_factory`` below, which
runs what ``ddns serve`` runs besides its HTTP server (the service, its
publisher thread, the managed named) and returns the real WSGI app, so the
nochg answer comes from the same served snapshot in every case. Per server:
one warm-up request per host (bcrypt once), then ``--runs`` wrk runs with
bench/nochg.lua (each request another host's credentials, each answer checked
to be "nochg ADDRESS"), printing req/s, p50 / p99 latency and the server's CPU
per request (every process of the server: /proc utime + stime deltas), with
the load average. ``--profile DIR`` also records one py-spy profile per
server; ``--budget N`` times N requests' parts in this process (``budget``). Loopback only; every process started is stopped at the end.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_updates as bu  # noqa: E402
import table  # noqa: E402

SERVERS = ("builtin", "granian", "gunicorn")
CONFIG_ENV = "DDNS_BENCH_CONFIG"
log = bu.log


def open_instance(config_path: Path):
    """(the WSGI app, a stop function) of the instance at CONFIG_PATH, its service and named running.

    What ``ddns serve`` runs besides its HTTP server: the publisher thread
    lives in the process that answers.
    """
    import logging

    from ddns import bind, config
    from ddns.service import Service
    from ddns.web import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config.load(config_path, os.environ)
    service = Service.open(cfg)
    rndc = bind.Rndc(cfg["bind.rndc_server"], cfg["bind.rndc_port"], cfg.path("bind.rndc_key"))
    named = bind.ManagedNamed(cfg.path("bind.dir"), rndc, cfg["bind.named"])
    named.start()
    service.start()

    def stop() -> None:
        service.stop()
        named.stop()

    return create_app(service), stop


def app_factory():
    """The app of the instance named by $DDNS_BENCH_CONFIG, for granian / gunicorn's worker process."""
    app, stop = open_instance(Path(os.environ[CONFIG_ENV]))
    atexit.register(stop)
    return app


def server_command(name: str, bench: bu.Bench, threads: int) -> list[str]:
    host, port = "127.0.0.1", str(bench.http_port)
    if name == "builtin":
        return [sys.executable, "-m", "ddns.cli", "-c", str(bench.config_path), "serve"]
    if name == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "1", "--blocking-threads",
                str(threads), "--host", host, "--port", port, "--no-ws", "--factory", "--working-dir", str(BENCH),
                "http_servers:app_factory"]
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1", "--threads", str(threads),
            "--bind", f"{host}:{port}", "--chdir", str(BENCH), "--log-level", "warning", "http_servers:app_factory()"]


def tree(pid: int) -> list[int]:
    """PID and all its descendants, but not named (its CPU is named's, not the HTTP server's)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            if b"named" in Path(f"/proc/{p}/comm").read_bytes():
                continue
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out.append(p)
        todo += [int(c) for c in children]
    return out


def tree_cpu(pid: int) -> float:
    return sum(bu.proc_cpu(p) for p in tree(pid))


def start(name: str, bench: bu.Bench, threads: int, timeout: float = 120.0) -> None:
    """Start server NAME on the instance and wait until /healthz answers 200."""
    log_file = open(bench.directory / f"{name}.log", "ab")
    env = {**os.environ, CONFIG_ENV: str(bench.config_path), "PYTHONPATH": str(bu.REPO)}
    bench.proc = subprocess.Popen(server_command(name, bench, threads), stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=str(bu.REPO), env=env)
    log_file.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bench.proc.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{(bench.directory / f'{name}.log').read_text()[-3000:]}")
        try:
            if bu.http_get(bench.http_port, "/healthz", timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} not healthy after {timeout}s")


def profile(bench: bu.Bench, hosts: list[int], args, workdir: Path, out: Path) -> None:
    """One wrk run under ``py-spy record`` of the server's process that runs the app."""
    pids = [p for p in tree(bench.proc.pid) if p != bench.proc.pid] or [bench.proc.pid]
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pids[-1]), "--threads", "--format", "speedscope",
                            "--rate", "250", "--gil", "--nonblocking", "--output", str(out), "--duration", str(int(args.seconds) + 1)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(0.5)  # py-spy attaches
    table.phase_wrk(bench, hosts, args.fresh, wrk_args(args), workdir)
    spy.wait(60)
    log(f"profile: {out}")


def wrk_args(args) -> argparse.Namespace:
    return argparse.Namespace(wrk_threads=args.wrk_threads, clients=args.clients, nochg_seconds=args.seconds)


def run_server(name: str, bench: bu.Bench, hosts: list[int], args, workdir: Path) -> dict:
    start(name, bench, args.threads)
    runs = []
    try:
        warm = bu.phase_warmup(bench, hosts, args.clients)
        if warm["not_nochg"]:
            raise RuntimeError(f"{name}: warm-up answers are not nochg: {warm}")
        if args.profile:
            profile(bench, hosts, args, workdir, Path(args.profile) / f"{name}.speedscope.json")
        for _ in range(args.runs):
            before = tree_cpu(bench.proc.pid)
            out = table.phase_wrk(bench, hosts, args.fresh, wrk_args(args), workdir)
            out["serve_cpu_ms_per_request"] = round((tree_cpu(bench.proc.pid) - before) * 1000
                                                    / max(1, int(out["requests"] or 0)), 3)
            out["loadavg"] = round(os.getloadavg()[0], 2)
            runs.append(out)
    finally:
        bu.stop_serve(bench)
    return {"server": name, "runs": runs}


def budget(bench: bu.Bench, hosts: list[int], requests: int) -> dict:
    """CPU per nochg of each part a request passes in the server process, in this process, one thread.

    parse: h11 reading the request's bytes, and its WSGI environ; app: the
    WSGI app (Bottle, dyndns2, auth, the update use case, the served
    snapshot), as a worker runs it; loop answer: the same answer as the loop
    thread gives it (``http.answer_on_loop``: no Bottle); write: the answer's
    bytes. The rest of what the server spends per request under wrk is
    asyncio, sockets, the hand-over between threads (none for a loop answer)
    and the kernel.
    """
    import base64

    import h11

    from ddns import httpwire

    app, stop = open_instance(bench.config_path)
    try:
        raw = []
        for i in hosts:
            token = base64.b64encode(f"{bench.fqdn(i)}:{bench.secrets[i]}".encode())
            raw.append(b"GET /nic/update?hostname=%s&myip=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Authorization: Basic %s\r\nUser-Agent: ddns-bench-wrk/1.0\r\nConnection: close\r\n\r\n"
                       % (bench.fqdn(i).encode(), bench.current[i].encode(), token))
        peer, local = ("127.0.0.1", 40000), ("127.0.0.1", bench.http_port)

        def parse(data: bytes) -> tuple[h11.Request, dict]:
            conn = h11.Connection(h11.SERVER)
            conn.receive_data(data)
            request = conn.next_event()
            assert isinstance(conn.next_event(), h11.EndOfMessage)
            return request, httpwire.wsgi_environ(request, b"", peer, local, False)

        for data in raw:  # bcrypt once per host; every answer must be nochg
            reply = httpwire.call_app(app, parse(data)[1])
            if not reply.body.startswith(b"nochg"):
                raise RuntimeError(f"not nochg: {reply.status} {reply.body[:200]!r}")
        work = [raw[k % len(raw)] for k in range(requests)]
        t0 = time.thread_time()
        parsed = [parse(data) for data in work]
        t1 = time.thread_time()
        replies = [httpwire.call_app(app, environ) for _, environ in parsed]
        t2 = time.thread_time()
        for (request, _), reply in zip(parsed, replies):
            httpwire.response_bytes(reply, False, not httpwire.keep_alive(request, reply))
        t3 = time.thread_time()
        answer_now = app.config["ddns.answer_now"]
        fresh = [parse(data)[1] for data in work]  # Bottle keeps what it parsed in the environ: new ones
        t4 = time.thread_time()
        now = [answer_now(environ) for environ in fresh]
        t5 = time.thread_time()
        if any(reply is None or reply.body != r.body for reply, r in zip(now, replies)):
            raise RuntimeError("the loop thread's answer is not the app's")
    finally:
        stop()
    per = {"parse_ms": (t1 - t0), "app_ms": (t2 - t1), "write_ms": (t3 - t2), "loop_answer_ms": (t5 - t4)}
    out = {k: round(v * 1000 / requests, 3) for k, v in per.items()}
    out.update(requests=requests, loadavg=round(os.getloadavg()[0], 2))
    log(f"budget: {out}")
    return out


def markdown(result: dict, meta: dict) -> str:
    results = result["servers"]
    rows = [("nochg req/s", "requests_per_s"), ("p50 (ms)", "req_p50_ms"), ("p99 (ms)", "req_p99_ms"),
            ("server CPU per request (ms)", "serve_cpu_ms_per_request"),
            ("wrk CPU per request (ms)", "client_cpu_ms_per_request"),
            ("not nochg + socket errors", None), ("load average (1 min) after each run", "loadavg")]
    lines = ["| | " + " | ".join(r["server"] for r in results) + " |", "|---|" + "---|" * len(results)]
    for label, key in rows:
        cells = []
        for r in results:
            values = [(x["not_nochg"] or 0) + x["socket_errors"] if key is None else x[key] for x in r["runs"]]
            cells.append(table.rfc.value_range(values))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"{meta['hosts']:,} hosts, ranges over {meta['runs']} wrk runs of {meta['seconds']:g} s per server, "
              f"{meta['clients']} connections ({'a fresh TCP connection per request' if meta['fresh'] else 'keep-alive'}), "
              f"{meta['threads']} app threads, one process; {meta['cpus']} CPUs, load average at start "
              f"{meta['loadavg_start']}, at end {meta['loadavg_end']}."]
    b = result.get("budget")
    if b:
        lines += ["", "| CPU per nochg, in-process, one thread (ms) | parse (h11 + environ) | app (worker) "
                  "| answer on the loop | write |",
                  "|---|---|---|---|---|", f"| {b['requests']:,} requests, load average {b['loadavg']} | "
                  f"{b['parse_ms']} | {b['app_ms']} | {b['loop_answer_ms']} | {b['write_ms']} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=1000, help="hosts (and records) of the instance")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}")
    p.add_argument("--runs", type=int, default=3, help="wrk runs per server")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each wrk run")
    p.add_argument("--clients", type=int, default=50, help="wrk connections")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk's threads")
    p.add_argument("--threads", type=int, default=64, help="app threads of each server (ddns's http.threads)")
    p.add_argument("--keepalive", dest="fresh", action="store_false",
                   help="keep connections open (default: a fresh TCP connection per request, as routers do)")
    p.add_argument("--bcrypt-rounds", type=int, default=4, help="bcrypt cost of the hosts' secrets")
    p.add_argument("--profile", help="directory for one py-spy speedscope profile per server")
    p.add_argument("--budget", type=int, default=0, metavar="N",
                   help="also time N requests' parse, app and write in this process (see budget())")
    p.add_argument("--json", help="also write every number as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    args = p.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not servers or set(servers) - set(SERVERS):
        p.error(f"servers are among {', '.join(SERVERS)}")
    if min(args.hosts, args.runs, args.clients, args.threads, args.wrk_threads) < 1 or args.seconds <= 0:
        p.error("hosts, runs, clients, threads and seconds must be positive")
    for tool in ["wrk", *(["py-spy"] if args.profile else [])]:
        if shutil.which(tool) is None:
            p.error(f"{tool} is not installed")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()], "hosts": args.hosts,
            "runs": args.runs, "seconds": args.seconds, "clients": args.clients, "threads": args.threads,
            "fresh": args.fresh, "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def work(workdir: Path) -> list[dict]:
        bench = bu.Bench(workdir / "instance", args.hosts)
        bu.create_instance(bench, bu.Addresses(), args.bcrypt_rounds, {})
        hosts = list(range(args.hosts))
        out = {"servers": [run_server(name, dataclasses.replace(bench), hosts, args, workdir) for name in servers]}
        if args.budget:
            out["budget"] = budget(bench, hosts, args.budget)
        return out

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the finally blocks stop what was started
    return bu.run_and_report("ddns-bench-http-", args, meta, work, markdown)


if __name__ == "__main__":
    sys.exit(main())
