"""The dhclient exit hook over RFC 2136, and a hand-written hook of the classic nsupdate shape.

Both run as dhclient-script runs hooks: a shell with ``reason``,
``interface``, ``new_ip_address`` ... in the environment. They send the
update with the real ``nsupdate`` and the host key ``ddns key add`` printed,
to the listener of a real ``ddns serve``; the result is checked with ``dig``
against its managed named and in ``git log`` (one commit, the key as actor,
interface rfc2136).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import require
from ddns.gitrepo import parse_trailers

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "hooks" / "dhclient-exit-hook"
ZONE = "dyn.example.test"
FQDN = "dhcpvm." + ZONE


def run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    require("sh", "nsupdate", "timeout")
    return subprocess.run(["timeout", "60", *argv], capture_output=True, text=True, env=env, timeout=90)


def key_file(inst, tmp_path: Path, fqdn: str) -> Path:
    """The host's key as ``ddns key add`` prints it (a BIND key file), mode 600."""
    r = inst.cli("key", "add", fqdn)
    assert r.code == 0, r.err
    path = tmp_path / f"{fqdn}.key"
    path.write_text(r.out)
    path.chmod(0o600)
    return path


@pytest.fixture
def listening(running):
    """serve with its RFC 2136 listener on the instance's update port."""
    return running, running.instance.update_port


def hook_env(tmp_path: Path, port: int, fqdn: str, keyfile: Path, **dhcp: str) -> dict:
    config = tmp_path / "dhclient.conf"
    config.write_text(f"# ddns dhclient hook, RFC 2136\nDDNS_PROTOCOL=rfc2136\nDDNS_SERVER=127.0.0.1\n"
                      f"DDNS_PORT={port}\nDDNS_FQDN={fqdn}\nDDNS_KEY_FILE='{keyfile}'\nDDNS_TIMEOUT=20\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DDNS_HOOK_CONFIG": str(config),
           "DDNS_INTERFACE": "eth0", "DDNS_LOG": "stderr", "interface": "eth0"}
    env.update(dhcp)
    return env


def dig(inst, name: str) -> str:
    """What the real dig gets from the managed named."""
    require("dig")
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(inst.dns_port), "+short", "+time=2", "+tries=1", name, "A"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def last_change(inst):
    [record] = parse_trailers(inst.git("log", "-1", "--format=%B"))
    return record


def test_hook_registers_on_each_lease_event(listening, tmp_path):
    running, port = listening
    inst = running.instance
    inst.add_host(FQDN)
    keyfile = key_file(inst, tmp_path, FQDN)
    before = inst.commit_count()
    events = [("BOUND", "", "192.0.2.55", {}), ("RENEW", "192.0.2.55", "192.0.2.56", {"DDNS_TCP": "yes"}),
              ("REBIND", "192.0.2.56", "192.0.2.57", {}), ("REBOOT", "", "192.0.2.58", {})]
    for n, (reason, old, new, extra) in enumerate(events, 1):
        env = hook_env(tmp_path, port, FQDN, keyfile, reason=reason, old_ip_address=old, new_ip_address=new)
        env.update(extra)
        r = run(["/bin/sh", str(HOOK)], env)
        assert r.returncode == 0, f"{reason}: {r.stderr}"
        assert "updated (rfc2136)" in r.stderr
        assert inst.dig(FQDN, "A") == [new], reason
        assert inst.commit_count() == before + n, reason
        record = last_change(inst)
        assert record.interface == "rfc2136" and FQDN in record.actor, record


def test_hook_sends_aaaa_for_dhclient6(listening, tmp_path):
    running, port = listening
    inst = running.instance
    inst.add_host(FQDN)
    keyfile = key_file(inst, tmp_path, FQDN)
    r = run(["/bin/sh", str(HOOK)], hook_env(tmp_path, port, FQDN, keyfile, reason="BOUND6",
                                             new_ip6_address="2001:db8::55"))
    assert r.returncode == 0, r.stderr
    assert inst.dig(FQDN, "AAAA") == ["2001:db8::55"]
    assert inst.dig(FQDN, "A") == []


def test_hook_with_another_hosts_key_fails_and_changes_nothing(listening, tmp_path):
    running, port = listening
    inst = running.instance
    inst.add_host(FQDN)
    inst.add_host("other." + ZONE)
    keyfile = key_file(inst, tmp_path, "other." + ZONE)
    before = inst.commit_count()
    r = run(["/bin/sh", str(HOOK)], hook_env(tmp_path, port, FQDN, keyfile, reason="BOUND",
                                             new_ip_address="192.0.2.66"))
    assert r.returncode == 1
    assert "REFUSED" in r.stderr, r.stderr
    assert inst.commit_count() == before
    assert inst.dig(FQDN, "A") == []


def test_hook_without_the_key_file_fails_clearly(listening, tmp_path):
    running, port = listening
    env = hook_env(tmp_path, port, FQDN, tmp_path / "missing.key", reason="BOUND", new_ip_address="192.0.2.67")
    r = run(["/bin/sh", str(HOOK)], env)
    assert r.returncode == 1
    assert "cannot read key file" in r.stderr


CLASSIC = """#!/bin/sh
# A DHCP exit hook of the classic kind: on a new lease, tell the DNS server
# the new address with nsupdate, signed with this host's key.
name={fqdn}
keyfile={keyfile}
case "$reason" in
    BOUND|RENEW|REBIND|REBOOT)
        cmds=$(mktemp)
        echo "server 127.0.0.1 {port}" > "$cmds"
        echo "update delete $name a" >> "$cmds"
        echo "update add $name 3600 a $new_ip_address" >> "$cmds"
        echo "send" >> "$cmds"
        nsupdate -k "$keyfile" "$cmds"
        status=$?
        rm -f "$cmds"
        exit $status
        ;;
esac
"""


def test_classic_nsupdate_hook_updates_the_host(listening, tmp_path):
    running, port = listening
    inst = running.instance
    inst.add_host(FQDN)
    keyfile = key_file(inst, tmp_path, FQDN)
    script = tmp_path / "classic-hook"
    script.write_text(CLASSIC.format(fqdn=FQDN, keyfile=keyfile, port=port))
    before = inst.commit_count()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "reason": "BOUND", "interface": "eth0",
           "new_ip_address": "192.0.2.71"}
    r = run(["/bin/sh", str(script)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert dig(inst, FQDN) == "192.0.2.71"
    assert inst.commit_count() == before + 1
    record = last_change(inst)
    assert record.interface == "rfc2136" and FQDN in record.actor, record
    log = inst.git("log", "-1", "--format=%B")
    assert "192.0.2.71" in log

    env.update(reason="RENEW", old_ip_address="192.0.2.71", new_ip_address="192.0.2.72")
    r = run(["/bin/sh", str(script)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert dig(inst, FQDN) == "192.0.2.72"
    assert inst.commit_count() == before + 2
