"""`kinit -kt` + `nsupdate -g` against a real `ddns serve`: Kerberos-signed updates end to end.

Real parts only: two MIT KDCs (EXAMPLE.TEST, the realm ddns trusts, and
OTHER.TEST), MIT's kinit, BIND's nsupdate -g (it negotiates a GSS-TSIG key
with TKEY over TCP, then signs the update with it), `ddns serve` as its own
process (configured for Kerberos only through DDNS_KERBEROS_KEYTAB and
DDNS_KERBEROS_REALM), its managed named answering dig, and the zones
repository's git log. The service keytab holds DNS/ns1.<zone> of both realms,
so a ticket of OTHER.TEST is accepted by GSS and refused by policy.

Zone dyn.example.test has no Kerberos rules: registered hosts get krb5-self
by default, and ptr-self in the reverse zone 2.0.192.in-addr.arpa. Zone
lab.example.test gets rules pushed by an admin (`grant EXAMPLE.TEST
krb5-self . A`, `grant alice@EXAMPLE.TEST zonesub TXT`). A principal linked
to a host with `ddns host principal` gets that host's rights until it is
unlinked. Every refusal leaves the repository's HEAD as it was, and nsupdate
reports it exactly as it reports BIND's (test_kerberos_baseline.py).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ddns import cli

from conftest import Instance, ServeProcess, free_port, require, wait_until
from testkit.kdc import Kdc
from kerberos_fixtures import kdc, other_kdc  # noqa: F401  (the session's KDCs)

ZONE = "dyn.example.test"
LAB = "lab.example.test"
REVERSE = "2.0.192.in-addr.arpa"  # its SOA MNAME is ns1.dyn.example.test: the same service principal
LAB_RULES = ["grant EXAMPLE.TEST krb5-self . A", "grant alice@EXAMPLE.TEST zonesub TXT"]
REFUSED = "update failed: REFUSED\n"  # nsupdate's whole stderr for an update answered REFUSED (exit 2)


@dataclass
class Site:
    """A served instance with Kerberos on, and the tickets the tests asked for."""

    inst: Instance
    kdc: Kdc
    other: Kdc
    directory: Path
    tickets: dict[str, dict[str, str]] = field(default_factory=dict)

    def ticket(self, name: str, kdc: Kdc | None = None) -> dict[str, str]:
        """The environment of a client holding a ticket for NAME (`kinit -kt` from its own keytab)."""
        kdc = kdc or self.kdc
        key = f"{name}@{kdc.realm}"
        if key not in self.tickets:
            stem = re.sub(r"[^A-Za-z0-9.]", "_", key)
            keytab = self.directory / f"{stem}.keytab"
            self.tickets[key] = kdc.kinit(keytab, kdc.principal(name, keytab), self.directory / f"{stem}.cc")
        return self.tickets[key]

    def nsupdate(self, env: dict[str, str], zone: str, *lines: str) -> subprocess.CompletedProcess:
        """`nsupdate -g` sending LINES as one update of ZONE to ddns's listener."""
        script = "\n".join([f"server 127.0.0.1 {self.inst.update_port}", f"zone {zone}", *lines, "send", ""])
        return subprocess.run(["nsupdate", "-g"], input=script, env=env, capture_output=True, text=True, timeout=60)

    def head(self) -> str:
        return self.inst.git("rev-parse", "HEAD").strip()

    def messages(self, since: str) -> str:
        """The commit messages (with their trailers) after SINCE."""
        return self.inst.git("log", "--format=%B", f"{since}..HEAD")

    def refused(self, env: dict[str, str], zone: str, *lines: str) -> None:
        """The update is answered REFUSED and nothing is committed."""
        before = self.head()
        result = self.nsupdate(env, zone, *lines)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", REFUSED), result
        assert self.head() == before


def _push_rules(inst: Instance, directory: Path, zone: str, rules: list[str]) -> None:
    """An admin adds RULES to ZONE's zone.toml and pushes; returns once the service's repository has it."""
    clone = directory / "admin"
    git_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str, cwd: Path = clone) -> str:
        return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                              env=git_env, timeout=120).stdout

    bare = inst.dir / "zones.git"
    wait_until(lambda: git("rev-parse", "main", cwd=bare) == git("rev-parse", "HEAD", cwd=inst.repo), 20,
               what="the service to push its commits")
    git("clone", "-q", "-b", "main", str(bare), str(clone), cwd=directory)
    git("config", "user.name", "Zone Admin")
    git("config", "user.email", "admin@example.test")
    settings = clone / zone / "zone.toml"
    quoted = ", ".join(f'"{rule}"' for rule in rules)
    settings.write_text(settings.read_text() + f"\n[kerberos]\nrules = [{quoted}]\n")
    git("commit", "-q", "-am", f"Kerberos rules for {zone}")
    pushed = git("rev-parse", "HEAD").strip()
    git("push", "-q", "origin", "HEAD:refs/heads/main")
    wait_until(lambda: subprocess.run(["git", "-C", str(inst.repo), "merge-base", "--is-ancestor", pushed, "HEAD"],
                                      capture_output=True).returncode == 0, 20, what="the service to take in the rules")


@pytest.fixture(scope="module")
def site(kdc, other_kdc, tmp_path_factory):  # noqa: F811
    require("nsupdate", "dig", "kinit", "named", "git")
    directory = tmp_path_factory.mktemp("gss")
    ports = [free_port() for _ in range(4)]
    cli.init_instance(directory / "inst", *ports[:3], zone=ZONE, update_port=ports[3],
                      extra={"security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False,
                             "zones.push_seconds": 0.2})  # the admin's clone below waits for the service's push
    inst = Instance(directory / "inst", directory / "inst" / "ddns.toml", *ports[:3], update_port=ports[3])
    keytab = directory / "dns.keytab"
    for zone in (ZONE, LAB):
        kdc.principal(f"DNS/ns1.{zone}", keytab)
    other_kdc.principal(f"DNS/ns1.{ZONE}", keytab)
    for host in ("vm1", "vm2"):
        inst.add_host(f"{host}.{ZONE}")
    server = ServeProcess(inst, directory / "serve.log")
    with pytest.MonkeyPatch.context() as env:
        for name in ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5RCACHEDIR"):
            env.setenv(name, kdc.env[name])
        env.setenv("DDNS_KERBEROS_KEYTAB", str(keytab))
        env.setenv("DDNS_KERBEROS_REALM", kdc.realm)
        server.start()
    try:
        for zone, extra in ((LAB, ()), (REVERSE, ("--ns", f"ns1.{ZONE}."))):
            r = inst.cli("domain", "add", zone, *extra)
            assert r.code == 0, r.err
        _push_rules(inst, directory, LAB, LAB_RULES)
        yield Site(inst, kdc, other_kdc, directory)
    finally:
        server.stop()


def test_a_host_adds_changes_and_deletes_its_own_a_aaaa_and_txt(site):
    env = site.ticket(f"host/vm1.{ZONE}")
    actor = f"krb5:host/vm1.{ZONE}@EXAMPLE.TEST"
    name = f"vm1.{ZONE}"
    start = site.head()

    added = site.nsupdate(env, ZONE, f"update add {name} 60 A 192.0.2.71", f"update add {name} 60 AAAA 2001:db8::71",
                          f'update add {name} 60 TXT "set by kerberos"')
    assert (added.returncode, added.stderr) == (0, ""), added
    assert site.inst.dig(name, "A") == ["192.0.2.71"]
    assert site.inst.dig(name, "AAAA") == ["2001:db8::71"]
    assert site.inst.dig(name, "TXT") == ['"set by kerberos"']

    changed = site.nsupdate(env, ZONE, f"update delete {name} A", f"update add {name} 60 A 192.0.2.72",
                            f"update delete {name} AAAA", f"update add {name} 60 AAAA 2001:db8::72",
                            f"update delete {name} TXT", f'update add {name} 60 TXT "changed"')
    assert (changed.returncode, changed.stderr) == (0, ""), changed
    assert (site.inst.dig(name, "A"), site.inst.dig(name, "AAAA"), site.inst.dig(name, "TXT")) == \
        (["192.0.2.72"], ["2001:db8::72"], ['"changed"'])

    deleted = site.nsupdate(env, ZONE, f"update delete {name} A", f"update delete {name} AAAA",
                            f"update delete {name} TXT")
    assert (deleted.returncode, deleted.stderr) == (0, ""), deleted
    assert (site.inst.dig(name, "A"), site.inst.dig(name, "AAAA"), site.inst.dig(name, "TXT")) == ([], [], [])

    commits = site.inst.git("log", "--format=%H", f"{start}..HEAD").split()
    assert len(commits) == 3, "one commit per update"
    for commit in commits:
        message = site.inst.git("log", "-1", "--format=%B", commit)
        trailers = [line for line in message.splitlines() if line.startswith("Ddns-Change:")]
        assert trailers and all(actor in line and "rfc2136" in line for line in trailers), message
    history = site.inst.cli("history", name)
    assert history.code == 0, history.err
    assert sum(f"by {actor}" in line for line in history.out.splitlines()) >= 9, history.out


def test_a_host_ticket_cannot_touch_another_hosts_name(site):
    env = site.ticket(f"host/vm1.{ZONE}")
    site.refused(env, ZONE, f"update add vm2.{ZONE} 60 A 192.0.2.81")
    # all or nothing: its own record in the same update is not applied either
    site.refused(env, ZONE, f"update add vm1.{ZONE} 60 A 192.0.2.82", f"update add vm2.{ZONE} 60 A 192.0.2.81")
    assert site.inst.dig(f"vm2.{ZONE}") == [] and "192.0.2.82" not in site.inst.dig(f"vm1.{ZONE}")


def test_a_principal_that_is_no_registered_host_and_matches_no_rule_is_refused(site):
    site.refused(site.ticket(f"host/stranger.{ZONE}"), ZONE, f"update add stranger.{ZONE} 60 A 192.0.2.91")
    site.refused(site.ticket("bob"), ZONE, f"update add bob.{ZONE} 60 TXT hello")
    assert site.inst.dig(f"stranger.{ZONE}") == []


def test_a_principal_of_another_realm_is_refused(site):
    # GSS accepts the ticket (the keytab holds DNS/ns1.<zone>@OTHER.TEST): the refusal is the update's, not TKEY's
    env = site.ticket(f"host/vm1.{ZONE}", site.other)
    site.refused(env, ZONE, f"update add vm1.{ZONE} 60 A 192.0.2.93")
    assert "192.0.2.93" not in site.inst.dig(f"vm1.{ZONE}")


def test_a_zone_rule_grants_an_unregistered_host_its_own_name_for_the_types_it_lists(site):
    env = site.ticket(f"host/lab1.{LAB}")
    start = site.head()
    added = site.nsupdate(env, LAB, f"update add lab1.{LAB} 60 A 192.0.2.101")
    assert (added.returncode, added.stderr) == (0, ""), added
    assert site.inst.dig(f"lab1.{LAB}") == ["192.0.2.101"]
    assert f"krb5:host/lab1.{LAB}@EXAMPLE.TEST" in site.messages(start)
    site.refused(env, LAB, f"update add lab1.{LAB} 60 TXT not-listed")
    site.refused(env, LAB, f"update add lab1.{LAB} 60 AAAA 2001:db8::101")
    site.refused(env, LAB, f"update add lab2.{LAB} 60 A 192.0.2.102")
    assert site.inst.dig(f"lab1.{LAB}", "TXT") == [] and site.inst.dig(f"lab2.{LAB}") == []


def test_an_explicit_principal_rule_lets_alice_set_txt_anywhere_in_the_zone_but_not_a(site):
    env = site.ticket("alice")
    start = site.head()
    for name in (f"notes.{LAB}", f"deep.below.{LAB}"):
        result = site.nsupdate(env, LAB, f'update add {name} 60 TXT "from alice"')
        assert (result.returncode, result.stderr) == (0, ""), result
        assert site.inst.dig(name, "TXT") == ['"from alice"']
    assert site.messages(start).count("krb5:alice@EXAMPLE.TEST") >= 2
    site.refused(env, LAB, f"update add notes.{LAB} 60 A 192.0.2.111")
    # the rule is the lab zone's: alice has no rights in the other one
    site.refused(env, ZONE, f'update add notes.{ZONE} 60 TXT "from alice"')


def test_a_host_sets_the_ptr_pointing_at_its_own_name_in_a_reverse_zone_and_no_other(site):
    vm1, vm2 = site.ticket(f"host/vm1.{ZONE}"), site.ticket(f"host/vm2.{ZONE}")
    own, other = f"71.{REVERSE}", f"72.{REVERSE}"
    start = site.head()
    added = site.nsupdate(vm1, REVERSE, f"update add {own} 60 PTR vm1.{ZONE}.")
    assert (added.returncode, added.stderr) == (0, ""), added
    assert site.inst.dig(own, "PTR") == [f"vm1.{ZONE}."]
    assert f"krb5:host/vm1.{ZONE}@EXAMPLE.TEST" in site.messages(start)
    site.refused(vm1, REVERSE, f"update add {other} 60 PTR vm2.{ZONE}.")
    site.refused(vm1, REVERSE, f"update add {other} 60 TXT not-a-ptr")
    # a deletion of the PTR set by ptr-self removes only the signer's own record: vm2's stays
    theirs = site.nsupdate(vm2, REVERSE, f"update add {other} 60 PTR vm2.{ZONE}.")
    assert (theirs.returncode, theirs.stderr) == (0, ""), theirs
    head = site.head()
    untouched = site.nsupdate(vm1, REVERSE, f"update delete {other} PTR")
    assert (untouched.returncode, untouched.stderr) == (0, ""), untouched
    assert site.inst.dig(other, "PTR") == [f"vm2.{ZONE}."] and site.head() == head
    gone = site.nsupdate(vm1, REVERSE, f"update delete {own} PTR")
    assert (gone.returncode, gone.stderr) == (0, ""), gone
    assert site.inst.dig(own, "PTR") == []


def test_a_principal_linked_to_a_host_changes_that_hosts_name_until_unlinked(site):
    fqdn = f"vm3.{ZONE}"
    site.inst.add_host(fqdn)
    linked = site.inst.cli("host", "principal", fqdn, "carol@EXAMPLE.TEST")
    assert linked.code == 0, linked.err
    env = site.ticket("carol")
    result = site.nsupdate(env, ZONE, f"update add {fqdn} 60 A 192.0.2.121")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert site.inst.dig(fqdn) == ["192.0.2.121"]
    assert "by krb5:carol@EXAMPLE.TEST" in site.inst.cli("history", fqdn).out
    site.refused(env, ZONE, f"update add vm1.{ZONE} 60 A 192.0.2.122")
    cleared = site.inst.cli("host", "principal", fqdn, "--clear")
    assert cleared.code == 0, cleared.err
    site.refused(env, ZONE, f"update delete {fqdn} A")
    assert site.inst.dig(fqdn) == ["192.0.2.121"]
