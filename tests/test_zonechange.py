"""The change a commit hands to the BIND side: pure values from the records before and after."""
from ddns.publishing.zonechange import RRsetChange, zone_change
from ddns.records import RecordSet

STATIC = {"@": {"SOA": RecordSet(("ns1.example.org. hostmaster.example.org. 1 3600 600 86400 60",), 3600)}}


def test_changed_sets_with_their_ttl_and_the_new_soa():
    before = {("h1", "A"): RecordSet(("192.0.2.1",)), ("h2", "TXT"): RecordSet(('"x"',), 300)}
    after = {("h1", "A"): RecordSet(("192.0.2.9",)), ("@", "TXT"): RecordSet(('"apex"',), 120)}
    keys = {("h1", "A"), ("h2", "TXT"), ("@", "TXT")}
    change = zone_change("example.org", 42, STATIC, before, after, keys, dynamic_ttl=60)
    assert change.serial == 42
    assert change.soa == "ns1.example.org. hostmaster.example.org. 42 3600 600 86400 60"
    assert change.soa_ttl == 3600
    assert change.changes == (
        RRsetChange("example.org", "TXT", None, RecordSet(('"apex"',), 120), 120),
        RRsetChange("h1.example.org", "A", RecordSet(("192.0.2.1",)), RecordSet(("192.0.2.9",)), 60),
        RRsetChange("h2.example.org", "TXT", RecordSet(('"x"',), 300), None, 60),
    )


def test_a_set_changed_back_within_the_group_is_left_out():
    same = {("h1", "A"): RecordSet(("192.0.2.1",))}
    change = zone_change("example.org", 2, STATIC, same, dict(same), {("h1", "A")}, dynamic_ttl=60)
    assert change.changes == ()


def test_the_soa_goes_with_the_ttl_the_zone_was_committed_with():
    static = {"@": {"SOA": RecordSet(STATIC["@"]["SOA"].rdatas, 7200)}}
    assert zone_change("example.org", 3, static, {}, {}, set(), dynamic_ttl=60).soa_ttl == 7200
