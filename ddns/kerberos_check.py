"""Does the keytab hold the principal ``nsupdate -g`` asks a ticket for? Pure.

A GSS-TSIG client asks its KDC for a ticket to ``DNS/<the zone's SOA
MNAME>@REALM`` (the MNAME without its trailing dot, as zone.toml's
``primary_ns`` makes it), so the service's keytab (``kerberos.keytab``) must
hold that principal for every zone, in the realm ``kerberos.realm`` names
or, when it is unset, in whichever realms the keytab has it. ``check`` makes
one entry per zone (and realm) ``{"zone", "mname", "principal", "present",
"error"}``: ``present`` says GSS-API accepts with it, ``error`` why the
keytab could not be asked at all. ``advice`` is what ``ddns kerberos check``
prints, ``reasons`` what makes /healthz degraded. The file and GSS-API are
ddns.keytab's, passed in.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable, Iterable

from .errors import Invalid

SERVICE = "DNS"


def mname(primary_ns: str, zone: str) -> str:
    """The SOA MNAME as a principal's host part: absolute, without the trailing dot."""
    if primary_ns.endswith("."):
        return primary_ns[:-1]
    return zone if primary_ns == "@" else f"{primary_ns}.{zone}"


def principals(data: bytes) -> list[str]:
    """The principals (``name/instance@REALM``) of an MIT keytab (format 0x502); Invalid for anything else."""
    if data[:2] != b"\x05\x02":
        raise Invalid("not a keytab of format version 2 (0x0502)")
    found: list[str] = []
    at = 2
    try:
        while at + 4 <= len(data):
            (size,) = struct.unpack_from("!i", data, at)
            at += 4
            if size == 0:
                break
            if size > 0:
                if at + size > len(data):
                    raise Invalid("an entry runs past the end of the file")
                found.append(_principal(data[at:at + size]))
            at += abs(size)  # a negative size is a hole left by a removed entry
    except struct.error as exc:
        raise Invalid(f"a truncated entry: {exc}") from exc
    return sorted(set(found))


def _principal(entry: bytes) -> str:
    """The principal an entry names: a count of components, the realm, the components (each length-prefixed)."""
    (count,) = struct.unpack_from("!H", entry, 0)
    at, parts = 2, []
    for _ in range(count + 1):
        (length,) = struct.unpack_from("!H", entry, at)
        if at + 2 + length > len(entry):
            raise Invalid("a name runs past the end of its entry")
        parts.append(entry[at + 2: at + 2 + length].decode("utf-8", "replace"))
        at += 2 + length
    realm, components = parts[0], parts[1:]
    return "/".join(components) + "@" + realm


def check(mnames: dict[str, str], realm: str, keytab: Path | None, read: Callable[[Path], bytes],
          holds: Callable[[Path, str], str]) -> list[dict]:
    """One entry per zone of MNAMES (zone -> MNAME) and realm; see the module. READ and HOLDS: ddns.keytab's."""
    error, held = "", []
    if keytab is None:
        error = "kerberos.keytab is not set: GSS-TSIG is off"
    else:
        try:
            held = principals(read(keytab))
        except OSError as exc:
            error = f"cannot read the keytab {keytab}: {exc.strerror or exc}"
        except Invalid as exc:
            error = f"{keytab} is not a keytab: {exc}"
    entries = []
    for zone, host in sorted(mnames.items()):
        wanted = f"{SERVICE}/{host}"
        names = [f"{wanted}@{realm}"] if realm else [p for p in held if p.rpartition("@")[0] == wanted] or [wanted]
        for principal in names:
            present, why = False, error
            if not error and principal in held:
                why = holds(keytab, principal)
                present = not why
            entries.append({"zone": zone, "mname": host, "principal": principal, "present": present, "error": why})
    return entries


def advice(entries: Iterable[dict], keytab: Path | None) -> list[str]:
    """The lines ``ddns kerberos check`` prints: OK, or MISSING with the commands that make the principal."""
    lines = []
    for e in entries:
        zone, principal = e["zone"], e["principal"]
        if e["present"]:
            lines.append(f"OK       {zone}: {principal} is in {keytab}")
        elif e["error"]:
            lines.append(f"ERROR    {zone}: {principal}: {e['error']}")
        else:
            if "@" not in principal:
                principal += "@REALM"
                lines.append(f"MISSING  {zone}: the keytab holds no {e['principal']} in any realm "
                             f"(set kerberos.realm to say which one)")
            else:
                lines.append(f"MISSING  {zone}: {principal} is not in {keytab}")
            lines.append(f'         make it: kadmin.local -q "addprinc -randkey {principal}"')
            lines.append(f'         then:    kadmin.local -q "ktadd -k {keytab} {principal}"')
    return lines or ["no zones"]


def reasons(entries: Iterable[dict]) -> list[str]:
    """Why /healthz is degraded for Kerberos: every zone whose principal GSS-TSIG cannot accept with."""
    return [f"kerberos: {e['principal']} of zone {e['zone']}: {e['error'] or 'not in the keytab'}"
            for e in entries if not e["present"]]
