"""ddns.zones: zone settings, the dynamic records file, rendering with the
shipped template, and the result checked by the real named-checkzone."""
import re
from pathlib import Path

import jinja2
import pytest

from conftest import require
from ddns import bind, errors, gitops, shards, zones
from ddns.records import RecordSet
from ddns.zones import BadRecordLine, ZoneSettings, format_dynamic, parse_dynamic, serial_of, static_owners
from recordsets import as_sets

ROOT = Path(__file__).resolve().parent.parent
ZONE = "dyn.example.test"
STATIC = "; static records\nns1 IN A 192.0.2.53\nwww IN A 198.51.100.80\n"


@pytest.fixture(scope="module")
def template() -> jinja2.Template:
    return zones.template_environment([ROOT / "templates" / "zone"]).get_template(zones.TEMPLATE_FILE)


def check(tmp_path: Path, text: str, zone: str = ZONE) -> str | None:
    require("named-checkzone")
    path = tmp_path / zones.rendered_file(zone)
    path.write_text(text)
    return bind.check_zone(zone, path)


# ---------------------------------------------------------------- ZoneSettings


def test_settings_defaults():
    s = ZoneSettings.from_toml(ZONE, "")
    assert s.name == ZONE
    assert (s.ttl, s.dynamic_ttl) == (3600, 60)
    assert (s.refresh, s.retry, s.expire, s.minimum) == (3600, 600, 1209600, 60)
    assert s.primary_ns == "ns1.dyn.example.test."
    assert s.hostmaster == "hostmaster.dyn.example.test."
    assert s.nameservers == ("ns1.dyn.example.test.",)


def test_settings_values():
    text = """
ttl = 7200
dynamic_ttl = 30
nameservers = ["ns-a.example.net.", "ns-b.example.net."]

[soa]
hostmaster = "dns-admin.example.net."
refresh = 1000
retry = 200
expire = 300000
minimum = 10
"""
    s = ZoneSettings.from_toml(ZONE, text)
    assert (s.ttl, s.dynamic_ttl) == (7200, 30)
    assert (s.refresh, s.retry, s.expire, s.minimum) == (1000, 200, 300000, 10)
    assert s.hostmaster == "dns-admin.example.net."
    assert s.nameservers == ("ns-a.example.net.", "ns-b.example.net.")
    assert s.primary_ns == "ns-a.example.net."  # the first name server, when the SOA names none


def test_settings_explicit_primary_ns():
    s = ZoneSettings.from_toml(ZONE, 'nameservers = ["ns-b.example.net."]\n[soa]\nprimary_ns = "hidden.example.net."\n')
    assert s.primary_ns == "hidden.example.net."
    assert s.nameservers == ("ns-b.example.net.",)


@pytest.mark.parametrize("text", ["ttl = ", 'ttl = "an hour"', "ttl = [1]", 'soa = "x"', "nameservers = 5"])
def test_settings_reject_broken_toml_and_values_naming_the_file(text):
    with pytest.raises(zones.SourceError, match=r"^zone\.toml: ") as info:
        ZoneSettings.from_toml(ZONE, text)
    assert info.value.file == "zone.toml"


# ---------------------------------------------------------------- dynamic.records


def test_format_dynamic_sorts_by_label_then_type():
    records = {
        ("web", "AAAA"): "2001:db8::80",
        ("a", "A"): "192.0.2.1",
        ("web", "A"): "192.0.2.80",
        ("b-2", "A"): "198.51.100.2",
        ("b", "AAAA"): "2001:db8::b",
    }
    assert format_dynamic(as_sets(records)) == (
        "a A 192.0.2.1\n"
        "b AAAA 2001:db8::b\n"
        "b-2 A 198.51.100.2\n"
        "web A 192.0.2.80\n"
        "web AAAA 2001:db8::80\n"
    )


def test_format_dynamic_is_independent_of_insertion_order():
    items = [(("h%03d" % i, t), "192.0.2.%d" % (i % 250 + 1) if t == "A" else "2001:db8::%x" % (i + 1))
             for i in range(200) for t in ("A", "AAAA")]
    assert format_dynamic(as_sets(dict(items))) == format_dynamic(as_sets(dict(reversed(items))))


def test_dynamic_round_trip():
    records = {("h%d" % i, "A"): "203.0.113.%d" % (i + 1) for i in range(50)}
    records.update({("h%d" % i, "AAAA"): "2001:db8::%x" % (i + 1) for i in range(0, 50, 3)})
    records[("xn--bcher-kva", "A")] = "10.1.2.3"
    records[("lo", "A")] = "127.0.0.1"  # a host may be allowed loopback by policy
    records = as_sets(records)
    text = format_dynamic(records)
    assert parse_dynamic(text) == records
    assert format_dynamic(parse_dynamic(text)) == text


def test_empty_dynamic_file():
    assert parse_dynamic("") == {}
    assert format_dynamic({}) == ""
    assert parse_dynamic("\n\n  \n") == {}


def test_parse_dynamic_skips_blank_lines():
    assert parse_dynamic("\na A 192.0.2.1\n\nb AAAA 2001:db8::1\n") == as_sets({
        ("a", "A"): "192.0.2.1", ("b", "AAAA"): "2001:db8::1"})


@pytest.mark.parametrize("line", [
    # wrong field count
    "a",
    "a A",
    "a A 192.0.2.1 extra",
    "a A 192.0.2.1 ; comment",
    "a 60 IN A 192.0.2.1",
    "a 060 A 192.0.2.1",
    "a 2147483648 A 192.0.2.1",
    "a  A 192.0.2.1",
    "a A  192.0.2.1",
    "a A 192.0.2.1 ",
    # bad type or data
    "a MX 192.0.2.1",
    "a a 192.0.2.1",
    "a CNAME 192.0.2.1",
    "a SOA ns1.example.org. h.example.org. 1 2 3 4 5",
    "a ANY 192.0.2.1",
    "a CNAME target",
    "a TXT hello",
    'a TXT "a" "b" ',
    'a TXT "unterminated',
    # non-canonical or bad addresses
    "a A 192.0.2.01",
    "a A 192.0.2",
    "a A 192.0.2.256",
    "a AAAA 2001:DB8::1",
    "a AAAA 2001:db8:0:0:0:0:0:1",
    "a AAAA 2001:0db8::1",
    "a A ::ffff:192.0.2.1",
    "a AAAA ::ffff:192.0.2.1",
    "a A 192.0.2.0/24",
    "a AAAA fe80::1%eth0",
    "a A 0.0.0.0",
    "a A 224.0.0.1",
    "a A 255.255.255.255",
    # type / address mismatch
    "a A 2001:db8::1",
    "a AAAA 192.0.2.1",
    # labels the service never writes
    "a..b A 192.0.2.1",
    ".a A 192.0.2.1",
    "_ TXT \"x\"",
    "a. A 192.0.2.1",
    "A A 192.0.2.1",
    "* A 192.0.2.1",
    "@ A 192.0.2.1",
    "-a A 192.0.2.1",
    "a_b A 192.0.2.1",
    "bücher A 192.0.2.1",
    "x" * 64 + " A 192.0.2.1",
    # zone-file injection attempts
    "$INCLUDE A 192.0.2.1",
    "$INCLUDE /etc/passwd",
    "$ORIGIN evil.test.",
    "a;x A 192.0.2.1",
    "a A 192.0.2.1;",
    'a" A 192.0.2.1',
    "a( A 192.0.2.1",
    "a A (192.0.2.1)",
    "a A 192.0.2.1)",
    "a\x00 A 192.0.2.1",
])
def test_parse_dynamic_rejects_bad_line(line):
    text = "ok A 192.0.2.9\n" + line + "\nzz A 192.0.2.10\n"
    with pytest.raises(BadRecordLine, match="line 2"):
        parse_dynamic(text)


def test_bad_record_line_is_an_invalid_refusal():
    with pytest.raises(errors.Invalid):
        parse_dynamic("a A nonsense\n")


# ---------------------------------------------------------------- serial_of / static_names


def test_serial_of_rendered_zone(template):
    text = shards.render_flat(template, ZoneSettings.from_toml(ZONE, ""), 4_000_000_001, STATIC, {})
    assert serial_of(text) == 4_000_000_001


@pytest.mark.parametrize("text, expected", [
    ("@ IN SOA ns1.x. h.x. ( 42 1 2 3 4 )\n", 42),
    ("@ 3600 IN SOA ns1.x. h.x. 7 1 2 3 4\n", 7),
    ("$TTL 60\n@ IN SOA ns1.x. h.x. (\n    2024010101 ; serial\n    1 2 3 4 )\n", 2024010101),
    ("; no soa here\nwww IN A 192.0.2.1\n", None),
    ("", None),
])
def test_serial_of(text, expected):
    assert serial_of(text) == expected


def test_static_owners():
    text = (
        "; comment\n"
        "$TTL 300\n"
        "WWW IN A 192.0.2.80\n"
        "    IN AAAA 2001:db8::80\n"
        "\tIN TXT \"continuation of www\"\n"
        "mail 300 IN A 192.0.2.25\n"
        "@ IN MX 10 mail\n"
        "Printer.Office IN A 10.0.0.5\n"
        "(\n"
    )
    assert static_owners(text, ZONE) == {"www": 3, "mail": 6, "@": 7, "printer.office": 8}


def test_static_owners_makes_absolute_owners_relative():
    text = (
        "Cloud.dyn.example.test. IN CNAME cloud.example.net.\n"
        "dyn.example.test. IN TXT \"apex\"\n"
        "rel IN A 192.0.2.2\n"
    )
    assert static_owners(text, ZONE) == {"cloud": 1, "@": 2, "rel": 3}


def test_static_owners_join_parentheses_and_skip_quoted_and_commented_text():
    text = (
        "txt IN TXT ( \"a ; not a comment\"\n"
        "\"$INCLUDE in a string\" ) ; $INCLUDE in a comment\n"
        "spf IN TXT \"v=spf1 \\\" -all\"\n"
        "multi IN TXT (\n"
        "quoted-inside \"x\" )\n"
    )
    assert static_owners(text, ZONE) == {"txt": 1, "spf": 3, "multi": 4}


def test_static_owners_follow_origin_inside_the_zone():
    text = "$ORIGIN office.dyn.example.test.\nprinter IN A 10.0.0.5\n@ IN TXT \"office\"\n$ORIGIN lab\nscope IN A 10.0.0.6\n"
    assert static_owners(text, ZONE) == {"printer.office": 2, "office": 3, "scope.lab.office": 5}


@pytest.mark.parametrize("text, line, needle", [
    ("www IN A 192.0.2.1\n$INCLUDE /etc/passwd\n", 2, "$INCLUDE is not allowed (only $TTL and $ORIGIN)"),
    ("$include /etc/passwd example.\n", 1, "$include is not allowed"),
    ("   $INCLUDE /etc/passwd\n", 1, "$INCLUDE is not allowed"),
    ("$GENERATE 1-250 host$ A 192.0.2.$\n", 1, "$GENERATE is not allowed"),
    ("$DATE 20260101\n", 1, "$DATE is not allowed"),
    ("a IN TXT \"unterminated\n$INCLUDE /etc/passwd\n", 2, "$INCLUDE is not allowed"),
    ("a IN TXT x\\\n$INCLUDE /etc/passwd\n", 2, "$INCLUDE is not allowed"),
    ("ok IN A 192.0.2.1\n$ORIGIN other.test.\nwww IN A 192.0.2.2\n", 2, "$ORIGIN other.test. is outside the zone"),
    ("$ORIGIN example.test.\n", 1, "outside the zone dyn.example.test."),
    ("$ORIGIN\n", 1, "$ORIGIN without a name"),
    ("www.example.net. IN A 192.0.2.1\n", 1, "the name www.example.net. is outside the zone"),
    ("xdyn.example.test. IN A 192.0.2.1\n", 1, "outside the zone"),
    (". IN NS a.root-servers.net.\n", 1, "the name . is outside the zone"),
])
def test_static_owners_refuse_what_named_would_read_elsewhere_or_drop(text, line, needle):
    with pytest.raises(zones.SourceError) as info:
        static_owners(text, ZONE)
    assert (info.value.file, info.value.line) == (zones.STATIC_FILE, line)
    assert str(info.value).startswith(f"static.zone:{line}: ") and needle in str(info.value), str(info.value)


def test_check_host_names_refuses_a_static_record_on_a_host_name():
    source = zones.ZoneSource(ZoneSettings(ZONE), "", {"www": 1, "vm": 4, "mail": 2})
    zones.check_host_names(source, {"other", "www.deeper"})
    with pytest.raises(zones.SourceError, match=r"^static\.zone:2: mail, vm: the name of a registered host"):
        zones.check_host_names(source, {"vm", "mail", "x"})


def test_zone_source_reserves_static_names(tmp_path):
    zone_dir = tmp_path / ZONE
    zone_dir.mkdir()
    (zone_dir / zones.SETTINGS_FILE).write_text("dynamic_ttl = 30\n")
    (zone_dir / zones.STATIC_FILE).write_text("www IN A 192.0.2.80\nvpn.dyn.example.test. IN CNAME x.example.net.\n")
    (tmp_path / "not-a-zone").mkdir()
    source = zones.ZoneSource.read(zone_dir)
    assert source.settings.name == ZONE
    assert source.settings.dynamic_ttl == 30
    assert {"www", "vpn", "@"} <= source.reserved
    assert zones.list_zones(tmp_path) == [ZONE]


def test_zone_source_refuses_a_zone_template(tmp_path):
    """A template in the zones repository is code pushed by admins: refused, never parsed."""
    zone_dir = tmp_path / ZONE
    zone_dir.mkdir()
    (zone_dir / zones.SETTINGS_FILE).write_text("")
    (zone_dir / zones.TEMPLATE_FILE).write_text("{{ cycler.__init__.__globals__.os.system('false') }}\n")
    with pytest.raises(zones.SourceError, match=r"^zone\.j2: per-zone templates are not supported") as info:
        zones.ZoneSource.read(zone_dir)
    assert (info.value.file, info.value.line) == (zones.TEMPLATE_FILE, None)


# ---------------------------------------------------------------- render_zone + named-checkzone


def test_rendered_zone_is_valid_for_named_checkzone(template, tmp_path):
    settings = ZoneSettings.from_toml(ZONE, "dynamic_ttl = 45\n")
    dynamic = {("web", "AAAA"): "2001:db8::80", ("b", "A"): "192.0.2.2", ("a", "A"): "192.0.2.1",
               ("xn--bcher-kva", "A"): "10.0.0.7"}
    text = shards.render_flat(template, settings, 1_700_000_123, STATIC, as_sets(dynamic))
    assert check(tmp_path, text) is None
    assert serial_of(text) == 1_700_000_123
    assert f"$ORIGIN {ZONE}.\n" in text
    assert "ns1 IN A 192.0.2.53\n" in text  # static text verbatim
    body = text.split("; dynamic records", 1)[1].splitlines()[1:]
    assert body[0] == f"$ORIGIN {ZONE}."  # re-set, whatever static.zone did to $ORIGIN
    assert body[1] == "$TTL 45" and body[-1] == "$TTL 3600"  # the dynamic TTL for the shards' lines, then back
    assert sorted(line for line in body[2:-1] if line) == [
        "a A 192.0.2.1",
        "b A 192.0.2.2",
        "web AAAA 2001:db8::80",
        "xn--bcher-kva A 10.0.0.7",
    ]
    served = gitops.zone_records(text, ZONE)
    assert served[("a", "A")] == ("45 192.0.2.1",) and served[("web", "AAAA")] == ("45 2001:db8::80",)
    assert served[("ns1", "A")] == ("3600 192.0.2.53",)


@pytest.mark.parametrize("serial", [0, 1, 2**31, 2**32 - 1])
def test_rendered_zone_valid_at_serial_extremes(template, tmp_path, serial):
    text = shards.render_flat(template, ZoneSettings.from_toml(ZONE, ""), serial, STATIC, {})
    assert check(tmp_path, text) is None
    assert serial_of(text) == serial


def test_rendered_zone_with_external_nameservers_and_no_static(template, tmp_path):
    settings = ZoneSettings.from_toml(ZONE, 'nameservers = ["ns-a.example.net.", "ns-b.example.net."]\n')
    text = shards.render_flat(template, settings, 5, "", as_sets({("h", "A"): "192.0.2.1"}))
    assert check(tmp_path, text) is None
    assert "@ IN NS ns-a.example.net.\n" in text and "@ IN NS ns-b.example.net.\n" in text


def test_static_text_without_final_newline_does_not_swallow_dynamic_records(template, tmp_path):
    text = shards.render_flat(template, ZoneSettings.from_toml(ZONE, ""), 9, "ns1 IN A 192.0.2.53 ; glue",
                             as_sets({("a", "A"): "192.0.2.1"}))
    assert check(tmp_path, text) is None
    assert "\na A 192.0.2.1\n" in text
    assert gitops.zone_records(text, ZONE)[("a", "A")] == ("60 192.0.2.1",)


@pytest.mark.parametrize("static, needle", [
    ("ns1 IN A 192.0.2.53\nbad IN A 192.0.2.999\n", "bad dotted quad"),
    ("ns1 IN A 192.0.2.53\nopen IN TXT ( \"never closed\"\n", "unbalanced parentheses"),
    ("ns1 IN A 192.0.2.53\nwww IN CNAME a.example.net.\nwww IN A 192.0.2.80\n", "CNAME and other data"),
    ("ns1 IN BOGUS 1\n", "BOGUS"),
])
def test_broken_static_text_gets_a_message(template, tmp_path, static, needle):
    text = shards.render_flat(template, ZoneSettings.from_toml(ZONE, ""), 10, static, {})
    message = check(tmp_path, text)
    assert isinstance(message, str)
    assert needle in message
    assert re.search(re.escape(zones.rendered_file(ZONE)) + r":\d+", message)  # names the file and line


def test_missing_glue_for_in_zone_nameserver_is_reported(template, tmp_path):
    text = shards.render_flat(template, ZoneSettings.from_toml(ZONE, ""), 11, "", {})
    assert "has no address records" in check(tmp_path, text)  # ns1.dyn.example.test


def test_dynamic_record_on_a_static_cname_breaks_the_zone(template, tmp_path):
    # Why static owner names are reserved for hosts.
    static = "ns1 IN A 192.0.2.53\ncloud IN CNAME cloud.example.net.\n"
    text = shards.render_flat(template, ZoneSettings.from_toml(ZONE, ""), 12, static, as_sets({("cloud", "A"): "192.0.2.1"}))
    assert "CNAME and other data" in check(tmp_path, text)
    assert "cloud" in static_owners(static, ZONE)


def test_template_environment_is_strict(tmp_path):
    (tmp_path / "zone.j2").write_text("{{ zone.name }} {{ typo }}\n")
    env = zones.template_environment([tmp_path])
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("zone.j2").render(zone=ZoneSettings(ZONE))
    # no HTML escaping in zone files
    (tmp_path / "t.j2").write_text("{{ static }}")
    assert env.get_template("t.j2").render(static='a IN TXT "x<y&z"') == 'a IN TXT "x<y&z"'


def test_parse_dynamic_refuses_a_duplicate_rr_and_mixed_ttls_of_one_rrset():
    with pytest.raises(zones.BadRecordLine, match="line 2: web A 192.0.2.1 twice"):
        zones.parse_dynamic("web A 192.0.2.1\nweb A 192.0.2.1\n")
    with pytest.raises(zones.BadRecordLine, match="line 2: the lines of web A carry different TTLs"):
        zones.parse_dynamic("web 300 A 192.0.2.1\nweb A 192.0.2.2\n")
    with pytest.raises(zones.BadRecordLine, match="line 2: the lines of web A carry different TTLs"):
        zones.parse_dynamic("web 300 A 192.0.2.1\nweb 60 A 192.0.2.2\n")


def test_rrsets_with_several_rrs_ttls_and_txt_round_trip():
    records = {
        ("web", "A"): RecordSet(("192.0.2.1", "192.0.2.2")),
        ("web", "AAAA"): RecordSet(("2001:db8::1",), 300),
        ("_acme-challenge.web", "TXT"): RecordSet(('"a b c"', '"quote \\" and ; semicolon"', '"two" "strings"'), 5),
        ("alias", "CNAME"): RecordSet(("web.dyn.example.org.",)),
    }
    text = format_dynamic(records)
    assert text == ('_acme-challenge.web 5 TXT "a b c"\n'
                    '_acme-challenge.web 5 TXT "quote \\" and ; semicolon"\n'
                    '_acme-challenge.web 5 TXT "two" "strings"\n'
                    "alias CNAME web.dyn.example.org.\n"
                    "web A 192.0.2.1\n"
                    "web A 192.0.2.2\n"
                    "web 300 AAAA 2001:db8::1\n")
    assert parse_dynamic(text) == records
    assert format_dynamic(parse_dynamic(text)) == text


def test_an_old_dynamic_file_loads_unchanged():
    old = "a A 192.0.2.1\nb AAAA 2001:db8::1\nweb A 198.51.100.80\nweb AAAA 2001:db8::80\n"
    records = parse_dynamic(old)
    assert records[("web", "A")] == RecordSet(("198.51.100.80",), None)  # None: the zone's dynamic_ttl
    assert format_dynamic(records) == old


def test_rendered_rrsets_carry_their_own_ttl_or_the_zones(tmp_path, template):
    require("named-checkzone")
    dynamic = {("web", "A"): RecordSet(("192.0.2.1", "192.0.2.2")), ("web", "TXT"): RecordSet(('"a b"',), 300)}
    text = shards.render_flat(template, ZoneSettings.from_toml(ZONE, "dynamic_ttl = 45\n"), 7, STATIC, dynamic)
    assert "web A 192.0.2.1\nweb A 192.0.2.2\nweb 300 TXT \"a b\"\n" in text
    served = gitops.zone_records(text, ZONE)
    assert served[("web", "A")] == ("45 192.0.2.1", "45 192.0.2.2") and served[("web", "TXT")] == ('300 "a b"',)
    assert check(tmp_path, text) is None


@pytest.mark.parametrize("rdata", ["010.0.0.1", "1.2.3", "192.0.2.1 ", "::ffff:192.0.2.1", "192.0.2.256", "0x7f.0.0.1"])
def test_a_lines_without_canonical_dotted_quads_are_refused(rdata):
    with pytest.raises(BadRecordLine, match="line 1"):
        parse_dynamic(f"h A {rdata}\n")
    assert parse_dynamic("h A 127.0.0.1\nh A 10.0.0.1\n") == {("h", "A"): RecordSet(("10.0.0.1", "127.0.0.1"))}
