"""The README's commands do what it says.

The two set-up commands work as root without sudo and as a user with sudo:
the real demo is tested by test_quickstart.py; here stand-ins for apt-get,
sudo and python3 record how scripts/quickstart calls them, so the test runs
fast and installs nothing. The Kerberos section's Linux flow runs for real:
kadmin.local on a test KDC, `ddns serve`, `kinit -kt` and `nsupdate -g`.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from ddns import config as configmod
from ddns.zones import ZoneSettings

from conftest import ServeProcess, require
from testkit.kdc import start_kdc, stop_kdc

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
    assert "install -y -qq bind9 bind9-utils bind9-dnsutils git curl libkrb5-dev" in calls.read_text()
    assert lines[-1] == "python3 -m ddns.cli quickstart demo --http-port 8099"


# ---------------------------------------------------------------- Kerberos: the Linux host's flow

KERBEROS = README.split("## Kerberos (GSS-TSIG) and Windows clients", 1)[1].split("\n## ", 1)[0]


def kerberos_block(language: str, first: str) -> str:
    """The one LANGUAGE block of the Kerberos section whose text starts with FIRST."""
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", KERBEROS, re.S) if b.startswith(first)]
    assert len(blocks) == 1, f"one {language} block starting {first!r} in the Kerberos section, found {len(blocks)}"
    return blocks[0]


def as_here(text: str, values: dict[str, str]) -> str:
    """TEXT with the README's names (zone, realm, server, keytab paths) replaced by this test's."""
    for readme, here in values.items():
        text = text.replace(readme, here)
    return text


def test_readme_kerberos_settings_and_zone_rules_are_what_ddns_reads(tmp_path):
    config = tmp_path / "ddns.toml"
    config.write_text(kerberos_block("toml", "[kerberos]\nkeytab"))
    cfg = configmod.load(config, environ={})
    assert (cfg["kerberos.keytab"], cfg["kerberos.realm"]) == ("/etc/ddns/dns.keytab", "EXAMPLE.ORG")
    rules = ZoneSettings.from_toml("dyn.example.org", kerberos_block("toml", "[kerberos]\nrules"))
    assert rules.kerberos_rules[0] == "grant EXAMPLE.ORG krb5-self . A AAAA TXT" and len(rules.kerberos_rules) == 4
    networks = ZoneSettings.from_toml("dyn.example.org", kerberos_block("toml", "[unsigned]"))
    assert networks.unsigned_networks == ("192.0.2.0/24", "2001:db8::/64")


def test_readme_linux_host_flow_updates_a_fresh_instance(instance, tmp_path, monkeypatch):
    """The section's blocks, run as shown: principals made with kadmin.local, `ddns host add`, the
    environment `ddns serve` gets, then `kinit -kt` + `nsupdate -g` on the host; dig, git log and
    ddns history show the change; then the reverse zone and the host's PTR. A KDC of its own:
    the README's `ktadd` re-keys the principals."""
    require("kinit", "nsupdate", "dig")
    kdc = start_kdc(tmp_path / "kdc")
    try:
        zone = instance.zone
        here = {"/etc/ddns/dns.keytab": str(tmp_path / "dns.keytab"), "/etc/krb5.keytab": str(tmp_path / "vm1.keytab"),
                "ddns.example.org 5053": f"127.0.0.1 {instance.update_port}", "dyn.example.org": zone,
                "EXAMPLE.ORG": kdc.realm}
        client_env = {**kdc.env, "KRB5CCNAME": f"FILE:{tmp_path / 'vm1.cc'}"}

        def sh(block: str) -> subprocess.CompletedProcess:
            return subprocess.run(["bash", "-e", "-c", as_here(block, here)], env=client_env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=60)

        for block in (kerberos_block("sh", "kadmin.local -q 'addprinc -randkey DNS/"),
                      kerberos_block("sh", "kadmin.local -q 'addprinc -randkey host/")):
            made = sh(block)
            assert made.returncode == 0 and "error" not in made.stderr.lower(), made
        assert (tmp_path / "dns.keytab").exists() and (tmp_path / "vm1.keytab").exists()

        instance.add_user("alice")
        add, serve = as_here(kerberos_block("sh", "ddns host add"), here).strip().splitlines()
        added = instance.cli(*shlex.split(add)[1:])
        assert added.code == 0, added.err
        words = shlex.split(serve)
        assert words[-2:] == ["ddns", "serve"], serve
        for assignment in words[:-2]:
            name, _, value = assignment.partition("=")
            monkeypatch.setenv(name, value)
        for name in ("KRB5_CONFIG", "KRB5RCACHEDIR"):
            monkeypatch.setenv(name, kdc.env[name])
        server = ServeProcess(instance, tmp_path / "serve.log")
        server.start()
        try:
            host_block = kerberos_block("sh", "kinit -kt /etc/krb5.keytab")
            before = instance.git("rev-parse", "HEAD")
            updated = sh(host_block)
            assert (updated.returncode, updated.stderr) == (0, ""), updated
            assert instance.dig(f"vm1.{zone}") == ["192.0.2.10"]
            principal = f"krb5:host/vm1.{zone}@{kdc.realm}"
            assert principal in instance.git("log", "-1", "--format=%B")
            assert principal in instance.cli("history", f"vm1.{zone}").out
            # "An update of another host's name prints `update failed: REFUSED` (exit 2) and changes nothing."
            instance.add_host(f"vm2.{zone}")
            head = instance.git("rev-parse", "HEAD")
            other = sh(host_block.replace("update delete vm1.", "update delete vm2.").replace("update add vm1.",
                                                                                             "update add vm2."))
            assert (other.returncode, other.stderr) == (2, "update failed: REFUSED\n"), other
            assert instance.git("rev-parse", "HEAD") == head != before
            # Reverse zones: the zone added as shown, then the host's PTR with the same ticket.
            reverse = as_here(kerberos_block("sh", "ddns domain add"), here).strip()
            assert instance.cli(*shlex.split(reverse)[1:]).code == 0
            ptr = sh(kerberos_block("sh", "nsupdate -g <<'EOF'\nserver ddns.example.org 5053\nzone 2.0.192"))
            assert (ptr.returncode, ptr.stderr) == (0, ""), ptr
            assert instance.dig("10.2.0.192.in-addr.arpa", "PTR") == [f"vm1.{zone}."]
        finally:
            server.stop()
    finally:
        stop_kdc(kdc)
