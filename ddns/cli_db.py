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
from urllib.parse import unquote

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
# A URL's user info with a password: up to the last '@' (a hostile '@' or '/' in it stays hidden).
_URL_PASSWORD = re.compile(r"^(\w+://[^:/@?#]*):[^?#]*@")
# A key=value string's secret: the key (any case, spaces around '='), a quoted value (escapes inside) or a word.
_CONNINFO_PASSWORD = re.compile(r"(?i)(?<![\w])((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


def shown(url: str) -> str:
    """URL (a postgresql:// URL, a libpq key=value string, a path) without any password in it, for output.

    Every form libpq reads one from: the URL's user info, a query parameter
    (its key percent-decoded, as libpq does), a key=value pair.
    """
    if not dbmod.is_url(url):
        return _CONNINFO_PASSWORD.sub(lambda m: m[1] + MASK, url)
    url = _URL_PASSWORD.sub(rf"\1:{MASK}@", url, count=1)
    base, mark, rest = url.partition("?")
    if not mark:
        return url
    query, hash_, fragment = rest.partition("#")
    params = [f"{p.partition('=')[0]}={MASK}" if unquote(p.partition("=")[0]).lower() in _SECRET_KEYS else p
              for p in query.split("&")]
    return f"{base}?{'&'.join(params)}{hash_}{fragment}"


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
