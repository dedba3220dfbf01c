"""The httpreq adapter (lego's httpreq provider, default mode): parsing (pure), then over HTTP against a served
instance. lego itself getting a certificate through it is in test_acme."""
from __future__ import annotations

import json

import dns.message
import dns.query
import dns.rdatatype
import pytest

from conftest import query
from ddns import errors, httpreq
from ddns.gitrepo import parse_trailers
from ddns.model import Op, Operation, Outcome

VALUE = "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_parses_lego_default_mode():
    challenge = httpreq.parse(body(fqdn="_acme-challenge.MyVM.dyn.example.test.", value=VALUE))
    assert challenge == httpreq.Challenge("myvm.dyn.example.test", VALUE)
    assert challenge.name == "_acme-challenge.myvm.dyn.example.test"
    assert challenge.rdata == f'"{VALUE}"'


def test_the_trailing_dot_is_optional():
    assert httpreq.parse(body(fqdn="_acme-challenge.myvm.dyn.example.test", value=VALUE)).host == "myvm.dyn.example.test"


HOSTILE = {
    "not JSON": b"fqdn=_acme-challenge.myvm.dyn.example.test&value=x",
    "not UTF-8": b'{"fqdn": "\xff", "value": "x"}',
    "empty": b"",
    "a list": b'["_acme-challenge.myvm.dyn.example.test.", "x"]',
    "a string": b'"x"',
    "too long": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value=VALUE, pad="x" * httpreq.MAX_BODY_BYTES),
    "deeply nested": b"[" * 2000 + b"]" * 2000,
    "fqdn missing": body(value=VALUE),
    "value missing": body(fqdn="_acme-challenge.myvm.dyn.example.test."),
    "RAW mode": body(domain="myvm.dyn.example.test", token="t", keyAuth="k"),
    "fqdn not a string": body(fqdn=["_acme-challenge.myvm.dyn.example.test."], value=VALUE),
    "value not a string": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value=42),
    "value empty": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value=""),
    "value with a newline": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value=VALUE + "\nx A 192.0.2.1"),
    "value with quotes": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value=VALUE + '" "evil'),
    "value with a space": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value="a b"),
    "value with a semicolon": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value="a;b"),
    "value too long": body(fqdn="_acme-challenge.myvm.dyn.example.test.", value="a" * 256),
    "not a challenge name": body(fqdn="myvm.dyn.example.test.", value=VALUE),
    "a challenge label deeper": body(fqdn="x._acme-challenge.myvm.dyn.example.test.", value=VALUE),
    "two challenge labels": body(fqdn="_acme-challenge._acme-challenge.myvm.dyn.example.test.", value=VALUE),
    "empty host": body(fqdn="_acme-challenge.", value=VALUE),
    "bad host": body(fqdn="_acme-challenge.my vm.dyn.example.test.", value=VALUE),
    "host with a newline": body(fqdn="_acme-challenge.myvm.dyn.example.test.\nx", value=VALUE),
    "duplicate key": b'{"fqdn": "_acme-challenge.other.dyn.example.test.", "fqdn": '
                     b'"_acme-challenge.myvm.dyn.example.test.", "value": "x"}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bodies_are_invalid(case):
    with pytest.raises(errors.Invalid):
        httpreq.parse(HOSTILE[case])


def test_present_adds_the_value_with_the_ttl_and_cleanup_removes_only_it():
    challenge = httpreq.Challenge("myvm.dyn.example.test", VALUE)
    name = "_acme-challenge.myvm.dyn.example.test"
    assert httpreq.operations("present", challenge, 60) == [Operation(Op.ADD, name, "TXT", f'"{VALUE}"', 60)]
    assert httpreq.operations("cleanup", challenge, 60) == [Operation(Op.DELETE_RR, name, "TXT", f'"{VALUE}"')]


def test_every_outcome_has_a_status():
    assert set(httpreq.STATUS) == set(Outcome)


# ------------------------------------------------------------ over HTTP, served

HOST = "myvm.dyn.example.test"
NAME = "_acme-challenge." + HOST
OTHER_VALUE = "9ihDbjYfTExAYeDs4DBUeuTo18KBzwvTEjUnSwd32-c"


def post(running, action: str, data: bytes, auth=None, headers=None):
    status, text, _ = running.request(f"{httpreq.PREFIX}/{action}", auth=auth, method="POST", data=data,
                                      headers={"Content-Type": "application/json", **(headers or {})})
    return status, text


def challenge(value: str = VALUE, host: str = HOST) -> bytes:
    return body(fqdn=f"_acme-challenge.{host}.", value=value)


def served_txt(running) -> tuple[list[str], int | None]:
    """The TXT values named serves at NAME and their TTL."""
    q = dns.message.make_query(NAME + ".", "TXT")
    response = dns.query.udp(q, "127.0.0.1", port=running.instance.dns_port, timeout=2)
    rrsets = [r for r in response.answer if r.rdtype == dns.rdatatype.TXT]
    return (sorted(r.to_text() for r in rrsets[0]), rrsets[0].ttl) if rrsets else ([], None)


def test_present_adds_values_beside_each_other_and_cleanup_removes_one(running):
    inst = running.instance
    auth = (HOST, inst.add_host(HOST))
    before = inst.commit_count()
    assert post(running, "present", challenge(VALUE), auth)[0] == 200
    assert post(running, "present", challenge(OTHER_VALUE), auth)[0] == 200
    assert served_txt(running) == (sorted([f'"{VALUE}"', f'"{OTHER_VALUE}"']), 60)
    assert post(running, "present", challenge(VALUE), auth)[0] == 200      # already there: no commit
    assert inst.commit_count() == before + 2
    assert post(running, "cleanup", challenge(VALUE), auth)[0] == 200
    assert served_txt(running) == ([f'"{OTHER_VALUE}"'], 60)
    assert post(running, "cleanup", challenge(VALUE), auth)[0] == 200      # gone already: no commit
    assert inst.commit_count() == before + 3
    assert post(running, "cleanup", challenge(OTHER_VALUE), auth)[0] == 200
    assert served_txt(running) == ([], None)
    records = [r for sha in inst.git("rev-list", "HEAD~4..HEAD").split()
               for r in parse_trailers(inst.git("log", "-1", "--format=%B", sha))]
    assert {(r.host, r.type, r.actor, r.interface, r.client) for r in records} == \
        {(NAME, "TXT", f"host:{HOST}", "httpreq", "127.0.0.1")}


def test_refusals_change_nothing(running):
    inst = running.instance
    secret = inst.add_host(HOST)
    other_secret = inst.add_host("other." + inst.zone)
    token = inst.cli("user", "token", "alice", "--json").json()["token"]
    auth = (HOST, secret)
    before = inst.commit_count()
    cases = [
        ("no credentials", "present", challenge(), None, 401),
        ("wrong secret", "present", challenge(), (HOST, "wrong-secret"), 401),
        ("another host's secret", "present", challenge(), ("other." + inst.zone, other_secret), 403),
        ("another host's name", "present", challenge(host="other." + inst.zone), auth, 403),
        ("a name outside every zone", "present", challenge(host="myvm.example.org"), auth, 403),
        ("the account token", "present", challenge(), ("alice", token), 403),
        ("cleanup of another host", "cleanup", challenge(host="other." + inst.zone), auth, 403),
    ] + [(case, "present", HOSTILE[case], auth, 400) for case in sorted(HOSTILE)]
    for what, action, data, credentials, expected in cases:
        status, text = post(running, action, data, credentials)
        assert status == expected, (what, status, text)
        assert "Traceback" not in text
    assert post(running, "present", b"x" * (httpreq.MAX_BODY_BYTES * 20), auth)[0] in (400, 413)
    assert running.request(f"{httpreq.PREFIX}/present", auth=auth)[0] == 405
    assert post(running, "delete", challenge(), auth)[0] == 404
    assert inst.commit_count() == before
    assert served_txt(running) == ([], None)
    assert query(inst.dns_port, "_acme-challenge.other." + inst.zone, "TXT") == []
    assert post(running, "present", challenge(), auth)[0] == 200  # and the host's own still works


def test_a_hosts_history_shows_its_certificate_challenges(running):
    """`ddns history HOST` lists the host's _acme-challenge TXT beside its addresses; a neighbour's stays out."""
    inst = running.instance
    auth = (HOST, inst.add_host(HOST))
    neighbour = "other" + HOST  # ends in HOST's name, but is another host
    inst.add_host(neighbour)
    assert running.update(HOST, auth[1], "myip=192.0.2.44")[0] == 200
    assert post(running, "present", challenge(VALUE), auth)[0] == 200
    assert post(running, "cleanup", challenge(VALUE), auth)[0] == 200
    r = inst.cli("host", "set", neighbour, "192.0.2.45")
    assert r.code == 0, r.err
    entries = inst.cli("history", HOST, "--json").json()
    assert [(e["host"], e["type"], e["old"], e["new"]) for e in entries] == [
        (NAME, "TXT", f'"{VALUE}"', None),
        (NAME, "TXT", None, f'"{VALUE}"'),
        (HOST, "A", None, "192.0.2.44"),
    ]
