"""``ddns db`` prints the database it uses, never a password in it, whatever form the URL gives it in.

Hostile and unusual spellings included: a password in the user info, in the
query (plain or percent-encoded key, ``sslpassword`` too), in a libpq
key=value string (quoted, with spaces and quotes inside), with '@' or '&' in
it. The served test runs ``ddns db status`` against a real PostgreSQL whose
URL carries passwords (the server trusts loopback, so they are not needed).
"""
from __future__ import annotations

import io
import json

import pytest

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
    f"postgresql://alice:{SECRET}@db/ddns?password={SECRET}#frag",
    f"host=db.example.org password={SECRET} dbname=ddns",
    f"host=db password = {SECRET}",
    f"password='{SECRET} with spaces' host=db",
    f"password='{SECRET} \\' quoted' host=db",
    f"host=db sslpassword={SECRET}",
    f"host=db\tpassword={SECRET}\nuser=x",
    f"PASSWORD={SECRET}",
])
def test_no_form_of_a_password_is_printed(url):
    text = shown(url)
    assert SECRET not in text and "***" in text, text


@pytest.mark.parametrize("url", ["postgresql://alice@db.example.org:5432/ddns", "/var/lib/ddns/ddns.sqlite3",
                                 "postgresql://db/ddns?sslmode=require"])
def test_what_holds_no_password_is_printed_as_it_is(url):
    assert shown(url) == url


def test_ddns_db_status_masks_the_passwords_of_a_real_database(instance, pg_url):
    host, database = pg_url.split("@", 1)
    url = f"{host}:{SECRET}@{database}?password={SECRET}&sslmode=disable"
    out, err = io.StringIO(), io.StringIO()
    env = cli.Env(stdout=out, stderr=err, environ={"DDNS_STORE_URL": url}, cwd=instance.dir)
    assert cli.main(["-c", str(instance.config_path), "db", "status", "--json"], env) == 0, err.getvalue()
    status = json.loads(out.getvalue())
    assert status["engine"] == "postgresql" and SECRET not in out.getvalue() + err.getvalue()
    assert status["database"].startswith("postgresql://postgres:***@127.0.0.1:"), status
