"""Real dyndns2 clients against the real service: ddclient, inadyn, curl, wget,
and the dhclient exit hook shipped in hooks/.

Each client runs as it would on a VM or router (its own config file, under
``timeout``); each test checks the client's own verdict, what BIND serves and
the audit trailer of the Git commit.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require
from ddns.gitrepo import parse_trailers

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "hooks" / "dhclient-exit-hook"
ZONE = "dyn.example.test"


def tool(name: str) -> str:
    """The path of a client program (ddclient lives in /usr/bin, inadyn in /usr/sbin)."""
    require(name)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    assert found, name
    return found


def run(argv: list[str], env: dict | None = None, cwd: Path | None = None, stdin: str | None = None,
        limit: int = 60) -> subprocess.CompletedProcess:
    """Run a client under timeout(1) (and a Python-side guard)."""
    require("timeout")
    return subprocess.run(["timeout", str(limit), *argv], capture_output=True, text=True, env=env, cwd=cwd,
                          input=stdin, timeout=limit + 30)


def head_records(inst):
    return parse_trailers(inst.git("log", "-1", "--format=%B"))


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def last_update(running, fqdn: str):
    running.service.flush_seen()  # last-update metadata is written once a second while serving
    return running.service.store.host(fqdn).last_update


# --------------------------------------------------------------- ddclient 3.10

def ddclient(tmp_path: Path, name: str, conf: str) -> subprocess.CompletedProcess:
    exe = tool("ddclient")
    conf_file = private_file(tmp_path / f"{name}.conf", conf)
    return run([exe, "-daemon=0", "-foreground", "-verbose", "-noquiet",
                "-file", str(conf_file), "-cache", str(tmp_path / f"{name}.cache")], cwd=tmp_path)


def ddclient_conf(port: int, login: str, password: str, ip: str, hosts: str) -> str:
    return (f"ssl=no\nprotocol=dyndns2\nuse=ip, ip={ip}\nserver=127.0.0.1:{port}\n"
            f"login={login}\npassword={password}\n{hosts}\n")


def test_ddclient_updates_one_host(running, tmp_path):
    inst = running.instance
    fqdn = f"router.{ZONE}"
    secret = inst.add_host(fqdn)
    before = inst.commit_count()

    r = ddclient(tmp_path, "one", ddclient_conf(inst.http_port, fqdn, secret, "192.0.2.61", fqdn))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"GET /nic/update?system=dyndns&hostname={fqdn}&myip=192.0.2.61 " in out
    assert f"SUCCESS:  updating {fqdn}: good: IP address set to 192.0.2.61" in out, out
    assert "FAILED" not in out, out
    assert inst.dig(fqdn, "A") == ["192.0.2.61"]
    assert inst.commit_count() == before + 1
    [rec] = head_records(inst)
    assert (rec.host, rec.type, rec.old, rec.new, rec.actor, rec.interface, rec.client) == (
        fqdn, "A", None, "192.0.2.61", f"host:{fqdn}", "dyndns2", "127.0.0.1")
    assert rec.agent.startswith("ddclient/3.10"), rec.agent

    # ddclient 3.10 sends an IPv6 address in the same myip parameter: AAAA, A stays.
    r = ddclient(tmp_path, "one6", ddclient_conf(inst.http_port, fqdn, secret, "2001:db8::61", fqdn))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"SUCCESS:  updating {fqdn}: good: IP address set to 2001:db8::61" in out, out
    assert inst.dig(fqdn, "AAAA") == ["2001:db8::61"]
    assert inst.dig(fqdn, "A") == ["192.0.2.61"]


def test_ddclient_two_hosts_in_one_request_with_account_token(running, tmp_path):
    inst = running.instance
    h1, h2 = f"h1.{ZONE}", f"h2.{ZONE}"
    inst.add_host(h1)
    inst.add_host(h2)
    token = inst.cli("user", "token", "alice", "--json").json()["token"]
    before = inst.commit_count()

    r = ddclient(tmp_path, "two", ddclient_conf(inst.http_port, "alice", token, "192.0.2.62", f"{h1},{h2}"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    requests = [line for line in out.splitlines() if line.startswith("SENDING:  GET ")]
    assert requests == [f"SENDING:  GET /nic/update?system=dyndns&hostname={h1},{h2}&myip=192.0.2.62 HTTP/1.1"], out
    assert [line for line in out.splitlines() if line.startswith("RECEIVE:  good")] == ["RECEIVE:  good 192.0.2.62"] * 2
    for h in (h1, h2):
        assert f"SUCCESS:  updating {h}: good: IP address set to 192.0.2.62" in out, out
        assert inst.dig(h, "A") == ["192.0.2.62"]
    assert "FAILED" not in out, out
    assert inst.commit_count() == before + 1  # one request, one group commit
    records = head_records(inst)
    assert sorted((rec.host, rec.new, rec.actor, rec.interface) for rec in records) == [
        (h1, "192.0.2.62", "user:alice", "dyndns2"), (h2, "192.0.2.62", "user:alice", "dyndns2")]
    assert all(rec.agent.startswith("ddclient/3.10") for rec in records)


def test_ddclient_reports_a_wrong_secret_as_failure(running, tmp_path):
    inst = running.instance
    fqdn = f"router.{ZONE}"
    inst.add_host(fqdn)
    before = inst.commit_count()

    r = ddclient(tmp_path, "bad", ddclient_conf(inst.http_port, fqdn, "not-the-secret", "192.0.2.63", fqdn))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"FAILED:   updating {fqdn}: authorization failed" in out, out
    assert "badauth" in out
    assert inst.commit_count() == before
    assert inst.dig(fqdn, "A") == []


# ----------------------------------------------------------------- inadyn 2.10

def inadyn(tmp_path: Path, name: str, conf: str) -> subprocess.CompletedProcess:
    exe = tool("inadyn")
    conf_file = private_file(tmp_path / f"{name}.conf", conf)
    cache = tmp_path / f"{name}-cache"
    cache.mkdir()
    return run([exe, "--once", "--foreground", "--no-pidfile", "--cache-dir", str(cache),
                "-f", str(conf_file), "-l", "debug"], cwd=tmp_path)


def inadyn_conf(port: int, fqdn: str, secret: str, address: str, allow_ipv6: bool = False) -> str:
    return (("allow-ipv6 = true\n" if allow_ipv6 else "") +
            "custom ddns {\n"
            f'    hostname = "{fqdn}"\n'
            f'    username = "{fqdn}"\n'
            f'    password = "{secret}"\n'
            f'    ddns-server = "127.0.0.1:{port}"\n'
            '    ddns-path = "/nic/update?hostname=%h&myip=%i"\n'
            "    ssl = false\n"
            f'    checkip-command = "echo {address}"\n'
            "}\n")


def test_inadyn_updates_ipv4(running, tmp_path):
    inst = running.instance
    fqdn = f"nas.{ZONE}"
    secret = inst.add_host(fqdn)
    before = inst.commit_count()

    r = inadyn(tmp_path, "v4", inadyn_conf(inst.http_port, fqdn, secret, "192.0.2.77"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"GET /nic/update?hostname={fqdn}&myip=192.0.2.77 HTTP/1.0" in out, out
    assert f"Successful alias table update for {fqdn} => new IP# 192.0.2.77" in out, out
    assert inst.dig(fqdn, "A") == ["192.0.2.77"]
    assert inst.commit_count() == before + 1
    [rec] = head_records(inst)
    assert (rec.host, rec.type, rec.new, rec.actor, rec.interface) == (fqdn, "A", "192.0.2.77", f"host:{fqdn}", "dyndns2")
    assert rec.agent.startswith("inadyn/2.10"), rec.agent


def test_inadyn_updates_ipv6_percent_encoded(running, tmp_path):
    inst = running.instance
    fqdn = f"nas.{ZONE}"
    secret = inst.add_host(fqdn)
    assert running.update(fqdn, secret, "myip=192.0.2.78") == (200, "good 192.0.2.78\n")

    r = inadyn(tmp_path, "v6", inadyn_conf(inst.http_port, fqdn, secret, "2001:db8::77", allow_ipv6=True))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "myip=2001%3adb8%3a%3a77 HTTP/1.0" in out, out  # inadyn percent-encodes IPv6
    assert f"Successful alias table update for {fqdn} => new IP# 2001:db8::77" in out, out
    assert inst.dig(fqdn, "AAAA") == ["2001:db8::77"]
    assert inst.dig(fqdn, "A") == ["192.0.2.78"]
    [rec] = head_records(inst)
    assert (rec.type, rec.old, rec.new) == ("AAAA", None, "2001:db8::77")
    assert rec.agent.startswith("inadyn/2.10")


def test_inadyn_fails_on_a_wrong_secret(running, tmp_path):
    inst = running.instance
    fqdn = f"nas.{ZONE}"
    inst.add_host(fqdn)
    before = inst.commit_count()

    r = inadyn(tmp_path, "bad", inadyn_conf(inst.http_port, fqdn, "not-the-secret", "192.0.2.79"))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Authentication failure" in out, out
    assert inst.commit_count() == before
    assert inst.dig(fqdn, "A") == []


# ------------------------------------------------------------ curl, wget, cloud-init

def test_curl_with_credentials_in_the_url(running):
    """Routers and cloud-init one-liners put everything in the URL."""
    inst = running.instance
    fqdn = f"vm1.{ZONE}"
    secret = inst.add_host(fqdn)
    url = f"http://{fqdn}:{secret}@127.0.0.1:{inst.http_port}/nic/update?myip=192.0.2.81"
    r = run(["curl", "-fsS", "--max-time", "30", url])
    assert (r.returncode, r.stdout) == (0, "good 192.0.2.81\n"), r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.81"]
    [rec] = head_records(inst)
    assert (rec.host, rec.new, rec.interface) == (fqdn, "192.0.2.81", "dyndns2")
    assert rec.agent.startswith("curl/")

    r = run(["curl", "-fsS", "--max-time", "30", url])
    assert (r.returncode, r.stdout) == (0, "nochg 192.0.2.81\n"), r.stderr


def test_wget_answers_the_challenge(running, tmp_path):
    """GNU wget sends credentials only after a 401 challenge (here from a wgetrc, not argv)."""
    require("wget")
    inst = running.instance
    fqdn = f"vm2.{ZONE}"
    secret = inst.add_host(fqdn)
    rc = private_file(tmp_path / "wgetrc", f"http_user = {fqdn}\nhttp_password = {secret}\n")
    r = run(["wget", f"--config={rc}", "-q", "-O", "-", "-T", "30", "--tries=1",
             f"http://127.0.0.1:{inst.http_port}/nic/update?myip=192.0.2.82"])
    assert (r.returncode, r.stdout) == (0, "good 192.0.2.82\n"), r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.82"]
    [rec] = head_records(inst)
    assert rec.agent.lower().startswith("wget/")


# ---------------------------------------------------------- dhclient exit hook

def hook_env(tmp_path: Path, port: int, fqdn: str, secret: str, **dhcp: str) -> dict:
    """The environment dhclient-script gives its hooks, plus the hook's own config."""
    secret_file = private_file(tmp_path / "secret", secret + "\n")
    config = tmp_path / "dhclient.conf"
    config.write_text(f'# ddns dhclient hook\nDDNS_SERVER="http://127.0.0.1:{port}"\n'
                      f"DDNS_FQDN={fqdn}\nDDNS_SECRET_FILE='{secret_file}'\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DDNS_HOOK_CONFIG": str(config),
           "DDNS_INTERFACE": "eth0", "DDNS_LOG": "stderr", "interface": "eth0"}
    env.update(dhcp)
    return env


def run_hook(env: dict) -> subprocess.CompletedProcess:
    require("sh")
    return run(["/bin/sh", str(HOOK)], env=env)


def test_dhclient_hook_bound_updates_the_host(running, tmp_path):
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    before = inst.commit_count()

    r = run_hook(hook_env(tmp_path, inst.http_port, fqdn, secret,
                          reason="BOUND", new_ip_address="192.0.2.55", old_ip_address=""))
    assert r.returncode == 0, r.stderr
    assert "good 192.0.2.55" in r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.55"]
    assert inst.commit_count() == before + 1
    [rec] = head_records(inst)
    assert (rec.host, rec.type, rec.old, rec.new, rec.actor, rec.interface) == (
        fqdn, "A", None, "192.0.2.55", f"host:{fqdn}", "dyndns2")
    assert rec.agent.startswith("ddns-dhclient-hook/") and "curl" in rec.agent

    # RENEW with a new address (a changed lease) updates too.
    r = run_hook(hook_env(tmp_path, inst.http_port, fqdn, secret,
                          reason="RENEW", new_ip_address="192.0.2.56", old_ip_address="192.0.2.55"))
    assert r.returncode == 0, r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.56"]
    [rec] = head_records(inst)
    assert (rec.old, rec.new) == ("192.0.2.55", "192.0.2.56")


@pytest.mark.parametrize("reason", ["PREINIT", "EXPIRE", "FAIL", "RELEASE", "STOP"])
def test_dhclient_hook_ignores_other_reasons(running, tmp_path, reason):
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    before = inst.commit_count()

    r = run_hook(hook_env(tmp_path, inst.http_port, fqdn, secret,
                          reason=reason, new_ip_address="192.0.2.57", old_ip_address="192.0.2.58"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert last_update(running, fqdn) is None  # no request reached the service
    assert inst.commit_count() == before
    assert inst.dig(fqdn, "A") == []


@pytest.mark.parametrize("reason", ["RENEW", "REBIND"])
def test_dhclient_hook_unchanged_renewal_sends_nothing(running, tmp_path, reason):
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    assert running.update(fqdn, secret, "myip=192.0.2.59") == (200, "good 192.0.2.59\n")
    seen = last_update(running, fqdn)
    before = inst.commit_count()

    r = run_hook(hook_env(tmp_path, inst.http_port, fqdn, secret,
                          reason=reason, new_ip_address="192.0.2.59", old_ip_address="192.0.2.59"))
    assert r.returncode == 0, r.stderr
    assert last_update(running, fqdn) == seen  # not even a nochg request
    assert inst.commit_count() == before


def test_dhclient_hook_acts_only_on_the_chosen_interface(running, tmp_path):
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)

    env = hook_env(tmp_path, inst.http_port, fqdn, secret, reason="BOUND", new_ip_address="192.0.2.60",
                   old_ip_address="", interface="eth1")
    r = run_hook(env)
    assert r.returncode == 0, r.stderr
    assert last_update(running, fqdn) is None

    env["DDNS_INTERFACE"] = "eth0, eth1"
    r = run_hook(env)
    assert r.returncode == 0, r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.60"]


def test_dhclient_hook_default_is_the_default_route_interface(running, tmp_path):
    """Without DDNS_INTERFACE the hook acts for the default route's interface only
    (or for every interface when no default route is known)."""
    require("ip")
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    routes = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True).stdout.split()
    default_devs = {routes[i + 1] for i, word in enumerate(routes[:-1]) if word == "dev"}

    env = hook_env(tmp_path, inst.http_port, fqdn, secret, reason="BOUND", new_ip_address="192.0.2.64",
                   old_ip_address="", interface="ddnstest9")
    del env["DDNS_INTERFACE"]
    r = run_hook(env)
    assert r.returncode == 0, r.stderr
    assert inst.dig(fqdn, "A") == ([] if default_devs else ["192.0.2.64"])
    if default_devs:
        env["interface"] = sorted(default_devs)[0]
        r = run_hook(env)
        assert r.returncode == 0, r.stderr
        assert inst.dig(fqdn, "A") == ["192.0.2.64"]


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_dhclient_hook_sourced_never_exits_the_dhcp_client(running, tmp_path, shell):
    """dhclient-script sources exit hooks: the hook must return, leak no variable
    (least of all the secret) and leave the client's exit_status alone."""
    require(shell)
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    script = f'exit_status=0; . "{HOOK}"; echo "marker rc=$? exit_status=$exit_status"; set'

    env = hook_env(tmp_path, inst.http_port, fqdn, secret, reason="BOUND", new_ip_address="192.0.2.65")
    r = run([shell, "-c", script], env=env)
    assert r.returncode == 0, r.stderr
    assert "marker rc=0 exit_status=0" in r.stdout, r.stdout + r.stderr
    assert secret not in r.stdout
    assert "ddns_dhclient_hook" not in r.stdout
    assert inst.dig(fqdn, "A") == ["192.0.2.65"]

    # Failing (bad secret) and ignored (EXPIRE) runs return as well.
    (tmp_path / "secret").write_text("wrong\n")
    for reason, rc, logged in (("BOUND", 1, "badauth"), ("EXPIRE", 0, "")):
        r = run([shell, "-c", script], env=dict(env, reason=reason, new_ip_address="192.0.2.66"))
        assert r.returncode == 0, r.stderr
        assert f"marker rc={rc} exit_status=0" in r.stdout, r.stdout + r.stderr
        assert logged in r.stderr and (logged or r.stderr == "")
    assert inst.dig(fqdn, "A") == ["192.0.2.65"]


def test_dhclient_hook_sourced_by_a_strict_shell(running, tmp_path):
    """A dhclient-script running with `set -eu` survives the hook, even a failing one."""
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    script = f'set -eu; . "{HOOK}"; echo marker'
    env = hook_env(tmp_path, inst.http_port, fqdn, secret, reason="BOUND", new_ip_address="192.0.2.70")
    del env["DDNS_INTERFACE"], env["DDNS_LOG"]  # unset settings must not trip `set -u`
    env["DDNS_INTERFACE"] = "all"
    r = run(["sh", "-c", script], env=env)
    assert (r.returncode, r.stdout) == (0, "marker\n"), r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.70"]

    (tmp_path / "secret").write_text("wrong\n")
    for extra in ({"new_ip_address": "192.0.2.71"}, {"reason": "EXPIRE"}, {"DDNS_HOOK_CONFIG": str(tmp_path / "none")}):
        r = run(["sh", "-c", script], env=dict(env, **extra))
        assert (r.returncode, r.stdout) == (0, "marker\n"), r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.70"]


def test_dhclient_hook_reports_a_wrong_secret(running, tmp_path):
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    inst.add_host(fqdn)
    before = inst.commit_count()
    r = run_hook(hook_env(tmp_path, inst.http_port, fqdn, "wrong", reason="BOUND", new_ip_address="192.0.2.67"))
    assert r.returncode == 1
    assert "badauth" in r.stderr
    assert inst.commit_count() == before


def test_dhclient_hook_falls_back_to_wget(running, tmp_path):
    require("wget")
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    env = hook_env(tmp_path, inst.http_port, fqdn, secret, reason="REBOOT", new_ip_address="192.0.2.68",
                   old_ip_address="192.0.2.68", DDNS_HTTP_CLIENT="wget", TMPDIR=str(tmp_path))
    r = run_hook(env)
    assert r.returncode == 0, r.stderr
    assert "good 192.0.2.68" in r.stderr
    assert inst.dig(fqdn, "A") == ["192.0.2.68"]
    [rec] = head_records(inst)
    assert rec.agent.startswith("ddns-dhclient-hook/") and "wget" in rec.agent
    assert not list(tmp_path.glob("ddns-wgetrc*"))  # the private wgetrc is gone


def test_dhclient_hook_ipv6_lease(running, tmp_path):
    """dhclient -6 runs the same hooks with BOUND6 and new_ip6_address: AAAA, A stays."""
    inst = running.instance
    fqdn = f"dhcpvm.{ZONE}"
    secret = inst.add_host(fqdn)
    assert running.update(fqdn, secret, "myip=192.0.2.69")[0] == 200
    r = run_hook(hook_env(tmp_path, inst.http_port, fqdn, secret, reason="BOUND6",
                          new_ip6_address="2001:db8::55"))
    assert r.returncode == 0, r.stderr
    assert inst.dig(fqdn, "AAAA") == ["2001:db8::55"]
    assert inst.dig(fqdn, "A") == ["192.0.2.69"]
