"""The store: users, domains, hosts, secret hashes and update metadata (SQLite or PostgreSQL).

DNS data is not here -- it lives in the zones repository. Host secrets and
tokens are never stored, only their hashes; TSIG keys are shared secrets and
are kept as they are (ddns.keystore). The SQL is written once, for both
engines (``ddns.db``); the schema is ``ddns.db.migrations``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from . import db as dbmod, errors
from .db import Busy, IntegrityError, Row, migrations  # noqa: F401 -- Busy: callers catch store.Busy as before
from .keystore import KeyRows

if TYPE_CHECKING:
    from .config import Config


@dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str | None
    token_hash: str | None
    is_admin: bool
    sub: str | None = None  # OpenID Connect subject; None for local accounts
    email: str = ""
    display_name: str = ""
    groups: tuple[str, ...] = ()  # group / entitlement claim values as of the last login


@dataclass(frozen=True)
class Domain:
    zone: str
    public: bool  # any user may register hosts in it
    groups: tuple[str, ...]  # otherwise: users with one of these groups


@dataclass(frozen=True)
class Session:
    """A portal session (server side); the browser holds only its random id."""

    id_hash: str
    user_id: int | None
    csrf: str
    created: float
    seen: float
    data: dict


@dataclass(frozen=True)
class ApiToken:
    id: int
    user_id: int
    name: str
    created: float
    last_used: float | None


@dataclass(frozen=True)
class LastSeen:
    """A host's last update request: when, client address, user agent, over TLS or not."""

    when: float
    client: str
    agent: str
    tls: bool


@dataclass(frozen=True)
class Host:
    fqdn: str
    zone: str
    owner_id: int
    secret_hash: str
    comment: str
    created: float
    last_update: float | None
    last_client: str | None
    last_agent: str | None
    last_tls: bool | None
    auth_faults: int
    client_faults: int
    blocked: bool
    principal: str | None = None  # the Kerberos principal linked to the host (one host at most)

    @property
    def label(self) -> str:
        return self.fqdn[: -len(self.zone) - 1]


class Conflict(errors.Conflict):
    """The object exists already."""


class NotFound(errors.NotFound):
    """No such object."""


def location(config: "Config") -> str | Path:
    """Where CONFIG's store is: store.url, or the SQLite file at store.path when that is empty."""
    return config["store.url"] or config.path("store.path")


NOTE_USE_EVERY = 60.0  # an API token's last use is written at most this often


class Store(KeyRows):
    """The store on the database at a path (SQLite) or a ``postgresql://`` URL, upgraded to the code's schema.

    Reads never wait for a writer. A write waits up to 30 s for the lock
    writers take, or what ``wait_at_most`` set for the thread (web requests:
    a quick 503 beats a worker thread hung for 30 s), then raises ``Busy``;
    a database out of reach raises ``StoreUnavailable``. A database newer
    than the code is refused (``migrations.SchemaTooNew``).
    """

    def __init__(self, path_or_url: str | Path):
        self.db = dbmod.connect(path_or_url)
        migrations.upgrade(self.db)

    @classmethod
    def open(cls, config: "Config") -> "Store":
        """The store CONFIG names (``location``)."""
        return cls(location(config))

    def read_without_waiting(self) -> bool:
        """Whether this thread may read without blocking: SQLite (a local file, in WAL mode), its lock waits
        turned off for the thread; a server's database is a round trip away (False)."""
        if self.db.dialect != "sqlite":
            return False
        self.db.never_wait()
        return True

    def wait_at_most(self, seconds: float) -> None:
        """How long this thread's writes wait for the writers' lock before ``Busy``."""
        self.db.wait_at_most(seconds)

    # users
    def add_user(self, name: str, password_hash: str | None, is_admin: bool, now: float) -> User:
        try:
            with self.db.tx() as db:
                db.execute("INSERT INTO users(name, password_hash, is_admin, created) VALUES (?,?,?,?)",
                           (name, password_hash, int(is_admin), now))
        except IntegrityError as exc:
            raise Conflict(f"user {name} exists") from exc
        return self.user(name)

    def user(self, name: str) -> User:
        row = self.db.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no user {name}")
        return _user(row)

    def user_by_id(self, user_id: int) -> User:
        row = self.db.execute("SELECT * FROM users WHERE id=?", (user_id,)).fetchone()
        if row is None:
            raise NotFound(f"no user #{user_id}")
        return _user(row)

    def users(self) -> list[User]:
        return [_user(r) for r in self.db.execute("SELECT * FROM users ORDER BY name")]

    def set_user_token(self, name: str, token_hash: str) -> None:
        with self.db.tx() as db:
            if db.execute("UPDATE users SET token_hash=? WHERE name=?", (token_hash, name)).rowcount == 0:
                raise NotFound(f"no user {name}")

    def set_user_password(self, name: str, password_hash: str) -> None:
        with self.db.tx() as db:
            if db.execute("UPDATE users SET password_hash=? WHERE name=?", (password_hash, name)).rowcount == 0:
                raise NotFound(f"no user {name}")

    def login_oidc_user(self, sub: str, name: str, email: str, display_name: str, groups: list[str],
                        is_admin: bool | None, now: float) -> User:
        """Create or refresh the user with OpenID subject SUB from the claims of a login.

        IS_ADMIN None keeps the admin flag as it is (a new user is no admin).
        The subject is the stable key; NAME (preferred_username) is kept from the
        first login and gets a suffix when a local account already has it.
        """
        with self.db.tx() as db:
            row = db.execute("SELECT id FROM users WHERE sub=?", (sub,)).fetchone()
            if row is not None:
                db.execute("UPDATE users SET email=?, display_name=?, groups=?, is_admin=coalesce(?, is_admin), "
                           "last_login=? WHERE id=?",
                           (email, display_name, json.dumps(groups), None if is_admin is None else int(is_admin),
                            now, row["id"]))
                user_id = row["id"]
            else:
                base, candidate, n = name, name, 1
                while db.execute("SELECT 1 FROM users WHERE name=?", (candidate,)).fetchone():
                    n += 1
                    candidate = f"{base}-{n}"
                user_id = db.insert(
                    "INSERT INTO users(name, is_admin, created, sub, email, display_name, groups, last_login) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (candidate, int(bool(is_admin)), now, sub, email, display_name, json.dumps(groups), now))
        return self.user_by_id(user_id)

    def note_login(self, user_id: int, now: float) -> None:
        with self.db.tx() as db:
            db.execute("UPDATE users SET last_login=? WHERE id=?", (now, user_id))

    def count(self, table: str) -> int:
        """Rows in TABLE (users, hosts, domains, sessions, api_tokens) for the status page."""
        if table not in ("users", "hosts", "domains", "sessions", "api_tokens"):
            raise ValueError(table)
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    # domains
    def add_domain(self, zone: str, now: float) -> None:
        """Open ZONE for hosts (again, if a merge had removed it)."""
        with self.db.tx() as db:
            if db.execute("UPDATE domains SET active=1 WHERE zone=? AND active=0", (zone,)).rowcount:
                return
            try:
                db.execute("INSERT INTO domains(zone, created) VALUES (?,?)", (zone, now))
            except IntegrityError as exc:
                raise Conflict(f"domain {zone} exists") from exc

    def deactivate_domain(self, zone: str) -> None:
        """The zone left the repository: hide it; its hosts stay, unserved, until it returns."""
        with self.db.tx() as db:
            db.execute("UPDATE domains SET active=0 WHERE zone=?", (zone,))

    def domains(self) -> list[str]:
        """Zones open for hosts."""
        return [r[0] for r in self.db.execute("SELECT zone FROM domains WHERE active=1 ORDER BY zone")]

    def domain(self, zone: str) -> Domain:
        row = self.db.execute("SELECT * FROM domains WHERE zone=? AND active=1", (zone,)).fetchone()
        if row is None:
            raise NotFound(f"no domain {zone}")
        return _domain(row)

    def domain_list(self) -> list[Domain]:
        """Open zones with who may use them."""
        return [_domain(r) for r in self.db.execute("SELECT * FROM domains WHERE active=1 ORDER BY zone")]

    def set_domain_access(self, zone: str, public: bool, groups: list[str]) -> None:
        with self.db.tx() as db:
            if db.execute("UPDATE domains SET public=?, groups=? WHERE zone=? AND active=1",
                          (int(public), json.dumps(groups), zone)).rowcount == 0:
                raise NotFound(f"no domain {zone}")

    def host_counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT zone, count(*) FROM hosts GROUP BY zone").fetchall())

    # hosts
    def add_host(self, fqdn: str, zone: str, owner_id: int, secret_hash: str, now: float, comment: str = "") -> Host:
        try:
            with self.db.tx() as db:
                db.execute("INSERT INTO hosts(fqdn, zone, owner_id, secret_hash, comment, created) VALUES (?,?,?,?,?,?)",
                           (fqdn, zone, owner_id, secret_hash, comment, now))
        except IntegrityError as exc:
            raise Conflict(f"host {fqdn} exists") from exc
        return self.host(fqdn)

    def add_hosts(self, rows: Iterable[tuple[str, str, int, str]], now: float, comment: str = "") -> int:
        """Register many hosts, (fqdn, zone, owner_id, secret_hash) each, in one transaction: all or none.

        One transaction instead of one per host: 100,000 hosts take a second,
        not minutes of fsyncs. Conflict (nothing added) when one exists.
        """
        try:
            with self.db.tx() as db:
                return db.executemany(
                    "INSERT INTO hosts(fqdn, zone, owner_id, secret_hash, comment, created) VALUES (?,?,?,?,?,?)",
                    ((fqdn, zone, owner, secret_hash, comment, now) for fqdn, zone, owner, secret_hash in rows))
        except IntegrityError as exc:
            raise Conflict(f"a host exists already: {exc}") from exc

    def host(self, fqdn: str) -> Host:
        row = self.db.execute("SELECT * FROM hosts WHERE fqdn=?", (fqdn,)).fetchone()
        if row is None:
            raise NotFound(f"no host {fqdn}")
        return _host(row)

    def find_host(self, fqdn: str) -> Host | None:
        row = self.db.execute("SELECT * FROM hosts WHERE fqdn=?", (fqdn,)).fetchone()
        return _host(row) if row else None

    def hosts(self, owner_id: int | None = None) -> list[Host]:
        if owner_id is None:
            rows = self.db.execute("SELECT * FROM hosts ORDER BY fqdn")
        else:
            rows = self.db.execute("SELECT * FROM hosts WHERE owner_id=? ORDER BY fqdn", (owner_id,))
        return [_host(r) for r in rows]

    def host_registered(self, fqdn: str, created: float, owner_id: int) -> bool:
        """Whether FQDN is still the registration made at CREATED for OWNER_ID (not deleted, not made anew)."""
        return self.db.execute("SELECT 1 FROM hosts WHERE fqdn=? AND created=? AND owner_id=?",
                                  (fqdn, created, owner_id)).fetchone() is not None

    def set_secret_hash(self, fqdn: str, secret_hash: str) -> None:
        with self.db.tx() as db:
            if db.execute("UPDATE hosts SET secret_hash=?, auth_faults=0, blocked=0 WHERE fqdn=?",
                          (secret_hash, fqdn)).rowcount == 0:
                raise NotFound(f"no host {fqdn}")

    def delete_host(self, fqdn: str) -> None:
        with self.db.tx() as db:
            if db.execute("DELETE FROM hosts WHERE fqdn=?", (fqdn,)).rowcount == 0:
                raise NotFound(f"no host {fqdn}")

    def set_comment(self, fqdn: str, comment: str) -> None:
        with self.db.tx() as db:
            if db.execute("UPDATE hosts SET comment=? WHERE fqdn=?", (comment, fqdn)).rowcount == 0:
                raise NotFound(f"no host {fqdn}")

    def set_principal(self, fqdn: str, principal: str | None) -> None:
        """Link PRINCIPAL to FQDN (None: unlink); Conflict when another host has it."""
        try:
            with self.db.tx() as db:
                if db.execute("UPDATE hosts SET principal=? WHERE fqdn=?", (principal, fqdn)).rowcount == 0:
                    raise NotFound(f"no host {fqdn}")
        except IntegrityError as exc:
            raise Conflict(f"the principal {principal} is linked to another host") from exc

    def host_of_principal(self, principal: str) -> Host | None:
        row = self.db.execute("SELECT * FROM hosts WHERE principal=?", (principal,)).fetchone()
        return _host(row) if row else None

    def record_updates(self, seen: dict[str, "LastSeen"]) -> None:
        """Store when, from where and with what each host last updated (one transaction)."""
        with self.db.tx() as db:
            db.executemany("UPDATE hosts SET last_update=?, last_client=?, last_agent=?, last_tls=? WHERE fqdn=?",
                           [(e.when, e.client, e.agent, int(e.tls), fqdn) for fqdn, e in seen.items()])

    def count_fault(self, fqdn: str, kind: str) -> None:
        column = {"auth": "auth_faults", "client": "client_faults"}[kind]
        with self.db.tx() as db:
            db.execute(f"UPDATE hosts SET {column}={column}+1 WHERE fqdn=?", (fqdn,))

    def set_blocked(self, fqdn: str, blocked: bool) -> None:
        with self.db.tx() as db:
            if db.execute("UPDATE hosts SET blocked=? WHERE fqdn=?", (int(blocked), fqdn)).rowcount == 0:
                raise NotFound(f"no host {fqdn}")

    # portal sessions
    def add_session(self, session: Session) -> None:
        with self.db.tx() as db:
            db.execute("INSERT INTO sessions(id_hash, user_id, csrf, created, seen, data) VALUES (?,?,?,?,?,?)",
                       (session.id_hash, session.user_id, session.csrf, session.created, session.seen,
                        json.dumps(session.data)))

    def session(self, id_hash: str) -> Session | None:
        row = self.db.execute("SELECT * FROM sessions WHERE id_hash=?", (id_hash,)).fetchone()
        if row is None:
            return None
        return Session(row["id_hash"], row["user_id"], row["csrf"], row["created"], row["seen"], json.loads(row["data"]))

    def save_session(self, id_hash: str, seen: float, data: dict) -> None:
        with self.db.tx() as db:
            db.execute("UPDATE sessions SET seen=?, data=? WHERE id_hash=?", (seen, json.dumps(data), id_hash))

    def touch_session(self, id_hash: str, seen: float) -> None:
        """Note a session's latest request (its data untouched: a request in parallel may be saving it)."""
        with self.db.tx() as db:
            db.execute("UPDATE sessions SET seen=? WHERE id_hash=?", (seen, id_hash))

    def delete_session(self, id_hash: str) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM sessions WHERE id_hash=?", (id_hash,))

    def purge_sessions(self, seen_before: float, created_before: float) -> int:
        """Drop sessions idle since SEEN_BEFORE or made before CREATED_BEFORE."""
        with self.db.tx() as db:
            return db.execute("DELETE FROM sessions WHERE seen<? OR created<?", (seen_before, created_before)).rowcount

    # personal API tokens
    def add_api_token(self, user_id: int, name: str, token_hash: str, now: float) -> ApiToken:
        with self.db.tx() as db:
            token_id = db.insert("INSERT INTO api_tokens(user_id, name, token_hash, created) VALUES (?,?,?,?)",
                                 (user_id, name, token_hash, now))
        return ApiToken(token_id, user_id, name, now, None)

    def api_tokens(self, user_id: int) -> list[ApiToken]:
        rows = self.db.execute("SELECT * FROM api_tokens WHERE user_id=? ORDER BY id", (user_id,))
        return [ApiToken(r["id"], r["user_id"], r["name"], r["created"], r["last_used"]) for r in rows]

    def api_token_owner(self, token_hash: str, now: float) -> User | None:
        """The user a personal API token belongs to, or None.

        Its use is noted at most every NOTE_USE_EVERY seconds, and not at all
        while the database is busy: an API read must not wait for the write lock.
        """
        row = self.db.execute("SELECT id, user_id, last_used FROM api_tokens WHERE token_hash=?",
                                 (token_hash,)).fetchone()
        if row is None:
            return None
        if row["last_used"] is None or now - row["last_used"] >= NOTE_USE_EVERY:
            try:
                with self.db.tx() as db:
                    db.execute("UPDATE api_tokens SET last_used=? WHERE id=?", (now, row["id"]))
            except Busy:
                pass  # noted on a later use
        return self.user_by_id(row["user_id"])

    def delete_api_token(self, user_id: int, token_id: int) -> None:
        with self.db.tx() as db:
            if db.execute("DELETE FROM api_tokens WHERE id=? AND user_id=?", (token_id, user_id)).rowcount == 0:
                raise NotFound(f"no token #{token_id}")


def _user(row: Row) -> User:
    return User(row["id"], row["name"], row["password_hash"], row["token_hash"], bool(row["is_admin"]),
                sub=row["sub"], email=row["email"], display_name=row["display_name"],
                groups=tuple(json.loads(row["groups"])))


def _domain(row: Row) -> Domain:
    return Domain(row["zone"], bool(row["public"]), tuple(json.loads(row["groups"])))


def _host(row: Row) -> Host:
    return Host(
        fqdn=row["fqdn"], zone=row["zone"], owner_id=row["owner_id"], secret_hash=row["secret_hash"],
        comment=row["comment"], created=row["created"], last_update=row["last_update"],
        last_client=row["last_client"], last_agent=row["last_agent"],
        last_tls=None if row["last_tls"] is None else bool(row["last_tls"]),
        auth_faults=row["auth_faults"], client_faults=row["client_faults"], blocked=bool(row["blocked"]),
        principal=row["principal"],
    )
