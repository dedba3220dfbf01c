"""A web node's publisher: its commits go through the changes table to the active publisher.

A web node keeps a clone of the zones upstream to read (its zones, a host's
records for the portal), reset to the upstream whenever the active publisher
pushed. What calls ``Publisher.commit`` directly (a host's deletion: its
records go first, then the host, under the lock) gets the active
publisher's results, and reads the clone as the upstream has it after them.
Zone settings and new zones (admins' changes) are made on the publisher's
node: here they answer Unavailable.
"""
from __future__ import annotations

import logging

from .. import errors
from ..model import Update
from ..publishing.publisher import Batch, Publisher
from . import upstream
from .changes import ChangeQueue

log = logging.getLogger("ddns.cluster")


class ZoneChangesElsewhere(errors.Unavailable):
    """A zone change asked of a web node."""

    def __init__(self):
        super().__init__("this is a web node: zone changes are made on the publisher's node")


class WebPublisher(Publisher):
    """The publisher of a web node (see the module): QUEUE commits, the clone follows BRANCH of the upstream."""

    def __init__(self, *args, queue: ChangeQueue, branch: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue = queue
        self.branch = branch
        self.followed: str | None = None  # the upstream commit the clone is at

    def follow(self) -> str | None:
        """Reset the clone to the upstream."""
        self.followed = upstream.follow_locked(self, self.branch)
        return self.followed

    def commit(self, updates: list[Update]) -> Batch:
        results = self.queue.publish(updates)
        try:
            self.follow()
        except Exception as exc:  # the results stand (the active publisher applied them); the follower catches up
            log.warning("following the upstream after a hand-over failed: %s", exc)
        return Batch(results, [u.zone for u in updates], {})

    def add_zone(self, *_args, **_kwargs):
        raise ZoneChangesElsewhere()

    update_settings = sync = reconcile = add_zone
