"""The pure parts of serving from secondaries: the catalog zone's text (RFC 9432), the hidden primary's
options and the secondary's named.conf, with hostile values refused before they reach the text."""
from __future__ import annotations

import hashlib
import io
import subprocess

import dns.rdatatype
import dns.zone
import pytest

from ddns import bind, catalog, cli, config as configmod, errors, namedconf
from ddns.cli_secondary import secondary_config
from ddns.instance import prepare_managed_bind

from conftest import require

CAT = "catalog.ddns.invalid"
KEY = namedconf.TransferKey("ddns-transfer", "hmac-sha256", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=")
PRIMARY = [namedconf.Endpoint("127.0.0.1", 5353)]


# ---- the catalog zone -----------------------------------------------------------------------

def test_the_catalog_is_a_version_2_catalog_listing_each_zone_once_under_a_stable_label():
    text = catalog.render(CAT, ["b.example.test", "a.example.test", "b.example.test"], 42)
    zone = dns.zone.from_text(text, origin=CAT + ".", relativize=False)
    soa = zone.find_rdataset(CAT + ".", "SOA")[0]
    assert soa.serial == 42
    assert [r.to_text() for r in zone.find_rdataset(CAT + ".", "NS")] == ["invalid."]
    assert [r.to_text() for r in zone.find_rdataset(f"version.{CAT}.", "TXT")] == ['"2"']
    ptrs = {name.to_text(): [r.to_text() for r in rds] for name, rds in zone.iterate_rdatasets(dns.rdatatype.PTR)}
    wire = b"\x01a\x07example\x04test\x00"
    assert ptrs[f"{hashlib.sha1(wire).hexdigest()}.zones.{CAT}."] == ["a.example.test."]
    assert sorted(sum(ptrs.values(), [])) == ["a.example.test.", "b.example.test."]
    assert catalog.members(text) == ["a.example.test", "b.example.test"]


def test_a_members_label_does_not_depend_on_case_a_final_dot_or_the_other_members():
    assert catalog.member_label("Dyn.Example.TEST.") == catalog.member_label("dyn.example.test")
    one = catalog.render(CAT, ["dyn.example.test"], 1)
    two = catalog.render(CAT, ["dyn.example.test", "other.example.test"], 2)
    line = next(line for line in one.splitlines() if "PTR" in line)
    assert line in two.splitlines()
    assert catalog.member_label("a.test") != catalog.member_label("b.test")


def test_the_catalog_never_lists_itself_and_renders_the_same_text_for_the_same_set():
    assert catalog.members(catalog.render(CAT, [CAT, "x.test"], 3)) == ["x.test"]
    assert catalog.render(CAT, ["y.test", "x.test"], 3) == catalog.render(CAT, ["x.test", "y.test"], 3)
    assert catalog.members(catalog.render(CAT, [], 3)) == []


def test_named_checkzone_takes_the_catalog(tmp_path):
    require("named-checkzone")
    path = tmp_path / "catalog.zone"
    path.write_text(catalog.render(CAT, ["dyn.example.test", "2.0.192.in-addr.arpa"], 7))
    assert bind.check_zone(CAT, path) is None


@pytest.mark.parametrize("value", ["catalog", 'cat"alog.invalid', "cat;alog.invalid", "cat}.invalid",
                                   "cat\nalog.invalid", "cat/../x.invalid", "-cat.invalid", "cät.invalid",
                                   "cat..invalid", "a" * 64 + ".invalid"])
def test_a_catalog_name_that_is_no_plain_zone_name_is_refused(value):
    with pytest.raises(catalog.BadCatalogName):
        catalog.catalog_name(value)


def test_the_catalog_setting_is_a_name_without_the_final_dot_or_off():
    assert catalog.catalog_name("Catalog.DDNS.invalid.") == CAT
    assert catalog.catalog_name("") == ""
    assert isinstance(catalog.BadCatalogName("x"), errors.Invalid)


# ---- the hidden primary ----------------------------------------------------------------------

def test_the_hidden_primary_notifies_at_once_and_gives_transfers_to_its_keys_only():
    text = namedconf.primary_options("explicit", [namedconf.endpoint("192.0.2.53 port 5300", "x"),
                                                  namedconf.endpoint("2001:db8::53", "x")],
                                     ["ddns-publisher", "ddns-transfer"], full_loads=False)
    assert "    notify explicit;\n" in text
    assert "    also-notify { 192.0.2.53 port 5300; 2001:db8::53; };\n" in text
    assert "    notify-delay 0;\n" in text and "    notify-rate 10000;\n" in text
    assert '    allow-transfer { key "ddns-publisher"; key "ddns-transfer"; };\n' in text
    assert "ixfr-from-differences" not in text  # incremental: named journals each update itself
    assert "ixfr-from-differences yes;" in namedconf.primary_options("yes", [], ["k"], full_loads=True)
    assert "allow-transfer { none; };" in namedconf.primary_options("no", [], [], full_loads=True)
    assert "also-notify" not in namedconf.primary_options("no", [namedconf.Endpoint("192.0.2.1")], [], True)


def test_the_managed_named_conf_is_one_named_checkconf_takes(tmp_path):
    require("named-checkconf")
    for name in ("rndc.key", "publisher.key"):
        bind.create_publisher_key(tmp_path / name, "rndc-key" if name == "rndc.key" else bind.PUBLISHER_KEY_NAME)
    transfer = bind.create_publisher_key(tmp_path / "transfer.key", bind.TRANSFER_KEY_NAME)
    (tmp_path / "zones.conf").write_text(bind.zones_conf({}))
    conf = tmp_path / "named.conf"
    conf.write_text(bind.named_conf(tmp_path, tmp_path / "zones.conf", "127.0.0.1", 5353, 5354,
                                    tmp_path / "publisher.key", transfer, "explicit",
                                    [namedconf.Endpoint("127.0.0.1", 5400)], full_loads=True))
    proc = subprocess.run(["named-checkconf", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("value", ["127.0.0.1; }; include \"/etc/passwd\"", "127.0.0.1 port 53;", "127.0.0.1:5300",
                                   "127.0.0.1 port", "127.0.0.1 port 0", "127.0.0.1 port 65536", "localhost",
                                   "127.0.0.1 port 53 key x", "fe80::1%eth0", "127.0.0.1\nport 53", "", 53])
def test_an_also_notify_entry_that_is_no_address_and_port_is_refused(value):
    with pytest.raises(namedconf.BadNamedValue):
        namedconf.endpoints([value], "bind.also_notify")


def test_also_notify_must_be_a_list_and_notify_one_of_three_words():
    with pytest.raises(namedconf.BadNamedValue):
        namedconf.endpoints("127.0.0.1", "bind.also_notify")
    with pytest.raises(namedconf.BadNamedValue):
        namedconf.primary_options("yes; allow-transfer { any; }", [], [], False)


def test_a_hostile_setting_stops_serve_before_named_conf_is_written(tmp_path):
    """prepare_managed_bind (ddns serve's first step) refuses; the named.conf on disk stays as it was."""
    from conftest import free_port
    directory = tmp_path / "inst"
    cli.init_instance(directory, free_port(), free_port(), free_port(), extra={"security.bcrypt_rounds": 4})
    conf = directory / "bind" / "named.conf"
    before = conf.read_text()
    for override in ({"bind.also_notify": ['127.0.0.1; }; allow-transfer { any; }; #']},
                     {"bind.notify": "yes; allow-transfer { any; }"}):
        cfg = configmod.load(directory / "ddns.toml", environ={}, overrides=override)
        with pytest.raises(errors.Invalid):
            prepare_managed_bind(cfg)
        assert conf.read_text() == before
    assert 'allow-transfer { key "ddns-publisher"; key "ddns-transfer"; };' in before
    assert "127.0.0.1;" not in before.split("allow-transfer")[1].split("\n")[0]  # no address: keys only


# ---- the secondary's named.conf ----------------------------------------------------------------

def test_the_secondary_conf_transfers_the_catalog_and_its_zones_from_every_primary(tmp_path):
    require("named-checkconf")
    primaries = PRIMARY + [namedconf.Endpoint("192.0.2.9", 53)]
    text = namedconf.secondary_conf(CAT, KEY, primaries, "127.0.0.1", 5400, str(tmp_path))
    servers = ' 127.0.0.1 port 5353 key "ddns-transfer"; 192.0.2.9 port 53 key "ddns-transfer";'
    assert f'catalog-zones {{\n        zone "{CAT}" default-primaries {{{servers} }}' in text
    assert f'zone "{CAT}" {{\n    type secondary;\n    primaries {{{servers} }};' in text
    assert "listen-on port 5400 { 127.0.0.1; };" in text and "recursion no;" in text
    assert "serial-query-rate 10000;" in text
    assert f'directory "{tmp_path}";' in text and "controls { };" in text
    assert f'secret "{KEY.secret}";' in text
    conf = tmp_path / "named.conf"
    conf.write_text(text)
    proc = subprocess.run(["named-checkconf", str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_secondary_on_ipv6_or_every_address():
    six = namedconf.secondary_conf(CAT, KEY, PRIMARY, "::1", 53, "/var/cache/bind")
    assert "listen-on-v6 port 53 { ::1; };" in six and "listen-on { none; };" in six
    everywhere = namedconf.secondary_conf(CAT, KEY, PRIMARY, "0.0.0.0", 53, "/var/cache/bind")
    assert "listen-on port 53 { any; };" in everywhere


HOSTILE_LISTEN = ['127.0.0.1; }; include "/etc/passwd"; #', "127.0.0.1 }", "localhost", "", "127.0.0.1\n",
                  "fe80::1%lo", "1.2.3"]
HOSTILE_PORT = ["53; }", "0", "65536", "-1", "five", "", "53\n", "٥٣"]
HOSTILE_DIR = ['/srv/bind"; include "/etc/passwd', "/srv/{bind}", "/srv/bind;", "/srv/bind\nx", "relative/dir",
               "/srv/bi\\nd", "/srv/bind\x00", "", "/srv/bi\"nd"]


HOSTILE_CATALOG = ['catalog.ddns.invalid"; }; include "/etc/passwd', "catalog.ddns.invalid\nzone x", "cat{alog}.invalid",
                   "catalog;.invalid", "catalog", "", "Catalog.DDNS.invalid.", "cat alog.invalid", "catalog..invalid"]
HOSTILE_KEY_NAMES = ['ddns-transfer"; }; include "/etc/passwd', "ddns-transfer\n", "ddns{transfer}", "ddns;x", "",
                     "DDNS-Transfer", "ddns transfer"]


@pytest.mark.parametrize("name", HOSTILE_CATALOG)
def test_secondary_conf_refuses_a_catalog_name_that_is_not_plain(name):
    """Checked inside, not only by the CLI: the name is quoted into named.conf three times."""
    with pytest.raises(namedconf.BadNamedValue):
        namedconf.secondary_conf(name, KEY, PRIMARY, "127.0.0.1", 5400, "/srv/bind")


@pytest.mark.parametrize("name", HOSTILE_KEY_NAMES)
def test_secondary_conf_refuses_a_key_name_that_is_not_plain(name):
    key = namedconf.TransferKey(name, KEY.algorithm, KEY.secret)
    with pytest.raises(namedconf.BadNamedValue):
        namedconf.secondary_conf(CAT, key, PRIMARY, "127.0.0.1", 5400, "/srv/bind")


@pytest.mark.parametrize("algorithm, secret", [('hmac-sha256; }; include "/etc/passwd', KEY.secret),
                                               ("hmac-sha256", 'c2Vj"; }; include "/etc/passwd'),
                                               ("hmac-sha256", "c2Vj\n")])
def test_secondary_conf_refuses_a_key_that_is_not_plain(algorithm, secret):
    with pytest.raises(errors.Invalid):
        namedconf.secondary_conf(CAT, namedconf.TransferKey("ddns-transfer", algorithm, secret), PRIMARY,
                                 "127.0.0.1", 5400, "/srv/bind")


def test_secondary_conf_refuses_a_primary_that_is_not_an_endpoint():
    with pytest.raises(namedconf.BadNamedValue):
        namedconf.secondary_conf(CAT, KEY, ['127.0.0.1; }; include "/etc/passwd'], "127.0.0.1", 5400, "/srv/bind")


def run_cli(config_path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["-c", str(config_path), "secondary", "config", *args],
                    cli.Env(stdout=out, stderr=err, stdin=io.StringIO(), environ={}))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def configured(tmp_path):
    """A config naming the catalog, with a transfer key file."""
    bind.create_publisher_key(tmp_path / "transfer.key", bind.TRANSFER_KEY_NAME)
    path = tmp_path / "ddns.toml"
    path.write_text(f'[bind]\ncatalog_zone = "{CAT}"\ntransfer_key = "transfer.key"\nport = 5353\n'
                    '[secondary]\nprimaries = ["192.0.2.9 port 53"]\n')
    return path


@pytest.mark.parametrize("flag, values", [("--listen", HOSTILE_LISTEN), ("--port", HOSTILE_PORT),
                                          ("--dir", HOSTILE_DIR)])
def test_hostile_arguments_are_refused_with_exit_2_and_print_nothing(configured, flag, values):
    for value in values:
        code, out, err = run_cli(configured, "--listen", "127.0.0.1", "--dir", "/srv/bind", flag, value)
        assert (code, out) == (2, ""), (value, out)
        assert err.startswith("error: ") and flag in err, (value, err)


def test_the_printed_config_names_both_primaries_and_the_key(configured):
    code, out, err = run_cli(configured, "--listen", "127.0.0.1", "--port", "5400", "--dir", "/srv/bind")
    assert code == 0, err
    assert out.startswith(namedconf.SECONDARY_HEADER)
    assert '127.0.0.1 port 5353 key "ddns-transfer"; 192.0.2.9 port 53 key "ddns-transfer";' in out
    assert 'key "ddns-transfer" {' in out and err == ""


@pytest.mark.parametrize("setting, value, words", [
    ("bind.catalog_zone", "", "bind.catalog_zone is not set"),
    ("bind.catalog_zone", 'x"; zone "y', "is not a zone name"),
    ("secondary.primaries", ['192.0.2.9; }; include "/etc/passwd"; #'], "secondary.primaries"),
    ("bind.listen", "0.0.0.0", "list this publisher's address in secondary.primaries"),
])
def test_a_configuration_a_secondary_cannot_use_is_refused(configured, setting, value, words):
    cfg = configmod.load(configured, environ={}, overrides={setting: value, **(
        {"secondary.primaries": []} if setting == "bind.listen" else {})})
    with pytest.raises(errors.Invalid, match=words):
        secondary_config(cfg, "127.0.0.1", 53, "/srv/bind")


def test_a_missing_transfer_key_is_an_error_naming_it(configured):
    (configured.parent / "transfer.key").unlink()
    code, out, err = run_cli(configured)
    assert code == 1 and out == "" and "transfer.key" in err and "ddns serve" in err


# ---- the catalog in the zones repository --------------------------------------------------------

def test_the_catalog_is_committed_when_the_zone_set_changes_and_only_then(tmp_path):
    from ddns.gitrepo import ZonesRepo
    from ddns.publishing.catalogzone import CatalogZone

    repo = ZonesRepo.init(tmp_path / "zones", fsync=False)
    (repo.path / "README.md").write_text("zones\n")
    repo.commit(["README.md"], "Start\n")
    reported: list[str] = []
    zone = CatalogZone(CAT, repo, lambda: 1_800_000_000, False, reported.append)
    assert zone.serial is None
    assert zone.refresh(["a.test"]) is True and zone.serial == 1_800_000_000
    assert zone.refresh(["a.test"]) is False
    assert zone.refresh(["b.test", "a.test"]) is True and zone.serial == 1_800_000_001  # the clock stood still
    assert zone.refresh(["b.test"]) is True
    subjects = subprocess.run(["git", "-C", str(repo.path), "log", "--format=%s%n%b"], capture_output=True,
                              text=True, check=True).stdout
    assert "The zones secondaries serve changed: add a.test." in subjects
    assert "add b.test" in subjects and "remove a.test" in subjects
    assert repo.committed(f"{CAT}/{CAT}.zone") == zone.text() and catalog.members(zone.text()) == ["b.test"]
    assert reported == []


def test_a_catalog_commit_that_fails_puts_the_committed_file_back_and_is_reported(tmp_path):
    from types import SimpleNamespace

    from ddns.publishing.catalogzone import CatalogZone

    def refuse(paths, message):
        raise OSError("disk full")

    (tmp_path / CAT).mkdir()
    committed = catalog.render(CAT, ["a.test"], 5)
    (tmp_path / CAT / f"{CAT}.zone").write_text(committed)
    reported: list[str] = []
    zone = CatalogZone(CAT, SimpleNamespace(path=tmp_path, commit=refuse), lambda: 10, False, reported.append)
    assert zone.refresh(["a.test", "b.test"]) is False
    assert zone.text() == committed
    assert reported == [f"catalog zone {CAT} not committed: disk full"]
