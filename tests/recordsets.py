"""Tests' shorthand for dynamic records: {(label, type): "one rdata"} <-> ddns.records.Dynamic."""
from __future__ import annotations

from ddns.records import Dynamic, RecordSet


def as_sets(plain: dict[tuple[str, str], str]) -> Dynamic:
    """One-RR sets with the zone's TTL, from {(label, type): rdata}."""
    return {key: RecordSet((rdata,)) for key, rdata in plain.items()}


def as_plain(records: Dynamic) -> dict[tuple[str, str], str]:
    """{(label, type): rdata} of sets holding one RR each with the zone's TTL (as hosts' records are)."""
    assert all(len(rs.rdatas) == 1 and rs.ttl is None for rs in records.values()), records
    return {key: rs.rdatas[0] for key, rs in records.items()}
