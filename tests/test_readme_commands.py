"""The README's two set-up commands work as root without sudo and as a user with sudo.

The real demo is tested by test_quickstart.py; here stand-ins for apt-get,
sudo and python3 record how scripts/quickstart calls them, so the test runs
fast and installs nothing.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """The shell blocks under 'Two commands', in order."""
    section = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_the_two_commands_are_the_scripts():
    assert readme_commands() == ["bash scripts/quickstart", "bash .ci/run"]
    for command in readme_commands():
        assert not command.startswith("sudo"), "root on a machine without sudo cannot run it"


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("uid", ["0", "1000"])
def test_quickstart_script_uses_sudo_only_when_not_root(tmp_path, uid):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _stub(bin_dir, "id", f"echo {uid}")
    _stub(bin_dir, "apt-get", f'echo "apt-get $*" >> {calls}')
    _stub(bin_dir, "python3", f'echo "python3 $*" >> {calls}')
    if uid == "0":
        _stub(bin_dir, "sudo", f'echo "sudo must not run as root" >> {calls}; exit 1')
    else:
        _stub(bin_dir, "sudo", f'echo "sudo $*" >> {calls}; "$@"')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "quickstart"), "demo", "--http-port", "8099"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = calls.read_text().splitlines()
    root = uid == "0"
    assert [line.split()[0] for line in lines] == (["apt-get", "apt-get", "python3", "python3"] if root else
                                                  ["sudo", "apt-get", "sudo", "apt-get", "python3", "python3"])
    assert "install -y -qq bind9 bind9-utils bind9-dnsutils git curl" in calls.read_text()
    assert lines[-1] == "python3 -m ddns.cli quickstart demo --http-port 8099"
