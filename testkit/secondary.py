"""A BIND secondary of ddns's hidden primary: a named of its own, configured only by ``ddns secondary config``.

The caller prints the configuration (the CLI in the process or as a
subprocess) into ``conf``; ``start`` runs ``named -g`` on it with its log in
the secondary's directory, ``serial`` asks it (over loopback) which serial of
a zone it serves, and ``stop`` ends it (terminate, then kill).
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ddns import bind

from .processes import stop_process


class SecondaryNamed:
    """named in DIRECTORY (made here), answering on 127.0.0.1:PORT once started."""

    def __init__(self, directory: Path, port: int):
        self.port = port
        self.dir = directory
        self.dir.mkdir()
        self.conf = self.dir / "named.conf"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SecondaryNamed":
        with open(self.dir / "named.log", "ab") as log:
            self.proc = subprocess.Popen(["named", "-g", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15)

    def serial(self, zone: str) -> int | None:
        """The serial of ZONE it serves (None: none); a named that died is an error, with its log."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the secondary named is not running:\n{self.log()[-3000:]}")
        return bind.served_serial(zone, "127.0.0.1", self.port, timeout=0.5)

    def wait_serving(self, zone: str, serial: int, timeout: float = 60.0) -> None:
        """Until it serves ZONE at SERIAL or later (RuntimeError with its log after TIMEOUT seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            served = self.serial(zone)
            if served is not None and served >= serial:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the secondary does not serve {zone} at {serial}:\n{self.log()[-3000:]}")

    def log(self) -> str:
        path = self.dir / "named.log"
        return path.read_text() if path.exists() else ""
