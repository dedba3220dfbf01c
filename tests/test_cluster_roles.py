"""A cluster node's configuration, its clone following the upstream, and settling rows the upstream has."""
import subprocess
import threading
from contextlib import contextmanager

import psycopg
import pytest

from conftest import free_port
from ddns import config as configmod, errors
from ddns.cluster import changes, codec, roles, upstream
from ddns.cluster.election import Elector
from ddns.cluster.takeover import Follower, Takeover, settle_applied
from ddns.db import Busy as DbBusy, StoreUnavailable, connect as db_connect, migrations
from ddns.gitrepo import ChangeRecord, commit_message
from ddns.model import Actor, Op, Operation, Outcome, Update
from pgserver import pg_server, pg_url  # noqa: F401

ZONE = "dyn.example.test"


def _config(**values):
    return configmod.load(None, environ={}, overrides=values)


@pytest.mark.parametrize("values, words", [
    ({"cluster.role": "web", "zones.upstream": "/srv/zones.git"}, "store.url"),
    ({"cluster.role": "publisher", "store.url": "sqlite:///x", "zones.upstream": "/srv/zones.git"}, "store.url"),
    ({"cluster.role": "web", "store.url": "postgresql://db/ddns"}, "zones.upstream"),
    ({"cluster.role": "primary", "store.url": "postgresql://db/ddns", "zones.upstream": "/srv/z.git"}, "cluster.role"),
])
def test_a_cluster_role_without_what_it_needs_is_refused_clearly(values, words):
    with pytest.raises(configmod.ConfigError) as caught:
        roles.cluster_config(_config(**values))
    assert words in str(caught.value)


def test_a_web_node_runs_no_named_and_a_node_pushes_at_once():
    cfg = roles.cluster_config(_config(**{"cluster.role": "web", "store.url": "postgresql://db/ddns",
                                          "zones.upstream": "/srv/zones.git"}))
    assert cfg["bind.managed"] is False and cfg["zones.push_seconds"] >= 1e9


def test_serve_refuses_an_unknown_role(instance, capsys):
    with pytest.raises(SystemExit) as caught:
        instance.cli("serve", "--role", "primary")
    assert caught.value.code == 2 and "invalid choice" in capsys.readouterr().err


def _git(path, *args):
    return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True, text=True).stdout


def _service_commit(repo, n: int, change: int | None, path: str = "dynamic/ff.records") -> None:
    """A commit as the service makes them (its identity, a service file), with one trailer of CHANGE."""
    record = ChangeRecord(f"h{n}.{ZONE}", "A", None, f"192.0.2.{n}", f"host:h{n}.{ZONE}", "", "dyndns2", change=change)
    (repo / ZONE / path).parent.mkdir(exist_ok=True)
    (repo / ZONE / path).write_text(f"h{n} A 192.0.2.{n}\n")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=ddns", "-c", "user.email=ddns@localhost", "commit", "-q", "-m", commit_message([record]))


def test_follow_discards_the_nodes_unpushed_commits(instance, tmp_path):
    clone = tmp_path / "clone"
    upstream.ensure_clone(clone, str(instance.dir / "zones.git"), fsync=False)
    pushed = upstream.follow(clone, "main")
    assert _git(clone, "rev-parse", "HEAD").strip() == pushed
    (clone / ZONE / "stray").write_text("never committed")
    _service_commit(clone, 1, 1)
    assert upstream.follow(clone, "main") == pushed
    assert _git(clone, "rev-parse", "HEAD").strip() == pushed and not (clone / ZONE / "stray").exists()
    assert _git(clone, "status", "--porcelain") == ""


def test_follow_of_an_upstream_without_the_branch_is_a_clear_error(tmp_path):
    bare = tmp_path / "empty.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    upstream.ensure_clone(tmp_path / "clone", str(bare), fsync=False)
    with pytest.raises(upstream.NoUpstream):
        upstream.follow(tmp_path / "clone", "main")


def _queued(url: str, count: int) -> list[int]:
    """COUNT rows queued in the changes table of a store at URL; their ids."""
    migrations.upgrade(db_connect(url))
    update = Update(ZONE, (Operation(Op.ADD, f"x.{ZONE}", "A", "192.0.2.1"),), actor=Actor("host:x"))
    with psycopg.connect(url, autocommit=True) as conn:
        return changes.insert(conn, [update] * count)


def test_the_rows_the_upstream_has_are_settled_and_the_others_stay_queued(instance, pg_url):
    ids = _queued(pg_url, 4)
    service = instance.open_service()
    _service_commit(instance.repo, 1, ids[0])
    _service_commit(instance.repo, 3, ids[2])
    _service_commit(instance.repo, 9, None)  # a change of no cluster row
    _service_commit(instance.repo, 4, ids[3], path="static.zone")  # a human's commit: its trailer is not trusted
    assert settle_applied(pg_url, service) == [ids[0], ids[2]]
    with psycopg.connect(pg_url) as conn:
        rows = dict(conn.execute("SELECT id, state FROM changes").fetchall())
        [outcome] = conn.execute("SELECT outcome FROM changes WHERE id = %s", (ids[0],)).fetchone()
    assert rows == {ids[0]: "done", ids[1]: "queued", ids[2]: "done", ids[3]: "queued"}
    assert codec.decode_result(outcome).outcome is Outcome.PUBLISHED
    assert settle_applied(pg_url, service) == []  # once


def test_a_trailer_without_a_change_id_is_written_as_before():
    record = ChangeRecord("h.dyn.example.test", "A", None, "192.0.2.1", "host:h", "", "dyndns2")
    assert '"change"' not in record.trailer()
    assert '"change":7' in ChangeRecord(**{**record.__dict__, "change": 7}).trailer()


def test_an_unreachable_database_stops_a_node_with_a_clear_error(instance, tmp_path):
    cfg = _config(**{"cluster.role": "web", "store.url": f"postgresql://postgres@127.0.0.1:{free_port()}/none",
                     "zones.upstream": str(instance.dir / "zones.git"), "zones.repo": str(tmp_path / "clone"),
                     "store.path": str(tmp_path / "unused.sqlite3")})
    with pytest.raises(StoreUnavailable) as caught:
        roles.serve(cfg)
    assert isinstance(caught.value, errors.Unavailable)


def test_a_committer_name_with_any_separator_does_not_block_the_takeover(instance, pg_url):
    """An admin's commit with control characters in its committer name: not the service's, and no refusal."""
    ids = _queued(pg_url, 2)
    service = instance.open_service()
    _service_commit(instance.repo, 1, ids[0])
    record = ChangeRecord(f"h2.{ZONE}", "A", None, "192.0.2.2", f"host:h2.{ZONE}", "", "dyndns2", change=ids[1])
    (instance.repo / ZONE / "dynamic" / "ff.records").write_text("h2 A 192.0.2.2\n")
    _git(instance.repo, "add", "-A")
    _git(instance.repo, "-c", "user.name=dd\x1ens\x1f\x1c", "-c", "user.email=ddns@localhost", "commit", "-q", "-m",
         commit_message([record]))
    _service_commit(instance.repo, 3, None)
    assert settle_applied(pg_url, service) == [ids[0]]  # the admin's trailer is not trusted: its row stays queued
    with psycopg.connect(pg_url) as conn:
        assert dict(conn.execute("SELECT id, state FROM changes").fetchall()) == {ids[0]: "done", ids[1]: "queued"}


@contextmanager
def a_commit_between_the_two_logs(service, commit):
    """SERVICE's repository runs COMMIT (a real commit) right after the history's first log, once; yields [True] then."""
    repo = service.publisher.repo
    git, landed = repo._git, []

    class CommitAfterTheFirstLog:
        def __getattr__(self, name):
            return getattr(git, name)

        def log(self, *args, **kwargs):
            out = git.log(*args, **kwargs)
            if not landed and "--format=%H%x00%cI%x00%B" in args:
                commit()
                landed.append(True)
            return out

    repo._git = CommitAfterTheFirstLog()
    try:
        yield landed
    finally:
        repo._git = git


def test_a_history_that_cannot_be_trusted_refuses_the_takeover(instance, pg_url):
    """The two logs of the upstream's history disagree: the publisher must not guess which rows it has.

    A real commit lands between the history's two ``git log`` runs (a push at
    that moment), so the second lists a commit the first did not.
    """
    ids = _queued(pg_url, 2)
    service = instance.open_service()
    _service_commit(instance.repo, 1, ids[0])
    with a_commit_between_the_two_logs(service, lambda: _service_commit(instance.repo, 2, ids[1])) as landed:
        with pytest.raises(upstream.UntrustedHistory) as refused:
            settle_applied(pg_url, service)
    assert landed
    assert "refusing to take over" in str(refused.value) and errors.codes(refused.value).exit == 1
    with psycopg.connect(pg_url) as conn:
        assert {r[0] for r in conn.execute("SELECT state FROM changes")} == {"queued"}  # nothing settled


def test_a_row_lock_not_granted_while_settling_is_busy_and_settles_nothing(instance, pg_url):
    """Another connection holds a queued row's lock past the settling's lock_timeout: Busy, not psycopg's error."""
    ids = _queued(pg_url, 2)
    service = instance.open_service()
    _service_commit(instance.repo, 1, ids[0])
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT id FROM changes WHERE id = %s FOR UPDATE", (ids[0],))
        with pytest.raises(DbBusy) as caught:
            settle_applied(pg_url + "?options=-c%20lock_timeout%3D100", service)
    assert isinstance(caught.value, errors.Busy)
    with psycopg.connect(pg_url) as conn:
        assert {r[0] for r in conn.execute("SELECT state FROM changes")} == {"queued"}


def test_a_refused_takeover_has_started_nothing(instance, pg_url):
    """The refusal comes before the service starts: no publisher thread, nothing reconciled, no consumer."""
    ids = _queued(pg_url, 2)
    service = instance.open_service()
    _service_commit(instance.repo, 1, ids[0])
    elected = threading.Event()
    elected.set()
    takeover = Takeover(service, pg_url, Follower(lambda: None, pg_url, 60), Elector(pg_url, 4242, elected.set,
                                                                                     print), elected)
    with a_commit_between_the_two_logs(service, lambda: _service_commit(instance.repo, 2, ids[1])) as landed:
        with pytest.raises(upstream.UntrustedHistory):
            takeover.run_until(threading.Event(), print)
    assert landed and service.background.publisher_thread is None and takeover.consumer is None
