"""The TSIG keys' rows in the store, mixed into ``ddns.store.Store`` (the table: ``ddns.db.migrations``).

A TSIG key is a shared secret: the listener needs the secret itself to check
a signature and to sign its answer, so it is stored as it was made (base64),
unlike host secrets, which only ever need a hash. The database is readable by
the service only; nothing else (Git, logs, lists) ever gets the secret.

A host's keys reference the host row, so deleting the host deletes its keys
in the same statement (``ON DELETE CASCADE``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .db import ForeignKeyViolation, IntegrityError, Row

@dataclass(frozen=True)
class KeyInfo:
    """A key as lists and pages show it: everything but the secret."""

    name: str
    algorithm: str
    kind: str                 # "host", "acme" or "zone"
    host: str | None          # host and ACME keys: the host's fqdn
    zone: str | None          # zone keys: the zone they are bound to
    rules: tuple[str, ...]    # zone keys: their rules, in order ("grant zonesub TXT")
    owner_id: int | None      # who made it (None: the command line)
    created: float


class KeyConflict(Exception):
    """A key of that name exists already (the store's own word; the service says it in ddns.errors)."""


class KeyHostGone(Exception):
    """The host of a new key was deleted while the key was being made."""


class KeyRows:
    """The ``tsig_keys`` methods of ``Store`` (which provides ``db``, its ``ddns.db.Database``)."""

    def add_tsig_key(self, key: KeyInfo, secret: str) -> None:
        """Insert KEY with SECRET; KeyConflict when the name is taken, KeyHostGone when its host went away."""
        try:
            with self.db.tx() as db:
                db.execute("INSERT INTO tsig_keys(name, algorithm, secret, kind, host, zone, rules, owner_id, created) "
                           "VALUES (?,?,?,?,?,?,?,?,?)",
                           (key.name, key.algorithm, secret, key.kind, key.host, key.zone, json.dumps(list(key.rules)),
                            key.owner_id, key.created))
        except ForeignKeyViolation as exc:
            raise KeyHostGone(f"no host {key.host}") from exc
        except IntegrityError as exc:
            raise KeyConflict(f"a key named {key.name} exists") from exc

    def tsig_key_row(self, name: str) -> tuple[KeyInfo, str] | None:
        """The key NAME and its secret (base64), read now; None when there is none."""
        row = self.db.execute("SELECT * FROM tsig_keys WHERE name=?", (name,)).fetchone()
        return (_key(row), row["secret"]) if row else None

    def tsig_key_current(self, name: str, created: float) -> bool:
        """Whether the key NAME made at CREATED still exists (not deleted, not made anew)."""
        return self.db.execute("SELECT 1 FROM tsig_keys WHERE name=? AND created=?",
                                  (name, created)).fetchone() is not None

    def tsig_keys(self, host: str | None = None, kind: str | None = None) -> list[KeyInfo]:
        """Keys by name, only HOST's and only of KIND when given."""
        sql, args = "SELECT * FROM tsig_keys WHERE 1=1", []
        if host is not None:
            sql, args = sql + " AND host=?", args + [host]
        if kind is not None:
            sql, args = sql + " AND kind=?", args + [kind]
        return [_key(r) for r in self.db.execute(sql + " ORDER BY name", args)]

    def delete_tsig_key(self, name: str) -> bool:
        """Delete the key NAME; False when there was none."""
        with self.db.tx() as db:
            return db.execute("DELETE FROM tsig_keys WHERE name=?", (name,)).rowcount > 0


def _key(row: Row) -> KeyInfo:
    return KeyInfo(row["name"], row["algorithm"], row["kind"], row["host"], row["zone"],
                   tuple(json.loads(row["rules"])), row["owner_id"], row["created"])
