"""Kerberos rules and principals (ddns.krbrules), and ptr-self in ddns.policy: pure, table-driven."""
from __future__ import annotations

import pytest

from ddns import errors, krbrules, policy
from ddns.model import Actor, Grant, Identity, Match, Op, Operation

ZONE = "dyn.example.test"
REV = "2.0.192.in-addr.arpa"
REV6 = "8.b.d.0.1.0.0.2.ip6.arpa"
R = "EXAMPLE.TEST"
HOST = krbrules.parse_principal(f"host/vm1.{ZONE}@{R}")
WIN = krbrules.parse_principal(f"WIN1$@{R}")
ALICE = krbrules.parse_principal(f"alice@{R}")


def grants(rules: list[str], principal: krbrules.Principal, zone: str = ZONE, forward=(ZONE,)) -> tuple[Grant, ...]:
    return krbrules.compile_rules(krbrules.parse_rules(rules, zone), principal, zone, forward)


@pytest.mark.parametrize("text, expected", [
    (f"host/vm1.{ZONE}@{R}", krbrules.Principal(f"host/vm1.{ZONE}@{R}", R, host=f"vm1.{ZONE}")),
    (f"host/VM1.{ZONE.upper()}.@{R}", krbrules.Principal(f"host/VM1.{ZONE.upper()}.@{R}", R, host=f"vm1.{ZONE}")),
    (f"WIN1$@{R}", krbrules.Principal(f"WIN1$@{R}", R, machine="win1")),
    (f"alice@{R}", krbrules.Principal(f"alice@{R}", R)),
    (f"alice/admin@{R}", krbrules.Principal(f"alice/admin@{R}", R)),
    (f"DNS/ns1.{ZONE}@{R}", krbrules.Principal(f"DNS/ns1.{ZONE}@{R}", R)),   # not a host principal
    (f"host/a/b@{R}", krbrules.Principal(f"host/a/b@{R}", R)),               # three components: no host
])
def test_principals(text, expected):
    assert krbrules.parse_principal(text) == expected


@pytest.mark.parametrize("text", [
    "", "alice", "alice@", "@R", f"host/m@{R}@X", "m$$@R", "$@R", "a$/b@R", "host/@R", "host/a..b@R",
    "host/a_b@R", "host/-a@R", "a//b@R", "/a@R", "a/@R", "a b@R", " alice@R", "alice@R\n", "alice@R\x00",
    "a\\@b@R", "\u00e9l\u00e8ve@R", "alice@R\u200b", "x" * 10000 + "@R", "a@" + "R" * 600, "win.1$@R",
    "alice@-R", "alice@R.", None, 42,
])
def test_hostile_principals_are_refused(text):
    with pytest.raises(errors.Invalid):
        krbrules.parse_principal(text)


@pytest.mark.parametrize("text, expected", [
    (f"grant {R} krb5-self . A AAAA TXT", krbrules.Rule(True, R, "krb5-self", "", frozenset({"A", "AAAA", "TXT"}))),
    (f"grant {R} krb5-self A", krbrules.Rule(True, R, "krb5-self", "", frozenset({"A"}))),
    (f"GRANT {R} KRB5-SELFSUB .", krbrules.Rule(True, R, "krb5-selfsub")),
    (f"deny {R} krb5-subdomain lab.{ZONE}. ANY", krbrules.Rule(False, R, "krb5-subdomain", f"lab.{ZONE}")),
    (f"grant {R} ms-self . a aaaa", krbrules.Rule(True, R, "ms-self", "", frozenset({"A", "AAAA"}))),
    (f"grant {R} ms-subdomain {ZONE} A", krbrules.Rule(True, R, "ms-subdomain", ZONE, frozenset({"A"}))),
    (f"grant alice@{R} zonesub TXT", krbrules.Rule(True, f"alice@{R}", "zonesub", ZONE, frozenset({"TXT"}))),
    (f"grant alice@{R} name www.{ZONE} A", krbrules.Rule(True, f"alice@{R}", "name", f"www.{ZONE}", frozenset({"A"}))),
    (f"grant alice@{R} wildcard *.{ZONE} TXT", krbrules.Rule(True, f"alice@{R}", "wildcard", f"*.{ZONE}", frozenset({"TXT"}))),
])
def test_rules(text, expected):
    assert krbrules.parse_rule(text, ZONE) == expected


@pytest.mark.parametrize("text, message", [
    ("", "grant|deny IDENTITY MATCH"),
    (f"grant {R}", "grant|deny IDENTITY MATCH"),
    (f"allow {R} krb5-self", "grant|deny IDENTITY MATCH"),
    (f"grant {R} self", "the match of a Kerberos rule"),
    (f"grant {R} ptr-self", "the match of a Kerberos rule"),
    (f"grant alice@{R} krb5-self", "takes a realm"),
    (f"grant {R} zonesub TXT", "NAME@REALM"),                 # a principal rule names a principal
    (f"grant host/m@R@X name www.{ZONE}", "one '@'"),
    (f"grant {R} krb5-subdomain", "needs a name"),
    (f"grant {R} krb5-subdomain other.test A", "not in the zone"),
    (f"grant alice@{R} name www.other.test", "not in the zone"),
    (f"grant alice@{R} subdomain example.test", "not in the zone"),  # above the zone
    (f"grant alice@{R} wildcard www.{ZONE}", "starts with '*.'"),
    (f"grant {R} krb5-self . SOAP", "not a record type"),
    (f"grant {R} krb5-self . ANY A", "not a record type"),
    (f"grant alice@{R} zonesub {ZONE} TXT", "not a record type"),
    (f"grant {R} krb5-self . " + " ".join(["A"] * 17), "at most 16 types"),
    (f"grant {R} krb5-self . A\tAAAA\n", "printable ASCII"),
    (f"grant {R} krb5-self . A " + "A" * 400, "printable ASCII"),
    ("grant \u00e9@R zonesub", "printable ASCII"),
    (f"grant {R} krb5-self . \u00c5", "printable ASCII"),
])
def test_hostile_rules_are_refused_with_a_reason(text, message):
    with pytest.raises(errors.Invalid, match=message.replace("|", r"\|").replace("*", r"\*")):
        krbrules.parse_rule(text, ZONE)


def test_at_most_32_rules():
    with pytest.raises(errors.Invalid, match="at most 32"):
        krbrules.parse_rules([f"grant {R} krb5-self"] * 33, ZONE)


@pytest.mark.parametrize("rules, principal, expected", [
    ([f"grant {R} krb5-self . A"], HOST, (Grant(True, Match.NAME, f"vm1.{ZONE}", frozenset({"A"})),)),
    ([f"grant {R} krb5-selfsub"], HOST, (Grant(True, Match.SUBDOMAIN, f"vm1.{ZONE}"),)),
    ([f"grant {R} krb5-subdomain lab.{ZONE} A"], HOST, (Grant(True, Match.SUBDOMAIN, f"lab.{ZONE}", frozenset({"A"})),)),
    ([f"grant {R} ms-self . A"], WIN, (Grant(True, Match.NAME, f"win1.{ZONE}", frozenset({"A"})),)),
    ([f"grant {R} ms-selfsub"], WIN, (Grant(True, Match.SUBDOMAIN, f"win1.{ZONE}"),)),
    ([f"grant {R} ms-subdomain lab.{ZONE}"], WIN, (Grant(True, Match.SUBDOMAIN, f"lab.{ZONE}"),)),
    ([f"grant alice@{R} zonesub TXT"], ALICE, (Grant(True, Match.ZONESUB, ZONE, frozenset({"TXT"})),)),
    # a realm's rules never apply to the other kind, nor to plain users; principal rules only to their principal
    ([f"grant {R} krb5-self", f"grant {R} krb5-subdomain {ZONE}"], WIN, ()),
    ([f"grant {R} ms-self", f"grant {R} ms-subdomain {ZONE}"], HOST, ()),
    ([f"grant {R} krb5-self", f"grant {R} ms-self"], ALICE, ()),
    ([f"grant alice@{R} zonesub"], krbrules.parse_principal(f"alice@{R.lower()}"), ()),
    ([f"grant alice@{R} zonesub"], krbrules.parse_principal(f"Alice@{R}"), ()),
    ([f"grant {R.lower()} krb5-self"], HOST, ()),                       # the realm compared exactly
    (["grant OTHER.TEST krb5-self"], HOST, ()),
    # order kept, deny included
    ([f"deny {R} krb5-self . TXT", f"grant {R} krb5-self"], HOST,
     (Grant(False, Match.NAME, f"vm1.{ZONE}", frozenset({"TXT"})), Grant(True, Match.NAME, f"vm1.{ZONE}"))),
])
def test_compiling_for_one_principal(rules, principal, expected):
    assert grants(rules, principal) == expected


def test_in_a_reverse_zone_self_rules_become_ptr_self():
    ptr = frozenset({"PTR"})
    assert grants([f"grant {R} krb5-self"], HOST, REV) == (Grant(True, Match.PTR_SELF, f"vm1.{ZONE}", ptr),)
    assert grants([f"grant {R} ms-self . PTR"], WIN, REV6, forward=(ZONE, "example.test")) == \
        (Grant(True, Match.PTR_SELF, f"win1.{ZONE}", ptr), Grant(True, Match.PTR_SELF, "win1.example.test", ptr))
    assert grants([f"grant {R} krb5-self . A AAAA"], HOST, REV) == ()     # no PTR in its types
    assert grants([f"deny {R} krb5-self"], HOST, REV) == (Grant(False, Match.PTR_SELF, f"vm1.{ZONE}", ptr),)


# ---- ptr-self in ddns.policy ---------------------------------------------------------

OWN = f"vm1.{ZONE}"
HOSTID = Identity(Actor("key:" + OWN), OWN, (Grant(True, Match.SELF, types=frozenset({"A", "AAAA", "TXT"})),
                                            Grant(True, Match.PTR_SELF, OWN, frozenset({"PTR"}))))


def ops(*operations: Operation) -> tuple[Operation, ...]:
    return operations


@pytest.mark.parametrize("zone, operation, expected", [
    (REV, Operation(Op.ADD, f"1.{REV}", "PTR", OWN + "."), ops(Operation(Op.ADD, f"1.{REV}", "PTR", OWN + "."))),
    (REV, Operation(Op.ADD, f"1.{REV}", "PTR", OWN.upper() + "."), ops(Operation(Op.ADD, f"1.{REV}", "PTR", OWN.upper() + "."))),
    (REV6, Operation(Op.DELETE_RR, f"1.0.{REV6}", "PTR", OWN + "."), ops(Operation(Op.DELETE_RR, f"1.0.{REV6}", "PTR", OWN + "."))),
    (REV, Operation(Op.DELETE_RRSET, f"1.{REV}", "PTR"), ops(Operation(Op.DELETE_RR, f"1.{REV}", "PTR", OWN + "."))),
    (REV, Operation(Op.DELETE_NAME, f"1.{REV}"), ops(Operation(Op.DELETE_RR, f"1.{REV}", "PTR", OWN + "."))),
])
def test_ptr_self_allows_the_hosts_own_ptr_records_only(zone, operation, expected):
    assert policy.authorize(HOSTID, zone, [operation]) == expected


@pytest.mark.parametrize("zone, operation", [
    (REV, Operation(Op.ADD, f"1.{REV}", "PTR", f"vm2.{ZONE}.")),         # points elsewhere
    (REV, Operation(Op.ADD, f"1.{REV}", "PTR", f"x.vm1.{ZONE}.")),
    (REV, Operation(Op.DELETE_RR, f"1.{REV}", "PTR", f"vm2.{ZONE}.")),
    (REV, Operation(Op.ADD, f"1.{REV}", "TXT", '"x"')),                  # only PTR
    (REV, Operation(Op.DELETE_RRSET, f"1.{REV}", "TXT")),
    (REV, Operation(Op.ADD, REV, "NS", OWN + ".")),
    (ZONE, Operation(Op.ADD, f"x.{ZONE}", "PTR", OWN + ".")),             # only in reverse zones
    ("example.test", Operation(Op.DELETE_RRSET, "x.example.test", "PTR")),
])
def test_ptr_self_refuses_everything_else(zone, operation):
    with pytest.raises(errors.Refused):
        policy.authorize(HOSTID, zone, [operation])


def test_a_deny_before_ptr_self_wins_and_may_see_reverse_zones():
    denied = Identity(HOSTID.actor, OWN, (Grant(False, Match.ZONESUB, REV),) + HOSTID.grants)
    with pytest.raises(errors.Refused):
        policy.authorize(denied, REV, [Operation(Op.ADD, f"1.{REV}", "PTR", OWN + ".")])
    assert policy.may_see(HOSTID, REV) and policy.may_see(HOSTID, REV6)
    assert not policy.may_see(Identity(HOSTID.actor, OWN, HOSTID.grants[1:]), "example.org")
    assert policy.reverse_zone(REV) and policy.reverse_zone(REV6)
    assert not policy.reverse_zone("in-addr.arpa") and not policy.reverse_zone("arpa.example.test")
