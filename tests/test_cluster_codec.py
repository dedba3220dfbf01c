"""The changes table's JSON: updates and results round-trip; anything else is a clear GarbledChange."""
import json

import pytest

from ddns import errors
from ddns.cluster import codec
from ddns.model import Actor, Need, Op, Operation, Outcome, Prerequisite, Result, Update

UPDATE = Update("dyn.example.test",
                (Operation(Op.DELETE_RRSET, "a.dyn.example.test", "A"),
                 Operation(Op.ADD, "a.dyn.example.test", "A", "192.0.2.1", 60),
                 Operation(Op.ADD, "a.dyn.example.test", "TXT", '"v=spf1 -all \\"q\\" ünï"'),
                 Operation(Op.DELETE_NAME, "b.dyn.example.test")),
                (Prerequisite(Need.RRSET_EQUALS, "a.dyn.example.test", "A", frozenset({"192.0.2.9", "192.0.2.8"})),
                 Prerequisite(Need.NAME_NOT_IN_USE, "c.dyn.example.test")),
                Actor("host:a.dyn.example.test", "198.51.100.7", "dyndns2", "ddclient/3.10\n", "r-1"))


def test_an_update_round_trips_with_its_change_id():
    back = codec.decode_update(codec.encode_update(UPDATE), change_id=42)
    assert back == Update(UPDATE.zone, UPDATE.operations, UPDATE.prerequisites, UPDATE.actor, change_id=42)
    assert back.guard is None


def test_an_update_round_trips_from_parsed_jsonb():
    assert codec.decode_update(json.loads(codec.encode_update(UPDATE))).operations == UPDATE.operations


def test_the_guard_does_not_travel():
    guarded = Update(UPDATE.zone, UPDATE.operations, guard=lambda: False)
    assert "guard" not in codec.encode_update(guarded)


@pytest.mark.parametrize("result", [
    Result(Outcome.PUBLISHED), Result(Outcome.FAILED, reason="commit failed: disk full"),
    Result(Outcome.UNMET, Prerequisite(Need.RRSET_EXISTS, "x.dyn.example.test", "AAAA")),
    Result(Outcome.UNMET, Prerequisite(Need.RRSET_EQUALS, "x.dyn.example.test", "A", frozenset({"192.0.2.1"}))),
])
def test_a_result_round_trips(result):
    assert codec.decode_result(codec.encode_result(result)) == result


def _with(**changes):
    data = json.loads(codec.encode_update(UPDATE))
    data.update(changes)
    return json.dumps(data)


def _op(**changes):
    data = json.loads(codec.encode_update(UPDATE))
    data["operations"][1].update(changes)
    return json.dumps(data)


GARBLED = [
    "", "not json", "[1, 2]", "null", '"text"', "{}", '{"v": 2}', '{"v": true}',
    _with(v=0), _with(zone=7), _with(zone=None), _with(operations="add"), _with(operations=[1]),
    _with(prerequisites={}), _with(actor="host:a"), _with(actor={"name": "a"}), _with(extra=1),
    _op(op="replace"), _op(ttl="60"), _op(ttl=True), _op(ttl=1.5), _op(name=["a"]), _op(more=1),
    _with(prerequisites=[{"need": "name-in-use", "name": "a", "rtype": "", "rdatas": [1]}]),
    _with(prerequisites=[{"need": "maybe", "name": "a", "rtype": "", "rdatas": []}]),
    _with(operations=[{"op": "add"}] * 3),
    "[" * 100_000 + "]" * 100_000,
    '{"v": 1, "zone": "' + "a" * (codec.MAX_PAYLOAD + 1) + '"}',
    _with(operations=[json.loads(codec.encode_update(UPDATE))["operations"][0]] * (codec.MAX_ITEMS + 1)),
    b"\xff\xfe\x00",
]


@pytest.mark.parametrize("payload", GARBLED)
def test_a_garbled_update_is_a_clear_error(payload):
    with pytest.raises(codec.GarbledChange) as caught:
        codec.decode_update(payload)
    assert isinstance(caught.value, errors.DdnsError) and str(caught.value)


@pytest.mark.parametrize("payload", ["{}", '{"v": 1, "outcome": "good", "unmet": null, "reason": ""}',
                                     '{"v": 1, "outcome": "published", "unmet": 3, "reason": ""}',
                                     '{"v": 1, "outcome": "published", "unmet": null}', "[]", {"v": 1}])
def test_a_garbled_result_is_a_clear_error(payload):
    with pytest.raises(codec.GarbledChange):
        codec.decode_result(payload)
