"""TSIG keys: the rules of zone keys and the key file (pure), ``ddns key`` against a real instance,
what a key may change, revocation in a running ``ddns serve``, and the key file fed to the real
``nsupdate -k`` against a plain named with ``update-policy``.
"""
from __future__ import annotations

import base64
import logging
import re
import sqlite3
import subprocess
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from ddns import cli, keyconfigs, keyrules, policy
from ddns.errors import Invalid
from ddns.model import Actor, Grant, Identity, Match, Op, Operation
from ddns.store import Store

from conftest import free_port, query, require, wait_until

ZONE = "dyn.example.test"
KEY_FILE = re.compile(r'key "([^"]+)" \{\n\talgorithm ([a-z0-9-]+);\n\tsecret "([A-Za-z0-9+/=]+)";\n\};\n\Z')


def parse_key_file(text: str) -> dns.tsig.Key:
    """A BIND key file as dnspython's key (the test's own reading of the format tsig-keygen writes)."""
    match = KEY_FILE.match(text if text.endswith("\n") else text + "\n")
    assert match, text
    return dns.tsig.Key(match[1], match[3], match[2])


# ---- pure: rules, names, grants, key files ------------------------------------------------------
@pytest.mark.parametrize("text, grant, canonical", [
    ("grant zonesub TXT", Grant(True, Match.ZONESUB, ZONE, frozenset({"TXT"})), "grant zonesub TXT"),
    ("deny name www.dyn.example.test A", Grant(False, Match.NAME, "www." + ZONE, frozenset({"A"})),
     "deny name www.dyn.example.test A"),
    ("GRANT Subdomain Lab.Dyn.Example.Test. aaaa a", Grant(True, Match.SUBDOMAIN, "lab." + ZONE, frozenset({"A", "AAAA"})),
     "grant subdomain lab.dyn.example.test A AAAA"),
    ("grant wildcard *.dyn.example.test TXT", Grant(True, Match.WILDCARD, "*." + ZONE, frozenset({"TXT"})),
     "grant wildcard *.dyn.example.test TXT"),
    ("grant selfsub", Grant(True, Match.SELFSUB, "", frozenset()), "grant selfsub"),
    ("grant self A TXT", Grant(True, Match.SELF, "", frozenset({"A", "TXT"})), "grant self A TXT"),
    ("grant zonesub", Grant(True, Match.ZONESUB, ZONE, frozenset()), "grant zonesub"),
])
def test_rules_parse_and_format_round_trip(text, grant, canonical):
    parsed = keyrules.parse_rule(text, ZONE, "ci." + ZONE)
    assert parsed == grant
    assert keyrules.format_rule(parsed) == canonical
    assert keyrules.parse_rule(canonical, ZONE, "ci." + ZONE) == parsed


@pytest.mark.parametrize("text, message", [
    ("", "grant|deny"), ("grant", "grant|deny"), ("allow zonesub TXT", "grant|deny"),
    ("grant everything TXT", "match of a rule"), ("grant zonesub ANY", "not a record type"),
    ("grant zonesub AXFR", "not a record type"), ("grant zonesub BOGUS", "not a record type"),
    ("grant name", "needs a target"), ("grant name www.example.org A", "not in the zone"),
    ("grant subdomain dyn.example.test.evil.org A", "not in the zone"),
    ("grant wildcard www.dyn.example.test A", "starts with '*.'"), ("grant wildcard *.example.org A", "not in the zone"),
    ("grant name a..dyn.example.test A", "not a key name"), ('grant name "x".dyn.example.test A', "not a key name"),
    ("grant zonesub TXT\ngrant zonesub A", "printable ASCII"), ("grant zonesub TXT;", "not a record type"),
    ("grant zonesub " + "A " * 200, "at most 300"), ("grant zonesub " + "A " * 17, "at most 16"),
    ("grant zonesüb TXT", "printable ASCII"), ("grant self A", "key named inside"),
])
def test_hostile_rules_are_refused(text, message):
    with pytest.raises(Invalid, match=re.escape(message)):
        keyrules.parse_rule(text, ZONE, "outside.example.org")


def test_a_zone_key_needs_between_one_and_32_rules():
    with pytest.raises(Invalid, match="at least one rule"):
        keyrules.parse_rules([], ZONE, "ci")
    with pytest.raises(Invalid, match="at most 32"):
        keyrules.parse_rules(["grant zonesub TXT"] * 33, ZONE, "ci")


@pytest.mark.parametrize("text, name", [("VM1.Dyn.Example.Test.", "vm1.dyn.example.test"), ("ci-key", "ci-key"),
                                        ("_acme-challenge.vm.dyn.example.test", "_acme-challenge.vm.dyn.example.test")])
def test_key_names_are_lower_case_without_the_dot(text, name):
    assert keyrules.key_name(text) == name


@pytest.mark.parametrize("text", ["", " ", ".", "a..b", "-a", "a-", 'a"b', "a b", "a;b", "a\nb", "a/b", "é.test",
                                  "*.test", "a" * 64, ".".join(["a" * 60] * 5), "a\\b", "{a}"])
def test_hostile_key_names_are_refused(text):
    with pytest.raises(Invalid):
        keyrules.key_name(text)


def test_what_each_kind_of_key_may_change():
    fqdn = "vm." + ZONE
    host = Identity(Actor("key:" + fqdn), fqdn, keyrules.key_grants("host", fqdn, None, ()))
    assert all(policy.permits(host, ZONE, fqdn, t) for t in ("A", "AAAA", "TXT"))
    assert not policy.permits(host, ZONE, fqdn, "MX") and not policy.permits(host, ZONE, "other." + ZONE, "A")
    assert not policy.permits(host, ZONE, "_acme-challenge." + fqdn, "TXT")
    acme_name = keyrules.acme_key_name(fqdn)
    acme = Identity(Actor("key:" + acme_name), acme_name, keyrules.key_grants("acme", acme_name, None, ()))
    assert policy.permits(acme, ZONE, acme_name, "TXT")
    assert not policy.permits(acme, ZONE, acme_name, "A") and not policy.permits(acme, ZONE, fqdn, "TXT")
    rules = ("deny name www.dyn.example.test A", "grant zonesub A TXT")
    zone = Identity(Actor("key:ci"), "ci", keyrules.key_grants("zone", "ci", ZONE, rules))
    assert policy.permits(zone, ZONE, "any." + ZONE, "A") and not policy.permits(zone, ZONE, "www." + ZONE, "A")
    assert not policy.permits(zone, "other.test", "x.other.test", "A")  # bound to its zone
    assert not policy.permits(zone, ZONE, "any." + ZONE, "NS")


@pytest.mark.parametrize("algorithm", keyrules.ALGORITHMS)
def test_the_key_file_is_read_by_dnspython_and_signs(algorithm):
    secret = base64.b64encode(bytes(range(keyrules.SECRET_BYTES[algorithm]))).decode()
    text = keyconfigs.key_file("vm." + ZONE, algorithm, secret)
    key = parse_key_file(text)
    assert key.name == dns.name.from_text("vm." + ZONE) and key.algorithm == dns.name.from_text(algorithm)
    q = dns.update.UpdateMessage(ZONE)
    q.add(f"vm.{ZONE}.", 300, "A", "192.0.2.1")
    q.use_tsig(key)
    wire = q.to_wire()
    assert dns.message.from_wire(wire, keyring={key.name: key}).had_tsig  # verifies the MAC
    other = dns.tsig.Key("vm." + ZONE, base64.b64encode(b"x" * 32).decode(), algorithm)
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(wire, keyring={key.name: other})


@pytest.mark.parametrize("name, algorithm, secret", [
    ('a"b', "hmac-sha256", "AAAA"), ("a\nb", "hmac-sha256", "AAAA"), ("a.b", "hmac-md5", "AAAA"),
    ("a.b", "hmac-sha256", 'AA"; }; key "x'), ("a.b", "hmac-sha256", "AA AA"), ("A.B", "hmac-sha256", "AAAA")])
def test_key_files_refuse_what_would_need_quoting(name, algorithm, secret):
    with pytest.raises(Invalid):
        keyconfigs.key_file(name, algorithm, secret)


@pytest.mark.parametrize("server, port", [("127.0.0.1; rm -rf /", 53), ("a b", 53), ("", 53), ("::1", -1), ("x", 65536),
                                          ("x", "53")])
def test_snippets_refuse_hostile_servers(server, port):
    with pytest.raises(Invalid):
        keyconfigs.key_configs("vm.a.test", "hmac-sha256", "AAAA", "host", "vm.a.test", "a.test", server, port)


def test_snippets_of_an_acme_key_are_certbot_and_lego_ready():
    name = "_acme-challenge.vm." + ZONE
    configs = {c.key: c for c in keyconfigs.key_configs(name, "hmac-sha512", "c2VjcmV0", "acme", name, ZONE, "::1", 5053)}
    assert list(configs) == ["keyfile", "nsupdate", "certbot", "lego"]
    assert "dns_rfc2136_algorithm = HMAC-SHA512\n" in configs["certbot"].text
    assert f"-d vm.{ZONE}\n" in configs["certbot"].text
    assert "RFC2136_NAMESERVER=[::1]:5053" in configs["lego"].text and f"--domains vm.{ZONE} run" in configs["lego"].text
    assert f"update add {name} 60 TXT" in configs["nsupdate"].text and "server ::1 5053\n" in configs["nsupdate"].text
    assert keyconfigs.update_endpoint("0.0.0.0", 5053, "https://ddns.example.org") == ("ddns.example.org", 5053)
    off = keyconfigs.key_configs(name, "hmac-sha512", "c2VjcmV0", "acme", name, ZONE, "127.0.0.1", 0)
    assert [c.key for c in off] == ["keyfile"]  # no listener here: nothing to send updates to


CERTBOT_READS = """
import sys
from certbot.plugins.dns_common import CredentialsConfiguration
from certbot_dns_rfc2136._internal.dns_rfc2136 import Authenticator
conf = CredentialsConfiguration(sys.argv[1], lambda name: "dns_rfc2136_" + name)
conf.require({"server": "", "name": "", "secret": ""})
print(conf.conf("server"), conf.conf("port"), conf.conf("name"), conf.conf("secret"),
      Authenticator.ALGORITHMS[conf.conf("algorithm").upper()])
"""


def test_certbot_reads_the_credentials_snippet(tmp_path):
    """The ini part of the certbot snippet, read by certbot's own code (Debian's, in the system Python)."""
    require("certbot")
    name, secret = "_acme-challenge.vm." + ZONE, base64.b64encode(bytes(64)).decode()
    certbot = next(c for c in keyconfigs.key_configs(name, "hmac-sha512", secret, "acme", name, ZONE, "127.0.0.1", 5053)
                   if c.key == "certbot")
    ini = tmp_path / "rfc2136.ini"
    ini.write_text(certbot.text.split("\n\n")[0] + "\n")
    ini.chmod(0o600)
    out = subprocess.run(["/usr/bin/python3", "-c", CERTBOT_READS, str(ini)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["127.0.0.1", "5053", name, secret, "hmac-sha512."]


# ---- the command line ---------------------------------------------------------------------------------
def keys_listed(instance) -> list[dict]:
    r = instance.cli("key", "list", "--json")
    assert r.code == 0, r.err
    return r.json()


def test_key_add_list_delete(instance):
    fqdn = "vm1." + ZONE
    instance.add_host(fqdn)
    r = instance.cli("key", "add", fqdn.upper() + ".")
    assert r.code == cli.Exit.OK, r.err
    host_key = parse_key_file(r.out)
    assert host_key.name == dns.name.from_text(fqdn) and len(host_key.secret) == 32
    host_secret = base64.b64encode(host_key.secret).decode()
    assert "shown only this once" in r.err and r.out.count("secret") == 1
    r = instance.cli("key", "add", fqdn, "--acme", "--algorithm", "hmac-sha512", "--json")
    assert r.code == cli.Exit.OK, r.err
    acme = r.json()
    assert set(acme) == {"name", "algorithm", "secret"} and acme["name"] == "_acme-challenge." + fqdn
    assert acme["algorithm"] == "hmac-sha512" and len(base64.b64decode(acme["secret"])) == 64
    r = instance.cli("key", "add", "ci", "--zone", ZONE, "--rule", "deny name www.dyn.example.test A",
                     "--rule", "grant  zonesub  TXT A", "--json")
    assert r.code == cli.Exit.OK, r.err
    zone_secret = r.json()["secret"]
    listed = keys_listed(instance)
    assert [(k["name"], k["kind"], k["host"], k["zone"], k["rules"]) for k in listed] == [
        ("_acme-challenge." + fqdn, "acme", fqdn, None, []), ("ci", "zone", None, ZONE,
                                                             ["deny name www.dyn.example.test A", "grant zonesub A TXT"]),
        (fqdn, "host", fqdn, None, [])]
    text = instance.cli("key", "list")
    for secret in (host_secret, acme["secret"], zone_secret):
        assert secret not in str(listed) and secret not in text.out
    r = instance.cli("key", "delete", "_acme-challenge." + fqdn)
    assert r.code == cli.Exit.OK and "refused from now on" in r.out
    assert [k["name"] for k in keys_listed(instance)] == ["ci", fqdn]
    r = instance.cli("key", "delete", "_acme-challenge." + fqdn)
    assert r.code == cli.Exit.ERROR and "no key" in r.err


@pytest.mark.parametrize("args, message", [
    (["nohost." + ZONE], "no host"), (["x.example.org"], "no host"), (['vm1"; };'], "no host"),
    (["vm1." + ZONE, "--rule", "grant zonesub TXT"], "only zone keys have rules"),
    (["vm1." + ZONE], "exists"),  # the host key made first below
    (["ci", "--zone", "example.org", "--rule", "grant zonesub TXT"], "no domain"),
    (["ci", "--zone", ZONE], "at least one rule"),
    (["ci", "--zone", ZONE, "--rule", "grant name www.example.org A"], "not in the zone"),
    (["ci", "--zone", ZONE, "--rule", "grant zonesub TXT", "--rule", "permit all"], "grant|deny"),
    (['c"i', "--zone", ZONE, "--rule", "grant zonesub TXT"], "not a key name"),
    (["ci", "--zone", ZONE, "--acme", "--rule", "grant zonesub TXT"], "not both"),
])
def test_hostile_key_requests_are_refused_and_change_nothing(instance, args, message):
    instance.add_host("vm1." + ZONE)
    assert instance.cli("key", "add", "vm1." + ZONE).code == 0
    before, commits = keys_listed(instance), instance.commit_count()
    r = instance.cli("key", "add", *args)
    assert r.code == cli.Exit.ERROR and message in r.err, (r.code, r.err)
    assert "Traceback" not in r.err and keys_listed(instance) == before and instance.commit_count() == commits


def test_an_unknown_algorithm_is_a_usage_error(instance):
    instance.add_host("vm1." + ZONE)
    with pytest.raises(SystemExit) as exit:
        instance.cli("key", "add", "vm1." + ZONE, "--algorithm", "hmac-md5")
    assert exit.value.code == cli.Exit.USAGE
    assert keys_listed(instance) == []


def test_deleting_a_host_deletes_its_keys(running):
    inst = running.instance
    fqdn = "gone." + ZONE
    inst.add_host(fqdn)
    assert inst.cli("key", "add", fqdn).code == 0 and inst.cli("key", "add", fqdn, "--acme").code == 0
    identity = running.service.key_identity(fqdn, Actor("key:" + fqdn, interface="rfc2136"))
    assert identity.guard()
    assert inst.cli("host", "delete", fqdn).code == 0
    assert keys_listed(inst) == []
    assert running.service.tsig_key(fqdn) is None and running.service.tsig_key("_acme-challenge." + fqdn) is None
    assert not identity.guard()  # an update signed before the deletion is refused under the publisher's lock


# ---- what a key's identity is, and revocation in a running serve ----------------------------------------
def test_identities_of_keys(instance):
    fqdn = "vm1." + ZONE
    instance.add_host(fqdn)
    instance.cli("key", "add", fqdn)
    instance.cli("key", "add", fqdn, "--acme")
    instance.cli("key", "add", "ci.example.org", "--zone", ZONE, "--rule", "grant subdomain lab.dyn.example.test A")
    service = instance.open_service()
    actor = Actor("key:x", "127.0.0.1", "rfc2136")
    host = service.key_identity(fqdn.upper() + ".", actor)
    assert (host.signer, host.actor, host.grants) == (fqdn, actor, (Grant(True, Match.SELF, "", frozenset({"A", "AAAA", "TXT"})),
                                                                    Grant(True, Match.PTR_SELF, fqdn, frozenset({"PTR"}))))
    acme = service.key_identity("_acme-challenge." + fqdn, actor)
    assert acme.grants == (Grant(True, Match.SELF, "", frozenset({"TXT"})),) and acme.signer == "_acme-challenge." + fqdn
    zone = service.key_identity("ci.example.org", actor)
    assert zone.grants == (Grant(True, Match.SUBDOMAIN, "lab." + ZONE, frozenset({"A"})),)
    assert policy.authorize(zone, ZONE, [Operation(Op.ADD, "x.lab." + ZONE, "A", "192.0.2.1")])
    for identity in (host, acme, zone):
        assert identity.guard()
    assert service.key_identity("nokey." + ZONE, actor) is None and service.key_identity('"; drop', actor) is None
    key = service.tsig_key(fqdn)
    assert key.name == fqdn and key.algorithm == "hmac-sha256" and len(key.secret) == 32


def test_revoking_a_key_stops_it_at_once_in_a_running_serve(running):
    """The serving process reads the key afresh on every use: the CLI's deletion (another connection) counts at once."""
    inst, service = running.instance, running.service
    fqdn = "live." + ZONE
    inst.add_host(fqdn)
    secret = inst.cli("key", "add", fqdn, "--json").json()["secret"]
    key = service.tsig_key(fqdn)
    assert key is not None and base64.b64encode(key.secret).decode() == secret
    identity = service.key_identity(fqdn, Actor("key:" + fqdn, "127.0.0.1", "rfc2136"))
    assert identity.guard()
    assert inst.cli("key", "delete", fqdn).code == 0
    assert service.tsig_key(fqdn) is None
    assert service.key_identity(fqdn, Actor("key:" + fqdn)) is None
    assert not identity.guard()  # an update already authenticated is refused when the publisher applies it
    new = inst.cli("key", "add", fqdn, "--json").json()["secret"]  # made anew: a new secret, the old identity stays dead
    assert base64.b64encode(service.tsig_key(fqdn).secret).decode() == new != secret
    assert not identity.guard()


def test_the_secret_is_never_in_git_or_the_log(running, caplog):
    caplog.set_level(logging.DEBUG)
    inst = running.instance
    fqdn = "quiet." + ZONE
    inst.add_host(fqdn)
    secrets = [inst.cli("key", "add", fqdn, "--json").json()["secret"],
               inst.cli("key", "add", fqdn, "--acme", "--json").json()["secret"]]
    assert inst.cli("host", "set", fqdn, "192.0.2.44").code == 0
    inst.cli("key", "delete", fqdn)
    history = inst.git("log", "-p", "--all")
    everything = subprocess.run(["grep", "-r", "-F", "-l", "-e", secrets[0], "-e", secrets[1], str(inst.repo)],
                                capture_output=True, text=True)
    assert everything.stdout == ""  # nowhere in the working tree or .git (objects are compressed: checked via log -p)
    history += subprocess.run(["git", "-C", str(inst.dir / "zones.git"), "log", "-p", "--all"], capture_output=True,
                              text=True, check=True).stdout
    log = running.log.getvalue() + caplog.text
    assert f"key {fqdn} (host, hmac-sha256) made by the command line" in log and f"key {fqdn} (host) revoked" in log
    for secret in secrets:
        assert secret not in history and secret not in log
        assert secret not in inst.cli("key", "list").out


def test_a_database_made_before_keys_gets_the_table(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    release1 = (Path(__file__).parent / "data" / "schema_release1.sql").read_text()
    old.executescript(release1.split("CREATE TABLE IF NOT EXISTS tsig_keys")[0])  # the tables a release without keys made
    old.execute("INSERT INTO users(name, is_admin, created) VALUES ('alice', 0, 1)")
    old.execute("INSERT INTO domains(zone, created) VALUES (?, 1)", (ZONE,))
    old.execute("INSERT INTO hosts(fqdn, zone, owner_id, secret_hash, created) VALUES (?, ?, 1, 'x', 1)", ("vm." + ZONE, ZONE))
    old.commit()
    old.close()
    store = Store(path)
    assert store.tsig_keys() == [] and store.find_host("vm." + ZONE) is not None
    from ddns.keys import Keys
    keys = Keys(store, clock=lambda: 5.0)
    info, secret = keys.add(None, "vm." + ZONE)
    assert store.tsig_key_row("vm." + ZONE) == (info, secret) and info.created == 5.0
    store.delete_host("vm." + ZONE)
    assert store.tsig_keys() == []  # deleted with the host


# ---- the real nsupdate reads the key file ---------------------------------------------------------------
def plain_named(directory: Path, port: int, key_file: Path, key: str) -> subprocess.Popen:
    """A plain named (not ours) serving ZONE with ``update-policy { grant KEY self KEY A; }``."""
    directory.mkdir()
    (directory / "zone.db").write_text(f"$TTL 300\n@ SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300\n"
                                       f"@ NS ns1.{ZONE}.\nns1 A 127.0.0.1\n")
    (directory / "named.conf").write_text(f"""
include "{key_file}";
options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
zone "{ZONE}" {{ type primary; file "{directory}/zone.db"; update-policy {{ grant {key} self {key} A; }}; }};
""")
    log = open(directory / "named.log", "wb")
    proc = subprocess.Popen(["named", "-g", "-c", str(directory / "named.conf")], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def answers_soa(port: int) -> bool:
    try:
        return bool(query(port, ZONE, "SOA", timeout=0.5))
    except (dns.exception.Timeout, OSError):
        return False


def test_nsupdate_accepts_the_key_file(instance, tmp_path):
    require("named", "nsupdate")
    fqdn = "vm1." + ZONE
    instance.add_host(fqdn)
    r = instance.cli("key", "add", fqdn)
    key_file = tmp_path / "vm1.key"
    key_file.write_text(r.out)
    key_file.chmod(0o600)
    port = free_port()
    named = plain_named(tmp_path / "named", port, key_file, fqdn)
    try:
        wait_until(lambda: named.poll() is not None or answers_soa(port), 15, what="named")
        assert named.poll() is None, (tmp_path / "named" / "named.log").read_text()
        script = f"server 127.0.0.1 {port}\nzone {ZONE}\nupdate add {fqdn} 300 A 192.0.2.77\nsend\n"
        out = subprocess.run(["nsupdate", "-k", str(key_file)], input=script, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out
        assert query(port, fqdn, "A") == ["192.0.2.77"]
        other = script.replace(f"update add {fqdn}", f"update add other.{ZONE}")  # self: only its own name
        out = subprocess.run(["nsupdate", "-k", str(key_file)], input=other, capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and "REFUSED" in out.stdout + out.stderr
        assert query(port, "other." + ZONE, "A") == []
    finally:
        named.terminate()
        named.wait(15)
