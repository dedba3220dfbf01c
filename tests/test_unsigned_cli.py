"""``ddns domain unsigned`` and the zone.toml rewriter behind it (``zonetoml.with_setting``).

The command commits zone.toml as an admin's change: the networks are
validated first (a bad one changes nothing), comments and the rest of the
file stay as written, ``--clear`` removes the key. ``with_setting`` is
checked on its own, with hypothesis: it sets exactly the one key.
"""
from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, strategies as st

from conftest import Instance
from ddns import cli, zonetoml
from ddns.errors import Invalid


def settings_text(inst: Instance) -> str:
    return (inst.repo / inst.zone / "zone.toml").read_text()


def test_domain_unsigned_commits_zone_toml(instance: Instance):
    inst = instance
    before, head = settings_text(inst), inst.commit_count()
    r = inst.cli("domain", "unsigned", inst.zone, "--network", "192.0.2.0/24", "--network", "2001:DB8::/64", "--json")
    assert r.code in (cli.Exit.OK, cli.Exit.PUBLISH_FAILED), r.err  # named is not running: committed, not served
    assert r.json()["networks"] == ["192.0.2.0/24", "2001:db8::/64"]
    assert inst.commit_count() == head + 1
    after = settings_text(inst)
    assert after.startswith(before.rstrip("\n"))  # the admin's comments and keys stay as written
    assert tomllib.loads(after)["unsigned"] == {"networks": ["192.0.2.0/24", "2001:db8::/64"]}
    assert inst.git("log", "-1", "--format=%s") == f"Change the settings of {inst.zone}\n"
    assert inst.git("show", "--name-only", "--format=", "HEAD").split() == [f"{inst.zone}/{inst.zone}.zone",
                                                                           f"{inst.zone}/zone.toml"]
    assert inst.open_service().unsigned_networks(inst.zone) == ("192.0.2.0/24", "2001:db8::/64")
    r = inst.cli("domain", "unsigned", inst.zone, "--clear")
    assert r.code in (cli.Exit.OK, cli.Exit.PUBLISH_FAILED), r.err
    assert "networks" not in tomllib.loads(settings_text(inst)).get("unsigned", {})
    assert "no unsigned updates" in r.out
    assert inst.open_service().unsigned_networks(inst.zone) == ()


@pytest.mark.parametrize("args, why", [
    (("--network", "192.0.2.7/24"), "host bits"),
    (("--network", "192.0.2.0/24", "--network", "bogus"), "not a network"),
    (("--network", "fe80::%eth0/64"), "not a network"),
    (("--network", ""), "not a network"),
])
def test_a_bad_network_changes_nothing(instance: Instance, args, why):
    inst = instance
    before, head = settings_text(inst), inst.commit_count()
    r = inst.cli("domain", "unsigned", inst.zone, *args)
    assert r.code == cli.Exit.ERROR and why in r.err and "zone.toml" in r.err
    assert settings_text(inst) == before and inst.commit_count() == head


def test_the_zone_may_be_spelled_as_dns_writes_it(instance: Instance):
    r = instance.cli("domain", "unsigned", "DYN.Example.Test.", "--network", "192.0.2.0/24")
    assert r.code in (cli.Exit.OK, cli.Exit.PUBLISH_FAILED), r.err
    assert tomllib.loads(settings_text(instance))["unsigned"] == {"networks": ["192.0.2.0/24"]}


@pytest.mark.parametrize("zone", ["nope.example.test", "../zones", "dyn.example.test/../x", "", "example.test"])
def test_an_unknown_zone_is_not_found(instance: Instance, zone):
    head = instance.commit_count()
    r = instance.cli("domain", "unsigned", zone, "--network", "192.0.2.0/24")
    assert r.code == cli.Exit.ERROR and "no domain" in r.err
    assert instance.commit_count() == head


@pytest.mark.parametrize("args", [(), ("--clear", "--network", "192.0.2.0/24")])
def test_network_or_clear_is_required(instance: Instance, args, capsys):
    with pytest.raises(SystemExit) as caught:
        instance.cli("domain", "unsigned", instance.zone, *args)
    assert caught.value.code == cli.Exit.USAGE


def test_a_hand_edited_zone_toml_keeps_its_layout(instance: Instance):
    inst = instance
    path = inst.repo / inst.zone / "zone.toml"
    path.write_text(path.read_text() + '\n[unsigned]   # the office\nnetworks = [\n  "10.0.0.0/8",  # LAN\n]  # end\n')
    inst.git("commit", "-qam", "hand edit", "--author", "admin <admin@example.test>")
    r = inst.cli("domain", "unsigned", inst.zone, "--network", "10.1.0.0/16")
    assert r.code in (cli.Exit.OK, cli.Exit.PUBLISH_FAILED), r.err
    text = path.read_text()
    assert '[unsigned]   # the office\nnetworks = ["10.1.0.0/16"]  # end\n' in text


# ---- zonetoml.with_setting -------------------------------------------------------------------------
BASE = '# Settings\nttl = 3600  # static\n\n[soa]\nrefresh = 3600\n'


@pytest.mark.parametrize("text, table, key, value, expected", [
    (BASE, "unsigned", "networks", ["192.0.2.0/24"], BASE + '\n[unsigned]\nnetworks = ["192.0.2.0/24"]\n'),
    (BASE, "", "dynamic_ttl", 60, '# Settings\nttl = 3600  # static\n\ndynamic_ttl = 60\n[soa]\nrefresh = 3600\n'),
    (BASE, "", "ttl", 5, '# Settings\nttl = 5  # static\n\n[soa]\nrefresh = 3600\n'),
    (BASE, "soa", "retry", 600, BASE + "retry = 600\n"),
    (BASE, "soa", "refresh", None, '# Settings\nttl = 3600  # static\n\n[soa]\n'),
    (BASE, "unsigned", "networks", None, BASE),
    ('[unsigned]\nnetworks = [\n "a",\n "b",\n]\n\n[x]\ny = 1\n', "unsigned", "networks", ["c"],
     '[unsigned]\nnetworks = ["c"]\n\n[x]\ny = 1\n'),
    ('[kerberos]\nrules = ["grant R krb5-self . A"]\n', "kerberos", "rules", ['grant "x" # y'],
     '[kerberos]\nrules = ["grant \\"x\\" # y"]\n'),
    ("ttl = 1", "unsigned", "networks", ["::1/128"], 'ttl = 1\n\n[unsigned]\nnetworks = ["::1/128"]\n'),
    ("", "", "dynamic_ttl", 1, "dynamic_ttl = 1\n"),
])
def test_with_setting(text, table, key, value, expected):
    assert zonetoml.with_setting(text, table, key, value) == expected


@pytest.mark.parametrize("text", ["unsigned = {networks = []}\n", "unsigned.networks = []\n"])
def test_with_setting_refuses_what_it_cannot_rewrite(text):
    with pytest.raises(Invalid, match="edit the file"):
        zonetoml.with_setting(text, "unsigned", "networks", ["192.0.2.0/24"])


comment = st.sampled_from(["", "  # note", " # [unsigned]", ' # networks = ["x"]'])
string = st.text(alphabet='ab #[]="\\\n\t\u00e9', max_size=8)
value = st.one_of(st.integers(0, 10**6), string, st.lists(string, max_size=3))


@st.composite
def settings_toml(draw) -> str:
    """zone.toml as humans write it: keys, comments, blank lines, tables, one-line and multi-line arrays."""
    lines = []
    for table in draw(st.lists(st.sampled_from(["", "soa", "unsigned", "kerberos"]), unique=True, max_size=4)):
        if table:
            lines.append(f"[{table}]{draw(comment)}")
        for key in draw(st.lists(st.sampled_from(["ttl", "networks", "rules", "a"]), unique=True, max_size=3)):
            items = draw(st.lists(string, max_size=3))
            if draw(st.booleans()):
                body = "[\n" + "".join(f"  {zonetoml._toml_value(i)},{draw(comment)}\n" for i in items) + "]"
            else:
                body = zonetoml._toml_value(items) if draw(st.booleans()) else str(draw(st.integers(0, 99)))
            lines.append(f"{key} = {body}{draw(comment)}")
        lines += draw(st.lists(st.sampled_from(["", "# a comment", "# [soa]"]), max_size=2))
    text = "\n".join(lines)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:  # a table drawn after the top level's keys only: keep what parses
        text = ""
    return text


@given(settings_toml(), st.sampled_from(["", "soa", "unsigned", "kerberos"]),
       st.sampled_from(["ttl", "networks", "rules", "new"]), st.one_of(st.none(), value))
def test_with_setting_changes_exactly_that_key(text, table, key, new):
    before = tomllib.loads(text)
    after = tomllib.loads(zonetoml.with_setting(text, table, key, new))
    expected = {k: v for k, v in before.items()}
    section = dict(expected.get(table, {})) if table else expected
    if new is None:
        section.pop(key, None)
    else:
        section[key] = new
    if table and (table in before or new is not None):
        expected[table] = section
    assert after == expected
