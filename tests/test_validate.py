"""ddns.validate: the gate every hostname and address passes before it can
reach the store, the publisher or a zone-file template."""
import ipaddress

import pytest

from ddns import errors
from ddns.validate import (
    AddressPolicy,
    InvalidAddress,
    InvalidName,
    normalize_name,
    parse_address,
    record_type,
    split_host,
)

# ---------------------------------------------------------------- normalize_name


@pytest.mark.parametrize("raw, expected", [
    ("MyVM.Dyn.Example.Test", "myvm.dyn.example.test"),
    ("myvm.dyn.example.test.", "myvm.dyn.example.test"),
    ("MYVM.DYN.EXAMPLE.TEST.", "myvm.dyn.example.test"),
    ("a-b-c.example.test", "a-b-c.example.test"),
    ("0x1.example.test", "0x1.example.test"),
    ("xn--bcher-kva.example.test", "xn--bcher-kva.example.test"),
    ("a", "a"),
])
def test_normalize_name_canonical_form(raw, expected):
    assert normalize_name(raw) == expected


def test_normalize_name_is_idempotent():
    once = normalize_name("Bücher.Example.Test.")
    assert normalize_name(once) == once


@pytest.mark.parametrize("raw, expected", [
    ("bücher.example.test", "xn--bcher-kva.example.test"),
    ("BÜCHER.example.test", "xn--bcher-kva.example.test"),
    ("münchen.example.test.", "xn--mnchen-3ya.example.test"),
    ("例え.example.test", "xn--r8jz45g.example.test"),
])
def test_normalize_name_idn_becomes_punycode(raw, expected):
    result = normalize_name(raw)
    assert result == expected
    assert result.isascii()


@pytest.mark.parametrize("raw, expected", [
    ("faß.example.test", "xn--fa-hia.example.test"),       # IDNA 2003 made it "fass", another name
    ("FASS.example.test", "fass.example.test"),
    ("ß.example.test", "xn--zca.example.test"),
    ("σίσυφος.example.test", "xn--kxa6ajbbmh.example.test"),  # final sigma kept (IDNA 2003: σ)
    ("Ｂücher.example.test", "xn--bcher-kva.example.test"),   # UTS 46 maps full-width letters
    ("XN--FA-HIA.example.test", "xn--fa-hia.example.test"),
    ("xn--fa-hia.example.test", "xn--fa-hia.example.test"),
    ("xn--r8jz45g.example.test", "xn--r8jz45g.example.test"),
])
def test_normalize_name_follows_idna_2008_with_uts46(raw, expected):
    assert normalize_name(raw) == expected


def test_a_label_and_its_u_label_are_one_name():
    assert normalize_name("faß.example.test") == normalize_name("xn--fa-hia.example.test")
    assert normalize_name("faß.example.test") != normalize_name("fass.example.test")


@pytest.mark.parametrize("bad", [
    "a\u200db.example.test",            # zero-width joiner outside its context (IDNA 2003 dropped it)
    "a\u200cb.example.test",            # zero-width non-joiner
    "xn--abc.example.test",             # not punycode of anything valid
    "xn--a.example.test",
    "xn--zz-zzzz.example.test",
    "xn--bcher-kva-.example.test",
    "xn--ab-8tb.example.test",          # "a\u0301b": not in NFC, so not what encoding gives
    "xn--53h.example.test",             # a symbol (U+2615), DISALLOWED in IDNA 2008
    "\u263a.example.test",
    "h\u202e.example.test",             # right-to-left override
    "\u0627b.example.test",             # bidi rule: Arabic letter then Latin
])
def test_normalize_name_refuses_invalid_international_labels(bad):
    with pytest.raises(InvalidName):
        normalize_name(bad)


@pytest.mark.parametrize("bad", [
    "",
    ".",
    "*.example.test",
    "*",
    "a*b.example.test",
    "a..b.example.test",
    "..",
    ".example.test",
    "example.test..",
    "_acme-challenge.example.test",
    "a_b.example.test",
    "a b.example.test",
    " a.example.test",
    "a.example.test ",
    "a\tb.example.test",
    "a\nb.example.test",
    "a.example.test\n",
    "myvm\n.dyn.example.test",
    "a.b\n.example.test",
    "a\n",
    "a.example.test\r\nevil IN A 192.0.2.1",
    "a\x00b.example.test",
    "a;b.example.test",
    "a.example.test; comment",
    "$INCLUDE",
    "$INCLUDE /etc/passwd",
    "$ORIGIN.example.test",
    '"quoted".example.test',
    "a'b.example.test",
    "a(b.example.test",
    "a).example.test",
    "(a)",
    "a@b.example.test",
    "@",
    "a/b.example.test",
    "a\\b.example.test",
    "-a.example.test",
    "a-.example.test",
    "-.example.test",
    "a." + "b" * 64 + ".example.test",
    "xn--.example.test",
])
def test_normalize_name_refuses(bad):
    with pytest.raises(InvalidName):
        normalize_name(bad)


@pytest.mark.parametrize("bad", [None, 42, b"a.example.test"])
def test_normalize_name_refuses_non_strings(bad):
    with pytest.raises(InvalidName):
        normalize_name(bad)


def test_label_of_63_chars_is_accepted_and_64_refused():
    assert normalize_name("a" * 63 + ".example.test") == "a" * 63 + ".example.test"
    with pytest.raises(InvalidName):
        normalize_name("a" * 64 + ".example.test")


def test_name_of_253_chars_is_accepted_and_254_refused():
    name_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name_253) == 253
    assert normalize_name(name_253) == name_253
    assert normalize_name(name_253 + ".") == name_253  # the root dot does not count
    name_254 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])
    with pytest.raises(InvalidName):
        normalize_name(name_254)


def test_huge_name_is_refused_quickly():
    with pytest.raises(InvalidName):
        normalize_name("a." * 100_000)


def test_idn_that_gets_too_long_after_punycode_is_refused():
    # 60 "ü" fit in 63 characters as Unicode but not as punycode.
    with pytest.raises(InvalidName):
        normalize_name("ü" * 60 + ".example.test")


def test_invalid_name_is_an_invalid_refusal_not_a_value_error():
    with pytest.raises(errors.Invalid, match="label") as info:
        normalize_name("a_b.example.test")
    assert not isinstance(info.value, ValueError)  # a ValueError from our own code is a bug, not "invalid input"


# ---------------------------------------------------------------- split_host

ZONES = frozenset({"example.test", "dyn.example.test", "v6.dyn.example.test"})


@pytest.mark.parametrize("fqdn, expected", [
    ("myvm.dyn.example.test", ("myvm", "dyn.example.test")),
    ("web.example.test", ("web", "example.test")),
    ("a.v6.dyn.example.test", ("a", "v6.dyn.example.test")),
    ("adyn.example.test", ("adyn", "example.test")),
])
def test_split_host_longest_zone_wins(fqdn, expected):
    assert split_host(fqdn, ZONES) == expected


def test_split_host_does_not_depend_on_zone_order():
    for zones in (["example.test", "dyn.example.test"], ["dyn.example.test", "example.test"]):
        assert split_host("h.dyn.example.test", set(zones)) == ("h", "dyn.example.test")


@pytest.mark.parametrize("apex", ["example.test", "dyn.example.test", "v6.dyn.example.test"])
def test_split_host_refuses_every_zone_apex(apex):
    # Also the apex of a nested zone: "dyn" is not a host of example.test when
    # dyn.example.test is a zone of its own (the record would be occluded).
    with pytest.raises(InvalidName):
        split_host(apex, ZONES)


@pytest.mark.parametrize("fqdn", ["a.b.dyn.example.test", "a.b.c.example.test", "x.y.v6.dyn.example.test"])
def test_split_host_refuses_deeper_names(fqdn):
    with pytest.raises(InvalidName, match="one label"):
        split_host(fqdn, ZONES)


@pytest.mark.parametrize("fqdn", ["a.other.test", "test", "a.example.testx", "a.xexample.test", "example.test.evil"])
def test_split_host_refuses_foreign_zones(fqdn):
    with pytest.raises(InvalidName):
        split_host(fqdn, ZONES)


def test_split_host_with_no_zones():
    with pytest.raises(InvalidName):
        split_host("a.example.test", frozenset())


# ---------------------------------------------------------------- parse_address

STRICT = AddressPolicy(allow_private=False, allow_loopback=False)
LOOPBACK_OK = AddressPolicy(allow_loopback=True)


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.1", ipaddress.IPv4Address("192.0.2.1")),
    ("8.8.8.8", ipaddress.IPv4Address("8.8.8.8")),
    ("2001:db8::1", ipaddress.IPv6Address("2001:db8::1")),
    ("2606:4700:4700::1111", ipaddress.IPv6Address("2606:4700:4700::1111")),
    ("2001:DB8:0:0:0:0:0:1", ipaddress.IPv6Address("2001:db8::1")),
])
def test_parse_address_accepts_public_addresses(text, expected):
    assert parse_address(text) == expected


def test_parse_address_canonical_text_of_ipv6():
    assert str(parse_address("2001:0DB8:0000:0000:0000:0000:0000:0001")) == "2001:db8::1"


@pytest.mark.parametrize("text, expected", [
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("::FFFF:198.51.100.7", "198.51.100.7"),
    ("::ffff:c000:0201", "192.0.2.1"),
])
def test_ipv4_mapped_ipv6_becomes_ipv4(text, expected):
    addr = parse_address(text)
    assert isinstance(addr, ipaddress.IPv4Address)
    assert str(addr) == expected
    assert record_type(addr) == "A"


def test_ipv4_mapped_loopback_and_private_follow_the_ipv4_policy():
    with pytest.raises(InvalidAddress):
        parse_address("::ffff:127.0.0.1")
    with pytest.raises(InvalidAddress):
        parse_address("::ffff:10.1.2.3", STRICT)
    with pytest.raises(InvalidAddress):
        parse_address("::ffff:0.0.0.0")
    with pytest.raises(InvalidAddress):
        parse_address("::ffff:224.0.0.1")


@pytest.mark.parametrize("text", [
    "fe80::1%eth0",
    "2001:db8::1%1",
    "192.0.2.0/24",
    "192.0.2.1/32",
    "2001:db8::/32",
    " 192.0.2.1",
    "192.0.2.1 ",
    "\t192.0.2.1",
    "192.0.2.1\n",
    "192.0.2.1\r\n",
    "192.0.2.1;",
    "192.0.2.1 ; comment",
    "192.0.2.1\nevil IN A 192.0.2.2",
    '"192.0.2.1"',
    "(192.0.2.1)",
    "$INCLUDE",
    "192.0.2.01",
    "192.0.2",
    "192.0.2.256",
    "1.2.3.4.5",
    "0x7f.0.0.1",
    "3221225985",
    "2001:db8::1::2",
    "2001:db8:::1",
    "[2001:db8::1]",
    "example.test",
    "",
])
def test_parse_address_refuses_malformed(text):
    with pytest.raises(InvalidAddress):
        parse_address(text)


@pytest.mark.parametrize("bad", [None, 3221225985, b"192.0.2.1"])
def test_parse_address_refuses_non_strings(bad):
    with pytest.raises(InvalidAddress):
        parse_address(bad)


def test_parse_address_refuses_too_long_input():
    with pytest.raises(InvalidAddress):
        parse_address("1" * 46)
    with pytest.raises(InvalidAddress):
        parse_address("2001:db8::1" + " " * 10_000)
    with pytest.raises(InvalidAddress):
        parse_address("0" * 1_000_000)


def test_parse_address_accepts_the_longest_real_ipv6_text():
    text = "2001:0db8:aaaa:bbbb:cccc:dddd:198.151.100.127"
    assert len(text) == 45
    assert str(parse_address(text)) == "2001:db8:aaaa:bbbb:cccc:dddd:c697:647f"


@pytest.mark.parametrize("text, why", [
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff05::1:3", "multicast"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("240.0.0.1", "reserved"),
    ("250.1.2.3", "reserved"),
    ("255.255.255.255", "reserved"),
    ("0.1.2.3", "unspecified"),       # "this network", 0.0.0.0/8
    ("fec0::1", "site-local"),        # deprecated site-local
])
def test_parse_address_never_accepts_unroutable(text, why):
    for policy in (AddressPolicy(), STRICT, AddressPolicy(allow_private=True, allow_loopback=True)):
        with pytest.raises(InvalidAddress, match=why):
            parse_address(text, policy)


@pytest.mark.parametrize("text", ["127.0.0.1", "127.1.2.3", "::1"])
def test_loopback_refused_by_default_and_allowed_by_policy(text):
    with pytest.raises(InvalidAddress, match="loopback"):
        parse_address(text)
    assert parse_address(text, LOOPBACK_OK) == ipaddress.ip_address(text)
    # loopback is allowed even when private addresses are not
    assert parse_address(text, AddressPolicy(allow_private=False, allow_loopback=True)) == ipaddress.ip_address(text)


@pytest.mark.parametrize("text", ["10.0.0.1", "172.16.5.4", "192.168.1.1", "fd00::1", "fc12:3456::1",
                                  "100.64.1.1"])  # carrier-grade NAT is not global either
def test_private_allowed_by_default_and_refused_by_policy(text):
    assert parse_address(text) == ipaddress.ip_address(text)
    with pytest.raises(InvalidAddress, match="private"):
        parse_address(text, STRICT)


@pytest.mark.parametrize("text", [
    "192.0.2.1", "192.0.2.255", "198.51.100.7", "203.0.113.9", "2001:db8::1", "2001:db8:ffff::1",
])
def test_documentation_ranges_always_allowed(text):
    for policy in (AddressPolicy(), STRICT):
        assert parse_address(text, policy) == ipaddress.ip_address(text)


def test_default_policy_values():
    assert AddressPolicy() == AddressPolicy(allow_private=True, allow_loopback=False)


# ---------------------------------------------------------------- record_type


def test_record_type():
    assert record_type(ipaddress.IPv4Address("192.0.2.1")) == "A"
    assert record_type(ipaddress.IPv6Address("2001:db8::1")) == "AAAA"
    assert record_type(parse_address("::ffff:192.0.2.1")) == "A"
