"""One exception root for everything the service refuses or cannot do, and the one table of its codes.

A refusal (bad input, not allowed, no such object, too many) is a
``DdnsError`` of some kind, never a bare ``ValueError``: a parsing slip in our
own code must surface as a bug, not as a polite "invalid input". Every
interface maps a ``DdnsError`` through ``CODES``: the CLI to an exit status,
HTTP to a status, the DNS listener to an rcode.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    INVALID = "invalid"          # the request is malformed or a value is out of range
    REFUSED = "refused"          # well-formed, but the identity may not do it
    NOT_FOUND = "not-found"      # no such object, or one the asker may not see (the same answer)
    CONFLICT = "conflict"        # the name or object exists already
    TOO_MANY = "too-many"        # rate-limited
    BUSY = "busy"                # the database or the publisher did not answer in time
    UNAVAILABLE = "unavailable"  # a zone is held or broken: nothing is published from it
    INTERNAL = "internal"        # our fault; nothing acknowledged was lost


class DdnsError(Exception):
    """The root: a message for the person who asked, and a kind that decides the codes."""

    kind: Kind = Kind.INTERNAL


class Invalid(DdnsError):
    kind = Kind.INVALID


class Refused(DdnsError):
    kind = Kind.REFUSED


class NotFound(DdnsError):
    kind = Kind.NOT_FOUND


class Conflict(DdnsError):
    kind = Kind.CONFLICT


class TooMany(DdnsError):
    kind = Kind.TOO_MANY


class Busy(DdnsError):
    kind = Kind.BUSY


class Unavailable(DdnsError):
    kind = Kind.UNAVAILABLE


class Internal(DdnsError):
    kind = Kind.INTERNAL


@dataclass(frozen=True)
class Codes:
    exit: int    # the CLI's exit status (1: refused or failed, nothing changed -- as ddns.cli.Exit.ERROR)
    http: int    # the JSON API's and the portal's status
    rcode: str   # the DNS listener's rcode (dns.rcode name)


CODES: dict[Kind, Codes] = {
    Kind.INVALID: Codes(1, 400, "FORMERR"),
    Kind.REFUSED: Codes(1, 403, "REFUSED"),
    Kind.NOT_FOUND: Codes(1, 404, "NOTAUTH"),
    Kind.CONFLICT: Codes(1, 409, "YXDOMAIN"),
    Kind.TOO_MANY: Codes(1, 429, "REFUSED"),
    Kind.BUSY: Codes(1, 503, "SERVFAIL"),
    Kind.UNAVAILABLE: Codes(1, 503, "SERVFAIL"),
    Kind.INTERNAL: Codes(1, 500, "SERVFAIL"),
}


def codes(error: DdnsError) -> Codes:
    """The exit status, HTTP status and rcode of ERROR."""
    return CODES[error.kind]
