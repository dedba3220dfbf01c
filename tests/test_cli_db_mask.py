"""``ddns db`` prints the database it uses, never a password in it, whatever form the URL gives it in.

Hostile and unusual spellings included: a password in the user info, in the
query (plain or percent-encoded key, ``sslpassword`` too), in a libpq
key=value string (quoted, with spaces, quotes or backslash escapes inside),
with '@', '&', '#' or '?' in it (libpq has no URL fragment: a '#' is part of
the value). The shown text is read by libpq's own parser as the same keywords
but the secrets. The served test runs ``ddns db status`` against a real PostgreSQL whose
URL carries passwords (the server trusts loopback, so they are not needed).
"""
from __future__ import annotations

import io
import json

import pytest
from psycopg.conninfo import conninfo_to_dict

from ddns import cli
from ddns.cli_db import shown

from pgserver import pg_server, pg_url  # noqa: F401

SECRET = "s3cr3t"


@pytest.mark.parametrize("url", [
    f"postgresql://alice:{SECRET}@db.example.org:5432/ddns",
    f"postgres://alice:{SECRET}@db.example.org/ddns",
    f"postgresql://alice:{SECRET}@x@db.example.org/ddns",  # an '@' inside the password
    f"postgresql://alice:a/{SECRET}@db.example.org/ddns",  # a '/' inside the password
    f"postgresql://alice:@{SECRET}@db/ddns",
    f"postgresql://db.example.org/ddns?password={SECRET}",
    f"postgresql://db.example.org/ddns?sslmode=require&password={SECRET}&application_name=x",
    f"postgresql://db.example.org/ddns?PASSWORD={SECRET}",
    f"postgresql://db.example.org/ddns?pass%77ord={SECRET}",  # libpq decodes the key too
    f"postgresql://db.example.org/ddns?sslpassword={SECRET}",
    f"postgresql://db.example.org/ddns?password={SECRET}%26more",
    f"postgresql://alice:{SECRET}@db/ddns?password={SECRET}#frag",  # libpq has no fragment: '#frag' is the password's
    f"postgresql://alice:{SECRET}#x@db/ddns",  # a '#' inside the password
    f"postgresql://alice:{SECRET}?x@db/ddns",  # a '?' inside the password
    f"postgresql://db/ddns?sslmode=require#&password={SECRET}",  # '#' is no fragment to libpq: the password is read
    f"postgresql://alice:{SECRET}@h1:5432,h2:5433/ddns",
    f"postgresql://alice:{SECRET}@[::1]:5432/ddns",
    f"postgresql://alice@db/ddns?host=/run/postgresql&password={SECRET}",
    "postgresql://alice:" + SECRET + "@db/ddns?password",  # libpq refuses it: only the scheme is shown
    f"host=db.example.org password={SECRET} dbname=ddns",
    f"host=db password = {SECRET}",
    f"password='{SECRET} with spaces' host=db",
    f"password='{SECRET} \\' quoted' host=db",
    f"host=db sslpassword={SECRET}",
    f"host=db\tpassword={SECRET}\nuser=x",
    f"PASSWORD={SECRET}",
    f"password={SECRET}\\ more host=db",  # a backslash escape inside an unquoted value
    f"password=\\ {SECRET} host=db",
])
def test_no_form_of_a_password_is_printed(url):
    text = shown(url)
    assert SECRET not in text and "***" in text, text


@pytest.mark.parametrize("url", ["postgresql://alice@db.example.org:5432/ddns", "/var/lib/ddns/ddns.sqlite3",
                                 "postgresql://db/ddns?sslmode=require", "/var/lib/ddns/a=b.sqlite3",
                                 "postgresql://db/ddns?sslmode=require#frag"])
def test_what_holds_no_password_is_printed_as_it_is(url):
    assert shown(url) == url


@pytest.mark.parametrize("url", [
    f"postgresql://alice:{SECRET}#x@db:5433/ddns?sslmode=require&application_name=a%26b",
    f"postgresql://alice:{SECRET}@h1:5432,h2:5433/ddns?target_session_attrs=read-write",
    f"postgresql://db/ddns?sslmode=require#&password={SECRET}",
    f"postgresql://al%40ice:{SECRET}@[::1]/dd%2Fns?sslpassword={SECRET}",
    f"postgresql://alice@db/ddns?host=/run/postgresql&password={SECRET}",
    f"host=db password={SECRET}\\ more dbname='d d'",
])
def test_the_shown_text_is_what_libpq_reads_but_the_secrets(url):
    """libpq reads the shown text as the same keywords and values, but ``***`` for each secret."""
    expected = {k: ("***" if k in ("password", "sslpassword") else v) for k, v in conninfo_to_dict(url).items()}
    assert conninfo_to_dict(shown(url)) == expected, shown(url)


def test_ddns_db_status_masks_the_passwords_of_a_real_database(instance, pg_url):
    host, database = pg_url.split("@", 1)
    url = f"{host}:{SECRET}@{database}?password={SECRET}&sslmode=disable"
    out, err = io.StringIO(), io.StringIO()
    env = cli.Env(stdout=out, stderr=err, environ={"DDNS_STORE_URL": url}, cwd=instance.dir)
    assert cli.main(["-c", str(instance.config_path), "db", "status", "--json"], env) == 0, err.getvalue()
    status = json.loads(out.getvalue())
    assert status["engine"] == "postgresql" and SECRET not in out.getvalue() + err.getvalue()
    assert status["database"].startswith("postgresql://postgres:***@127.0.0.1:"), status
