"""The README's first command: `ddns quickstart` prints a curl line that works."""
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port, require, query

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_prints_working_curl_and_dig_lines(tmp_path):
    require("named", "rndc", "rndc-confgen", "named-checkzone", "git", "curl", "dig")
    http_port, dns_port, rndc_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "ddns.cli", "quickstart", str(tmp_path / "demo"),
           "--http-port", str(http_port), "--dns-port", str(dns_port), "--rndc-port", str(rndc_port),
           "--update-port", str(free_port())]
    log = tmp_path / "quickstart.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while "serving on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        lines = log.read_text().splitlines()
        assert any(line.startswith("Admin login: admin / ") for line in lines)
        curl_line = next(line.strip() for line in lines if line.strip().startswith("curl "))
        dig_line = next(line.strip() for line in lines if line.strip().startswith("dig "))

        answer = subprocess.run(shlex.split(curl_line) + ["-sS", "--max-time", "30"], capture_output=True,
                                text=True, check=True).stdout
        assert answer == "good 192.0.2.10\n"
        served = subprocess.run(shlex.split(dig_line), capture_output=True, text=True, check=True).stdout
        assert served.split() == ["192.0.2.10"]
        assert query(dns_port, "demo.dyn.example.test", "A") == ["192.0.2.10"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    # the managed named stopped with the service
    rndc = subprocess.run(["rndc", "-s", "127.0.0.1", "-p", str(rndc_port), "-k",
                           str(tmp_path / "demo" / "bind" / "rndc.key"), "status"], capture_output=True)
    assert rndc.returncode != 0
