"""Settings: one TOML file plus ``DDNS_<SECTION>_<NAME>`` environment overrides.

The registry below is the single list of settings; ``ddns config --doc``
prints it, and the README's configuration reference is generated from it.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import errors


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    doc: str
    is_path: bool = False

    @property
    def env_name(self) -> str:
        return "DDNS_" + self.key.replace(".", "_").upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("http.listen", "127.0.0.1", "Address the web server binds to."),
    Setting("http.port", 8080, "TCP port of the web server."),
    Setting("http.threads", 64, "Worker threads running the app; requests reach them only once read whole, so slow clients hold none."),
    Setting("http.answer_on_loop", True, "Answer a nochg that memory decides (a verified secret, the served address) on the HTTP loop thread, without a worker; false: every request goes to a worker."),
    Setting("http.request_timeout", 10.0, "Seconds a client has to send one whole request (and an idle keep-alive connection stays open); then 408 and close."),
    Setting("http.max_connections", 1000, "Open connections at most; one more gets 503 and is closed."),
    Setting("http.public_url", "", "URL users reach the service at, used in printed client configs (default: http(s)://listen:port)."),
    Setting("http.tls_cert", "", "PEM certificate chain; with tls_key, serve HTTPS.", is_path=True),
    Setting("http.tls_key", "", "PEM private key for tls_cert.", is_path=True),
    Setting("http.trusted_proxies", [], "Addresses or networks of reverse proxies whose X-Forwarded-For / X-Real-IP is believed."),
    Setting("store.path", "ddns.sqlite3", "SQLite database of users, domains, hosts and secret hashes.", is_path=True),
    Setting("store.url", "", "Database of the store: empty for SQLite at store.path, or postgresql://USER@HOST:PORT/DB (PostgreSQL; a password in ~/.pgpass or PGPASSWORD)."),
    Setting("store.web_busy_timeout", 1.0, "Seconds a web request waits for the database's write lock before it answers 503 (the service and CLI wait 30)."),
    Setting("zones.repo", "zones", "Working tree of the zones Git repository; the service is its only writer.", is_path=True),
    Setting("zones.templates", "", "Directory with a zone.j2 that overrides the shipped zone template.", is_path=True),
    Setting("zones.upstream", "", "Git remote (URL or path) admins push to: the service pushes its commits there and takes in merged changes. Empty: none.", is_path=False),
    Setting("zones.branch", "main", "Branch of the zones repository that is published."),
    Setting("zones.push_seconds", 2.0, "Longest a service commit waits before it is pushed to the upstream; commits meanwhile go in one push."),
    Setting("zones.gc_seconds", 60.0, "How often serve runs `git gc --auto` on the zones repository, in the background, once the publisher is idle (0: never)."),
    Setting("zones.sync_seconds", 30.0, "How often to fetch the upstream for merged changes (a post-receive hook or the webhook also triggers it)."),
    Setting("zones.push_token", "", "Secret the service sends with its own pushes, so the upstream's hooks let them through."),
    Setting("zones.webhook_secret", "", "Shared secret of POST /hooks/zones (X-Gitlab-Token, X-Ddns-Token or GitHub's X-Hub-Signature-256); empty: endpoint off."),
    Setting("zones.max_change_share", 0.3, "Largest share of a zone's record sets one push may delete or rewrite without being forced (zones of 10+ record sets)."),
    Setting("zones.git_fsync", True, "Make git fsync objects and refs of each commit (durable across power loss)."),
    Setting("zones.shards", 256, "Files the dynamic records of a zone are split into (ZONE/dynamic/XX.records, by a hash of the owner name), so a commit stores a few small blobs; changing it reshards each zone in one commit."),
    Setting("bind.managed", True, "Start and stop a private named with `ddns serve`."),
    Setting("bind.dir", "bind", "Directory of the managed named (named.conf, rndc.key, logs).", is_path=True),
    Setting("bind.zones_conf", "bind/zones.conf", "named.conf fragment listing the zones, rewritten when zones change.", is_path=True),
    Setting("bind.listen", "127.0.0.1", "Address named answers on (the managed one listens there; queries for verification go there)."),
    Setting("bind.port", 5353, "DNS port named answers on."),
    Setting("bind.rndc_server", "127.0.0.1", "Address of named's control channel."),
    Setting("bind.rndc_port", 9953, "Port of named's control channel."),
    Setting("bind.rndc_key", "bind/rndc.key", "rndc key file (from rndc-confgen).", is_path=True),
    Setting("bind.verify_timeout", 5.0, "Seconds to wait for named to serve a new serial before an update answers dnserr."),
    Setting("bind.named", "named", "named binary for the managed instance."),
    Setting("bind.checkzone", "named-checkzone", "named-checkzone binary."),
    Setting("bind.zone_dir", "bind/zones", "Directory of named's own copies of the zones, written on full loads (named never loads the Git working tree; in incremental mode it keeps its journal there).", is_path=True),
    Setting("bind.publish", "auto", "How commits reach named: `incremental` (one RFC 2136 update per commit, signed with bind.publisher_key), `reload` (rndc reload of the whole zone), `auto` (incremental when the key file exists)."),
    Setting("bind.publisher_key", "bind/publisher.key", "TSIG key (tsig-keygen format) the publisher signs updates and zone transfers with; the managed named's is generated.", is_path=True),
    Setting("bind.notify", "explicit", "NOTIFY of the managed named (the hidden primary) after each change: `explicit` (only bind.also_notify), `yes` (also the zones' NS), `no`."),
    Setting("bind.also_notify", [], "Secondaries the managed named notifies after each change, each \"ADDRESS\" or \"ADDRESS port PORT\" (e.g. \"192.0.2.53 port 53\")."),
    Setting("bind.transfer_key", "bind/transfer.key", "TSIG key (tsig-keygen format) secondaries transfer zones with; the managed named's is generated, and only it and bind.publisher_key may transfer.", is_path=True),
    Setting("bind.catalog_zone", "", "Name of the catalog zone (RFC 9432, e.g. catalog.ddns.invalid) listing the zones for secondaries; committed to the zones repository as its own directory, served by named. Empty: none."),
    Setting("secondary.primaries", [], "Further primaries `ddns secondary config` lists after this publisher's named (bind.listen, bind.port), e.g. a standby publisher's: \"ADDRESS port PORT\"."),
    Setting("dnsupdate.listen", "127.0.0.1", "Address the RFC 2136 listener binds to (DNS UPDATE signed with TSIG, and the SOA/NS queries clients ask first; UDP and TCP)."),
    Setting("dnsupdate.port", 5053, "Port of the RFC 2136 listener (UDP and TCP); 0 turns it off."),
    Setting("dnsupdate.allow_weak_tsig", False, "Also accept TSIG keys with hmac-sha1 or hmac-md5 (else only hmac-sha256, -384 and -512)."),
    Setting("dnsupdate.fudge", 300, "Seconds a signed message's time may differ from ours (RFC 8945); beyond, NOTAUTH with BADTIME."),
    Setting("kerberos.keytab", "", "Keytab holding DNS/<zone SOA MNAME>@REALM for GSS-TSIG (RFC 3645) on the RFC 2136 listener; empty: GSS-TSIG off (TKEY answers REFUSED).", is_path=True),
    Setting("kerberos.realm", "", "Realm of host principals: with it set, host/NAME@REALM may change the registered host NAME's own records (krb5-self) with no zone rules."),
    Setting("kerberos.max_context_seconds", 3600, "Longest a negotiated GSS-TSIG context lives (at most the ticket's remaining lifetime); then its key is unknown (BADKEY)."),
    Setting("kerberos.max_contexts", 10000, "GSS-TSIG contexts kept at once; when full, expired ones go first, then the one nearest its expiry."),
    Setting("dyndns2.realm", "ddns", "Realm of the HTTP Basic challenge."),
    Setting("dyndns2.max_hosts", 20, "Most hostnames in one request; more answers numhost."),
    Setting("dyndns2.blocked_user_agents", [], "Substrings of User-Agent headers answered badagent (misbehaving clients)."),
    Setting("dyndns2.allow_private", True, "Accept private addresses (RFC 1918, ULA) as host addresses."),
    Setting("dyndns2.allow_loopback", False, "Accept loopback addresses as host addresses (only for tests and demos)."),
    Setting("updates.types", ["A", "AAAA", "TXT", "CNAME", "PTR"], "Record types dynamic updates may change (dyndns2, the portal, RFC 2136); never SOA, nor the apex NS or any name with static records."),
    Setting("metrics.enabled", True, "Serve /metrics (Prometheus text format: updates, publish stages, queue, serial lag, failures) to metrics.allow."),
    Setting("metrics.allow", ["127.0.0.1", "::1"], "Addresses or networks that may scrape /metrics (the client as http.trusted_proxies resolves it); others get 403."),
    Setting("metrics.serial_lag_seconds", 5.0, "Seconds the serials named serves, asked for ddns_serial_lag at a scrape, are kept for the next scrapes (0: asked at every scrape; a negative or non-finite value is refused at start)."),
    Setting("log.format", "text", "Log lines of `ddns serve`: `text`, or `json` (one object per line: time, level, logger, message and the record's extra fields)."),
    Setting("log.level", "INFO", "Lowest level `ddns serve` logs: DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    Setting("security.bcrypt_rounds", 12, "bcrypt cost of new secret hashes (12 is ~0.25 s)."),
    Setting("security.secret_cache_seconds", 900, "How long a verified secret is remembered after its last use: repeated updates skip bcrypt, and others' failed logins never get it refused."),
    Setting("security.max_failures", 10, "Failed logins for one host or account from one client network (IPv4 address, IPv6 /64) within failure_window before that network gets abuse for it; other networks and known-good secrets are not affected."),
    Setting("security.max_client_failures", 50, "Failed logins (any name; updates and portal) from one client network within failure_window; beyond it, its updates with secrets not verified lately answer abuse (except for hosts last updated from it) and its portal logins are refused."),
    Setting("security.failure_window", 600, "Seconds over which failed logins are counted."),
    Setting("security.failure_table_size", 20000, "Most keys each failure counter keeps in memory (about 300 bytes each); expired ones are dropped, and beyond this the ones that failed longest ago."),
    Setting("portal.enabled", True, "Serve the web portal (pages, JSON API); off: only /nic/update, /myip, /healthz."),
    Setting("portal.local_login", True, "Allow logins with a local user name and password (bcrypt); off: OpenID Connect only."),
    Setting("portal.session_idle", 1800, "Seconds of inactivity after which a portal session ends."),
    Setting("portal.session_max", 43200, "Seconds after login after which a portal session ends, active or not."),
    Setting("portal.max_login_failures", 5, "Failed local logins for one user name from one client network within security.failure_window before that network's logins as that user are refused."),
    Setting("portal.max_secret_actions", 30, "Hosts created, secrets regenerated and API tokens made per user within security.failure_window."),
    Setting("oidc.enabled", False, "Offer login through an OpenID Connect provider (Keycloak or any provider with Keycloak's paths)."),
    Setting("oidc.server_url", "", "Base URL of the provider, e.g. https://sso.example.org/ (Keycloak: without /realms/...)."),
    Setting("oidc.realm", "", "Keycloak realm name; the issuer is SERVER_URL/realms/REALM."),
    Setting("oidc.client_id", "", "Client id registered at the provider (a confidential client with the standard flow)."),
    Setting("oidc.client_secret", "", "Client secret of client_id (sent in the POST body: client_secret_post)."),
    Setting("oidc.verify_tls", True, "Check the provider's TLS certificate."),
    Setting("oidc.button", "Log in with your organisation", "Text of the portal's OpenID Connect login button."),
    Setting("oidc.groups_claim", "groups", "Claim holding the user's groups or entitlements (e.g. groups, eduperson_entitlement); matched against each domain's groups."),
    Setting("oidc.admin_groups", [], "Values of groups_claim that make a user an admin."),
    Setting("oidc.userinfo_cache_seconds", 60, "How long a bearer token checked with the provider's userinfo endpoint is trusted by the API."),
    Setting("publisher.max_batch", 1000, "Most changes committed together in one group commit."),
    Setting("publisher.group_wait", 0.05, "Longest a change waits to join a larger group while named still loads the previous one (a big zone is then reloaded once per group)."),
    Setting("publisher.retry_seconds", 5.0, "How often zones that named does not serve yet are reloaded again."),
    Setting("publisher.stuck_seconds", 10.0, "A change not committed after this many seconds makes /healthz answer degraded (the publisher is stuck)."),
    Setting("cluster.role", "all", "What `ddns serve` runs: all (one process: web, publisher, named), web (HTTP and RFC 2136 only; updates go through the changes table) or publisher (named, and the publisher once elected); `serve --role` overrides it."),
    Setting("cluster.lock_id", 7_266_531, "Key of the PostgreSQL advisory lock the publisher nodes of one cluster compete for (another cluster on the same database needs another)."),
    Setting("cluster.takeover_seconds", 20.0, "Seconds a failover may take (standbys poll the lock twice a second, then catch up from the changes table): a web request waits this plus bind.verify_timeout for its change's outcome, then answers a retryable 911 / 503 (the change stays queued)."),
    Setting("acme.txt_ttl", 60, "TTL of the _acme-challenge TXT records set through /acme/httpreq (short: a resolver must not keep an old challenge value for long).")
)

_BY_KEY = {s.key: s for s in SETTINGS}


class ConfigError(errors.Invalid):
    """A configuration file or override that cannot be used."""


def _coerce(setting: Setting, value: Any, origin: str) -> Any:
    default = setting.default
    if isinstance(value, str) and not isinstance(default, str):
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ConfigError(f"{origin}: {setting.key} wants true or false, not {value!r}")
            return value.lower() in ("1", "true", "yes")
        if isinstance(default, list):
            return [v.strip() for v in value.split(",") if v.strip()]
        try:
            return type(default)(value)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {setting.key} wants a {type(default).__name__}, not {value!r}") from exc
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfigError(f"{origin}: {setting.key} wants {type(default).__name__}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"{origin}: {setting.key} wants {type(default).__name__}, not {value!r}")
    return value


class Config:
    """Resolved settings. Relative paths are taken from the config file's directory."""

    def __init__(self, values: Mapping[str, Any], base_dir: Path, source: Path | None = None):
        self._values = dict(values)
        self.base_dir = base_dir
        self.source = source

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def path(self, key: str) -> Path | None:
        """A path setting resolved against the base directory (None when empty)."""
        value = self._values[key]
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def upstream(self) -> str:
        """zones.upstream as git takes it: URLs as they are, local paths resolved here."""
        value = self["zones.upstream"]
        if not value or "://" in value or re.match(r"^[\w.-]+@[\w.-]+:", value):
            return value
        p = Path(value)
        return str(p if p.is_absolute() else self.base_dir / p)

    @property
    def public_url(self) -> str:
        if self["http.public_url"]:
            return self["http.public_url"].rstrip("/")
        scheme = "https" if self["http.tls_cert"] else "http"
        return f"{scheme}://{self['http.listen']}:{self['http.port']}"

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def load(path: Path | None, environ: Mapping[str, str] = os.environ, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read PATH (if given), then environment overrides, then OVERRIDES (for tests)."""
    values = {s.key: list(s.default) if isinstance(s.default, list) else s.default for s in SETTINGS}
    base_dir = Path.cwd()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"no config file at {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        base_dir = path.resolve().parent
        for section, entries in data.items():
            if not isinstance(entries, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            for name, value in entries.items():
                key = f"{section}.{name}"
                if key not in _BY_KEY:
                    raise ConfigError(f"{path}: unknown setting {key}")
                values[key] = _coerce(_BY_KEY[key], value, str(path))
    for setting in SETTINGS:
        if setting.env_name in environ:
            values[setting.key] = _coerce(setting, environ[setting.env_name], setting.env_name)
    for key, value in (overrides or {}).items():
        if key not in _BY_KEY:
            raise ConfigError(f"unknown setting {key}")
        values[key] = _coerce(_BY_KEY[key], value, "override")
    return Config(values, base_dir, path)


def find_config_file(explicit: str | None, environ: Mapping[str, str] = os.environ, cwd: Path | None = None) -> Path | None:
    """``-c FILE``, else ``$DDNS_CONFIG``, else ``./ddns.toml`` if present."""
    if explicit:
        return Path(explicit)
    if environ.get("DDNS_CONFIG"):
        return Path(environ["DDNS_CONFIG"])
    candidate = (cwd or Path.cwd()) / "ddns.toml"
    return candidate if candidate.exists() else None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + "".join(_TOML_ESCAPES.get(ch, ch) for ch in str(value)) + '"'


# TOML basic strings: escape quote and backslash, and every control character
# (a raw newline would end the string and make the file unreadable).
_TOML_ESCAPES = {chr(c): f"\\u{c:04x}" for c in [*range(0x20), 0x7F]}
_TOML_ESCAPES.update({'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"})


def render_toml(values: Mapping[str, Any], commented_defaults: bool = True) -> str:
    """A documented config file: VALUES set, other settings as commented defaults."""
    out: list[str] = ["# ddns configuration. Every setting can also be set by the environment", "# variable named in its comment.", ""]
    section = None
    for s in SETTINGS:
        sec, name = s.key.split(".", 1)
        if sec != section:
            out.append(f"[{sec}]")
            section = sec
        out.append(f"# {s.doc} (env {s.env_name})")
        if s.key in values:
            out.append(f"{name} = {_toml_value(values[s.key])}")
        elif commented_defaults:
            out.append(f"# {name} = {_toml_value(s.default)}")
        out.append("")
    return "\n".join(out)


def reference_markdown() -> str:
    """The settings registry as a Markdown table (for the README)."""
    rows = ["| setting | default | environment | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        rows.append(f"| `{s.key}` | `{_toml_value(s.default)}` | `{s.env_name}` | {s.doc} |")
    return "\n".join(rows)
