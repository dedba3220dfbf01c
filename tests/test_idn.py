"""International host names through the real app: one name, one spelling (IDNA 2008 / UTS 46)."""
from __future__ import annotations

ZONE = "dyn.example.test"
FASS = f"xn--fa-hia.{ZONE}"  # faß, as browsers and IDNA 2008 spell it


def test_idn_hosts_are_registered_and_updated_under_their_idna_2008_name(running):
    inst = running.instance
    inst.add_user("alice")
    inst.add_user("mallory")
    r = inst.cli("host", "add", f"faß.{ZONE}", "--owner", "alice", "--json")
    assert r.code == 0, r.err
    assert r.json()["fqdn"] == FASS
    secret = r.json()["secret"]

    # the A-label is the same name: taken; "fass" is another name (IDNA 2003 made them one)
    r = inst.cli("host", "add", FASS, "--owner", "mallory")
    assert r.code == 1 and "taken" in r.err, r.out + r.err
    r = inst.cli("host", "add", f"FASS.{ZONE}", "--owner", "mallory", "--json")
    assert r.code == 0 and r.json()["fqdn"] == f"fass.{ZONE}", r.err

    # labels IDNA 2008 refuses, and A-labels that are not the encoding of a valid name
    for bad in (f"a\u200db.{ZONE}", f"xn--abc.{ZONE}", f"xn--ab-8tb.{ZONE}", f"\u2615.{ZONE}"):
        r = inst.cli("host", "add", bad, "--owner", "mallory")
        assert r.code == 1 and "label" in r.err, (bad, r.out, r.err)
    assert {h["fqdn"] for h in inst.cli("host", "list", "--json").json()} == {FASS, f"fass.{ZONE}"}

    # the update API takes the name in either spelling and BIND serves the A-label
    assert running.update(FASS, secret, "myip=192.0.2.40") == (200, "good 192.0.2.40\n")
    assert running.update(FASS, secret, f"hostname=fa%C3%9F.{ZONE}&myip=192.0.2.41") == (200, "good 192.0.2.41\n")
    assert inst.dig(FASS, "A") == ["192.0.2.41"]
    assert inst.dig(f"fass.{ZONE}", "A") == []
