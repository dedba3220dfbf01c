"""The pure record logic of ddns.records: prerequisites, RFC 2136 apply rules, TTLs, canonical rdata."""
from __future__ import annotations

import pytest

from ddns import records
from ddns.errors import Invalid
from ddns.model import Need, Op, Operation, Outcome, Prerequisite, Update
from ddns.records import RecordSet

ZONE = "dyn.example.org"
SOA = "ns1.dyn.example.org. hostmaster.dyn.example.org. 7 3600 600 1209600 60"
STATIC = records.zone_static(f"""$ORIGIN {ZONE}.
$TTL 3600
@ IN SOA {SOA}
@ IN NS ns1
ns1 IN A 192.0.2.53
www 300 IN A 192.0.2.80
alias IN CNAME www
""", ZONE)
DYNAMIC = {("vm", "A"): RecordSet(("192.0.2.1",)), ("vm", "TXT"): RecordSet(('"hello"',), 120),
           ("link", "CNAME"): RecordSet((f"vm.{ZONE}.",))}


def fqdn(label: str) -> str:
    return ZONE if label == "@" else f"{label}.{ZONE}"


def add(label: str, rtype: str, rdata: str, ttl: int | None = None) -> Operation:
    return Operation(Op.ADD, fqdn(label), rtype, rdata, ttl)


def run(*operations: Operation, needs: tuple[Prerequisite, ...] = (), dynamic=None):
    """(DYNAMIC after the update, its refusal or None); the input is never changed."""
    before = dict(DYNAMIC if dynamic is None else dynamic)
    snapshot = dict(before)
    changes, refused = records.apply(Update(ZONE, operations, needs), STATIC, before, {t for _, t in before})
    assert before == snapshot
    after = dict(before)
    for key, value in changes.items():
        assert before.get(key) != value  # only what differs
        if value is None:
            del after[key]
        else:
            after[key] = value
    return after, refused


# ---- static data ---------------------------------------------------------------------------------
def test_static_data_is_parsed_with_absolute_names_and_ttls():
    assert STATIC["@"]["SOA"] == RecordSet((SOA,), 3600)
    assert STATIC["@"]["NS"] == RecordSet((f"ns1.{ZONE}.",), 3600)
    assert STATIC["www"]["A"] == RecordSet(("192.0.2.80",), 300)
    assert STATIC["alias"]["CNAME"] == RecordSet((f"www.{ZONE}.",), 3600)
    assert records.with_serial(SOA, 4_000_000_000).split()[2] == "4000000000"


# ---- operations ----------------------------------------------------------------------------------
def test_add_joins_the_rrset_and_keeps_it_sorted():
    after, refused = run(add("vm", "A", "192.0.2.0"), add("vm", "A", "192.0.2.9"))
    assert refused is None
    assert after[("vm", "A")] == RecordSet(("192.0.2.0", "192.0.2.1", "192.0.2.9"))


def test_a_duplicate_rr_only_replaces_the_ttl_and_the_set_keeps_one_ttl():
    after, _ = run(add("vm", "TXT", '"hello"', 30))
    assert after[("vm", "TXT")] == RecordSet(('"hello"',), 30)
    after, _ = run(add("vm", "TXT", '"second"', 600))
    assert after[("vm", "TXT")] == RecordSet(('"hello"', '"second"'), 600)  # one TTL for the set
    after, _ = run(add("vm", "TXT", '"hello"', 120))
    assert after == DYNAMIC  # the same rdata and TTL: nothing changes


def test_replace_makes_the_rrset_exactly_the_given_rdata():
    after, _ = run(*Operation.replace(fqdn("vm"), "A", ["192.0.2.7", "192.0.2.8"], 300))
    assert after[("vm", "A")] == RecordSet(("192.0.2.7", "192.0.2.8"), 300)
    after, _ = run(*Operation.replace(fqdn("vm"), "A", []))
    assert ("vm", "A") not in after and ("vm", "TXT") in after


def test_delete_rr_removes_one_rdata_and_the_set_with_its_last():
    two = {**DYNAMIC, ("vm", "A"): RecordSet(("192.0.2.1", "192.0.2.2"), 90)}
    after, _ = run(Operation(Op.DELETE_RR, fqdn("vm"), "A", "192.0.2.1"), dynamic=two)
    assert after[("vm", "A")] == RecordSet(("192.0.2.2",), 90)
    after, _ = run(Operation(Op.DELETE_RR, fqdn("vm"), "A", "192.0.2.1"))
    assert ("vm", "A") not in after
    after, _ = run(Operation(Op.DELETE_RR, fqdn("vm"), "A", "192.0.2.99"))
    assert after == DYNAMIC


def test_delete_name_removes_only_dynamic_rrsets():
    after, refused = run(Operation(Op.DELETE_NAME, fqdn("vm")))
    assert refused is None and after == {("link", "CNAME"): DYNAMIC[("link", "CNAME")]}
    after, refused = run(Operation(Op.DELETE_NAME, fqdn("www")), Operation(Op.DELETE_NAME, ZONE))
    assert refused is None and after == DYNAMIC  # static names keep their records


def test_soa_and_the_apex_ns_are_never_deleted():
    for op in (Operation(Op.DELETE_RRSET, ZONE, "SOA"), Operation(Op.DELETE_RRSET, ZONE, "NS"),
               Operation(Op.DELETE_RR, ZONE, "NS", f"ns1.{ZONE}."), Operation(Op.DELETE_NAME, ZONE)):
        after, refused = run(op)
        assert refused is None and after == DYNAMIC, op


def test_adding_to_a_name_with_static_records_is_refused_and_changes_nothing():
    for op in (add("@", "TXT", '"x"'), add("www", "A", "192.0.2.81"), add("ns1", "AAAA", "2001:db8::53")):
        after, refused = run(add("vm", "A", "192.0.2.5"), op)
        assert refused is not None and refused.outcome is Outcome.FAILED and "static records" in refused.reason
        assert after == DYNAMIC  # all or nothing: the first operation is not applied either


def test_a_cname_beside_other_data_is_ignored_and_other_data_beside_a_cname_too():
    after, refused = run(add("vm", "CNAME", f"www.{ZONE}."))
    assert refused is None and after == DYNAMIC
    after, refused = run(add("link", "A", "192.0.2.4"), add("link", "TXT", '"x"'))
    assert refused is None and after == DYNAMIC
    # the same update may first remove the other data, then add the CNAME
    after, _ = run(Operation(Op.DELETE_NAME, fqdn("vm")), add("vm", "CNAME", f"www.{ZONE}."))
    assert after[("vm", "CNAME")] == RecordSet((f"www.{ZONE}.",))
    # and a name holds one CNAME: a new one replaces it
    after, _ = run(add("link", "CNAME", f"www.{ZONE}."))
    assert after[("link", "CNAME")] == RecordSet((f"www.{ZONE}.",))


# ---- prerequisites -------------------------------------------------------------------------------
HOLDING = [
    Prerequisite(Need.NAME_IN_USE, fqdn("vm")),
    Prerequisite(Need.NAME_IN_USE, fqdn("www")),             # static
    Prerequisite(Need.NAME_IN_USE, ZONE),                    # the apex: SOA, NS
    Prerequisite(Need.NAME_NOT_IN_USE, fqdn("new")),
    Prerequisite(Need.NAME_NOT_IN_USE, ZONE.replace("dyn.", "x.dyn.")),
    Prerequisite(Need.RRSET_EXISTS, fqdn("vm"), "TXT"),
    Prerequisite(Need.RRSET_EXISTS, ZONE, "SOA"),
    Prerequisite(Need.RRSET_NOT_EXISTS, fqdn("vm"), "AAAA"),
    Prerequisite(Need.RRSET_NOT_EXISTS, fqdn("www"), "TXT"),
    Prerequisite(Need.RRSET_EQUALS, fqdn("vm"), "A", frozenset({"192.0.2.1"})),
    Prerequisite(Need.RRSET_EQUALS, fqdn("www"), "A", frozenset({"192.0.2.80"})),  # TTL ignored
]
UNMET = [
    Prerequisite(Need.NAME_IN_USE, fqdn("new")),
    Prerequisite(Need.NAME_NOT_IN_USE, fqdn("vm")),
    Prerequisite(Need.NAME_NOT_IN_USE, fqdn("alias")),
    Prerequisite(Need.RRSET_EXISTS, fqdn("vm"), "AAAA"),
    Prerequisite(Need.RRSET_EXISTS, fqdn("new"), "A"),
    Prerequisite(Need.RRSET_NOT_EXISTS, fqdn("vm"), "A"),
    Prerequisite(Need.RRSET_NOT_EXISTS, ZONE, "NS"),
    Prerequisite(Need.RRSET_EQUALS, fqdn("vm"), "A", frozenset({"192.0.2.1", "192.0.2.2"})),
    Prerequisite(Need.RRSET_EQUALS, fqdn("vm"), "A", frozenset({"192.0.2.2"})),
    Prerequisite(Need.RRSET_EQUALS, fqdn("vm"), "AAAA", frozenset({"2001:db8::1"})),
]


@pytest.mark.parametrize("need", HOLDING, ids=lambda p: f"{p.need.value}-{p.name}-{p.rtype}")
def test_a_prerequisite_that_holds_lets_the_update_through(need):
    after, refused = run(add("vm", "AAAA", "2001:db8::1"), needs=(need,))
    assert refused is None and after[("vm", "AAAA")] == RecordSet(("2001:db8::1",))


@pytest.mark.parametrize("need", UNMET, ids=lambda p: f"{p.need.value}-{p.name}-{p.rtype}")
def test_an_unmet_prerequisite_changes_nothing_and_is_named(need):
    after, refused = run(add("vm", "AAAA", "2001:db8::1"), needs=(HOLDING[0], need))
    assert after == DYNAMIC
    assert refused is not None and refused.outcome is Outcome.UNMET and refused.unmet == need


def test_prerequisites_see_the_state_before_the_updates_own_operations():
    need = Prerequisite(Need.NAME_NOT_IN_USE, fqdn("new"))
    after, refused = run(add("new", "A", "192.0.2.3"), needs=(need,))
    assert refused is None and ("new", "A") in after
    after, refused = run(add("new", "A", "192.0.2.3"), needs=(need,), dynamic=after)
    assert refused is not None and refused.unmet == need


def test_an_update_that_changes_nothing_reports_no_changes():
    changes, refused = records.apply(Update(ZONE, tuple(Operation.replace(fqdn("vm"), "A", ["192.0.2.1"]))),
                                     STATIC, DYNAMIC, {"A", "TXT", "CNAME"})
    assert (changes, refused) == ({}, None)


def test_changed_sets_name_old_and_new():
    changes, _ = records.apply(Update(ZONE, (add("vm", "A", "192.0.2.2"), Operation(Op.DELETE_RRSET, fqdn("vm"), "TXT"))),
                               STATIC, DYNAMIC, {"A", "TXT", "CNAME"})
    assert changes == {("vm", "A"): RecordSet(("192.0.2.1", "192.0.2.2")), ("vm", "TXT"): None}


# ---- names and rdata -----------------------------------------------------------------------------
@pytest.mark.parametrize("rtype, text, canonical", [
    ("A", "192.0.2.1", "192.0.2.1"),
    ("AAAA", "2001:DB8:0::1", "2001:db8::1"),
    ("TXT", "hello", '"hello"'),
    ("TXT", '"with spaces and \\"quotes\\""', '"with spaces and \\"quotes\\""'),
    ("TXT", '"a" "b"', '"a" "b"'),
    ("CNAME", "www", f"www.{ZONE}."),
    ("CNAME", "other.example.net.", "other.example.net."),
])
def test_rdata_is_made_canonical(rtype, text, canonical):
    assert records.canonical(rtype, text, ZONE) == canonical
    assert records.canonical(rtype, canonical) == canonical  # canonical text is a fixed point


@pytest.mark.parametrize("rtype, text", [
    ("A", "192.0.2"), ("A", "192.0.2.01"), ("A", "2001:db8::1"), ("AAAA", "192.0.2.1"), ("A", ""),
    ("TXT", '"unterminated'), ("TXT", "a\nb"), ("TXT", "x" * 4001), ("CNAME", "a..b"), ("CNAME", "a b"),
])
def test_bad_rdata_is_invalid(rtype, text):
    with pytest.raises(Invalid):
        records.canonical(rtype, text, ZONE)


def test_types_are_canonical_and_meta_types_refused():
    assert records.canonical_type("txt") == "TXT"
    for bad in ("ANY", "AXFR", "NONE", "OPT", "NOPE", ""):
        with pytest.raises(Invalid):
            records.canonical_type(bad)


def test_record_names_allow_leading_underscores_and_nothing_else_new():
    assert records.record_name("_acme-challenge.VM.dyn.example.org.") == "_acme-challenge.vm.dyn.example.org"
    assert records.record_name("bücher.example.org") == "xn--bcher-kva.example.org"
    for bad in ("a_b.example.org", "_.example.org", "a..b", "", "*.example.org", "a b.example.org", "x" * 254):
        with pytest.raises(Invalid):
            records.record_name(bad)


def test_longest_zone_strips_a_label_at_a_time_and_takes_the_longest():
    zones = {"dyn.example.test", "example.test"}.__contains__
    assert records.longest_zone("a.dyn.example.test", zones) == "dyn.example.test"
    assert records.longest_zone("dyn.example.test", zones) == "dyn.example.test"  # the apex is in its zone
    assert records.longest_zone("a.b.example.test", zones) == "example.test"
    assert records.longest_zone("example.testx", zones) is None  # a suffix of the text, not of the labels
    assert records.longest_zone("other", zones) is None
