"""BIND update-policy semantics of ddns.policy: first match wins, default types, DELETE_NAME narrowing."""
import pytest

from ddns import policy
from ddns.errors import Refused
from ddns.model import Actor, Grant, Identity, Match, Op, Operation

ZONE = "dyn.example.org"
HOST = f"myvm.{ZONE}"
ADDRS = frozenset({"A", "AAAA", "TXT"})


def identity(*grants: Grant, signer: str = HOST) -> Identity:
    return Identity(Actor(f"key:{signer}"), signer, grants)


def add(name: str, rtype: str = "A", rdata: str = "192.0.2.1") -> Operation:
    return Operation(Op.ADD, name, rtype, rdata, 60)


HOST_KEY = identity(Grant(True, Match.SELF, types=ADDRS))


@pytest.mark.parametrize("match,target,name,expected", [
    (Match.SELF, "", HOST, True),
    (Match.SELF, "", f"sub.{HOST}", False),
    (Match.SELFSUB, "", f"sub.{HOST}", True),
    (Match.SELFSUB, "", f"other.{ZONE}", False),
    (Match.NAME, f"x.{ZONE}", f"x.{ZONE}", True),
    (Match.NAME, f"x.{ZONE}", f"y.x.{ZONE}", False),
    (Match.SUBDOMAIN, f"x.{ZONE}", f"y.x.{ZONE}", True),
    (Match.SUBDOMAIN, f"x.{ZONE}", f"x.{ZONE}", True),
    (Match.SUBDOMAIN, f"x.{ZONE}", f"yx.{ZONE}", False),
    (Match.ZONESUB, "", ZONE, True),
    (Match.ZONESUB, "", f"a.b.{ZONE}", True),
    (Match.ZONESUB, "other.org", f"a.{ZONE}", False),
    (Match.WILDCARD, f"*.{ZONE}", f"a.{ZONE}", True),
    (Match.WILDCARD, f"*.{ZONE}", ZONE, False),
])
def test_name_matching(match, target, name, expected):
    assert policy.permits(identity(Grant(True, match, target)), ZONE, name, "A") is expected


def test_nothing_outside_the_zone_matches():
    grant = Grant(True, Match.ZONESUB)
    assert not policy.permits(identity(grant), ZONE, "myvm.other.org", "A")


def test_default_types_exclude_the_zones_own_and_dnssec():
    everything = identity(Grant(True, Match.ZONESUB))
    assert policy.permits(everything, ZONE, HOST, "TXT")
    for rtype in ("SOA", "NS", "RRSIG", "NSEC", "NSEC3"):
        assert not policy.permits(everything, ZONE, ZONE, rtype)


def test_first_match_wins_deny_before_grant():
    ident = identity(Grant(False, Match.NAME, f"www.{ZONE}"), Grant(True, Match.ZONESUB))
    assert not policy.permits(ident, ZONE, f"www.{ZONE}", "A")
    assert policy.permits(ident, ZONE, f"api.{ZONE}", "A")


def test_a_type_list_limits_the_rule():
    acme = identity(Grant(True, Match.SELF, types=frozenset({"TXT"})), signer=f"_acme-challenge.{HOST}")
    assert policy.permits(acme, ZONE, f"_acme-challenge.{HOST}", "TXT")
    assert not policy.permits(acme, ZONE, f"_acme-challenge.{HOST}", "A")


def test_authorize_refuses_the_whole_update_when_one_operation_is_not_allowed():
    with pytest.raises(Refused):
        policy.authorize(HOST_KEY, ZONE, [add(HOST), add(f"other.{ZONE}")])
    assert policy.authorize(HOST_KEY, ZONE, [add(HOST)]) == (add(HOST),)


def test_delete_name_is_narrowed_to_the_types_a_host_key_may_change():
    narrowed = policy.authorize(HOST_KEY, ZONE, [Operation(Op.DELETE_NAME, HOST)])
    assert narrowed == tuple(Operation(Op.DELETE_RRSET, HOST, t) for t in ("A", "AAAA", "TXT"))


def test_delete_name_stays_whole_for_a_rule_over_every_type():
    ident = identity(Grant(True, Match.ZONESUB))
    op = Operation(Op.DELETE_NAME, HOST)
    assert policy.authorize(ident, ZONE, [op]) == (op,)


def test_delete_name_behind_a_typed_deny_is_refused():
    ident = identity(Grant(False, Match.ZONESUB, types=frozenset({"TXT"})), Grant(True, Match.ZONESUB))
    with pytest.raises(Refused):
        policy.authorize(ident, ZONE, [Operation(Op.DELETE_NAME, HOST)])


def test_may_see_only_zones_a_grant_reaches():
    assert policy.may_see(HOST_KEY, ZONE)
    assert not policy.may_see(HOST_KEY, "other.org")
    bound = identity(Grant(True, Match.ZONESUB, ZONE))
    assert policy.may_see(bound, ZONE) and not policy.may_see(bound, "other.org")
    denied = identity(Grant(False, Match.ZONESUB))
    assert not policy.may_see(denied, ZONE)
