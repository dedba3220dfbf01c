"""Numbered schema migrations on both engines: a first-release database upgrades, a newer one is refused.

The first release's schema is kept as SQL (tests/data/schema_release1.sql);
a later migration is simulated by appending one to ``MIGRATIONS``. The
refusal is checked where an operator meets it: the CLI's exit status and
message, and ``ddns serve`` that does not start.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ddns import db as dbmod, errors
from ddns.db import migrations
from ddns.db.dialect import postgres_ddl
from ddns.store import Store

from pgserver import pg_server, pg_url  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
RELEASE1 = (Path(__file__).parent / "data" / "schema_release1.sql").read_text()
ZONE = "dyn.example.test"
NEWER = "database schema version {found} is newer than this ddns ({latest}); upgrade ddns"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    return request.getfixturevalue("pg_url")


def versions(database: dbmod.Database) -> list[int]:
    return [r["version"] for r in database.execute("SELECT version FROM schema_version ORDER BY version")]


def all_versions() -> list[int]:
    return [m.version for m in migrations.MIGRATIONS]


def append_migration(monkeypatch, name: str, script: str) -> None:
    """A next migration, as a later release would add it (SCRIPT written for SQLite, translated for PostgreSQL)."""
    version = migrations.LATEST + 1
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + (
        migrations.Migration(version, name, script, postgres_ddl(script)),))
    monkeypatch.setattr(migrations, "LATEST", version)


def release1_database(path: Path) -> None:
    """A database the first release made and used: its schema, a user, a domain, a host, a key; no schema_version."""
    old = sqlite3.connect(path)
    old.executescript(RELEASE1)
    old.execute("INSERT INTO users(name, password_hash, is_admin, created) VALUES ('alice', 'h', 1, 1.5)")
    old.execute("INSERT INTO domains(zone, created) VALUES (?, 1)", (ZONE,))
    old.execute("INSERT INTO hosts(fqdn, zone, owner_id, secret_hash, created) VALUES (?, ?, 1, 'x', 2.5)",
                (f"vm.{ZONE}", ZONE))
    old.execute("INSERT INTO tsig_keys(name, algorithm, secret, kind, host, created) "
                "VALUES (?, 'hmac-sha256', 'c2VjcmV0', 'host', ?, 3)", (f"vm.{ZONE}", f"vm.{ZONE}"))
    old.commit()
    old.close()


def test_a_new_database_gets_the_latest_schema(store_url):
    store = Store(store_url)
    assert versions(store.db) == all_versions()
    assert set(migrations.tables_in_order(store.db.dialect)) | {"schema_version"} == set(store.db.tables())
    assert migrations.upgrade(store.db) == []  # nothing left to do


def test_the_first_release_database_opens_and_is_recorded_as_version_1(tmp_path):
    path = tmp_path / "old.sqlite3"
    release1_database(path)
    assert migrations.current_version(dbmod.connect(path)) == 1
    store = Store(path)
    assert versions(store.db) == all_versions()  # recorded as 1, then upgraded
    assert store.user("alice").is_admin and store.host(f"vm.{ZONE}").created == 2.5
    assert [k.name for k in store.tsig_keys()] == [f"vm.{ZONE}"]
    store.add_api_token(store.user("alice").id, "t", "th", 4.0)


def test_a_first_release_database_from_before_its_late_columns_gets_them(tmp_path):
    """The first release added columns as it went (LEGACY_COLUMNS): a database made before them is completed."""
    path = tmp_path / "older.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT, token_hash TEXT,
                            is_admin INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
        CREATE TABLE domains (zone TEXT PRIMARY KEY, created REAL NOT NULL, active INTEGER NOT NULL DEFAULT 1);
        INSERT INTO users(name, created) VALUES ('alice', 1);
        INSERT INTO domains(zone, created) VALUES ('dyn.example.test', 1);
    """)
    old.commit()
    old.close()
    store = Store(path)
    assert versions(store.db) == all_versions()
    assert store.domain(ZONE).public and store.user("alice").groups == ()
    assert {"sub", "email", "display_name", "groups", "last_login"} <= set(store.db.columns("users"))
    user = store.login_oidc_user("sub-1", "alice", "", "", [], None, 2.0)
    assert user.name == "alice-2"


def test_a_later_migration_upgrades_a_version_1_database_in_place(store_url, monkeypatch):
    store = Store(store_url)
    store.add_user("alice", None, False, 1.0)
    store.db.close()
    later = "ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT ''"
    known = all_versions()
    append_migration(monkeypatch, "nicknames", later)
    upgraded = Store(store_url)
    assert versions(upgraded.db) == known + [known[-1] + 1] and "nickname" in upgraded.db.columns("users")
    assert [u.name for u in upgraded.users()] == ["alice"]


def test_a_failing_migration_changes_nothing(store_url, monkeypatch):
    Store(store_url).db.close()
    script = "CREATE TABLE half (id INTEGER PRIMARY KEY); CREATE TABLE broken (this is not sql)"
    known = all_versions()
    append_migration(monkeypatch, "broken", script)
    with pytest.raises(Exception, match="syntax"):
        Store(store_url)
    database = dbmod.connect(store_url)
    assert versions(database) == known and "half" not in database.tables()


def test_databases_opened_at_once_are_upgraded_once(store_url):
    failures: list[Exception] = []

    def open_store() -> None:
        try:
            Store(store_url).users()
        except Exception as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == [] and versions(dbmod.connect(store_url)) == all_versions()


def mark_newer(store_url: str) -> int:
    """Record a schema version beyond this code's, as a newer ddns would have; returns it."""
    found = migrations.LATEST + 1
    database = dbmod.connect(store_url)
    with database.tx() as conn:
        conn.execute("INSERT INTO schema_version(version, name, applied) VALUES (?, 'from the future', 0)", (found,))
    database.close()
    return found


def test_a_newer_database_is_refused(store_url):
    Store(store_url).add_user("alice", None, False, 1.0)
    found = mark_newer(store_url)
    message = NEWER.format(found=found, latest=migrations.LATEST)
    with pytest.raises(migrations.SchemaTooNew) as refused:
        Store(store_url)
    assert str(refused.value) == message and isinstance(refused.value, errors.Invalid)
    with pytest.raises(migrations.SchemaTooNew):
        migrations.upgrade(dbmod.connect(store_url))
    assert versions(dbmod.connect(store_url))[-1] == found  # nothing was changed


def use_store(instance, url: str) -> None:
    """Point INSTANCE's configuration at the store URL."""
    text = instance.config_path.read_text()
    assert '# url = ""' in text
    instance.config_path.write_text(text.replace('# url = ""', f'url = "{url}"', 1))


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_cli_and_serve_refuse_a_newer_database_with_a_clear_message(instance, engine, request):
    if engine == "postgresql":
        use_store(instance, request.getfixturevalue("pg_url"))
    store_location = instance.config["store.url"] or str(instance.config.path("store.path"))
    instance.add_user("alice")
    found = mark_newer(store_location)
    message = NEWER.format(found=found, latest=migrations.LATEST)
    for args in (("user", "list"), ("db", "status"), ("db", "upgrade"), ("host", "add", f"vm.{ZONE}", "--owner", "alice")):
        r = instance.cli(*args)
        assert (r.code, r.err.strip()) == (1, f"error: {message}"), args
    serve = subprocess.run([sys.executable, "-m", "ddns.cli", "-c", str(instance.config_path), "serve"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert serve.returncode == 1 and f"error: {message}" in serve.stderr, serve.stderr
    assert instance.cli("db", "status").code == 1


def test_db_status_and_upgrade_of_a_new_postgresql_database(instance, pg_url):
    use_store(instance, pg_url)
    r = instance.cli("db", "status")
    assert r.code == 0 and "schema version 0" in r.out and "empty" in r.out, r.out
    r = instance.cli("db", "upgrade")
    assert r.code == 0 and r.out.splitlines() == [f"applied {m.version}: {m.name}" for m in migrations.MIGRATIONS]
    status = instance.cli("db", "status", "--json").json()
    assert status == {"engine": "postgresql", "database": pg_url, "version": migrations.LATEST,
                      "code_version": migrations.LATEST}
    r = instance.cli("db", "upgrade")
    assert (r.code, r.out.strip()) == (0, f"already at schema version {migrations.LATEST}")
    instance.add_user("alice")
    assert [u.name for u in Store(pg_url).users()] == ["alice"]


def test_db_status_and_upgrade_of_the_quickstart_sqlite(instance):
    status = instance.cli("db", "status", "--json").json()
    assert status == {"engine": "sqlite", "database": str(instance.config.path("store.path")),
                      "version": migrations.LATEST, "code_version": migrations.LATEST}
    r = instance.cli("db", "upgrade")
    assert (r.code, r.out.strip()) == (0, f"already at schema version {migrations.LATEST}")


def test_db_upgrade_records_a_first_release_database(instance):
    path = instance.config.path("store.path")
    for made in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        made.unlink(missing_ok=True)
    release1_database(path)
    r = instance.cli("db", "status")
    assert r.code == 0 and f"schema version 1, this ddns {migrations.LATEST}" in r.out
    r = instance.cli("db", "upgrade", "--json")
    assert r.code == 0 and r.json() == {"version": migrations.LATEST,
                                        "applied": all_versions()}
    assert versions(dbmod.connect(path)) == all_versions()
    assert instance.cli("user", "list").out.split() == ["alice", "(admin)"]
