"""The httpreq adapter (lego's httpreq provider, default mode): parsing, pure; the service part is in test_acme."""
from __future__ import annotations

import json

import pytest

from ddns import errors, httpreq
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
