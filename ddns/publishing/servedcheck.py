"""Proof that named serves what is committed: a zone transfer compared with the committed zone, as RR sets.

Incremental publishing means named's zone is no longer re-read from the
committed file, so equality has to be checked, not assumed: ``ddns check
--served`` and the tests transfer each zone (AXFR, TSIG-signed with the
publisher key) and compare it with the zone as committed. Both sides become
``{(owner, type): (ttl, rdatas)}`` with absolute lower-case owners and
canonical rdata text, so formatting, order and relative names do not count;
the SOA (and its serial) does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import dns.exception
import dns.name
import dns.query
import dns.rdatatype
import dns.tsig
import dns.zone

from ..errors import Invalid, Unavailable
from .incremental import read_key

RRsets = dict[tuple[str, str], tuple[int, tuple[str, ...]]]


def zone_rrsets(zone: dns.zone.Zone) -> RRsets:
    """ZONE's RR sets keyed by (absolute owner, type): (TTL, sorted canonical rdatas)."""
    out: RRsets = {}
    for name, node in zone.nodes.items():
        owner = name.derelativize(zone.origin).to_text().lower()
        for rdataset in node.rdatasets:
            rdatas = tuple(sorted(r.to_text() for r in rdataset))
            out[(owner, dns.rdatatype.to_text(rdataset.rdtype))] = (rdataset.ttl, rdatas)
    return out


def text_rrsets(origin: str, text: str) -> RRsets:
    """The RR sets of a zone file's TEXT (one file, no $INCLUDE); Invalid when it does not parse."""
    try:
        return zone_rrsets(dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False))
    except dns.exception.DNSException as exc:
        raise Invalid(f"zone {origin} as committed does not parse: {exc}") from exc


def differences(committed: RRsets, served: RRsets) -> list[str]:
    """What differs, one line per RR set: ``-`` committed only, ``+`` served only, ``~`` both but unlike."""
    lines = []
    for key in sorted(committed.keys() | served.keys()):
        owner, rtype = key
        mine, theirs = committed.get(key), served.get(key)
        if mine == theirs:
            continue
        if theirs is None:
            lines.append(f"- {owner} {mine[0]} {rtype} {' | '.join(mine[1])}   (committed, not served)")
        elif mine is None:
            lines.append(f"+ {owner} {theirs[0]} {rtype} {' | '.join(theirs[1])}   (served, not committed)")
        else:
            lines.append(f"~ {owner} {rtype}: committed {mine[0]} {' | '.join(mine[1])}; "
                         f"served {theirs[0]} {' | '.join(theirs[1])}")
    return lines


def transfer(zone: str, server: str, port: int, key: dns.tsig.Key | None, timeout: float = 10.0) -> RRsets:
    """ZONE as SERVER serves it, by AXFR (signed with KEY when given); Unavailable when it refuses."""
    try:
        xfr = dns.query.xfr(server, zone, port=port, timeout=timeout, lifetime=max(timeout, 60.0),
                            keyring=key, keyname=key.name if key else None, relativize=False)
        return zone_rrsets(dns.zone.from_xfr(xfr, relativize=False, check_origin=False))
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        raise Unavailable(f"zone transfer of {zone} from {server}:{port}: {exc or type(exc).__name__}") from exc


def check(zone_names: list[str], committed: Callable[[str], str],
          served: Callable[[str], RRsets]) -> dict[str, list[str]]:
    """The differences per zone between COMMITTED (its text) and SERVED (its RR sets); [] where equal."""
    return {zone: differences(text_rrsets(zone, committed(zone)), served(zone)) for zone in zone_names}


def key_or_none(path: Path | None) -> dns.tsig.Key | None:
    """The publisher key when its file exists (transfers are then signed), else None."""
    return read_key(path) if path is not None and path.exists() else None
