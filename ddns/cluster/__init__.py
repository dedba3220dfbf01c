"""Several web nodes and one elected publisher, coordinated through PostgreSQL.

``codec`` turns updates and results into JSON and back (pure), ``changes``
is the changes table (web nodes hand updates over and wait for their outcome,
the active publisher consumes them), ``election`` holds the advisory lock that
makes one publisher active, ``takeover`` brings a newly elected publisher's
clone to the upstream's state and settles rows the upstream already has, and
``roles`` wires them into ``ddns serve --role``.
"""
from __future__ import annotations

from typing import Protocol

from .. import errors
from ..db.base import StoreUnavailable
from ..model import Result, Update

__all__ = ["QueueUnavailable", "Submitter", "Unanswered"]


# The cluster's errors live here, apart from psycopg (``changes``): the metrics count them without loading it.
class QueueUnavailable(StoreUnavailable):
    """The database of the changes table failed under a hand-over (retry)."""


class Unanswered(errors.Busy):
    """No outcome in time: the change is queued and may still be applied (retry).

    Busy, "the publisher did not answer in time": every interface answers it
    as retryable (911, HTTP 503 with Retry-After, SERVFAIL).
    """


class Submitter(Protocol):
    """Where ``Service.publish`` hands checked updates: ``background.Background`` (the in-process publisher
    thread) or ``changes.ChangeQueue`` (the changes table); either answers one result per update."""

    def publish(self, updates: list[Update], timeout: float | None = None) -> list[Result]: ...
