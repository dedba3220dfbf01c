"""ddns.trusted, pure: which unsigned updates a client of a trusted network may make (only registering itself).

Table-driven and hostile: IPv4-mapped and scoped IPv6 sources, /0 networks,
mixed families, other addresses, other names, other types, the reverse name
of another address. The real listener is tested in test_unsigned.py.
"""
from __future__ import annotations

import pytest

from ddns import policy, zones
from ddns.errors import Refused
from ddns.model import Actor, Match, Need, Op, Operation, Prerequisite
from ddns.trusted import client_address, permit, trusted, unsigned_identity

ZONE = "dyn.example.test"
PC = "pc1." + ZONE
LAN = ("192.0.2.0/24", "2001:db8::/64")
REV4 = "7.2.0.192.in-addr.arpa"


def add(rtype: str, rdata: str, name: str = PC, ttl: int | None = 1200) -> Operation:
    return Operation(Op.ADD, name, rtype, rdata, ttl)


def delete(rtype: str, name: str = PC) -> Operation:
    return Operation(Op.DELETE_RRSET, name, rtype)


WINDOWS = (delete("A"), delete("AAAA"), add("A", "192.0.2.7"))
NO_CNAME = (Prerequisite(Need.RRSET_NOT_EXISTS, PC, "CNAME"),)


@pytest.mark.parametrize("networks, client, expected", [
    (LAN, "192.0.2.7", True),
    (LAN, "192.0.3.7", False),
    (LAN, "2001:db8::7", True),
    (LAN, "2001:db8:1::7", False),
    (LAN, "::ffff:192.0.2.7", True),            # IPv4-mapped counts as IPv4
    (("::ffff:0:0/96",), "::ffff:192.0.2.7", False),  # ... so a mapped network never holds it
    (LAN, "2001:db8::7%eth0", True),            # a scope is dropped
    (("fe80::/64",), "fe80::1%2", True),
    (("0.0.0.0/0",), "203.0.113.9", True),
    (("0.0.0.0/0",), "2001:db8::7", False),     # /0 of one family holds nothing of the other
    (("::/0",), "192.0.2.7", False),
    (("::/0",), "::ffff:192.0.2.7", False),
    (("127.0.0.0/8",), "127.0.0.2", True),
    ((), "192.0.2.7", False),                    # off by default
    (LAN, "", False),
    (LAN, "not-an-address", False),
    (LAN, "192.0.2.7:53", False),
    (LAN, "192.0.2.7\x00", False),
])
def test_trusted(networks, client, expected):
    assert trusted(networks, client) is expected


def test_client_address_unmaps_and_drops_the_scope():
    assert str(client_address("::ffff:127.0.0.2")) == "127.0.0.2"
    assert str(client_address("fe80::1%eth0")) == "fe80::1"
    assert client_address("x") is None


@pytest.mark.parametrize("client, operations, prerequisites, name, types", [
    ("192.0.2.7", WINDOWS, NO_CNAME, PC, {"A", "AAAA"}),
    ("::ffff:192.0.2.7", WINDOWS, NO_CNAME, PC, {"A", "AAAA"}),
    ("192.0.2.7", (add("A", "192.0.2.7", "PC1.Dyn.Example.Test."),), (), PC, {"A"}),
    ("192.0.2.7", (add("a", "192.0.2.7"),), (), PC, {"A"}),
    ("2001:db8::7", (delete("AAAA"), add("AAAA", "2001:db8:0::7")), (), PC, {"AAAA"}),
    ("2001:db8::7%eth0", (add("AAAA", "2001:db8::7"),), (), PC, {"AAAA"}),
    ("192.0.2.7", (Operation(Op.DELETE_RR, PC, "A", "192.0.2.99"),), (), PC, {"A"}),  # removing own name's records
    ("192.0.2.7", (delete("PTR", REV4), add("PTR", PC, REV4)), (), REV4, {"PTR"}),
    ("2001:db8::7", (add("PTR", PC, "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"),), (),
     "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", {"PTR"}),
    ("192.0.2.7", WINDOWS, (Prerequisite(Need.NAME_IN_USE, PC),), PC, {"A", "AAAA"}),
])
def test_a_client_registering_itself_is_permitted(client, operations, prerequisites, name, types):
    found = permit(LAN, client, operations, prerequisites)
    assert found is not None and found.name == name and found.types == frozenset(types)
    assert found.address == str(client_address(client))


@pytest.mark.parametrize("client, operations, prerequisites, why", [
    ("192.0.2.7", (add("A", "192.0.2.8"),), (), "own address"),                       # another address
    ("192.0.2.7", (add("A", "192.0.2.7"), add("A", "192.0.2.8")), (), "own address"),
    ("::ffff:192.0.2.7", (add("AAAA", "::ffff:192.0.2.7"),), (), "own address"),     # the mapped form is v6 data
    ("192.0.2.7", (add("AAAA", "2001:db8::7"),), (), "own address"),                 # the other family
    ("2001:db8::7", (add("A", "192.0.2.7"),), (), "own address"),
    ("192.0.2.7", (add("A", "192.0.2.7"), add("A", "192.0.2.7", "pc2." + ZONE)), (), "one name"),
    ("192.0.2.7", (delete("A", "pc2." + ZONE), add("A", "192.0.2.7")), (), "one name"),
    ("192.0.2.7", (add("TXT", '"hello"'),), (), "not TXT"),
    ("192.0.2.7", (add("CNAME", "www." + ZONE),), (), "not CNAME"),
    ("192.0.2.7", (delete("TXT"),), (), "not TXT"),
    ("192.0.2.7", (delete("ANY"),), (), "not ANY"),
    ("192.0.2.7", (Operation(Op.DELETE_NAME, PC),), (), "not the whole name"),
    ("192.0.2.7", (add("PTR", PC, "8.2.0.192.in-addr.arpa"),), (), "PTR records of 7.2.0.192"),  # another's reverse
    ("192.0.2.7", (add("PTR", PC),), (), "PTR records of 7.2.0.192"),                  # a PTR at a forward name
    ("192.0.2.7", (), (), "must change something"),
    ("192.0.2.7", WINDOWS, (Prerequisite(Need.RRSET_NOT_EXISTS, "pc2." + ZONE, "CNAME"),), "prerequisites"),
    ("192.0.2.7", (add("A", "not an address"),), (), "own address"),
    ("192.0.2.7", (add("A", "192.0.2.007"),), (), "own address"),
    ("2001:db8::7", (add("AAAA", "2001:db8::7%eth0"),), (), "own address"),
    ("192.0.2.7", (add("txt", '"x"'),), (), "not txt"),
])
def test_anything_more_is_refused_with_the_reason(client, operations, prerequisites, why):
    with pytest.raises(Refused, match=why):
        permit(LAN, client, operations, prerequisites)


@pytest.mark.parametrize("networks, client", [((), "192.0.2.7"), (LAN, "198.51.100.7"), (LAN, "::ffff:198.51.100.7")])
def test_an_untrusted_client_is_none_whatever_it_asks(networks, client):
    """Not trusted: None (the listener's plain REFUSED), before any rule is looked at, even for nonsense."""
    assert permit(networks, client, WINDOWS, NO_CNAME) is None
    assert permit(networks, client, (add("TXT", '"x"', "a." + ZONE), add("A", "1.2.3.4", "b." + ZONE))) is None


def identity_of(client: str, operations, held=lambda name: False, reserved=frozenset({"@", "www"})):
    return unsigned_identity(LAN, ZONE, client, operations, (), Actor(f"client:{client}", client, "rfc2136"),
                             reserved, held)


def test_the_identity_may_change_that_name_and_those_types_only():
    identity = identity_of("::ffff:192.0.2.7", WINDOWS)
    assert identity.actor.name == "client:192.0.2.7" and identity.actor.client == "::ffff:192.0.2.7"
    assert identity.actor.interface == "rfc2136"
    assert [(g.match, g.target, g.types) for g in identity.grants] == [(Match.NAME, PC, frozenset({"A", "AAAA"}))]
    assert policy.authorize(identity, ZONE, WINDOWS) == WINDOWS
    for other in (add("A", "192.0.2.7", "pc2." + ZONE), add("TXT", '"x"')):
        with pytest.raises(Refused):
            policy.authorize(identity, ZONE, (other,))
    assert identity.guard() is True


def test_a_registered_hosts_name_is_never_taken_over():
    with pytest.raises(Refused, match="registered host"):
        identity_of("192.0.2.7", WINDOWS, held=lambda name: name == PC)
    registered: set[str] = set()
    identity = identity_of("192.0.2.7", WINDOWS, held=registered.__contains__)
    registered.add(PC)  # registered after the check, before the publisher applies the update
    assert identity.guard() is False


@pytest.mark.parametrize("name, why", [("www." + ZONE, "reserved"), (ZONE, "reserved"),
                                       ("pc1.example.org", "not in the zone")])
def test_reserved_names_and_names_outside_the_zone_are_refused(name, why):
    with pytest.raises(Refused, match=why):
        identity_of("192.0.2.7", (add("A", "192.0.2.7", name),))


def test_untrusted_is_none_through_the_identity_too():
    assert identity_of("203.0.113.1", WINDOWS) is None


@pytest.mark.parametrize("text, networks", [
    ('[unsigned]\nnetworks = ["192.0.2.0/24", "2001:DB8::/64", "192.0.2.0/24"]\n', ("192.0.2.0/24", "2001:db8::/64")),
    ('[unsigned]\nnetworks = ["192.0.2.7"]\n', ("192.0.2.7/32",)),
    ('[unsigned]\nnetworks = []\n', ()),
    ("", ()),
])
def test_zone_toml_networks_are_canonical(text, networks):
    assert zones.ZoneSettings.from_toml(ZONE, text).unsigned_networks == networks


@pytest.mark.parametrize("text, why", [
    ('[unsigned]\nnetworks = ["192.0.2.7/24"]\n', "host bits"),
    ('[unsigned]\nnetworks = ["192.0.2.0/33"]\n', "not a network"),
    ('[unsigned]\nnetworks = ["fe80::%eth0/64"]\n', "not a network"),
    ('[unsigned]\nnetworks = ["example.org"]\n', "not a network"),
    ('[unsigned]\nnetworks = [""]\n', "not a network"),
    ('[unsigned]\nnetworks = [24]\n', "not a network"),
    ('[unsigned]\nnetworks = "192.0.2.0/24"\n', "must be a list"),
    ('unsigned = "192.0.2.0/24"\n', "must be a table"),
])
def test_bad_networks_are_a_source_error_naming_zone_toml(text, why):
    with pytest.raises(zones.SourceError, match=why) as caught:
        zones.ZoneSettings.from_toml(ZONE, text)
    assert caught.value.file == "zone.toml"
