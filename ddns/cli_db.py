"""``ddns db``: the store's database -- its schema version, upgrades, a copy to another engine (registered by ddns.cli).

``ddns db status`` names the engine and the schema version of the database
and of this ddns; ``ddns db upgrade`` brings the database to this ddns's
version (opening the store does it too: the command is for doing it on
purpose, before several nodes start); ``ddns db copy --to URL`` copies every
table into an empty database (see ddns.db.copy) -- stop the service first,
then set ``store.url`` to URL.
"""
from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote

from . import db as dbmod
from .db import copy as dbcopy, migrations
from .store import location

if TYPE_CHECKING:
    from .cli import Env
    from .config import Config

LoadConfig = Callable[[argparse.Namespace, "Env"], "Config"]


def register(sub: argparse._SubParsersAction, command: Callable[..., argparse.ArgumentParser],
             load_config: LoadConfig) -> None:
    """Add ``db status|upgrade|copy``; COMMAND is ddns.cli's way of adding one."""
    group = sub.add_parser("db", help="the store's database: schema version, upgrade, copy").add_subparsers(
        dest="db_command", required=True)
    command("status", lambda a, e: _status(a, e, load_config), "the database's engine and schema version",
            group, json_output=True)
    command("upgrade", lambda a, e: _upgrade(a, e, load_config), "upgrade the database's schema to this ddns's",
            group, json_output=True)
    p = command("copy", lambda a, e: _copy(a, e, load_config),
                "copy every table into an empty database (stop the service first)", group, json_output=True)
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://... (or the path of a new SQLite file)")


MASK = "***"
_SECRET_KEYS = ("password", "sslpassword")  # libpq's keywords whose values are secrets
# What its writer meant as a URL's user info with a password (up to the last '@'); libpq ends the user
# info at the first '@' and the host at a '/', so '@' or '/' in a password puts it in the host or dbname.
_MEANT_PASSWORD = re.compile(r"^\w+://[^:/@?#]*:[^?#]*@")


def shown(url: str) -> str:
    """URL (a postgresql:// URL, a libpq key=value string, a path) without any password in it, for output.

    libpq's own parser (psycopg.conninfo) reads it, so the mask agrees with
    what libpq would send whatever the spelling ('#' or '?' in a
    password, escapes, percent-encoded keys); a URL holding a secret is
    shown rebuilt from the parsed keywords, the secrets as ``***``. A URL
    libpq cannot parse is shown as its scheme only; other text (an SQLite
    file's path) as it is, unless it names a password; so is a URL whose
    user info holds a password libpq reads otherwise (an '@' or '/' in it).
    """
    if not dbmod.is_url(url) and "=" not in url:
        return url
    import psycopg  # loaded only where a URL or key=value string is shown
    from psycopg import conninfo
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.Error:  # libpq refuses it: no part of a URL can be trusted to be free of a secret
        if dbmod.is_url(url):
            return url.partition("://")[0] + f"://{MASK}"
        return MASK if "password" in url.lower() else url
    if dbmod.is_url(url) and params.get("password") is None and _MEANT_PASSWORD.match(url):
        return url.partition("://")[0] + f"://{MASK}"  # a password libpq reads as a host or dbname
    if not any(params.get(key) is not None for key in _SECRET_KEYS):
        return url
    params.update({key: MASK for key in _SECRET_KEYS if params.get(key) is not None})
    if not dbmod.is_url(url):
        return conninfo.make_conninfo("", **params)
    return _as_url(url.partition("://")[0], params)


def _as_url(scheme: str, params: dict) -> str:
    """A postgresql:// URL of libpq keywords PARAMS (the password in the user info, the rest in the query)."""
    user, password, dbname = params.pop("user", None), params.pop("password", None), params.pop("dbname", None)
    hosts = (params.get("host") or "").split(",")
    ports = (params.get("port") or "").split(",") if params.get("port") else [""] * len(hosts)
    netloc = ""
    if params.get("host") and "/" not in params["host"] and len(ports) == len(hosts):
        del params["host"]
        params.pop("port", None)
        netloc = ",".join((f"[{h}]" if ":" in h else quote(h)) + (f":{p}" if p else "") for h, p in zip(hosts, ports))
    if user is not None or password is not None:
        netloc = f"{quote(user or '', safe='')}{':' + password if password else ''}@{netloc}"
    path = f"/{quote(dbname, safe='')}" if dbname is not None else ""
    query = "&".join(f"{quote(k, safe='')}={quote(str(v), safe='*')}" for k, v in params.items())
    return f"{scheme}://{netloc}{path}{'?' + query if query else ''}"


def _database(args: argparse.Namespace, env: "Env", load_config: LoadConfig) -> dbmod.Database:
    return dbmod.connect(location(load_config(args, env)))


def _status(args: argparse.Namespace, env: "Env", load_config: LoadConfig) -> int:
    database = _database(args, env, load_config)
    version = migrations.check(database)
    status = {"engine": database.dialect, "database": shown(database.url), "version": version,
              "code_version": migrations.LATEST}
    if args.json:
        env.out(json.dumps(status, indent=2))
    else:
        state = ("up to date" if version == migrations.LATEST
                 else "empty: `ddns db upgrade` (or starting ddns) makes its tables" if version == 0
                 else "older: `ddns db upgrade` (or starting ddns) upgrades it")
        env.out(f"{status['engine']} database {status['database']}: schema version {version}, "
                f"this ddns {migrations.LATEST} ({state})")
    return 0


def _upgrade(args: argparse.Namespace, env: "Env", load_config: LoadConfig) -> int:
    database = _database(args, env, load_config)
    applied = migrations.upgrade(database)
    if args.json:
        env.out(json.dumps({"version": migrations.LATEST, "applied": [m.version for m in applied]}))
    elif applied:
        env.out("\n".join(f"applied {m.version}: {m.name}" for m in applied))
    else:
        env.out(f"already at schema version {migrations.LATEST}")
    return 0


def _copy(args: argparse.Namespace, env: "Env", load_config: LoadConfig) -> int:
    source = _database(args, env, load_config)
    target = dbmod.connect(args.to)
    copied, skipped = dbcopy.copy(source, target)
    if args.json:
        env.out(json.dumps({"to": shown(target.url), "rows": copied, "not_copied": skipped}, indent=2))
    else:
        env.out("\n".join(f"{table}: {n} rows" for table, n in copied.items()))
        for table, n in skipped.items():
            env.out(f"{table}: {n} rows not copied ({dbcopy.TRANSIENT[table]})")
        env.out(f"copied into {shown(target.url)}; set store.url (or DDNS_STORE_URL) to it and start ddns")
    return 0
