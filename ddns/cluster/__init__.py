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

from ..model import Result, Update


class Submitter(Protocol):
    """Where ``Service.publish`` hands checked updates: ``background.Background`` (the in-process publisher
    thread) or ``changes.ChangeQueue`` (the changes table); either answers one result per update."""

    def publish(self, updates: list[Update], timeout: float | None = None) -> list[Result]: ...
