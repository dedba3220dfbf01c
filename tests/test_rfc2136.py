"""RFC 2136 for real: nsupdate (-k FILE and -y, UDP and TCP) and dig against ddns serve and its named.

Every accepted update is a commit with a Ddns-Change trailer of interface
rfc2136 and BIND serves it when nsupdate returns; every refusal answers the
rcode nsupdate prints and changes nothing in Git or BIND, and the listener
keeps answering.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import pytest

from conftest import Instance, ServeProcess, free_port, query, require, wait_until
from test_rfc2136_pure import raw_update, sign, tsig_of, verify_answer

HOST_LABEL = "myvm"


@dataclass
class Key:
    name: str
    algorithm: str
    secret: str
    file: Path

    @property
    def y(self) -> list[str]:
        return ["-y", f"{self.algorithm}:{self.name}:{self.secret}"]

    @property
    def k(self) -> list[str]:
        return ["-k", str(self.file)]

    @property
    def dns_key(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.name + ".", self.secret, self.algorithm)


def make_key(inst: Instance, *args: str) -> Key:
    """``ddns key add ARGS``: its key file written next to the instance, its JSON form for -y."""
    made = inst.cli("key", "add", *args, "--json")
    assert made.code == 0, made.err
    data = made.json()
    path = inst.dir / f"{data['name']}.key"
    path.write_text(f'key "{data["name"]}" {{\n\talgorithm {data["algorithm"]};\n\tsecret "{data["secret"]}";\n}};\n')
    return Key(data["name"], data["algorithm"], data["secret"], path)


def nsupdate(inst: Instance, lines: list[str], key_args: list[str] = (), tcp: bool = False,
             zone: str | None = "") -> subprocess.CompletedProcess:
    """Run nsupdate with LINES against the listener (ZONE "" names the instance's zone, None lets nsupdate find it)."""
    require("nsupdate")
    head = [f"server 127.0.0.1 {inst.update_port}"]
    if zone is not None:
        head.append(f"zone {zone or inst.zone}")
    script = "\n".join(head + lines + ["send", ""])
    args = ["nsupdate", *key_args, *(["-v"] if tcp else []), "-t", "20"]
    return subprocess.run(args, input=script, capture_output=True, text=True, timeout=60)


def failed_with(result: subprocess.CompletedProcess) -> str:
    """What nsupdate printed after 'update failed: ' ("" when the update went through)."""
    text = result.stdout + result.stderr
    if "update failed: " in text:
        return text.split("update failed: ", 1)[1].split()[0]
    assert result.returncode == 0, text
    return ""


def listener_soa(inst: Instance, tcp: bool = False) -> int:
    """The serial the listener answers for the zone's SOA."""
    require("dig")
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(inst.update_port), inst.zone, "SOA", "+short", "+norec",
                          *(["+tcp"] if tcp else []), "+time=5", "+tries=1"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    return int(out[2])


def trailers(inst: Instance, rev: str = "HEAD") -> list[dict]:
    body = inst.git("log", "-1", "--format=%B", rev)
    return [json.loads(line.split(": ", 1)[1]) for line in body.splitlines() if line.startswith("Ddns-Change: ")]


@pytest.fixture
def host(instance: Instance, serve):
    """A served instance with host myvm and its host key; yields (instance, key, running)."""
    fqdn = f"{HOST_LABEL}.{instance.zone}"
    instance.add_host(fqdn)
    key = make_key(instance, fqdn)
    running = serve()
    return instance, key, running


@pytest.mark.parametrize("tcp, form", [(False, "k"), (True, "k"), (False, "y"), (True, "y")])
def test_add_replace_delete_a_aaaa_txt(host, tcp, form):
    inst, key, _ = host
    fqdn = key.name
    args = key.k if form == "k" else key.y
    before = inst.commit_count()
    assert failed_with(nsupdate(inst, [f"update add {fqdn} 300 A 192.0.2.1", f"update add {fqdn} 300 AAAA 2001:db8::1",
                                       f'update add {fqdn} 300 TXT "hello world"'], args, tcp)) == ""
    assert inst.dig(fqdn, "A") == ["192.0.2.1"] and inst.dig(fqdn, "AAAA") == ["2001:db8::1"]
    assert inst.dig(fqdn, "TXT") == ['"hello world"']
    assert inst.commit_count() == before + 1
    changes = trailers(inst)
    assert {c["interface"] for c in changes} == {"rfc2136"}
    assert {c["actor"] for c in changes} == {f"key:{fqdn}"} and {c["client"] for c in changes} == {"127.0.0.1"}
    assert failed_with(nsupdate(inst, [f"update delete {fqdn} A", f"update add {fqdn} 300 A 192.0.2.2"], args, tcp)) == ""
    assert inst.dig(fqdn, "A") == ["192.0.2.2"]
    assert failed_with(nsupdate(inst, [f"update delete {fqdn} AAAA", f'update delete {fqdn} TXT "hello world"'],
                                args, tcp)) == ""
    assert inst.dig(fqdn, "AAAA") == [] and inst.dig(fqdn, "TXT") == []
    assert listener_soa(inst, tcp) == inst.served_serial()


def test_nsupdate_finds_the_zone_through_the_listener_soa(host):
    inst, key, _ = host
    assert failed_with(nsupdate(inst, [f"update add {key.name} 60 A 192.0.2.5"], key.k, zone=None)) == ""
    assert failed_with(nsupdate(inst, [f"update add {key.name} 60 A 192.0.2.6"], key.k, tcp=True, zone=None)) == ""
    assert inst.dig(key.name, "A") == ["192.0.2.5", "192.0.2.6"]


@pytest.mark.parametrize("prereq, unmet", [
    ("nxdomain other.{zone}", "yxdomain other.{zone}"),
    ("yxdomain {fqdn}", "nxdomain {fqdn}"),
    ("yxrrset {fqdn} A", "yxrrset {fqdn} TXT"),
    ("nxrrset {fqdn} TXT", "nxrrset {fqdn} A"),
    ("yxrrset {fqdn} A 192.0.2.1", "yxrrset {fqdn} A 192.0.2.99"),
])
def test_prerequisites_satisfied_and_not(host, prereq, unmet):
    inst, key, _ = host
    fqdn, zone = key.name, inst.zone
    assert failed_with(nsupdate(inst, [f"update add {fqdn} 300 A 192.0.2.1"], key.k)) == ""
    before, served = inst.commit_count(), inst.dig(fqdn, "AAAA")
    expected = {"yxdomain": "NXDOMAIN", "nxdomain": "YXDOMAIN", "yxrrset": "NXRRSET", "nxrrset": "YXRRSET"}
    line = unmet.format(zone=zone, fqdn=fqdn)
    assert failed_with(nsupdate(inst, [f"prereq {line}", f"update add {fqdn} 300 AAAA 2001:db8::7"], key.k)) \
        == expected[line.split()[0]]
    assert inst.commit_count() == before and inst.dig(fqdn, "AAAA") == served
    line = prereq.format(zone=zone, fqdn=fqdn)
    assert failed_with(nsupdate(inst, [f"prereq {line}", f"update add {fqdn} 300 AAAA 2001:db8::7"], key.k)) == ""
    assert inst.dig(fqdn, "AAAA") == ["2001:db8::7"]


def unchanged_after(inst: Instance, key: Key, run) -> str:
    """RUN() (returning what nsupdate failed with); nothing changed in Git or BIND; the listener still answers."""
    fqdn = key.name
    assert failed_with(nsupdate(inst, [f"update add {fqdn} 300 A 192.0.2.1"], key.k)) == ""
    head, served, serial = inst.git("rev-parse", "HEAD"), inst.dig(fqdn, "A"), inst.served_serial()
    failure = run()
    assert inst.git("rev-parse", "HEAD") == head and inst.dig(fqdn, "A") == served
    assert inst.served_serial() == serial and listener_soa(inst) == serial
    assert failed_with(nsupdate(inst, [f"update add {fqdn} 300 A 192.0.2.3"], key.k)) == ""  # still answering
    return failure


def test_unsigned_update_is_refused(host):
    inst, key, _ = host
    assert unchanged_after(inst, key, lambda: failed_with(
        nsupdate(inst, [f"update add {key.name} 300 A 192.0.2.66"]))) == "REFUSED"


def test_unknown_key_is_notauth_badkey(host):
    inst, key, _ = host
    stranger = ["-y", f"hmac-sha256:stranger.{inst.zone}:{key.secret}"]
    assert unchanged_after(inst, key, lambda: failed_with(
        nsupdate(inst, [f"update add {key.name} 300 A 192.0.2.66"], stranger))) == "NOTAUTH(BADKEY)"


def test_wrong_mac_is_notauth_badsig(host):
    inst, key, _ = host
    wrong = ["-y", f"hmac-sha256:{key.name}:{'A' * 43}="]
    assert unchanged_after(inst, key, lambda: failed_with(
        nsupdate(inst, [f"update add {key.name} 300 A 192.0.2.66"], wrong))) == "NOTAUTH(BADSIG)"


def test_stale_time_is_notauth_badtime_signed(host):
    inst, key, _ = host

    def stale() -> str:
        wire = sign(raw_update([(key.name, 1, 1, 300, bytes([192, 0, 2, 66]))], zone=inst.zone), key.dns_key,
                    when=int(time.time()) - 3600)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(wire, ("127.0.0.1", inst.update_port))
            answer = sock.recv(65535)
        assert tsig_of(answer).error == dns.rcode.BADTIME
        verify_answer(answer, dns.message.from_wire(wire, keyring=False).mac, key.dns_key)
        return dns.rcode.to_text(dns.message.from_wire(answer, keyring=False).rcode())
    assert unchanged_after(inst, key, stale) == "NOTAUTH"


@pytest.mark.parametrize("line", ["update add other.{zone} 300 A 192.0.2.66",      # another name
                                  "update add {fqdn} 300 MX 10 mail.{zone}",      # another type
                                  "update delete {zone} NS",                       # the apex NS
                                  "update delete {zone} SOA",
                                  "update delete {zone}"])
def test_host_key_touching_another_name_or_type_is_refused(host, line):
    inst, key, _ = host
    text = line.format(zone=inst.zone, fqdn=key.name)
    assert unchanged_after(inst, key, lambda: failed_with(nsupdate(inst, [text], key.k))) == "REFUSED"


def test_acme_key_changes_only_its_txt(host):
    inst, key, _ = host
    acme = make_key(inst, key.name, "--acme")
    assert acme.name == f"_acme-challenge.{key.name}"
    assert failed_with(nsupdate(inst, [f'update add {acme.name} 60 TXT "token-1"'], acme.k)) == ""
    assert inst.dig(acme.name, "TXT") == ['"token-1"']
    assert unchanged_after(inst, key, lambda: failed_with(
        nsupdate(inst, ["check-names no", f"update add {acme.name} 60 A 192.0.2.66"], acme.k))) == "REFUSED"
    assert unchanged_after(inst, key, lambda: failed_with(
        nsupdate(inst, [f"update add {key.name} 60 A 192.0.2.66"], acme.y))) == "REFUSED"
    assert failed_with(nsupdate(inst, [f"update delete {acme.name} TXT"], acme.k)) == ""
    assert inst.dig(acme.name, "TXT") == []


def test_names_outside_every_zone(host):
    inst, key, _ = host
    assert unchanged_after(inst, key, lambda: failed_with(
        nsupdate(inst, ["update add www.example.org 300 A 192.0.2.66"], key.k))) == "NOTZONE"
    assert unchanged_after(inst, key, lambda: failed_with(
        nsupdate(inst, ["update add www.example.org 300 A 192.0.2.66"], key.k, zone="example.org"))) == "NOTAUTH"
    result = nsupdate(inst, ["update add www.example.org 300 A 192.0.2.66"], key.k, zone=None)
    assert result.returncode != 0 and "REFUSED" in result.stdout + result.stderr  # the SOA query is refused


def test_cname_beside_a_is_ignored(host):
    inst, key, _ = host
    zone_key = make_key(inst, f"admin.{inst.zone}", "--zone", inst.zone, "--rule", "grant zonesub A TXT CNAME")

    def cname() -> str:
        failure = failed_with(nsupdate(inst, [f"update add {key.name} 300 CNAME elsewhere.example.org."], zone_key.k))
        assert inst.dig(key.name, "CNAME") == []
        return failure
    assert unchanged_after(inst, key, cname) == ""


def test_zone_key_cannot_delete_the_apex_ns_or_soa(host):
    inst, key, _ = host
    zone_key = make_key(inst, f"ns-admin.{inst.zone}", "--zone", inst.zone, "--rule", "grant zonesub NS SOA A")
    ns = inst.dig(inst.zone, "NS")
    for line in (f"update delete {inst.zone} NS", f"update delete {inst.zone} SOA"):
        assert unchanged_after(inst, key, lambda: failed_with(nsupdate(inst, [line], zone_key.k))) in ("", "REFUSED")
    assert inst.dig(inst.zone, "NS") == ns


def test_two_updates_with_conflicting_prerequisites_exactly_one_wins(host):
    inst, key, _ = host
    results: list[str] = []

    def claim(value: str) -> None:
        results.append(failed_with(nsupdate(inst, [f"prereq nxrrset {key.name} TXT",
                                                   f'update add {key.name} 60 TXT "{value}"'], key.k)))
    threads = [threading.Thread(target=claim, args=(v,)) for v in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(results) == ["", "YXRRSET"]
    assert len(inst.dig(key.name, "TXT")) == 1


def test_secret_never_in_logs_or_git(instance: Instance, tmp_path: Path):
    fqdn = f"{HOST_LABEL}.{instance.zone}"
    instance.add_host(fqdn)
    key = make_key(instance, fqdn)
    proc = ServeProcess(instance, tmp_path / "serve.log")
    proc.start()
    try:
        assert failed_with(nsupdate(instance, [f"update add {fqdn} 300 A 192.0.2.1"], key.k)) == ""
        assert failed_with(nsupdate(instance, [f"update add {fqdn} 300 A 192.0.2.2"], key.y, tcp=True)) == ""
        wrong = ["-y", f"hmac-sha256:{fqdn}:{'A' * 43}="]
        assert failed_with(nsupdate(instance, [f"update add {fqdn} 300 A 192.0.2.3"], wrong)) == "NOTAUTH(BADSIG)"
        assert failed_with(nsupdate(instance, [f"update add {fqdn} 300 MX 1 a.{instance.zone}"], key.k)) == "REFUSED"
    finally:
        proc.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "rfc2136" in log and fqdn in log
    assert key.secret not in log
    history = subprocess.run(["git", "-C", str(instance.repo), "log", "-p", "--all"], capture_output=True,
                             text=True, check=True).stdout
    assert "rfc2136" in history and key.secret not in history


def test_quickstart_prints_a_working_nsupdate_line(tmp_path: Path):
    require("named", "git", "nsupdate", "dig")
    ports = {"--http-port": free_port(), "--dns-port": free_port(), "--rndc-port": free_port(),
             "--update-port": free_port()}
    demo = tmp_path / "demo"
    cmd = [sys.executable, "-m", "ddns.cli", "quickstart", str(demo), *(str(x) for kv in ports.items() for x in kv)]
    for run in range(2):  # the second run replaces the demo key: the printed line works again
        log = tmp_path / f"quickstart-{run}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
        try:
            wait_until(lambda: "serving on" in log.read_text() or proc.poll() is not None, 60, what="quickstart")
            lines = log.read_text().splitlines()
            assert proc.poll() is None, lines
            line = next(line.strip() for line in lines if line.strip().startswith("printf "))
            assert "nsupdate -k" in line and oct((demo / "demo.key").stat().st_mode & 0o777) == "0o600"
            result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr
            assert query(ports["--dns-port"], "demo.dyn.example.test", "A") == ["192.0.2.11"]
            secret = (demo / "demo.key").read_text().split('secret "')[1].split('"')[0]
            assert secret not in log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert proc.returncode == 0, log.read_text()


@pytest.mark.parametrize("algorithm", ["hmac-sha384", "hmac-sha512"])
def test_zone_keys_of_the_larger_algorithms(host, algorithm):
    inst, _, _ = host
    zone_key = make_key(inst, f"txt-{algorithm}.{inst.zone}", "--zone", inst.zone, "--rule", "grant zonesub TXT",
                        "--algorithm", algorithm)
    assert zone_key.algorithm == algorithm
    name = f"note.{inst.zone}"
    assert failed_with(nsupdate(inst, [f'update add {name} 60 TXT "signed with {algorithm}"'], zone_key.y)) == ""
    assert inst.dig(name, "TXT") == [f'"signed with {algorithm}"']
    assert failed_with(nsupdate(inst, [f"update add {name} 60 A 192.0.2.8"], zone_key.k, tcp=True)) == "REFUSED"
