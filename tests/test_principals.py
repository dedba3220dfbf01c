"""Kerberos principals as identities (Service.principal_identity) and principals linked to hosts."""
from __future__ import annotations

import pytest

from ddns import config as configmod
from ddns import errors, policy
from ddns.model import Actor, Grant, Match, Op, Operation
from ddns.service import Service

ZONE = "dyn.example.test"
REALM = "EXAMPLE.TEST"
ACTOR = Actor("krb5:x", "127.0.0.1", "rfc2136")


def service_of(instance, realm: str = REALM) -> Service:
    return Service.open(configmod.load(instance.config_path, environ={}, overrides={"kerberos.realm": realm}))


def may(identity, name: str, rtype: str = "A", rdata: str = "192.0.2.1", zone: str = ZONE) -> bool:
    try:
        policy.authorize(identity, zone, [Operation(Op.ADD, name, rtype, rdata)])
    except errors.Refused:
        return False
    return True


def test_a_host_principal_of_the_realm_may_change_its_registered_host_by_default(instance):
    instance.add_host(f"vm1.{ZONE}")
    instance.add_host(f"vm2.{ZONE}")
    service = service_of(instance)
    identity = service.principal_identity(f"host/vm1.{ZONE}@{REALM}", ZONE, ACTOR)
    assert identity is not None and identity.signer == f"vm1.{ZONE}" and identity.actor == ACTOR
    assert Grant(True, Match.PTR_SELF, f"vm1.{ZONE}", frozenset({"PTR"})) in identity.grants
    assert may(identity, f"vm1.{ZONE}") and may(identity, f"vm1.{ZONE}", "TXT", '"x"')
    assert not may(identity, f"vm2.{ZONE}")            # another host's name
    assert not may(identity, f"vm1.{ZONE}", "MX", f"10 vm1.{ZONE}.")
    assert identity.guard()


@pytest.mark.parametrize("principal", [
    f"host/vm1.{ZONE}@example.test",          # the realm compared exactly: case matters
    f"host/vm1.{ZONE}@OTHER.TEST",            # another realm
    f"host/vm1.{ZONE}@{REALM}@X",             # a second '@'
    f"host/vm3.{ZONE}@{REALM}",               # no such host
    f"vm1$@{REALM}",                          # a machine account is not a host principal
    f"HOST/vm1.{ZONE}@{REALM}",               # the service name is "host"
    f"host/vm1.{ZONE}/x@{REALM}",
    "", "x" * 10000, f"host/vm1.{ZONE}\u00e9@{REALM}", f"host/vm1.{ZONE}\n@{REALM}",
])
def test_other_principals_get_nothing(instance, principal):
    instance.add_host(f"vm1.{ZONE}")
    assert service_of(instance).principal_identity(principal, ZONE, ACTOR) is None


def test_without_a_realm_host_principals_get_nothing(instance):
    instance.add_host(f"vm1.{ZONE}")
    assert service_of(instance, realm="").principal_identity(f"host/vm1.{ZONE}@{REALM}", ZONE, ACTOR) is None


def test_a_linked_principal_gets_its_hosts_rights_and_one_principal_links_one_host(instance):
    instance.add_host(f"vm1.{ZONE}")
    instance.add_host(f"vm2.{ZONE}")
    service = service_of(instance, realm="")
    service.set_principal(f"VM1.{ZONE}.", f"alice@{REALM}")
    assert service.host(f"vm1.{ZONE}").principal == f"alice@{REALM}"
    identity = service.principal_identity(f"alice@{REALM}", ZONE, ACTOR)
    assert identity is not None and may(identity, f"vm1.{ZONE}") and not may(identity, f"vm2.{ZONE}")
    with pytest.raises(errors.Conflict):
        service.set_principal(f"vm2.{ZONE}", f"alice@{REALM}")
    assert service.host(f"vm2.{ZONE}").principal is None
    service.set_principal(f"vm1.{ZONE}", None)
    assert service.principal_identity(f"alice@{REALM}", ZONE, ACTOR) is None
    service.set_principal(f"vm2.{ZONE}", f"alice@{REALM}")  # free again
    assert service.host(f"vm2.{ZONE}").principal == f"alice@{REALM}"


@pytest.mark.parametrize("principal", ["", "alice", "alice@", "@R", "a@b@c", "m$$@R", "host/a_b@R", "a b@R",
                                       "x" * 10000 + "@R", "\u00e9@R", "a\\@R"])
def test_a_bad_principal_is_not_linked(instance, principal):
    instance.add_host(f"vm1.{ZONE}")
    service = service_of(instance)
    with pytest.raises(errors.Invalid):
        service.set_principal(f"vm1.{ZONE}", principal)
    assert service.host(f"vm1.{ZONE}").principal is None


def test_linking_a_missing_host_is_not_found(instance):
    with pytest.raises(errors.NotFound):
        service_of(instance).set_principal(f"nohost.{ZONE}", f"alice@{REALM}")


def test_a_deleted_hosts_principal_is_refused_by_the_guard(instance):
    instance.add_host(f"vm1.{ZONE}")
    service = service_of(instance)
    service.set_principal(f"vm1.{ZONE}", f"alice@{REALM}")
    linked = service.principal_identity(f"alice@{REALM}", ZONE, ACTOR)
    default = service.principal_identity(f"host/vm1.{ZONE}@{REALM}", ZONE, ACTOR)
    assert linked.guard() and default.guard()
    assert instance.cli("host", "delete", f"vm1.{ZONE}").code == 0
    assert not linked.guard() and not default.guard()
    assert service.principal_identity(f"alice@{REALM}", ZONE, ACTOR) is None
    instance.add_host(f"vm1.{ZONE}")  # registered anew: the old identity stays refused
    assert not default.guard()


# ---- zone rules ([kerberos] rules in zone.toml) ------------------------------------------

def set_rules(instance, *rules: str) -> None:
    r = instance.cli("domain", "kerberos", ZONE, *[a for rule in rules for a in ("--rule", rule)])
    assert r.code == 0, r.err


def test_zone_rules_come_first_in_order_and_a_deny_wins(instance, serve):
    instance.add_host(f"vm1.{ZONE}")
    serve()
    set_rules(instance, f"deny {REALM} krb5-self . TXT", f"grant alice@{REALM} zonesub TXT",
              f"grant {REALM} ms-self . A AAAA")
    service = service_of(instance)
    host = service.principal_identity(f"host/vm1.{ZONE}@{REALM}", ZONE, ACTOR)
    assert host.grants[0] == Grant(False, Match.NAME, f"vm1.{ZONE}", frozenset({"TXT"}))
    assert not may(host, f"vm1.{ZONE}", "TXT", '"x"')   # the zone's deny before the host's own grant
    assert may(host, f"vm1.{ZONE}")
    alice = service.principal_identity(f"alice@{REALM}", ZONE, ACTOR)
    assert alice.guard is None and may(alice, f"any.{ZONE}", "TXT", '"x"') and not may(alice, f"any.{ZONE}")
    win = service.principal_identity(f"WIN7$@{REALM}", ZONE, ACTOR)
    assert may(win, f"win7.{ZONE}", "AAAA", "2001:db8::7") and not may(win, f"win8.{ZONE}")
    assert service.principal_identity("WIN7$@OTHER.TEST", ZONE, ACTOR) is None
    assert service.principal_identity(f"bob@{REALM}", ZONE, ACTOR) is None
    assert service.principal_identity(f"alice@{REALM}", "other.test", ACTOR) is None  # not our zone: no rules


def test_domain_kerberos_shows_sets_and_clears_the_rules_as_commits(instance, serve):
    serve()
    before = instance.commit_count()
    set_rules(instance, f"grant {REALM} krb5-self . A AAAA", f"grant alice@{REALM} zonesub TXT")
    assert instance.commit_count() == before + 1
    toml = instance.git("show", f"HEAD:{ZONE}/zone.toml")
    assert "[kerberos]" in toml and f"grant alice@{REALM} zonesub TXT" in toml
    shown = instance.cli("domain", "kerberos", ZONE, "--json")
    assert shown.json() == [f"grant {REALM} krb5-self . A AAAA", f"grant alice@{REALM} zonesub TXT"]
    assert instance.cli("domain", "kerberos", ZONE, "--clear").code == 0
    assert instance.cli("domain", "kerberos", ZONE).out.strip() == "no Kerberos rules"


@pytest.mark.parametrize("args, message", [
    (("--rule", f"grant {REALM} krb5-subdomain other.test A"), "not in the zone"),
    (("--rule", f"grant {REALM} self"), "the match of a Kerberos rule"),
    (("--rule", "grant x" * 100), "printable ASCII"),
    (("--rule", f"grant {REALM} krb5-self", "--clear"), "not both"),
])
def test_domain_kerberos_refuses_bad_rules_and_nothing_changes(instance, args, message):
    before = instance.commit_count()
    r = instance.cli("domain", "kerberos", ZONE, *args)
    assert r.code == 1 and message in r.err
    assert instance.commit_count() == before


def test_domain_kerberos_of_an_unknown_zone_is_not_found(instance):
    r = instance.cli("domain", "kerberos", "nozone.test", "--rule", f"grant {REALM} krb5-self")
    assert r.code == 1 and "no domain" in r.err


def test_a_bad_rule_pushed_in_zone_toml_is_a_source_error_naming_the_file(instance):
    from ddns.zones import SourceError, ZoneSettings
    with pytest.raises(SourceError, match=r"zone.toml: \[kerberos\] rules: .*not in the zone"):
        ZoneSettings.from_toml(ZONE, f'[kerberos]\nrules = ["grant {REALM} krb5-subdomain example.net"]\n')
    with pytest.raises(SourceError, match="list of strings"):
        ZoneSettings.from_toml(ZONE, '[kerberos]\nrules = "grant"\n')


# ---- the principal of a host on the command line, and in history -------------------------

def test_host_principal_links_shows_and_clears(instance):
    instance.add_host(f"vm1.{ZONE}")
    r = instance.cli("host", "principal", f"vm1.{ZONE}", f"host/vm1.{ZONE}@{REALM}", "--json")
    assert r.code == 0 and r.json() == {"fqdn": f"vm1.{ZONE}", "principal": f"host/vm1.{ZONE}@{REALM}"}
    assert f"principal=host/vm1.{ZONE}@{REALM}" in instance.cli("host", "list").out
    assert instance.cli("host", "list", "--json").json()[0]["principal"] == f"host/vm1.{ZONE}@{REALM}"
    instance.add_host(f"vm2.{ZONE}")
    taken = instance.cli("host", "principal", f"vm2.{ZONE}", f"host/vm1.{ZONE}@{REALM}")
    assert taken.code == 1 and "linked to another host" in taken.err
    for bad in (("host", "principal", f"vm1.{ZONE}"), ("host", "principal", f"vm1.{ZONE}", "a@R", "--clear"),
                ("host", "principal", f"vm1.{ZONE}", "a@b@c"), ("host", "principal", f"nohost.{ZONE}", "a@R")):
        assert instance.cli(*bad).code == 1
    assert instance.cli("host", "list", "--json").json()[0]["principal"] == f"host/vm1.{ZONE}@{REALM}"
    assert instance.cli("host", "principal", f"vm1.{ZONE}", "--clear").code == 0
    assert instance.cli("host", "list", "--json").json()[0]["principal"] is None


def test_history_names_the_principal_that_changed_a_host(running):
    inst = running.instance
    inst.add_host(f"vm1.{ZONE}")
    running.service.set_principal(f"vm1.{ZONE}", f"alice@{REALM}")
    actor = Actor(f"krb5:alice@{REALM}", "127.0.0.1", "rfc2136")
    identity = running.service.principal_identity(f"alice@{REALM}", ZONE, actor)
    result = running.service.update(identity, ZONE, [Operation(Op.ADD, f"vm1.{ZONE}", "A", "192.0.2.44")])
    assert result.outcome.value == "published"
    [entry] = inst.cli("history", f"vm1.{ZONE}", "--json").json()
    assert (entry["actor"], entry["new"], entry["interface"]) == (f"krb5:alice@{REALM}", "192.0.2.44", "rfc2136")
    assert f"by krb5:alice@{REALM}" in inst.cli("history", f"vm1.{ZONE}").out


def test_the_portal_and_the_api_show_the_hosts_principal(instance):
    import requests
    from conftest import serving
    from test_portal import Browser, new_host
    instance.add_user("alice")
    with serving(instance) as running:
        b = Browser(running.url)
        b.login("alice", "pw-alice")
        fqdn, _ = new_host(b, "vm1")
        assert '<dd id="principal"><span class="muted">none</span>' in b.get(f"/hosts/{fqdn}").text
        assert instance.cli("host", "principal", fqdn, f"host/{fqdn}@{REALM}").code == 0
        assert f'<dd id="principal"><code>host/{fqdn}@{REALM}</code>' in b.get(f"/hosts/{fqdn}").text
        token = b.post("/tokens", {"name": "k"}, csrf_from="/tokens").text.split('<code id="new-token">')[1].split("<")[0]
        answer = requests.get(f"{running.url}/api/v1/hosts/{fqdn}", headers={"Authorization": f"Bearer {token}"},
                              timeout=30)
        assert answer.status_code == 200 and answer.json()["principal"] == f"host/{fqdn}@{REALM}"


def test_a_pushed_bad_rule_is_refused_by_the_hooks_and_a_good_one_is_published(running, tmp_path):
    from test_gitops_hooks import _refused_without_change, admin_clone, append, assert_accepted, commit, push, settings_path
    inst = running.instance
    clone = admin_clone(inst, tmp_path)
    append(clone, settings_path(), f'\n[kerberos]\nrules = ["grant {REALM} krb5-subdomain www.example.net A"]\n')
    commit(clone, "A Kerberos rule outside the zone")
    out = _refused_without_change(inst, clone)
    assert f"remote: ddns: error: {ZONE}/zone.toml: [kerberos] rules: www.example.net is not in the zone" in out, out
    clone = admin_clone(inst, tmp_path, "admin2")
    append(clone, settings_path(), f'\n[kerberos]\nrules = ["grant alice@{REALM} zonesub TXT"]\n')
    commit(clone, "Alice may set TXT records")
    assert_accepted(push(clone))
    assert inst.cli("domain", "kerberos", ZONE, "--json").json() == [f"grant alice@{REALM} zonesub TXT"]


def test_a_database_made_before_principals_gets_the_column_and_its_uniqueness(tmp_path):
    import sqlite3
    from ddns.store import Store
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT, token_hash TEXT,
                            is_admin INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
        CREATE TABLE domains (zone TEXT PRIMARY KEY, created REAL NOT NULL, active INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE hosts (fqdn TEXT PRIMARY KEY, zone TEXT NOT NULL, owner_id INTEGER NOT NULL, secret_hash TEXT NOT NULL,
                            comment TEXT NOT NULL DEFAULT '', created REAL NOT NULL, last_update REAL, last_client TEXT,
                            last_agent TEXT, last_tls INTEGER, auth_faults INTEGER NOT NULL DEFAULT 0,
                            client_faults INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0);
        INSERT INTO users(name, created) VALUES ('alice', 1);
        INSERT INTO domains(zone, created) VALUES ('dyn.example.test', 1);
        INSERT INTO hosts(fqdn, zone, owner_id, secret_hash, created) VALUES ('vm1.dyn.example.test', 'dyn.example.test', 1, 'x', 1);
        INSERT INTO hosts(fqdn, zone, owner_id, secret_hash, created) VALUES ('vm2.dyn.example.test', 'dyn.example.test', 1, 'x', 1);
    """)
    old.commit()
    old.close()
    store = Store(path)
    assert store.host(f"vm1.{ZONE}").principal is None
    store.set_principal(f"vm1.{ZONE}", f"alice@{REALM}")
    assert store.host_of_principal(f"alice@{REALM}").fqdn == f"vm1.{ZONE}"
    with pytest.raises(errors.Conflict):
        store.set_principal(f"vm2.{ZONE}", f"alice@{REALM}")
    store.set_principal(f"vm2.{ZONE}", None)  # many hosts without one
    assert store.host(f"vm2.{ZONE}").principal is None
