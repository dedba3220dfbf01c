"""The service layer: what the CLI, the dyndns2 endpoint and the portal call.

It owns the rules (who may do what, which names are allowed) and hands every DNS change to the
publisher: through the publisher thread when the service runs (a cluster node: the changes table,
``ddns.cluster``), directly (under the same lock) from a one-shot CLI command.

The update use case is in ddns.updates (``update``, ``update_many``), a host's rights and deletion
in ddns.hostrecords, domains and their zone.toml settings in ddns.domains, the threads of ``ddns serve``
in ddns.background, the read models in ddns.reports. The Service wires them together and keeps one
method per use case, so adapters know only the Service.
"""
from __future__ import annotations

import ipaddress
import time
from typing import Callable

from . import errors, hostrecords, kerberos_check, keytab, model, policy, trusted, zones
from .accounts import Accounts
from .keyrules import ACME_LABEL
from .auth import hash_secret, new_secret
from .background import Background
from .cluster import Submitter
from .config import Config
from .domains import Domains
from .gitrepo import HistoryEntry
from .guard import Guard, Verdict
from .keys import Keys
from .lastseen import SeenBatch
from .metrics import Metrics
from .principals import Principals
from .keystore import KeyInfo
from .publishing import servedcheck
from .model import Actor, Identity, Op, Operation, Outcome, Prerequisite, Result, RRset, Update
from .publishing.publisher import Publisher
from .store import Conflict, Domain, Host, LastSeen, NotFound, Store, User
from .reports import DomainView, HostView, Reports
from .records import record_name
from .updates import Updates
from .validate import AddressPolicy, InvalidName, normalize_name, parse_address, record_type, split_host
from .wiring import build_publisher

# Names no user may register, whatever the zone's static records say.
RESERVED_LABELS = frozenset({"@", "www", "ns", "ns1", "ns2", "ns3", "mail", "smtp", "imap", "pop", "mx",
                             "localhost", "admin", "root", "hostmaster", "postmaster", "webmaster", "abuse",
                             "autoconfig", "autodiscover", "_dmarc"})


class Service:
    def __init__(self, config: Config, store: Store, publisher: Publisher,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 handover: Submitter | None = None, active: Callable[[], bool] | None = None):
        self.config = config
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.metrics = Metrics(config)  # this service's own registry (ddns.metrics)
        # secrets and passwords: the cache of good ones, failure counters
        self.guard = Guard(config, monotonic, on_failure=self.metrics.auth_failure)
        self.accounts = Accounts(config, store, self.guard, clock, monotonic)
        self.trusted_proxies = [ipaddress.ip_network(n, strict=False) for n in config["http.trusted_proxies"]]
        self.policy = AddressPolicy(config["dyndns2.allow_private"], config["dyndns2.allow_loopback"])
        self._seen = SeenBatch()  # requests append, flush_seen drains: no lock
        self.background = Background(config, publisher, sync=self.sync, reconcile=self.reconcile,
                                     flush_seen=self.flush_seen)
        self.handover: Submitter = handover or self.background  # the publisher thread, or a cluster node's table
        self.reports = Reports(config, store, publisher, self.guard, self.background, active)
        self.key_ring = Keys(store, clock)
        self.updates = Updates(publisher, self.publish, config["updates.types"], self.policy, self.metrics.update)
        self.metrics.watch(publisher, self.background)
        self.domain_rules = Domains(config, store, publisher, clock)
        self.principals = Principals(store, config["kerberos.realm"], self.domain_rules.loaded_kerberos_rules,
                                     lambda: list(publisher.zones))

    @classmethod
    def open(cls, config: Config, clock: Callable[[], float] = time.time, publisher: Publisher | None = None,
             before_load: Callable[[Publisher], None] | None = None, **node) -> "Service":
        """The service for CONFIG with its store and PUBLISHER (default: CONFIG's) loaded (no thread).

        BEFORE_LOAD is called once the repository is recovered, before the zones load (serve starts named there).
        NODE (``handover``, ``active``) makes it a cluster node's (ddns.cluster.roles).
        """
        publisher = publisher or build_publisher(config, clock)
        publisher.recover()
        if before_load is not None:
            before_load(publisher)
        publisher.load()
        return cls(config, Store.open(config), publisher, clock=clock, **node)

    # ---- running: the threads of `ddns serve` (ddns.background) ------------
    def prepare_named(self) -> None:
        """Before a managed named starts: its copies of the zones and the zone list, from what is committed."""
        self.publisher.write_zones_conf()

    def served_differences(self, zone_names: list[str] | None = None) -> dict[str, list[str]]:
        """What named serves (AXFR) against what is committed, per zone (all by default): [] where equal."""
        names = zone_names or sorted(self.publisher.zones)
        unknown = [z for z in names if z not in self.publisher.zones]
        if unknown:
            raise NotFound(f"no zone {', '.join(unknown)}")
        key = (servedcheck.key_or_none(self.config.path("bind.publisher_key"))  # named gives transfers to these only
               or servedcheck.key_or_none(self.config.path("bind.transfer_key")))
        return servedcheck.check(names, self.publisher.named.committed,
                                 lambda z: servedcheck.transfer(z, self.config["bind.listen"], self.config["bind.port"], key))

    def start(self) -> dict[str, str]:
        """Take in the upstream, reconcile BIND with the repository, then publish from background threads."""
        return self.background.start()

    def stop(self) -> None:
        self.background.stop()
        self.publisher.close()

    def begin_web_request(self) -> None:
        """Web requests wait at most store.web_busy_timeout for the write lock (then 503); the CLI and publisher longer."""
        self.store.wait_at_most(self.config["store.web_busy_timeout"])

    # ---- last-seen metadata --------------------------------------------------
    def note_update(self, fqdn: str, client: str, agent: str, tls: bool) -> None:
        """Remember a host's last update; while serving, written once a second (``lastseen``)."""
        self._seen.note(fqdn, LastSeen(self.clock(), client, agent, tls))
        if not self.background.flushing:
            self.flush_seen()

    def flush_seen(self) -> None:
        """Write the batched metadata, each host's latest (kept for the next flush while the database is busy)."""
        self._seen.flush(self.store.record_updates)

    # ---- the upstream ----------------------------------------------------------
    def sync(self, always_reconcile: bool = False) -> dict[str, str]:
        """Take in merged changes, publish them, push; zones in the repository are the open domains."""
        status = self.publisher.sync(self.config["zones.branch"], self.config["zones.push_token"],
                                     always_reconcile=always_reconcile)
        self._sync_domains()
        return status

    def reconcile(self) -> dict[str, str]:
        """Publish the working tree's HEAD without the upstream; zones in it are the open domains."""
        status = self.publisher.reconcile()
        self._sync_domains()
        return status

    def request_sync(self) -> None:
        """Ask the background syncer to fetch now (webhook)."""
        self.background.request_sync()

    def _sync_domains(self) -> None:
        # The zones on disk, not this process's memory: a hook's `ddns apply` may have added
        # or removed zones in the working tree since this publisher last reconciled.
        in_repo = set(zones.list_zones(self.publisher.root))
        for zone in in_repo - set(self.store.domains()):
            self.store.add_domain(zone, self.clock())
        for zone in set(self.store.domains()) - in_repo:
            self.store.deactivate_domain(zone)

    def publish(self, updates: list[Update], timeout: float | None = None) -> list[Result]:
        """Publish UPDATES (checked already) and wait for their results (FAILED on timeout)."""
        return self.handover.publish(updates, timeout)

    # ---- the update use case (ddns.updates) ----------------------------------
    def update(self, identity: Identity, zone: str, operations: list[Operation] | tuple[Operation, ...],
               prerequisites: list[Prerequisite] | tuple[Prerequisite, ...] = ()) -> Result:
        """Apply OPERATIONS to ZONE as IDENTITY if PREREQUISITES hold: all or nothing, answered once served."""
        return self.updates.update(identity, zone, operations, prerequisites)

    def update_many(self, identity: Identity, updates: list[Update]) -> list[Result]:
        """UPDATES as IDENTITY's in one group commit; one result each."""
        return self.updates.update_many(identity, updates)

    def find_zone(self, name: str) -> str | None:
        """The longest of our zones that NAME is in."""
        return self.updates.find_zone(name)

    def rrsets(self, zone: str, name: str) -> list[RRset]:
        """What ZONE holds at NAME now, static and dynamic, the apex SOA with the current serial."""
        return self.updates.rrsets(zone, name)

    # ---- TSIG keys (ddns.keys) ------------------------------------------------
    def tsig_key(self, name: str) -> model.TsigKey | None:
        return self.key_ring.tsig_key(name)

    def key_identity(self, name: str, actor: model.Actor) -> model.Identity | None:
        return self.key_ring.key_identity(name, actor)

    # ---- Kerberos principals (ddns.principals) ------------------------------------
    def principal_identity(self, principal: str, zone: str, actor: Actor) -> Identity | None:
        """What PRINCIPAL may change in ZONE: the zone's [kerberos] rules, then its host's own rights; None: nothing."""
        return self.principals.identity(principal, zone, actor)

    def set_principal(self, fqdn: str, principal: str | None) -> None:
        """Link PRINCIPAL to the host FQDN (None: unlink); one principal links at most one host."""
        self.principals.link(self.host(fqdn), principal)

    def add_key(self, user: User | None, name: str, acme: bool = False, zone: str | None = None,
                rules: tuple[str, ...] = (), algorithm: str = "hmac-sha256") -> tuple[KeyInfo, str]:
        """A host key (ACME key) of host NAME, or with ZONE a zone key; returns it and its secret, shown once."""
        return self.key_ring.add(user, name, acme, zone, rules, algorithm)

    def keys(self, user: User | None, host: str | None = None, kind: str | None = None) -> list[KeyInfo]:
        return self.key_ring.keys(user, host, kind)

    def delete_key(self, user: User | None, name: str, host: str | None = None) -> KeyInfo:
        return self.key_ring.delete(user, name, host)

    # ---- unsigned updates from trusted networks (ddns.trusted) ----------------
    def unsigned_identity(self, zone: str, client: str, operations: tuple[Operation, ...], actor: Actor,
                          prerequisites: tuple[Prerequisite, ...] = ()) -> Identity | None:
        """Who an unsigned update from CLIENT is: None unless ZONE trusts CLIENT's network; Refused
        unless it registers CLIENT's own address at one name no host holds (ddns.trusted)."""
        state = self.publisher.zones.get(zone) if self.publisher.has_zone(zone) else None  # re-read if changed
        if state is None:
            return None
        return trusted.unsigned_identity(state.source.settings.unsigned_networks, zone, client, operations,
                                         prerequisites, actor, RESERVED_LABELS | state.source.reserved,
                                         self._held_by_host)

    def _held_by_host(self, name: str) -> bool:
        """Whether NAME is one of a registered host's names (ddns.hostrecords.names_of)."""
        acme = f"{ACME_LABEL}."
        owner = name[len(acme):] if name.startswith(acme) else name
        return self.store.find_host(owner) is not None

    # ---- read models for the pages and /healthz (ddns.reports) ---------------
    def status(self) -> dict:
        """What the admins' status page shows: counts, the publisher, BIND against Git, recent errors, Kerberos."""
        return {**self.reports.status(), "kerberos": self._kerberos()}

    def health(self) -> dict:
        """What /healthz answers: "degraded", with the reasons, while changes are not published (or the keytab
        lacks a zone's principal)."""
        health, entries = self.reports.health(), self._kerberos()
        if entries is not None:
            health["kerberos"] = entries
            health["reasons"] += kerberos_check.reasons(entries)
            health["status"] = "degraded" if health["reasons"] else health["status"]
        return health

    def _kerberos(self) -> list[dict] | None:
        """The keytab check when GSS-TSIG is on (kerberos.keytab set), else None."""
        return self.kerberos_check() if self.config.path("kerberos.keytab") else None

    def kerberos_check(self) -> list[dict]:
        """Per zone: does kerberos.keytab hold DNS/<SOA MNAME>@REALM (ddns.kerberos_check)."""
        mnames = {zone: kerberos_check.mname(state.source.settings.primary_ns, zone)
                  for zone, state in self.publisher.zones.copy().items()}
        return kerberos_check.check(mnames, self.config["kerberos.realm"], self.config.path("kerberos.keytab"),
                                    keytab.read, keytab.holds)

    # ---- domains and their zone.toml settings (ddns.domains) ------------------
    def add_domain(self, zone: str, nameservers: list[str] | None = None, actor: str = "cli") -> Outcome:
        return self.domain_rules.add(zone, nameservers, actor)

    def domains(self) -> list[DomainView]:
        return self.domain_rules.views()

    def dynamic_ttl(self, zone: str) -> int | None:
        return self.domain_rules.dynamic_ttl(zone)

    def kerberos_rules(self, zone: str) -> tuple[str, ...]:
        return self.domain_rules.kerberos_rules(zone)

    def unsigned_networks(self, zone: str) -> tuple[str, ...]:
        return self.domain_rules.unsigned_networks(zone)

    def set_domain_access(self, zone: str, public: bool, groups: list[str]) -> None:
        self.domain_rules.set_access(zone, public, groups)

    def set_dynamic_ttl(self, zone: str, ttl: int, actor: str) -> Outcome:
        return self.domain_rules.set_dynamic_ttl(zone, ttl, actor)

    def set_unsigned_networks(self, zone: str, networks: list[str], actor: str) -> Outcome:
        return self.domain_rules.set_unsigned_networks(zone, networks, actor)

    def set_kerberos_rules(self, zone: str, rules: list[str], actor: str) -> Outcome:
        return self.domain_rules.set_kerberos_rules(zone, rules, actor)

    def configure_domain(self, zone: str, public: bool, groups: list[str], ttl: int | None,
                         actor: str) -> Outcome | None:
        return self.domain_rules.configure(zone, public, groups, ttl, actor)

    # ---- hosts -------------------------------------------------------------
    def _split(self, fqdn: str) -> tuple[str, str, str]:
        fqdn = normalize_name(fqdn)
        label, zone = split_host(fqdn, frozenset(self.store.domains()))
        return fqdn, label, zone

    def add_host(self, fqdn: str, owner: str, comment: str = "") -> tuple[Host, str]:
        """Register FQDN for OWNER; returns the host and its secret (shown once)."""
        fqdn, label, zone = self._split(fqdn)
        if policy.reverse_zone(zone):
            raise errors.Invalid(f"{zone} is a reverse zone: hosts live in forward zones and set their PTR records here")
        state = self.publisher.zones.get(zone)
        if label in RESERVED_LABELS or (state is not None and label in state.source.reserved):
            raise errors.Invalid(f"the name {label} is reserved in {zone}")
        user = self.store.user(owner)
        secret = new_secret()
        try:
            host = self.store.add_host(fqdn, zone, user.id, hash_secret(secret, self.config["security.bcrypt_rounds"]),
                                       self.clock(), comment[:200])
        except Conflict as exc:
            raise errors.Conflict(f"the name {fqdn} is taken") from exc
        return host, secret

    def host(self, fqdn: str) -> Host:
        try:
            return self.store.host(normalize_name(fqdn))
        except (NotFound, InvalidName) as exc:
            raise errors.NotFound(f"no host {fqdn}") from exc

    def regenerate_secret(self, fqdn: str) -> str:
        """A new secret for FQDN; the old one stops working at once."""
        host = self.host(fqdn)
        secret = new_secret()
        # A new hash: failure counts are keyed on it, so every process starts afresh for it.
        try:
            self.store.set_secret_hash(host.fqdn, hash_secret(secret, self.config["security.bcrypt_rounds"]))
        except NotFound as exc:  # deleted while the hash was computed
            raise errors.NotFound(f"no host {fqdn}") from exc
        return secret

    def view(self, host: Host) -> HostView:
        """HOST with its addresses in Git; none, and not in the repository, when a merge removed its zone."""
        return self.reports.view(host)

    def list_hosts(self, owner: str | None = None) -> list[HostView]:
        self.flush_seen()  # show updates of the last second too
        owner_id = self.store.user(owner).id if owner else None
        return [self.view(h) for h in self.store.hosts(owner_id)]

    def host_identity(self, host: Host, actor: Actor) -> Identity:
        """HOST's own rights (ddns.hostrecords): its A, AAAA, TXT and ``_acme-challenge`` TXT, while registered."""
        return hostrecords.host_identity(self.store, host, actor)

    def set_address(self, fqdn: str, address: str, actor: str, interface: str = "cli",
                    client: str = "", agent: str = "") -> Outcome:
        """Make ADDRESS the host's one address of its family."""
        host = self.host(fqdn)
        addr = parse_address(address, self.policy)
        identity = self.host_identity(host, Actor(actor, client, interface, agent))
        result = self.update(identity, host.zone, Operation.replace(host.fqdn, record_type(addr), [str(addr)]))
        return self._unless_refused(fqdn, result)

    @staticmethod
    def _unless_refused(fqdn: str, result: Result) -> Outcome:
        """The outcome of a host's update; the host was deleted meanwhile when it was refused."""
        if result.outcome is Outcome.REFUSED:
            raise errors.NotFound(f"no host {fqdn}")
        return result.outcome

    def delete_host(self, fqdn: str, actor: str, interface: str = "cli") -> Outcome:
        """Remove the host's records from DNS and the host, as one step under the publisher's lock."""
        outcome = hostrecords.delete_host(self.publisher, self.store, self.host(fqdn), Actor(actor, interface=interface))
        if outcome is None:
            raise errors.NotFound(f"no host {fqdn}")
        return outcome

    def history(self, fqdn: str) -> list[HistoryEntry]:
        """The audited changes of the records at FQDN and at its ``_acme-challenge`` name (a host's certificates)."""
        return list(self.publisher.repo.history(record_name(fqdn), below=(ACME_LABEL,)))

    def audit(self, since: str, until: str | None = None) -> list[HistoryEntry]:
        """Every change of every host between SINCE and UNTIL (dates git understands)."""
        return list(self.publisher.repo.audit(since, until))

    def clear_address(self, fqdn: str, actor: str, interface: str = "cli", rtypes: tuple[str, ...] = ("A", "AAAA")) -> Outcome:
        """Remove the host's RTYPES records (it stays registered)."""
        host = self.host(fqdn)
        identity = self.host_identity(host, Actor(actor, interface=interface))
        operations = [Operation(Op.DELETE_RRSET, host.fqdn, rtype) for rtype in rtypes]
        return self._unless_refused(fqdn, self.update(identity, host.zone, operations))

    def served(self, host: Host) -> dict[str, list[str] | None]:
        """What BIND answers for the host now: {"A": [...], "AAAA": [...]} (None: no answer)."""
        return self.reports.served(host)

    # ---- the portal's rules: who may use which domain and host ---------------
    @staticmethod
    def may_use(user: User, domain: Domain) -> bool:
        """Admins use every domain; others public ones and those limited to a group they are in."""
        return user.is_admin or domain.public or bool(set(user.groups) & set(domain.groups))

    def usable_domains(self, user: User) -> list[Domain]:
        return [d for d in self.store.domain_list() if self.may_use(user, d)]

    def owned_host(self, user: User, fqdn: str) -> Host:
        """FQDN if USER may manage it; another user's host is "no host", exactly as a missing one."""
        self.flush_seen()
        host = self.host(fqdn)
        if host.owner_id != user.id and not user.is_admin:
            raise errors.NotFound(f"no host {fqdn}")
        return host

    def add_host_for(self, user: User, label: str, zone: str, comment: str = "") -> tuple[Host, str]:
        """Register LABEL.ZONE for USER if USER may use ZONE; returns the host and its secret."""
        try:
            domain = self.store.domain(zone)
        except NotFound as exc:
            raise errors.NotFound(f"no domain {zone}") from exc
        if not self.may_use(user, domain):
            raise errors.Refused(f"you may not register hosts in {zone}")
        label = label.strip().rstrip(".")
        if not label:
            raise errors.Invalid("a host name is needed")
        fqdn, _, found_zone = self._split(f"{label}.{zone}")
        if found_zone != zone:
            raise errors.Invalid(f"{fqdn} belongs to the domain {found_zone}")
        return self.add_host(fqdn, user.name, comment)

    def set_comment(self, fqdn: str, comment: str) -> None:
        self.store.set_comment(self.host(fqdn).fqdn, comment.strip()[:200])

    def surely_changes(self, name: str, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
        """Whether ADDRESSES at NAME surely change its records: the loop thread's cheap no (ddns.updates)."""
        return self.updates.surely_changes(name, addresses)

    def unchanged_now(self, username: str, secret: str, client: str, agent: str, tls: bool,
                      plan: Callable[[Host], tuple[Identity, list[Update]] | None]) -> Host | None:
        """The host USERNAME names, when the updates PLAN makes for it change nothing, told without waiting.

        For a thread that must not block (the HTTP loop): the host's row read
        without lock waits (SQLite only), its secret a cache hit (no bcrypt),
        the served snapshot current and equal (no publisher), the last-seen
        note batched (while serving). None: the ordinary path decides, as
        ever. A secret replaced by any process changes the row's stored hash
        read here, so the old one stops being known good at once.
        """
        if not self.background.flushing or not self.store.read_without_waiting():
            return None
        try:
            host = self.store.find_host(normalize_name(username))
            if host is None or host.blocked or not self.guard.known_good(host.secret_hash, secret):
                return None
            planned = plan(host)
            results = self.updates.unchanged_now(*planned) if planned else None
        except (InvalidName, errors.DdnsError):
            return None
        if results is None:
            return None
        self.note_update(host.fqdn, client, agent, tls)
        return host

    # ---- authentication for updates ---------------------------------------
    def _principal(self, username: str) -> tuple[str, Host | User | None, str | None]:
        """(failure-key name, the host or user USERNAME names or None, its stored secret hash)."""
        try:
            host = self.store.find_host(normalize_name(username))
        except InvalidName:
            host = None
        if host is not None:
            return host.fqdn, host, host.secret_hash
        try:
            user = self.store.user(username)
        except NotFound:
            return "unknown:" + username[:100], None, None
        return "user:" + user.name, user, user.token_hash

    def authenticate(self, username: str, secret: str, client: str = "") -> tuple[Verdict, Host | User | None]:
        """Check dyndns2 credentials: ("ok", host-or-user), ("badauth", None) or ("abuse", None).

        abuse: a host an admin blocked, or a guesser (see ddns.guard): a known-good
        credential is never refused for others' failures.
        """
        name, principal, stored = self._principal(username)
        host = principal if isinstance(principal, Host) else None
        if host is not None and host.blocked:
            return "abuse", None
        verdict = self.guard.check_secret(name, stored, secret, client, host.last_client if host else None)
        if verdict == "badauth" and host is not None:
            self.store.count_fault(host.fqdn, "auth")
        return verdict, principal if verdict == "ok" else None

