"""contrib/systemd: units that systemd accepts, whose ExecStart is a command of our CLI, hardened.

``systemd-analyze verify`` checks every directive (an unknown or misspelt
key is a warning there, so any output fails the test); it also wants the
program to exist, so it checks a copy whose ``ddns`` is a shim in the test's
directory. The ExecStart itself is parsed with the CLI's own parser.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require
from ddns import cli
from ddns.config import SETTINGS

UNITS_DIR = Path(__file__).resolve().parent.parent / "contrib" / "systemd"
UNITS = {"ddns.service": None, "ddns-web.service": "web", "ddns-publisher.service": "publisher"}
STATE = "/var/lib/ddns"


def directives(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists, in order (a key may repeat, as Environment= does)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, line
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def test_there_is_a_unit_for_each_role():
    assert sorted(p.name for p in UNITS_DIR.glob("*.service")) == sorted(UNITS)


@pytest.mark.parametrize("name, role", sorted(UNITS.items()))
def test_exec_start_is_our_serve_command_in_its_role(name: str, role: str | None):
    service = directives((UNITS_DIR / name).read_text())["Service"]
    [exec_start] = values(service, "ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == "ddns"
    args = cli.build_parser().parse_args(argv[1:])  # an unknown command or flag exits here
    assert args.fn is cli.cmd_serve and args.config == "/etc/ddns/ddns.toml"
    assert getattr(args, "role", None) == role
    env_names = {s.env_name for s in SETTINGS}
    for assignment in values(service, "Environment"):
        variable, _, value = assignment.partition("=")
        assert variable == "HOME" or variable in env_names, f"{name}: {variable} is no setting's variable"
    stores = [a for a in values(service, "Environment") if a.startswith("DDNS_STORE_URL=")]
    assert [s.startswith("DDNS_STORE_URL=postgresql://") for s in stores] == ([True] if role else [])


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_are_hardened_and_may_write_the_instance_only(name: str):
    service = dict(directives((UNITS_DIR / name).read_text())["Service"])
    assert service["User"] == "ddns" and service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"].split() == [STATE] and service["StateDirectory"] == "ddns"
    assert service["ProtectHome"] == "yes" and service["PrivateTmp"] == "yes" and service["UMask"] == "0077"
    assert service["CapabilityBoundingSet"] == "" and service["AmbientCapabilities"] == ""
    families = service["RestrictAddressFamilies"].split()
    # the managed named watches the interfaces over netlink; a web node runs no named
    assert ("AF_NETLINK" in families) == (UNITS[name] != "web")


def test_systemd_accepts_the_units(tmp_path: Path):
    require("systemd-analyze")
    shim = tmp_path / "ddns"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ddns.cli \"$@\"\n")
    shim.chmod(0o755)
    copies = []
    for name in sorted(UNITS):
        text = (UNITS_DIR / name).read_text()
        assert text.count("\nExecStart=ddns ") == 1
        copy = tmp_path / name
        copy.write_text(text.replace("\nExecStart=ddns ", f"\nExecStart={shim} "))
        copies.append(str(copy))
    result = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stdout + result.stderr  # warnings too: a misspelt key
