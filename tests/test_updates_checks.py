"""Service-side checks of an update before the publisher sees it (ddns.updates), with hostile input. Pure."""
from __future__ import annotations

import pytest

from ddns.errors import Invalid
from ddns.model import (Actor, Grant, Identity, Match, Need, Op, Operation, Outcome, Prerequisite, Result,
                        Update)
from ddns.updates import Updates
from ddns.validate import AddressPolicy

ZONE = "dyn.example.org"
ADMIN = Identity(Actor("key:admin"), "", (Grant(True, Match.ZONESUB),))


class Publisher:
    """What Updates asks of the publisher: which zones exist (and nothing served yet: every update is published)."""

    def has_zone(self, zone: str) -> bool:
        return zone in (ZONE, f"sub.{ZONE}")

    def served(self, zone: str) -> None:
        return None


@pytest.fixture
def updates():
    published: list[Update] = []

    def publish(batch: list[Update]) -> list[Result]:
        published.extend(batch)
        return [Result(Outcome.PUBLISHED) for _ in batch]

    checker = Updates(Publisher(), publish, ["A", "AAAA", "TXT", "CNAME", "SOA"], AddressPolicy(True, False))
    checker.published = published
    return checker


def test_names_rdata_and_ttls_reach_the_publisher_canonical(updates):
    result = updates.update(ADMIN, "DYN.example.org.", [
        Operation(Op.ADD, "VM.Dyn.Example.Org.", "a", "192.0.2.1", 300),
        Operation(Op.ADD, f"_acme-challenge.vm.{ZONE}", "txt", "token"),
        Operation(Op.ADD, f"alias.{ZONE}", "CNAME", "vm"),
        Operation(Op.DELETE_RR, f"vm.{ZONE}", "AAAA", "2001:DB8::1", 99),
    ], [Prerequisite(Need.RRSET_EQUALS, f"vm.{ZONE}", "aaaa", frozenset({"2001:0db8::1"}))])
    assert result.outcome is Outcome.PUBLISHED
    [update] = updates.published
    assert update.zone == ZONE and update.actor == ADMIN.actor
    assert update.operations == (Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1", 300),
                                 Operation(Op.ADD, f"_acme-challenge.vm.{ZONE}", "TXT", '"token"'),
                                 Operation(Op.ADD, f"alias.{ZONE}", "CNAME", f"vm.{ZONE}."),
                                 Operation(Op.DELETE_RR, f"vm.{ZONE}", "AAAA", "2001:db8::1"))
    assert update.prerequisites == (Prerequisite(Need.RRSET_EQUALS, f"vm.{ZONE}", "AAAA", frozenset({"2001:db8::1"})),)


def test_find_zone_is_the_longest_of_ours():
    checker = Updates(Publisher(), lambda batch: [], ["A"], AddressPolicy(True, False))
    assert checker.find_zone(f"a.sub.{ZONE}.") == f"sub.{ZONE}"
    assert checker.find_zone(f"a.{ZONE}") == ZONE and checker.find_zone(ZONE) == ZONE
    assert checker.find_zone("example.org") is None and checker.find_zone("a\x00b") is None


HOSTILE = [
    Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1\n$INCLUDE /etc/passwd"),
    Operation(Op.ADD, f"vm.{ZONE}", "TXT", '"x"\nevil 60 IN A 192.0.2.66'),
    Operation(Op.ADD, f"vm.{ZONE}", "TXT", "a\rb"),
    Operation(Op.ADD, f"vm.{ZONE}", "TXT", ""),
    Operation(Op.ADD, f"vm.{ZONE}", "TXT", "x" * 5000),
    Operation(Op.ADD, f"vm.{ZONE}", "TXT", '"unterminated'),
    Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1 ; comment"),
    Operation(Op.ADD, f"vm.{ZONE}", "A", "::ffff:192.0.2.1"),
    Operation(Op.ADD, f"vm.{ZONE}", "A", "127.0.0.1"),            # loopback is off by policy
    Operation(Op.ADD, f"vm.{ZONE}", "AAAA", "192.0.2.1"),
    Operation(Op.ADD, f"vm.{ZONE}", "CNAME", "a b"),
    Operation(Op.ADD, f"vm.{ZONE}", "CNAME", "a..b"),
    Operation(Op.ADD, f"vm.{ZONE}", "CNAME", "x" * 64 + ".example.org."),
    Operation(Op.ADD, f"vm.{ZONE}", "A\n", "192.0.2.1"),
    Operation(Op.ADD, f"vm.{ZONE}", "ANY", "192.0.2.1"),
    Operation(Op.ADD, f"vm.{ZONE}", "NOTATYPE", "x"),
    Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1", -1),
    Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1", 2**31),
    Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1", True),
    Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1", 1.5),
    Operation(Op.ADD, f"v\x00m.{ZONE}", "A", "192.0.2.1"),
    Operation(Op.ADD, f"v m.{ZONE}", "A", "192.0.2.1"),
    Operation(Op.ADD, f"../{ZONE}", "A", "192.0.2.1"),
    Operation(Op.ADD, f"a..b.{ZONE}", "A", "192.0.2.1"),
    Operation(Op.ADD, f"$INCLUDE.{ZONE}", "A", "192.0.2.1"),
    Operation(Op.ADD, f"*.{ZONE}", "A", "192.0.2.1"),
    Operation(Op.ADD, "x" * 64 + f".{ZONE}", "A", "192.0.2.1"),
    Operation(Op.ADD, "vm.example.net", "A", "192.0.2.1"),       # outside the zone
    Operation(Op.ADD, f"vm{ZONE}", "A", "192.0.2.1"),             # a suffix, not a subdomain
    Operation(Op.DELETE_NAME, f"vm.{ZONE}\n"),
]


@pytest.mark.parametrize("operation", HOSTILE, ids=lambda op: repr((op.name, op.rtype, op.rdata, op.ttl))[:60])
def test_hostile_operations_are_invalid_and_nothing_is_published(updates, operation):
    with pytest.raises(Invalid):
        updates.update(ADMIN, ZONE, [Operation(Op.ADD, f"ok.{ZONE}", "A", "192.0.2.9"), operation])
    assert updates.published == []


@pytest.mark.parametrize("need", [
    Prerequisite(Need.RRSET_EQUALS, f"vm.{ZONE}", "A", frozenset({"192.0.2.1\n$INCLUDE x"})),
    Prerequisite(Need.RRSET_EXISTS, f"vm.{ZONE}", "ANY"),
    Prerequisite(Need.NAME_IN_USE, "vm.example.net"),
    Prerequisite(Need.NAME_NOT_IN_USE, f"v m.{ZONE}"),
])
def test_hostile_prerequisites_are_invalid(updates, need):
    with pytest.raises(Invalid):
        updates.update(ADMIN, ZONE, [Operation(Op.ADD, f"ok.{ZONE}", "A", "192.0.2.9")], [need])
    assert updates.published == []


def test_refusals_are_results_and_only_the_refused_update_of_a_group_is_held_back(updates):
    host = Identity(Actor("host:vm"), f"vm.{ZONE}", (Grant(True, Match.SELF, types=frozenset({"A"})),))
    results = updates.update_many(host, [
        Update(ZONE, (Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.1"),)),
        Update(ZONE, (Operation(Op.ADD, f"other.{ZONE}", "A", "192.0.2.1"),)),  # not its name
        Update(ZONE, (Operation(Op.ADD, f"vm.{ZONE}", "TXT", "x"),)),           # not its type
        Update("example.net", (Operation(Op.ADD, "vm.example.net", "A", "192.0.2.1"),)),  # not our zone
    ])
    assert [r.outcome for r in results] == [Outcome.PUBLISHED, Outcome.REFUSED, Outcome.REFUSED, Outcome.REFUSED]
    assert [u.operations[0].name for u in updates.published] == [f"vm.{ZONE}"]
    # SOA never, even when the operator lists it; MX not listed
    for rtype, rdata in (("SOA", f"ns1.{ZONE}. h.{ZONE}. 1 2 3 4 5"), ("MX", f"10 mail.{ZONE}.")):
        grant_all = Identity(Actor("key:all"), "", (Grant(True, Match.ZONESUB, types=frozenset({rtype})),))
        assert updates.update(grant_all, ZONE, [Operation(Op.ADD, ZONE, rtype, rdata)]).outcome is Outcome.REFUSED


def test_update_and_identity_guards_both_hold(updates):
    calls = []
    identity = Identity(ADMIN.actor, "", ADMIN.grants, guard=lambda: calls.append("identity") or True)
    updates.update_many(identity, [Update(ZONE, (Operation(Op.ADD, f"ok.{ZONE}", "A", "192.0.2.9"),),
                                          guard=lambda: calls.append("update") or False)])
    [update] = updates.published
    assert update.guard() is False and calls == ["identity", "update"]
