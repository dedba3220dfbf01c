"""``ddns kerberos check``, /healthz and the status page against keytabs made by a real MIT KDC (testkit/kdc.py).

A keytab holding ``DNS/<the zone's SOA MNAME>@REALM`` is OK; one without it
is MISSING with the kadmin.local commands that make it (exit 1); a keytab
that is missing, a directory or not a keytab is a clear error (exit 1).
/healthz carries the entries when kerberos.keytab is set and is degraded
while a principal is missing. The keytab parser and the check are also
tested pure, with hostile bytes.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from conftest import Instance, http
from ddns import cli, zonetoml
from ddns.errors import Invalid
from ddns.kerberos_check import advice, check, mname, principals
from testkit.kdc import REALM
from kerberos_fixtures import kdc  # noqa: F401  (the session's KDC)
from test_portal import Browser

ZONE = "dyn.example.test"
DNS_PRINCIPAL = f"DNS/ns1.{ZONE}@{REALM}"
FIELDS = {"zone", "mname", "principal", "present", "error"}


@pytest.fixture(scope="module")
def keytabs(kdc, tmp_path_factory):  # noqa: F811
    """Keytabs from the session's KDC: 'good' holds DNS/ns1.ZONE and a host principal, 'other' only the host principal."""
    directory = tmp_path_factory.mktemp("keytabs")
    good, other = directory / "good.keytab", directory / "other.keytab"
    kdc.principal(f"DNS/ns1.{ZONE}", good)
    kdc.principal("host/vm1.dyn.example.test", good)
    kdc.principal("host/vm2.dyn.example.test", other)
    return {"good": good, "other": other}


def configure(inst: Instance, keytab: Path, realm: str = "") -> None:
    """Set kerberos.keytab and kerberos.realm in the instance's config file."""
    text = zonetoml.with_setting(inst.config_path.read_text(), "kerberos", "keytab", str(keytab))
    inst.config_path.write_text(zonetoml.with_setting(text, "kerberos", "realm", realm))


# ---- the command against real keytabs --------------------------------------------------------
@pytest.mark.parametrize("realm", [REALM, ""])
def test_a_keytab_with_the_principal_is_ok(instance: Instance, keytabs, realm):
    configure(instance, keytabs["good"], realm)
    r = instance.cli("kerberos", "check")
    assert r.code == cli.Exit.OK, r.out + r.err
    assert r.out == f"OK       {ZONE}: {DNS_PRINCIPAL} is in {keytabs['good']}\n"
    entries = instance.cli("kerberos", "check", "--json").json()
    assert entries == [{"zone": ZONE, "mname": f"ns1.{ZONE}", "principal": DNS_PRINCIPAL, "present": True,
                        "error": ""}]


@pytest.mark.parametrize("realm", [REALM, ""])
def test_a_keytab_without_it_is_missing_with_what_to_run(instance: Instance, keytabs, realm):
    configure(instance, keytabs["other"], realm)
    r = instance.cli("kerberos", "check")
    assert r.code == cli.Exit.ERROR
    principal = DNS_PRINCIPAL if realm else f"DNS/ns1.{ZONE}@REALM"
    assert r.out.startswith(f"MISSING  {ZONE}: ")
    assert f'kadmin.local -q "addprinc -randkey {principal}"' in r.out
    assert f'kadmin.local -q "ktadd -k {keytabs["other"]} {principal}"' in r.out
    [entry] = instance.cli("kerberos", "check", "--json").json()
    assert entry["present"] is False and entry["error"] == "" and set(entry) == FIELDS


def test_a_principal_in_another_realm_is_missing(instance: Instance, keytabs):
    configure(instance, keytabs["good"], "OTHER.TEST")
    r = instance.cli("kerberos", "check", "--json")
    assert r.code == cli.Exit.ERROR
    assert [(e["principal"], e["present"]) for e in r.json()] == [(f"DNS/ns1.{ZONE}@OTHER.TEST", False)]


def test_every_zone_is_checked(instance: Instance, keytabs):
    configure(instance, keytabs["good"], REALM)
    assert instance.cli("domain", "add", "second.example.test").code in (cli.Exit.OK, cli.Exit.PUBLISH_FAILED)
    assert instance.cli("domain", "add", "third.example.test", "--ns", "ns.example.net").code in \
        (cli.Exit.OK, cli.Exit.PUBLISH_FAILED)
    r = instance.cli("kerberos", "check", "--json")
    assert r.code == cli.Exit.ERROR
    assert [(e["zone"], e["mname"], e["present"]) for e in r.json()] == [
        (ZONE, f"ns1.{ZONE}", True), ("second.example.test", "ns1.second.example.test", False),
        ("third.example.test", "ns.example.net", False)]


@pytest.mark.parametrize("make, why", [
    (lambda d: d / "absent.keytab", "cannot read the keytab"),
    (lambda d: (d / "dir.keytab").mkdir() or d / "dir.keytab", "cannot read the keytab"),
    (lambda d: (d / "junk.keytab").write_bytes(b"not a keytab") and d / "junk.keytab", "is not a keytab"),
    (lambda d: (d / "cut.keytab").write_bytes(b"\x05\x02\x00\x00\x00\x40\x00\x02") and d / "cut.keytab",
     "is not a keytab"),
])
def test_an_unusable_keytab_is_a_clear_error(instance: Instance, make, why):
    path = make(instance.dir)
    configure(instance, path, REALM)
    r = instance.cli("kerberos", "check")
    assert r.code == cli.Exit.ERROR
    assert r.out.startswith(f"ERROR    {ZONE}: {DNS_PRINCIPAL}: ") and why in r.out and str(path) in r.out


def test_without_a_keytab_gss_tsig_is_off(instance: Instance):
    r = instance.cli("kerberos", "check")
    assert r.code == cli.Exit.ERROR and "kerberos.keytab is not set" in r.out


# ---- /healthz and the status page ------------------------------------------------------------
def healthz(inst: Instance) -> tuple[int, dict]:
    status, body, _ = http(inst.url + "/healthz")
    return status, json.loads(body)


def test_healthz_and_the_status_page_show_the_keytab(instance: Instance, serve, keytabs):
    keytab = instance.dir / "dns.keytab"
    shutil.copy(keytabs["good"], keytab)
    instance.add_user("root", admin=True)
    serve({"kerberos.keytab": str(keytab), "kerberos.realm": REALM})
    status, body = healthz(instance)
    assert (status, body["status"], body["reasons"]) == (200, "ok", [])
    assert body["kerberos"] == [{"zone": ZONE, "mname": f"ns1.{ZONE}", "principal": DNS_PRINCIPAL, "present": True,
                                 "error": ""}]
    root = Browser(instance.url)
    root.login("root", "pw-root")
    page = root.get("/admin/status").text
    assert "Kerberos keytab" in page and DNS_PRINCIPAL in page and "in the keytab" in page
    shutil.copy(keytabs["other"], keytab)  # the operator replaced the keytab with one lacking the principal
    status, body = healthz(instance)
    assert (status, body["status"]) == (503, "degraded") and body["kerberos"][0]["present"] is False
    assert body["reasons"] == [f"kerberos: {DNS_PRINCIPAL} of zone {ZONE}: not in the keytab"]
    assert "missing: run <code>ddns kerberos check</code>" in root.get("/admin/status").text
    keytab.unlink()
    status, body = healthz(instance)
    assert status == 503 and "cannot read the keytab" in body["reasons"][0]
    shutil.copy(keytabs["good"], keytab)
    assert healthz(instance)[0] == 200


def test_healthz_without_a_keytab_says_nothing_of_kerberos(instance: Instance, serve):
    instance.add_user("root", admin=True)
    serve()
    status, body = healthz(instance)
    assert status == 200 and "kerberos" not in body
    root = Browser(instance.url)
    root.login("root", "pw-root")
    assert "Kerberos keytab" not in root.get("/admin/status").text


# ---- pure: the keytab's format and the check -------------------------------------------------
def entry(realm: bytes, *components: bytes, extra: bytes = b"\x00\x00\x00\x01" + b"\x00" * 4 + b"\x02"
          + b"\x00\x12\x00\x04abcd") -> bytes:
    body = struct.pack("!H", len(components)) + struct.pack("!H", len(realm)) + realm
    body += b"".join(struct.pack("!H", len(c)) + c for c in components) + extra
    return struct.pack("!i", len(body)) + body


def test_principals_of_a_real_keytab(keytabs):
    assert principals(keytabs["good"].read_bytes()) == [DNS_PRINCIPAL, f"host/vm1.dyn.example.test@{REALM}"]


@pytest.mark.parametrize("data, expected", [
    (b"\x05\x02", []),
    (b"\x05\x02" + entry(b"R.TEST", b"DNS", b"ns1.a.test"), ["DNS/ns1.a.test@R.TEST"]),
    (b"\x05\x02" + struct.pack("!i", -7) + b"\x00" * 7 + entry(b"R", b"a"), ["a@R"]),     # a hole
    (b"\x05\x02" + entry(b"R", b"a") + struct.pack("!i", 0) + b"junk after the end", ["a@R"]),
    (b"\x05\x02" + entry(b"R", b"a") + entry(b"R", b"a"), ["a@R"]),                       # two key versions
])
def test_principals(data, expected):
    assert principals(data) == expected


@pytest.mark.parametrize("data", [
    b"", b"\x05", b"\x05\x01" + entry(b"R", b"a"), b"\x04\x02", b"hello world",
    b"\x05\x02" + struct.pack("!i", 1000) + b"\x00\x01",                                # runs past the end
    b"\x05\x02" + struct.pack("!i", 4) + b"\x00\x01\x00\xff",                           # a name past its entry
    b"\x05\x02" + struct.pack("!i", 3) + b"\x00\x01\x00",                               # truncated inside
    b"\x05\x02" + struct.pack("!i", 2**31 - 1),
])
def test_bad_keytabs_are_invalid(data):
    with pytest.raises(Invalid):
        principals(data)


@given(st.binary(max_size=200))
def test_any_bytes_are_principals_or_invalid(data):
    for candidate in (data, b"\x05\x02" + data):
        try:
            found = principals(candidate)
        except Invalid:
            continue
        assert all(isinstance(p, str) and "@" in p for p in found)


@pytest.mark.parametrize("primary_ns, zone, expected", [
    ("ns1.a.test.", "a.test", "ns1.a.test"), ("ns1", "a.test", "ns1.a.test"), ("@", "a.test", "a.test"),
    ("NS.Example.NET.", "a.test", "NS.Example.NET"),
])
def test_mname(primary_ns, zone, expected):
    assert mname(primary_ns, zone) == expected


def fake_holds(path, principal):
    return ""


def test_check_without_a_realm_finds_every_realm_of_the_keytab():
    data = b"\x05\x02" + entry(b"A.TEST", b"DNS", b"ns1.z") + entry(b"B.TEST", b"DNS", b"ns1.z") \
        + entry(b"A.TEST", b"DNS", b"ns1.y")
    found = check({"z": "ns1.z", "x": "ns1.x"}, "", Path("k"), lambda p: data, fake_holds)
    assert [(e["zone"], e["principal"], e["present"]) for e in found] == [
        ("x", "DNS/ns1.x", False), ("z", "DNS/ns1.z@A.TEST", True), ("z", "DNS/ns1.z@B.TEST", True)]


def test_check_reports_what_gss_api_says():
    data = b"\x05\x02" + entry(b"A.TEST", b"DNS", b"ns1.z")
    [found] = check({"z": "ns1.z"}, "A.TEST", Path("k"), lambda p: data, lambda p, n: "Unsupported enctype")
    assert (found["present"], found["error"]) == (False, "Unsupported enctype")
    assert advice([found], Path("k")) == ["ERROR    z: DNS/ns1.z@A.TEST: Unsupported enctype"]


def test_check_never_asks_gss_api_for_a_principal_the_keytab_lacks():
    asked = []
    check({"z": "ns1.z"}, "A.TEST", Path("k"), lambda p: b"\x05\x02", lambda p, n: asked.append(n) or "")
    assert asked == []


def test_no_zones():
    assert check({}, "A.TEST", Path("k"), lambda p: b"\x05\x02", fake_holds) == []
    assert advice([], Path("k")) == ["no zones"]
