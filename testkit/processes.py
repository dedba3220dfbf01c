"""Processes the tests and benches start: ended the same way everywhere."""
from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """End PROC if it runs: SIGTERM, then SIGKILL once TIMEOUT seconds passed without it exiting."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
