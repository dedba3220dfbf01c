"""What a serve process holds: ddns.memory's one malloc arena (unless MALLOC_ARENA_MAX says otherwise)
and freed pages given back, no Kerberos libraries without a keytab.

Each check runs in a fresh Python process: an arena cap only holds for arenas made after it."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import ServeProcess, query

REPO = Path(__file__).resolve().parents[1]

ARENAS_OF_SIX_THREADS = """
import ctypes, sys, threading
from ddns import memory
print(memory.limit_arenas(), file=sys.stderr)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
all_in = threading.Barrier(7)

def allocate():
    libc.free(libc.malloc(1000))  # this thread's first malloc: an arena of its own, if allowed
    all_in.wait()  # every thread alive at once: none hands its arena on
    all_in.wait()

threads = [threading.Thread(target=allocate) for _ in range(6)]
for t in threads:
    t.start()
all_in.wait()
libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
all_in.wait()
for t in threads:
    t.join()
"""


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**environ, "PYTHONPATH": str(REPO), **env})


def arenas(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if line.startswith("Arena "))


def test_arenas_are_capped():
    out = run(ARENAS_OF_SIX_THREADS)
    assert out.stderr.splitlines()[0] == "True"
    assert arenas(out.stderr) == 1  # six threads more, all in the main arena


def test_an_operators_malloc_arena_max_wins():
    out = run(ARENAS_OF_SIX_THREADS, MALLOC_ARENA_MAX="8")
    assert out.stderr.splitlines()[0] == "False"
    assert arenas(out.stderr) > 1  # glibc's own cap from the environment, not ours


FREED_PAGES_GIVEN_BACK = """
import ctypes
from ddns import memory
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def rss_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))

chunks = [libc.malloc(64 * 1024) for _ in range(1600)]  # 100 MiB below the mmap threshold: in the heap
for chunk in chunks:
    libc.memset(chunk, 1, 64 * 1024)
for chunk in chunks[:-1]:
    libc.free(chunk)  # the last one stays: the heap's top cannot shrink past it
before = rss_kib()
memory.give_back()
print(before - rss_kib())
"""


def test_freed_pages_are_given_back():
    assert int(run(FREED_PAGES_GIVEN_BACK).stdout) > 50 * 1024  # of the ~100 MiB freed


def mapped_libraries(pid: int) -> set[str]:
    return {line.split()[-1].rsplit("/", 1)[-1] for line in open(f"/proc/{pid}/maps") if ".so" in line}


def test_serve_without_a_keytab_loads_no_kerberos_library(instance, tmp_path):
    """GSS-TSIG is off without kerberos.keytab: the listener answers, python-gssapi and its libraries
    (~3 MiB in every process) stay unloaded; the libraries serve does need are there (the check sees them)."""
    serve = ServeProcess(instance, tmp_path / "serve.log")
    serve.start()
    try:
        query(instance.update_port, instance.zone, "SOA")  # the RFC 2136 listener answers
        libraries = mapped_libraries(serve.proc.pid)
        assert any(name.startswith("libgit2") for name in libraries)
        assert not any(name.startswith(("libgssapi", "libkrb5")) for name in libraries), sorted(libraries)
    finally:
        serve.stop()
