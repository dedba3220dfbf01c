"""Updates and results as JSON: what travels through the changes table (pure).

A web node writes each checked ``model.Update`` as one JSON object into a
row; the publisher reads it back. Rows are written by our own nodes, but a
database is shared and outlives versions, so decoding trusts nothing: every
key, type and enum value is checked, and anything else is ``GarbledChange``
(the publisher answers that row ``failed`` and goes on).

An update's guard (a closure over the web node's store) does not travel: the
web node evaluates it right before the hand-over (``roles.ClusterSubmitter``).
"""
from __future__ import annotations

import json
from typing import Any

from .. import errors
from ..model import Actor, Need, Op, Operation, Outcome, Prerequisite, Result, Update

VERSION = 1
MAX_PAYLOAD = 1 << 20  # bytes of one change's JSON; a checked update is far smaller
MAX_ITEMS = 10_000     # operations, prerequisites or rdatas of one update


class GarbledChange(errors.Invalid):
    """A payload that is not an update or a result this version wrote."""


# ---- encoding -------------------------------------------------------------------
def _operation(op: Operation) -> dict[str, Any]:
    return {"op": op.op.value, "name": op.name, "rtype": op.rtype, "rdata": op.rdata, "ttl": op.ttl}


def _prerequisite(need: Prerequisite) -> dict[str, Any]:
    return {"need": need.need.value, "name": need.name, "rtype": need.rtype, "rdatas": sorted(need.rdatas)}


def _actor(actor: Actor) -> dict[str, str]:
    return {"name": actor.name, "client": actor.client, "interface": actor.interface, "agent": actor.agent,
            "request": actor.request}


def encode_update(update: Update) -> str:
    """UPDATE (checked, canonical) as JSON; its guard and change id stay behind."""
    return json.dumps({"v": VERSION, "zone": update.zone, "operations": [_operation(o) for o in update.operations],
                       "prerequisites": [_prerequisite(p) for p in update.prerequisites],
                       "actor": _actor(update.actor)}, separators=(",", ":"), ensure_ascii=True)


def encode_result(result: Result) -> str:
    """RESULT as JSON (the outcome row a waiting web node reads)."""
    unmet = _prerequisite(result.unmet) if result.unmet is not None else None
    return json.dumps({"v": VERSION, "outcome": result.outcome.value, "unmet": unmet, "reason": result.reason},
                      separators=(",", ":"), ensure_ascii=True)


# ---- decoding -----------------------------------------------------------------
def _load(payload: str | bytes | dict) -> dict:
    """PAYLOAD as a JSON object of our version (psycopg hands jsonb over already parsed)."""
    if isinstance(payload, (str, bytes)):
        if len(payload) > MAX_PAYLOAD:
            raise GarbledChange(f"a change payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise GarbledChange(f"a change payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise GarbledChange("a change payload is not a JSON object")
    if payload.get("v") != VERSION:
        raise GarbledChange(f"a change payload of version {payload.get('v')!r}; this ddns reads {VERSION}")
    return payload


def _fields(data: Any, what: str, types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """DATA as an object with exactly TYPES' keys, each of one of its types (bool is no int)."""
    if not isinstance(data, dict) or set(data) != set(types):
        raise GarbledChange(f"{what}: expected the keys {sorted(types)}")
    for key, allowed in types.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise GarbledChange(f"{what}: {key} is {type(value).__name__}")
    return data


def _items(data: Any, what: str) -> list:
    if not isinstance(data, list) or len(data) > MAX_ITEMS:
        raise GarbledChange(f"{what}: expected a list of at most {MAX_ITEMS}")
    return data


def _enum(kind: type, value: str, what: str):
    try:
        return kind(value)
    except ValueError as exc:
        raise GarbledChange(f"{what}: unknown {value!r}") from exc


def _decode_operation(data: Any) -> Operation:
    f = _fields(data, "operation", {"op": (str,), "name": (str,), "rtype": (str,), "rdata": (str,),
                                    "ttl": (int, type(None))})
    return Operation(_enum(Op, f["op"], "operation"), f["name"], f["rtype"], f["rdata"], f["ttl"])


def _decode_prerequisite(data: Any) -> Prerequisite:
    f = _fields(data, "prerequisite", {"need": (str,), "name": (str,), "rtype": (str,), "rdatas": (list,)})
    rdatas = _items(f["rdatas"], "prerequisite rdatas")
    if not all(isinstance(r, str) for r in rdatas):
        raise GarbledChange("prerequisite rdatas: expected strings")
    return Prerequisite(_enum(Need, f["need"], "prerequisite"), f["name"], f["rtype"], frozenset(rdatas))


def decode_update(payload: str | bytes | dict, change_id: int | None = None) -> Update:
    """The update PAYLOAD encodes, carrying CHANGE_ID; GarbledChange for anything else."""
    f = _fields(_load(payload), "update", {"v": (int,), "zone": (str,), "operations": (list,),
                                           "prerequisites": (list,), "actor": (dict,)})
    actor = _fields(f["actor"], "actor", {k: (str,) for k in ("name", "client", "interface", "agent", "request")})
    operations = tuple(_decode_operation(o) for o in _items(f["operations"], "operations"))
    prerequisites = tuple(_decode_prerequisite(p) for p in _items(f["prerequisites"], "prerequisites"))
    return Update(f["zone"], operations, prerequisites, Actor(**actor), change_id=change_id)


def decode_result(payload: str | bytes | dict) -> Result:
    """The result PAYLOAD encodes; GarbledChange for anything else."""
    f = _fields(_load(payload), "result", {"v": (int,), "outcome": (str,), "unmet": (dict, type(None)),
                                           "reason": (str,)})
    unmet = _decode_prerequisite(f["unmet"]) if f["unmet"] is not None else None
    return Result(_enum(Outcome, f["outcome"], "result"), unmet, f["reason"])
