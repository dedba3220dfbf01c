"""The PostgreSQL fixtures of the store and cluster tests (the server itself: testkit.pgserver).

Import them into a test module: ``from pgserver import pg_server, pg_url  #
noqa: F401``. ``pg_server`` is one server per test process; ``pg_url`` a
fresh, empty database on it per test, as a postgresql:// URL. A test that
must stop and start its own server (PostgreSQL unavailable for a while)
calls ``start_postgres`` / ``stop_postgres`` itself. A missing server
binary fails the test, never skips it.
"""
from __future__ import annotations

import pytest

from testkit.pgserver import PgServer, start_postgres, stop_postgres

__all__ = ["PgServer", "pg_server", "pg_url", "start_postgres", "stop_postgres"]


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    """One PostgreSQL per test process."""
    server = start_postgres()
    yield server
    stop_postgres(server)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server, dropped after the test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
