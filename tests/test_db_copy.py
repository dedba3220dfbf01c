"""``ddns db copy`` moves an instance from SQLite to PostgreSQL; a real ``ddns serve`` then runs on the copy.

Real instance, real SQLite, real PostgreSQL (tests/pgserver.py), real
``ddns serve`` as a process with ``DDNS_STORE_URL`` pointing at the copy,
real HTTP updates answered by a real named.
"""
from __future__ import annotations

import io
import sqlite3

import psycopg
import pytest

from ddns import cli, db as dbmod
from ddns.cluster import changes, codec
from ddns.model import Actor, Op, Operation, Outcome, Result, Update
from ddns.store import Store

from conftest import ServeProcess, http, wait_until
from pgserver import pg_server, pg_url  # noqa: F401

ZONE = "dyn.example.test"
TABLES = ["users", "domains", "hosts", "sessions", "api_tokens", "tsig_keys"]


def populate(instance) -> dict[str, str]:
    """Users, hosts, a key, a token and a session in the instance's SQLite; the hosts' secrets."""
    instance.add_user("admin", admin=True)
    secrets = {fqdn: instance.add_host(fqdn, owner) for fqdn, owner in
               ((f"vm1.{ZONE}", "alice"), (f"vm2.{ZONE}", "alice"), (f"web.{ZONE}", "bob"))}
    assert instance.cli("key", "add", f"vm1.{ZONE}").code == 0
    service = instance.open_service()
    service.accounts.new_api_token(service.store.user("alice"), "laptop")
    service.store.login_oidc_user("sub-1", "carol", "c@example.org", "Carol", ["staff"], None, 5.0)
    service.store.db.close()
    return secrets


def counts(database: dbmod.Database) -> dict[str, int]:
    return {t: database.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in TABLES}


def test_copy_keeps_every_row_and_id_and_the_ids_go_on(instance, pg_url):
    populate(instance)
    source_path = instance.config.path("store.path")
    source = Store(source_path)
    before = counts(source.db)
    r = instance.cli("db", "copy", "--to", pg_url, "--json")
    assert r.code == 0, r.err
    assert r.json()["rows"] == before and before["hosts"] == 3 and before["tsig_keys"] == 1
    copy = Store(pg_url)
    assert copy.db.dialect == "postgresql" and counts(copy.db) == before
    assert copy.users() == source.users() and copy.hosts() == source.hosts()
    assert copy.tsig_keys() == source.tsig_keys() and copy.tsig_key_row(f"vm1.{ZONE}") == source.tsig_key_row(f"vm1.{ZONE}")
    alice = source.user("alice")
    assert copy.api_tokens(alice.id) == source.api_tokens(alice.id) and copy.domain_list() == source.domain_list()
    newest = max(u.id for u in source.users())
    assert copy.add_user("dave", None, False, 9.0).id == newest + 1  # the identity goes on after the copied ids
    assert copy.add_api_token(alice.id, "ci", "th-new", 9.0).id == max(t.id for t in source.api_tokens(alice.id)) + 1


def test_copy_refuses_a_target_with_rows_and_changes_nothing(instance, pg_url):
    populate(instance)
    target = Store(pg_url)
    target.add_user("someone", None, False, 1.0)
    r = instance.cli("db", "copy", "--to", pg_url)
    assert r.code == 1 and "error: the target database is not empty (table users has rows)" in r.err, r.err
    assert [u.name for u in target.users()] == ["someone"] and counts(target.db)["hosts"] == 0


def test_copy_refuses_a_source_of_an_older_schema(instance, pg_url, tmp_path):
    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);")
    db.close()
    text = instance.config_path.read_text().replace('# path = "ddns.sqlite3"', f'path = "{old}"', 1)
    instance.config_path.write_text(text)
    r = instance.cli("db", "copy", "--to", pg_url)
    assert r.code == 1 and "run `ddns db upgrade` first" in r.err, r.err
    assert dbmod.connect(pg_url).tables() == []


def test_serve_on_the_copy_with_ddns_store_url_answers_good(instance, pg_url, tmp_path, monkeypatch):
    secrets = populate(instance)
    assert instance.cli("db", "copy", "--to", pg_url).code == 0
    source_path = instance.config.path("store.path")
    source_path.rename(tmp_path / "moved-away.sqlite3")  # serve must not find (nor need) the SQLite file
    monkeypatch.setenv("DDNS_STORE_URL", pg_url)
    serve = ServeProcess(instance, tmp_path / "serve.log")
    serve.start()
    try:
        fqdn = f"vm2.{ZONE}"
        status, body, _ = http(f"{instance.url}/nic/update?myip=192.0.2.44", auth=(fqdn, secrets[fqdn]))
        assert (status, body) == (200, "good 192.0.2.44\n"), (status, body, (tmp_path / "serve.log").read_text())
        assert instance.dig(fqdn) == ["192.0.2.44"]
        status, body, _ = http(f"{instance.url}/nic/update?myip=192.0.2.45", auth=(fqdn, "wrong"))
        assert status == 401 and body == "badauth\n"
        copy = Store(pg_url)
        wait_until(lambda: copy.host(fqdn).last_update is not None, 10, what="the update's metadata in PostgreSQL")
        assert copy.host(fqdn).last_client == "127.0.0.1"
    finally:
        serve.stop()
    assert not source_path.exists()


UPDATE = Update(ZONE, (Operation(Op.ADD, f"x.{ZONE}", "A", "192.0.2.1"),), actor=Actor("host:x"))


def _cluster_store(pg_server) -> str:
    """A PostgreSQL store with a user, a host and the changes table holding a queued and a done row."""
    url = pg_server.create_database()
    store = Store(url)
    store.add_user("alice", None, False, 1.0)
    with psycopg.connect(url, autocommit=True) as conn:
        first, _ = changes.insert(conn, [UPDATE, UPDATE])
        conn.execute("UPDATE changes SET state = 'done', outcome = %s::jsonb WHERE id = %s",
                     (codec.encode_result(Result(Outcome.PUBLISHED)), first))
    store.db.close()
    return url


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_copy_from_postgresql_skips_the_changes_queue_and_says_why(instance, pg_server, pg_url, tmp_path, engine):
    source = _cluster_store(pg_server)
    target = pg_url if engine == "postgresql" else str(tmp_path / "copy.sqlite3")
    try:
        out, err = io.StringIO(), io.StringIO()
        env = cli.Env(stdout=out, stderr=err, environ={"DDNS_STORE_URL": source}, cwd=instance.dir)
        assert cli.main(["-c", str(instance.config_path), "db", "copy", "--to", target], env) == 0, err.getvalue()
        assert "users: 1 rows" in out.getvalue()
        assert "changes: 2 rows not copied (the cluster's queue of updates in flight" in out.getvalue()
        copy = Store(target)
        assert [u.name for u in copy.users()] == ["alice"]
        if engine == "postgresql":
            assert copy.db.execute("SELECT count(*) AS n FROM changes").fetchone()["n"] == 0
            with psycopg.connect(target, autocommit=True) as conn:  # the queue's ids go on after the source's
                assert changes.insert(conn, [UPDATE]) == [3]
        else:
            assert "changes" not in copy.db.tables()
    finally:
        pg_server.drop_database(source)
