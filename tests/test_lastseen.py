"""Last-seen batching (ddns.lastseen): a host's older entry never lands after its newer one. Pure."""
from __future__ import annotations

from ddns.lastseen import SeenBatch
from ddns.store import Busy, LastSeen


def seen(when: float) -> LastSeen:
    return LastSeen(when, "192.0.2.1", "test", False)


def test_each_host_s_latest_entry_is_written_once():
    batch, written = SeenBatch(), []
    for when in (1.0, 2.0, 3.0):
        batch.note("a.example.org", seen(when))
    batch.note("b.example.org", seen(1.5))
    assert batch.flush(written.append)
    assert written == [{"a.example.org": seen(3.0), "b.example.org": seen(1.5)}]
    assert batch.flush(written.append) and len(written) == 1  # nothing left: nothing written


def test_a_flush_during_another_s_write_does_not_write_a_newer_entry_under_it():
    """Two batches for one host: the second flusher must not finish before the first one's older write lands."""
    batch, db = SeenBatch(), {}

    def slow_write(entries):
        batch.note("a.example.org", seen(2.0))  # a newer update comes while this write runs
        assert not batch.flush(db.update)  # a page's flush meanwhile: it does not write t=2 under t=1
        db.update(entries)  # the older write lands now
    batch.note("a.example.org", seen(1.0))
    batch.flush(slow_write)
    batch.flush(db.update)
    assert db["a.example.org"] == seen(2.0)


def test_entries_kept_while_busy_never_go_over_a_newer_one():
    batch, db = SeenBatch(), {}

    def busy(entries):
        batch.note("a.example.org", seen(2.0))
        batch.flush(db.update)  # another flusher while this one's write waits for the database
        raise Busy("database is locked")
    batch.note("a.example.org", seen(1.0))
    batch.flush(busy)  # t=1 is kept for the next flush
    batch.flush(db.update)
    assert db["a.example.org"] == seen(2.0)
