"""Property tests (hypothesis) for the pure parsers and renderers.

Every function here meets hostile text from the network or from a human's
commit; the properties say what may come out (a clear, typed refusal or a
canonical value) for ANY input, and that the renderers' output is always
well-formed (named-checkzone, dnspython, tomllib, shlex, YAML).

Profiles: ``ci`` (the default: few examples, derandomized, so a CI run is
short and repeatable) and ``dev`` (many examples, random): choose with
``DDNS_FUZZ_PROFILE=dev``; ``DDNS_FUZZ_EXAMPLES=N`` overrides the number of
examples of either profile.
"""
from __future__ import annotations

import base64
import ipaddress
import os
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import dns.exception
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from conftest import require
from recordsets import as_sets
from ddns import bind, clientconfigs, config as configmod, dyndns2, gitops, records as records_mod, shards, web, zones, zonetoml
from ddns.validate import (AddressPolicy, InvalidAddress, InvalidName, MAX_NAME_LENGTH, normalize_name,
                           parse_address, split_host)

settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=5000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("DDNS_FUZZ_PROFILE", "ci"))
if os.environ.get("DDNS_FUZZ_EXAMPLES"):
    settings.register_profile("override", settings(max_examples=int(os.environ["DDNS_FUZZ_EXAMPLES"])))
    settings.load_profile("override")

# Properties that run a process or write a file per example get a quarter of the examples;
# near misses, one test per character, a tenth.
slow = settings(max_examples=max(20, settings.default.max_examples // 4))
near = settings(max_examples=max(10, settings.default.max_examples // 10))

REPO = Path(__file__).resolve().parent.parent
ZONE = "dyn.example.test"
STRICT_NAME = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)\Z")

# ---- strategies -------------------------------------------------------------------------------
# Text that looks like what reaches the parsers: DNS-ish characters, zone-file and shell
# syntax, whitespace and control characters, non-ASCII letters; plus anything at all.
HOSTILE_CHARS = "abcxyzXYZ019-._*@$;()\"'\\ \t\n\r\x00\x7f%/:,=&#{}[]<>`|éß\u00e9\u202e\u3002\uff0e"
hostile_text = st.one_of(st.text(alphabet=HOSTILE_CHARS, max_size=80), st.text(max_size=80))
label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
ldh_name = st.lists(label, min_size=1, max_size=5).map(".".join)


NEAR_MISS_CHARS = "\n\r\x00 \t.-*_\"';$%\\/:,@é\u3002\u202e"


def one_char_off(valid: st.SearchStrategy, chars: str = NEAR_MISS_CHARS) -> st.SearchStrategy:
    """A valid value with one of CHARS put in, often at an edge: the near misses a check must refuse."""
    @st.composite
    def near_miss(draw) -> str:
        text = draw(valid)
        edges = [0, len(text)] + [i + d for i, c in enumerate(text) if c in ".:/" for d in (0, 1)]
        at = draw(st.one_of(st.sampled_from(edges), st.integers(0, len(text))))
        return text[:at] + draw(st.sampled_from(chars)) + text[at:]
    return near_miss()


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
ip = st.one_of(ipv4, ipv6)
address_text = st.one_of(ip.map(str), hostile_text, one_char_off(ip.map(str)),
                         st.builds(lambda a, s: str(a) + s, ip, hostile_text))
policy = st.builds(AddressPolicy, st.booleans(), st.booleans())


def published_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses the service may publish at all (the same for every policy)."""
    if addr.is_multicast or addr.is_unspecified or addr.is_link_local or (addr.version == 6 and addr.is_site_local) \
            or (addr.version == 4 and addr.packed[0] == 0):
        return False
    return addr.is_loopback or not (addr.is_reserved or str(addr) == "255.255.255.255")


# ---- ddns/validate.py -------------------------------------------------------------------------
@given(st.one_of(hostile_text, ldh_name, one_char_off(ldh_name), st.builds(lambda n, s: n + s, ldh_name, hostile_text)))
def test_normalize_name_gives_a_canonical_ldh_name_or_refuses(text):
    check_normalized(text)


@pytest.mark.parametrize("char", NEAR_MISS_CHARS)
@near
@given(data=st.data())
def test_normalize_name_refuses_near_misses(char, data):
    check_normalized(data.draw(one_char_off(ldh_name, char)))


def check_normalized(text: str) -> None:
    try:
        name = normalize_name(text)
    except InvalidName:
        return
    assert STRICT_NAME.match(name), name
    assert len(name) <= MAX_NAME_LENGTH
    assert normalize_name(name) == name
    assert normalize_name(name.upper() + ".") == name


@given(ldh_name)
def test_normalize_name_keeps_ldh_names(name):
    assume(len(name) <= MAX_NAME_LENGTH)
    assert normalize_name(name) == name
    assert normalize_name(name.upper() + ".") == name


@given(address_text, policy)
def test_parse_address_gives_a_publishable_address_or_refuses(text, pol):
    check_parsed_address(text, pol)


@pytest.mark.parametrize("char", NEAR_MISS_CHARS)
@near
@given(data=st.data(), pol=policy)
def test_parse_address_refuses_near_misses(char, data, pol):
    check_parsed_address(data.draw(one_char_off(ip.map(str), char)), pol)


def check_parsed_address(text: str, pol: AddressPolicy) -> None:
    try:
        addr = parse_address(text, pol)
    except InvalidAddress:
        return
    assert published_address(addr)
    assert isinstance(addr, ipaddress.IPv4Address) or addr.ipv4_mapped is None
    assert pol.allow_loopback or not addr.is_loopback
    assert parse_address(str(addr), pol) == addr
    given_addr = ipaddress.ip_address(text)
    assert addr == (getattr(given_addr, "ipv4_mapped", None) or given_addr)


@given(ip, policy)
def test_parse_address_accepts_exactly_what_the_policy_allows(addr, pol):
    plain = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped else addr
    documentation = any(plain in n for n in (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network(
        "198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32"))
        if n.version == plain.version)
    allowed = published_address(plain) and (
        (plain.is_loopback and pol.allow_loopback)
        or (not plain.is_loopback and (plain.is_global or documentation or pol.allow_private)))
    try:
        assert parse_address(str(addr), pol) == plain and allowed
    except InvalidAddress:
        assert not allowed


zone_sets = st.sets(ldh_name, min_size=1, max_size=4)


@given(st.one_of(ldh_name, hostile_text, one_char_off(ldh_name)), zone_sets)
@example(".0", {"0"})  # an empty label in front of a zone is no host
def test_split_host_finds_one_label_below_the_longest_zone(fqdn, zone_set):
    try:
        host, zone = split_host(fqdn, zone_set)
    except InvalidName:
        return
    assert zone in zone_set and f"{host}.{zone}" == fqdn and "." not in host and host
    assert not any(fqdn.endswith("." + z) and len(z) > len(zone) for z in zone_set)


@given(label, zone_sets)
def test_split_host_accepts_a_label_in_a_zone(host, zone_set):
    zone = max(zone_set, key=len)
    assume(not any(f"{host}.{zone}".endswith("." + z) and len(z) > len(zone) for z in zone_set))
    assume(f"{host}.{zone}" not in zone_set)
    assert split_host(f"{host}.{zone}", zone_set) == (host, zone)


# ---- ddns/dyndns2.py --------------------------------------------------------------------------
params = st.dictionaries(st.sampled_from(["myip", "myipv6", "hostname", "system", "x"]),
                         st.lists(st.one_of(address_text, st.lists(address_text, max_size=3).map(",".join),
                                            st.text(alphabet="1", min_size=1000, max_size=1100)), max_size=3),
                         max_size=4)


@given(params, address_text, policy)
def test_parse_addresses_gives_one_address_per_family_or_an_answer_code(query, client, pol):
    try:
        addresses = dyndns2.parse_addresses(query, client, pol)
    except dyndns2.BadRequest as exc:
        assert exc.code == "badip"
        return
    assert 1 <= len(addresses) <= 2
    assert [a.version for a in addresses] == sorted({a.version for a in addresses})
    for addr in addresses:
        assert parse_address(str(addr), pol) == addr


@given(params, st.one_of(ldh_name, hostile_text), st.integers(1, 30))
def test_parse_hostnames_stays_within_max_hosts(query, username, max_hosts):
    try:
        names = dyndns2.parse_hostnames(query, username, max_hosts)
    except dyndns2.BadRequest as exc:
        assert exc.code in ("numhost", "notfqdn")
        return
    assert 1 <= len(names) <= max_hosts
    if not query.get("hostname") or not query["hostname"][0]:
        assert names == [username]
    assert all(n == n.strip() for n in names[1:] if query.get("hostname"))


# ---- ddns/zones.py and gitops.zone_records ------------------------------------------------------
# Addresses a host may hold: IPv4 below 224.0.0.0 minus the refused ranges, IPv6 from 2000::/3 and fc00::/7
# (random 128-bit values are nearly all reserved, and a filter would throw them all away).
record_ipv4 = st.integers(1 << 24, 0xDFFFFFFF).map(ipaddress.IPv4Address).filter(published_address)
record_ipv6 = st.one_of(st.integers(0, 2**125 - 1).map(lambda n: ipaddress.IPv6Address((1 << 125) | n)),
                        st.integers(0, 2**121 - 1).map(lambda n: ipaddress.IPv6Address((0x7E << 121) | n)))
dynamic_records = st.dictionaries(
    st.tuples(label.filter(lambda x: x != "www"), st.sampled_from(["A", "AAAA"])),
    st.none(), max_size=12,
).flatmap(lambda keys: st.fixed_dictionaries(
    {k: (record_ipv4 if k[1] == "A" else record_ipv6).map(str) for k in keys}))


@given(dynamic_records)
def test_dynamic_records_round_trip(records):
    text = zones.format_dynamic(as_sets(records))
    assert zones.parse_dynamic(text) == as_sets(records)
    assert text.splitlines() == sorted(text.splitlines(), key=lambda ln: (ln.split()[0], ln.split()[1]))


@given(st.lists(st.one_of(hostile_text, st.builds(lambda a, b, c: f"{a} {b} {c}", st.one_of(label, hostile_text),
                                                   st.sampled_from(["A", "AAAA", "TXT", "a"]), address_text)),
                max_size=6).map("\n".join) | one_char_off(dynamic_records.map(lambda r: zones.format_dynamic(as_sets(r)))))
def test_parse_dynamic_refuses_what_the_service_would_not_write(text):
    try:
        records = zones.parse_dynamic(text)
    except zones.BadRecordLine:
        return
    assert zones.parse_dynamic(zones.format_dynamic(records)) == records
    for (host, rtype), rs in records.items():
        assert all(STRICT_NAME.match(part.removeprefix("_")) for part in host.split("."))  # _acme-challenge.x
        for rdata in rs.rdatas:
            if rtype in ("A", "AAAA"):
                assert str(ipaddress.ip_address(rdata)) == rdata
            else:  # any other type: canonical, one line, nothing zone-file syntax could read otherwise
                assert records_mod.canonical(rtype, rdata) == rdata and "\n" not in rdata


STATIC = "www 3600 IN A 192.0.2.80\n@ IN MX 10 mail.example.org.\n@ IN TXT \"v=spf1 -all\"\n"
zone_settings = st.builds(
    zones.ZoneSettings, name=st.just(ZONE), ttl=st.integers(0, 2**31 - 1), dynamic_ttl=st.integers(0, 2**31 - 1),
    primary_ns=st.just(f"ns1.{ZONE}."), hostmaster=st.just(f"hostmaster.{ZONE}."),
    refresh=st.integers(0, 2**31 - 1), retry=st.integers(0, 2**31 - 1), expire=st.integers(0, 2**31 - 1),
    minimum=st.integers(0, 2**31 - 1),
    nameservers=st.lists(label.map(lambda n: n + ".example.net."), min_size=1, max_size=3, unique=True).map(tuple))
TEMPLATE = zones.template_environment([REPO / "templates" / "zone"]).get_template(zones.TEMPLATE_FILE)


@slow
@given(zone_settings, st.integers(1, 2**32 - 1), dynamic_records)
def test_rendered_zone_passes_named_checkzone_and_holds_exactly_its_records(tmp_path_factory, zone, serial, records):
    text = shards.render_flat(TEMPLATE, zone, serial, STATIC, as_sets(records))
    assert zones.serial_of(text) == serial
    path = tmp_path_factory.mktemp("zone") / "z.zone"
    path.write_text(text)
    require("named-checkzone")
    assert bind.check_zone(ZONE, path) is None, text
    found = gitops.zone_records(text, ZONE)
    expected = {(h, t): (f"{zone.dynamic_ttl} {a}",) for (h, t), a in records.items()}
    expected[("www", "A")] = ("3600 192.0.2.80",)
    expected[("@", "MX")] = (f"{zone.ttl} 10 mail.example.org.",)
    expected[("@", "TXT")] = (f'{zone.ttl} "v=spf1 -all"',)
    expected[("@", "NS")] = tuple(sorted(f"{zone.ttl} {ns}" for ns in zone.nameservers))
    assert found == expected


@given(hostile_text.map(lambda t: f"$ORIGIN {ZONE}.\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\n" + t))
def test_zone_records_refuses_with_a_dns_error(text):
    try:
        gitops.zone_records(text, ZONE)
    except dns.exception.DNSException:
        pass


owner = st.one_of(label, st.just("@"), label.map(lambda x: f"{x}.{ZONE}."), st.just(f"{ZONE}."),
                  label.map(str.upper))
static_line = st.one_of(
    st.builds(lambda o, a: f"{o} IN A {a}", owner, ipv4.map(str)),
    st.builds(lambda o, t: f"{o} {t} IN TXT \"x\"", owner, st.integers(0, 86400)),
    st.builds(lambda o: f"{o}\tIN MX 10 mail.example.org.", owner),
    st.builds(lambda a: f"  IN A {a}", ipv4.map(str)),
    st.just("; a comment"), st.just("$TTL 300"), st.just(""),
)


@given(st.lists(static_line, max_size=12))
def test_static_owners_are_the_owners_named_finds(lines):
    text = "\n".join(lines) + "\n"
    head = f"$ORIGIN {ZONE}.\n$TTL 60\n@ IN SOA ns1 h 1 2 3 4 5\n"  # the apex exists in every rendered zone
    owners = {name.lower() for name, _ in gitops.zone_records(head + text, ZONE)}
    assert set(zones.static_owners(text, ZONE)) | {"@"} == owners | {"@"}


toml_value = st.one_of(st.integers(-1000, 10**6), st.text(alphabet="abc #[]=\"'", max_size=10).map(
    lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'), st.just("[1, 2]"), st.just("true"))
toml_key = st.sampled_from(["ttl", "nameservers_x", "dynamic_ttl", "dynamic_ttl_x", "a"])


@st.composite
def zone_toml(draw) -> str:
    """A zone.toml as humans write it: top-level keys, comments, blank lines, a [soa] table or not."""
    lines, keys = [], set()
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["key", "comment", "blank"]))
        if kind == "key":
            key = draw(toml_key.filter(lambda k: k not in keys))
            keys.add(key)
            value = draw(st.integers(0, 10**6).map(str)) if key == "dynamic_ttl" else draw(toml_value)
            comment = draw(st.sampled_from(["", "  # note", "# [x]"]))
            lines.append(f"{draw(st.sampled_from(['', '  ']))}{key} = {value}{comment}")
        else:
            lines.append("# [soa] in a comment" if kind == "comment" else "")
    if draw(st.booleans()):
        lines += ["[soa]", "dynamic_ttl = 5", "refresh = 3600"]
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@given(zone_toml(), st.integers(0, 2**31 - 1))
def test_with_dynamic_ttl_sets_only_that_key(text, ttl):
    before = tomllib.loads(text)
    after = tomllib.loads(zonetoml.with_setting(text, "", "dynamic_ttl", ttl))
    assert after == {**before, "dynamic_ttl": ttl}


# ---- ddns/web.py ------------------------------------------------------------------------------
@given(st.one_of(hostile_text, hostile_text.map(lambda t: "Basic " + t),
                 st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode())))
def test_basic_credentials_gives_a_pair_or_none(header):
    result = web.basic_credentials(header)
    assert result is None or (isinstance(result, tuple) and all(isinstance(x, str) for x in result))


@given(st.text(max_size=40).filter(lambda u: ":" not in u), st.text(max_size=1400),
       st.sampled_from(["Basic", "basic", "BASIC"]))
def test_basic_credentials_round_trip(user, password, scheme):
    data = base64.b64encode(f"{user}:{password}".encode()).decode()
    expected = (user, password) if len(data) <= 2048 else None
    assert web.basic_credentials(f"{scheme} {data}") == expected


networks = st.lists(st.sampled_from(["127.0.0.0/8", "10.0.0.0/8", "::1/128", "2001:db8::/32"]).map(
    ipaddress.ip_network), max_size=3)
peer = st.one_of(ip.map(str), hostile_text)
forwarded = st.one_of(st.lists(st.one_of(ip.map(str), hostile_text), max_size=4).map(", ".join), hostile_text)


@given(peer, forwarded, st.one_of(ip.map(str), hostile_text), networks)
def test_client_address_believes_headers_only_from_trusted_proxies(remote, xff, real_ip, trusted):
    environ = {"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": xff, "HTTP_X_REAL_IP": real_ip}
    client = web.client_address(environ, trusted)
    alone = web.client_address({"REMOTE_ADDR": remote}, trusted)
    assert isinstance(client, str) and len(client) <= 64 and len(alone) <= 64
    try:
        trusted_peer = any(ipaddress.ip_address(remote) in n for n in trusted
                           if n.version == ipaddress.ip_address(remote).version)
    except ValueError:
        trusted_peer = False
    if not trusted_peer:
        assert client == alone


@pytest.mark.parametrize("header", ["HTTP_X_REAL_IP", "HTTP_X_FORWARDED_FOR"])
@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="%,"),
               min_size=1, max_size=200))
def test_a_scoped_ipv6_address_from_a_proxy_loses_its_scope(header, scope):
    """ipaddress accepts "fe80::1%ANYTHING": the scope is not part of a client's address (nor bounded)."""
    environ = {"REMOTE_ADDR": "127.0.0.1", header: "fe80::1%" + scope}
    try:
        ipaddress.ip_address("fe80::1%" + scope)
    except ValueError:
        return  # not an address at all: cut to 64 characters like any other junk
    assert web.client_address(environ, [ipaddress.ip_network("127.0.0.0/8")]) == "fe80::1"


# ---- ddns/config.py ---------------------------------------------------------------------------
def setting_value(setting: configmod.Setting) -> st.SearchStrategy:
    """Values of the setting's own type, as a TOML file may hold them."""
    default = setting.default
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-2**63, 2**63 - 1)
    if isinstance(default, float):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(default, list):
        return st.lists(st.text(max_size=20), max_size=4)
    return st.text(max_size=40)


all_values = st.fixed_dictionaries({}, optional={s.key: setting_value(s) for s in configmod.SETTINGS})


@slow
@given(all_values)
def test_render_toml_round_trips_through_load(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("cfg") / "ddns.toml"
    path.write_text(configmod.render_toml(values), encoding="utf-8")
    loaded = configmod.load(path, environ={})
    for s in configmod.SETTINGS:
        assert loaded[s.key] == values.get(s.key, s.default), s.key


@given(st.sampled_from(configmod.SETTINGS), st.one_of(hostile_text, st.integers(), st.floats(), st.booleans(),
                                                       st.lists(st.text(max_size=5), max_size=3)))
def test_coerce_gives_the_setting_type_or_a_config_error(setting, value):
    try:
        result = configmod._coerce(setting, value, "fuzz")
    except configmod.ConfigError:
        return
    assert type(result) is type(setting.default)


@given(st.sampled_from([s for s in configmod.SETTINGS if not isinstance(s.default, list)]).flatmap(
    lambda s: st.tuples(st.just(s), setting_value(s))))
def test_coerce_reads_back_what_an_environment_variable_spells(pair):
    setting, value = pair
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    assert configmod._coerce(setting, text, "env") == value


# ---- ddns/clientconfigs.py ----------------------------------------------------------------------
public_url = st.one_of(
    st.builds(lambda s, h, p, x: f"{s}://{h}{p}{x}", st.sampled_from(["http", "https"]),
              st.one_of(ldh_name, st.just("[2001:db8::1]"), ip.map(str)),
              st.sampled_from(["", ":8080", ":443"]), st.sampled_from(["", "/", "/ddns", "/a/b-c_d~e/"])),
    hostile_text, st.builds(lambda a, b: a + b, st.just("https://ddns.example.org"), hostile_text))
urlsafe_secret = st.binary(min_size=1, max_size=24).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))
secret = st.one_of(urlsafe_secret, hostile_text)


def reference(url: str) -> dict[str, str]:
    """The configs for harmless values, with a path prefix when URL has one (ddclient then has a script= line)."""
    prefix = "/p" if urlsplit(url.strip()).path.rstrip("/") else ""
    return {c.key: c.text for c in clientconfigs.client_configs("https://ddns.example.org" + prefix, "h." + ZONE, "k")}


def syntax(text: str) -> list[str]:
    """A config's syntax: each line without the characters a filled-in URL, host or secret may hold."""
    return [re.sub(r"[A-Za-z0-9._~\-:/\[\]@?=&<>%]", "", line) for line in text.splitlines()]


@given(public_url, st.one_of(ldh_name, hostile_text), secret)
def test_client_configs_never_carry_injected_syntax(url, fqdn, key):
    check_client_configs(url, fqdn, key)


GOOD_URL = "https://ddns.example.org:8443/prefix"


@pytest.mark.parametrize("char", NEAR_MISS_CHARS)
@pytest.mark.parametrize("field", ["url", "fqdn", "secret"])
@near
@given(data=st.data())
def test_client_configs_refuse_near_misses(field, char, data):
    inputs = {"url": GOOD_URL, "fqdn": "h." + ZONE, "secret": "k"}
    inputs[field] = data.draw(one_char_off({"url": st.just(GOOD_URL), "fqdn": ldh_name, "secret": urlsafe_secret}[field],
                                           char))
    check_client_configs(inputs["url"], inputs["fqdn"], inputs["secret"])


def check_client_configs(url: str, fqdn: str, key: str) -> None:
    try:
        configs = {c.key: c.text for c in clientconfigs.client_configs(url, fqdn, key)}
    except ValueError:
        return
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key) and re.fullmatch(r"[A-Za-z0-9.-]+", fqdn)
    ref = reference(url)
    assert configs.keys() == ref.keys()
    for name, text in configs.items():  # the same lines, quotes, braces and spaces as the harmless ones
        assert syntax(text) == syntax(ref[name]), (name, text)
    words = shlex.split(configs["curl"])
    assert words[:4] == ["curl", "-fsS", "-u", f"{fqdn}:{key}"] and len(words) == 5
    user_data = yaml.safe_load(configs["cloud-init"])
    assert f'user = "{fqdn}:{key}"' in user_data["write_files"][0]["content"]
    assert configs["ddclient"].splitlines()[-1] == fqdn
