"""The update use case on the real publisher: prerequisites decided under its lock, all or nothing, audited."""
from __future__ import annotations

import threading

import pytest

from conftest import Instance
from ddns.publishing.bindtarget import PublishTarget
from ddns.errors import Invalid
from ddns.gitrepo import ZonesRepo, parse_trailers
from ddns.model import Actor, Grant, Identity, Match, Need, Op, Operation, Outcome, Prerequisite, Update
from ddns.publishing.publisher import Publisher
from ddns.wiring import ZONE_TEMPLATES

ZONE = "dyn.example.test"
ZONE_KEY = Identity(Actor("key:zone-admin", "127.0.0.1", "rfc2136"), "", (Grant(True, Match.ZONESUB),))


def claim(label: str, address: str, who: str) -> Update:
    """Create LABEL only if the name is free (what two clients racing for one name send)."""
    return Update(ZONE, (Operation(Op.ADD, f"{label}.{ZONE}", "A", address),),
                  (Prerequisite(Need.NAME_NOT_IN_USE, f"{label}.{ZONE}"),), Actor(who, interface="rfc2136"))


@pytest.fixture
def publisher(instance: Instance) -> Publisher:
    """The real publisher on the instance's repository, without named."""
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], PublishTarget(rndc=None))
    publisher.load()
    return publisher


def test_two_racing_updates_for_a_free_name_exactly_one_is_published(instance, publisher):
    for trial in range(5):
        label = f"race{trial}"
        barrier = threading.Barrier(2)
        results: dict[str, Outcome] = {}

        def send(who: str, address: str) -> None:
            barrier.wait()
            results[who] = publisher.apply([claim(label, address, who)])[0].outcome

        threads = [threading.Thread(target=send, args=(f"client{n}", f"192.0.2.{n + 1}")) for n in range(2)]
        before = instance.commit_count()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(o.value for o in results.values()) == ["published", "unmet"], results
        winner = next(who for who, o in results.items() if o is Outcome.PUBLISHED)
        assert instance.commit_count() == before + 1
        dynamic = instance.records(ZONE)
        assert dynamic.count(f"{label} A ") == 1 and f"{label} A 192.0.2.{int(winner[-1]) + 1}" in dynamic
        [record] = parse_trailers(instance.git("log", "-1", "--format=%B"))
        assert (record.host, record.type, record.old, record.new, record.actor, record.interface) == \
            (f"{label}.{ZONE}", "A", None, f"192.0.2.{int(winner[-1]) + 1}", winner, "rfc2136")


def test_in_one_group_a_later_update_sees_what_an_earlier_one_did(instance, publisher):
    before = instance.commit_count()
    results = publisher.apply([claim("grouped", "192.0.2.1", "first"), claim("grouped", "192.0.2.2", "second"),
                               claim("other", "192.0.2.3", "third")])
    assert [r.outcome for r in results] == [Outcome.PUBLISHED, Outcome.UNMET, Outcome.PUBLISHED]
    assert results[1].unmet == Prerequisite(Need.NAME_NOT_IN_USE, f"grouped.{ZONE}")
    assert instance.commit_count() == before + 1  # one group, one commit
    assert {(r.host, r.new) for r in parse_trailers(instance.git("log", "-1", "--format=%B"))} == \
        {(f"grouped.{ZONE}", "192.0.2.1"), (f"other.{ZONE}", "192.0.2.3")}


def test_an_update_is_all_or_nothing_and_one_that_changes_nothing_is_unchanged(instance, publisher):
    txt = '"v=1 with spaces" "and \\"quotes\\""'
    update = Update(ZONE, (Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.5", 300),
                           Operation(Op.ADD, f"vm.{ZONE}", "TXT", txt)))
    assert publisher.apply([update])[0].outcome is Outcome.PUBLISHED
    count, files = instance.commit_count(), instance.tree_records(ZONE)
    assert files == f"vm 300 A 192.0.2.5\nvm TXT {txt}\n"
    assert publisher.apply([update])[0].outcome is Outcome.UNCHANGED
    # the second operation lands on a static name: the first is not applied either
    mixed = Update(ZONE, (Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.6"), Operation(Op.ADD, f"ns1.{ZONE}", "TXT", '"x"')))
    result = publisher.apply([mixed])[0]
    assert result.outcome is Outcome.FAILED and "static records" in result.reason
    assert (instance.commit_count(), instance.tree_records(ZONE)) == (count, files)


def test_rrsets_show_static_and_dynamic_data_and_the_current_serial(instance, publisher):
    publisher.apply([Update(ZONE, tuple(Operation.replace(f"vm.{ZONE}", "A", ["192.0.2.7", "192.0.2.8"])))])
    [soa] = [r for r in publisher.rrsets(ZONE, "@") if r.rtype == "SOA"]
    assert int(soa.rdatas[0].split()[2]) == publisher.zones[ZONE].serial
    assert {r.rtype for r in publisher.rrsets(ZONE, "@")} >= {"SOA", "NS"}
    [a] = publisher.rrsets(ZONE, "vm")
    assert (a.name, a.rtype, a.ttl, a.rdatas) == (f"vm.{ZONE}", "A", 60, ("192.0.2.7", "192.0.2.8"))


# ---- the service: policy, validation, served --------------------------------------------------
def test_service_update_is_checked_published_and_served(running):
    service, inst = running.service, running.instance
    result = service.update(ZONE_KEY, ZONE, [Operation(Op.ADD, f"_acme-challenge.vm.{ZONE}", "TXT", "token value", 5)])
    assert result.outcome is Outcome.PUBLISHED, result
    assert inst.dig(f"_acme-challenge.vm.{ZONE}", "TXT") == ['"token" "value"']
    assert service.find_zone(f"a.b._acme-challenge.vm.{ZONE}") == ZONE and service.find_zone("example.net") is None
    [txt] = service.rrsets(ZONE, f"_acme-challenge.vm.{ZONE}.")
    assert (txt.ttl, txt.rdatas) == (5, ('"token" "value"',))
    assert service.update(ZONE_KEY, ZONE, [Operation(Op.ADD, f"_acme-challenge.vm.{ZONE}", "TXT", '"token" "value"', 5)]
                          ).outcome is Outcome.UNCHANGED
    history = service.history(f"_acme-challenge.vm.{ZONE}")
    assert [(h.change.new, h.change.interface) for h in history] == [('"token" "value"', "rfc2136")]


def test_service_refuses_what_policy_or_updates_types_forbid_and_nothing_changes(running):
    service, inst = running.service, running.instance
    secret = inst.add_host(f"vm.{ZONE}")
    assert secret
    host = service.host(f"vm.{ZONE}")
    own = service.host_identity(host, Actor(f"host:vm.{ZONE}", interface="rfc2136"))
    count = inst.commit_count()
    refused = [
        (own, [Operation(Op.ADD, f"other.{ZONE}", "A", "192.0.2.1")]),            # another name
        (own, [Operation(Op.ADD, f"vm.{ZONE}", "CNAME", f"www.{ZONE}.")]),         # a type it may not touch
        (own, [Operation(Op.ADD, f"_acme-challenge.vm.{ZONE}", "A", "192.0.2.1")]),  # the ACME name holds TXT only
        (ZONE_KEY, [Operation(Op.DELETE_RRSET, ZONE, "SOA")]),                     # protected types
        (ZONE_KEY, [Operation(Op.ADD, f"mx.{ZONE}", "MX", f"10 mail.{ZONE}.")]),  # not in updates.types
    ]
    for identity, operations in refused:
        result = service.update(identity, ZONE, operations)
        assert result.outcome is Outcome.REFUSED, (operations, result)
    for operations in ([Operation(Op.ADD, f"vm.{ZONE}", "A", "192.0.2.300")],
                       [Operation(Op.ADD, f"vm.{ZONE}", "A", "127.0.0.1")],      # dyndns2.allow_loopback is off
                       [Operation(Op.ADD, f"vm.{ZONE}", "TXT", '"x"', -1)],
                       [Operation(Op.ADD, "vm.example.net", "A", "192.0.2.1")],
                       [Operation(Op.ADD, f"v m.{ZONE}", "A", "192.0.2.1")]):
        with pytest.raises(Invalid):
            service.update(own, ZONE, operations)
    assert inst.commit_count() == count
    assert service.update(own, ZONE, [Operation(Op.ADD, f"vm.{ZONE}", "TXT", '"mine"')]).outcome is Outcome.PUBLISHED
    assert inst.dig(f"vm.{ZONE}", "TXT") == ['"mine"']


def test_service_update_of_a_deleted_host_is_refused_by_its_guard(running):
    service, inst = running.service, running.instance
    inst.add_host(f"gone.{ZONE}")
    own = service.host_identity(service.host(f"gone.{ZONE}"), Actor(f"host:gone.{ZONE}"))
    assert inst.cli("host", "delete", f"gone.{ZONE}").code == 0
    count = inst.commit_count()
    assert service.update(own, ZONE, [Operation(Op.ADD, f"gone.{ZONE}", "A", "192.0.2.9")]).outcome is Outcome.REFUSED
    assert inst.commit_count() == count and inst.dig(f"gone.{ZONE}") == []
