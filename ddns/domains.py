"""The domain use cases: opening a zone for hosts, who may use it, and its zone.toml settings.

A domain is two things kept in step: a zone in the repository (its
zone.toml and static records, changed only by commits through the
publisher) and a row in the store (who may register hosts in it). The
settings an admin changes here -- the host records' TTL, the networks that
may send unsigned updates, the Kerberos rules -- are commits to zone.toml, so
they are audited, reviewed and synced like every other change of a zone; the
access rule is only a row. ``ddns.service.Service`` forwards to this.
"""
from __future__ import annotations

from typing import Callable

from . import errors, krbrules, zones, zonetoml
from .config import Config
from .model import Outcome
from .publishing.publisher import Publisher
from .reports import DomainView
from .store import Store
from .validate import InvalidName, normalize_name
from .zones import default_zone_files


class Domains:
    """The domains of STORE and the zones of PUBLISHER, changed together."""

    def __init__(self, config: Config, store: Store, publisher: Publisher, clock: Callable[[], float]):
        self.config = config
        self.store = store
        self.publisher = publisher
        self.clock = clock

    def add(self, zone: str, nameservers: list[str] | None = None, actor: str = "cli") -> Outcome:
        """Create ZONE in the repository (if new), have BIND serve it, open it for hosts."""
        try:
            zone = normalize_name(zone)
            nameservers = [normalize_name(n) for n in nameservers or ()]  # they end up in zone.toml: names only
        except InvalidName as exc:
            raise InvalidName(f"not a valid zone or name server name: {exc}") from exc
        zones.check_reverse_zone(zone)
        if zone in self.store.domains():
            raise errors.Conflict(f"domain {zone} exists")
        outcome = Outcome.PUBLISHED
        if zone not in zones.list_zones(self.publisher.root):  # on disk: another process may have added or removed it
            settings, static = default_zone_files(zone, nameservers, self.config["bind.listen"])
            outcome = self.publisher.add_zone(zone, settings, static, actor)
        self.store.add_domain(zone, self.clock())
        return outcome

    def views(self) -> list[DomainView]:
        """The open domains with who may use them, their host counts and host records' TTL."""
        counts = self.store.host_counts()
        return [DomainView(d, counts.get(d.zone, 0), self.dynamic_ttl(d.zone)) for d in self.store.domain_list()]

    # ---- what zone.toml says --------------------------------------------------
    def dynamic_ttl(self, zone: str) -> int | None:
        """The TTL of ZONE's host records; None when ZONE is not loaded."""
        state = self.publisher.zones.get(zone)
        return state.source.settings.dynamic_ttl if state is not None else None

    def kerberos_rules(self, zone: str) -> tuple[str, ...]:
        """ZONE's [kerberos] rules (zone.toml); NotFound when ZONE is not ours."""
        if zone not in self.publisher.zones:
            raise errors.NotFound(f"no domain {zone}")
        return self.loaded_kerberos_rules(zone)

    def loaded_kerberos_rules(self, zone: str) -> tuple[str, ...]:
        """ZONE's [kerberos] rules, () when ZONE is not loaded: what ddns.principals asks, never an error."""
        state = self.publisher.zones.get(zone)
        return state.source.settings.kerberos_rules if state is not None else ()

    def unsigned_networks(self, zone: str) -> tuple[str, ...]:
        """The networks ZONE takes unsigned updates from (zone.toml's [unsigned] networks)."""
        return self.publisher.zones[self._zone_of(zone)].source.settings.unsigned_networks

    def _zone_of(self, zone: str) -> str:
        """ZONE as our zones are named (re-read if another process changed it); NotFound when it is none of them."""
        try:
            name = normalize_name(zone)
        except InvalidName:
            name = ""
        if not name or not self.publisher.has_zone(name) or name not in self.publisher.zones:
            raise errors.NotFound(f"no domain {zone}")
        return name

    # ---- changing it -------------------------------------------------------------
    def set_access(self, zone: str, public: bool, groups: list[str]) -> None:
        """Who may register hosts in ZONE: everyone (PUBLIC) or members of GROUPS."""
        self.store.set_domain_access(zone, public, _clean_groups(groups))

    def set_dynamic_ttl(self, zone: str, ttl: int, actor: str) -> Outcome:
        """Set the TTL of the zone's host records: a commit to its zone.toml, then a reload."""
        if not 1 <= ttl <= 86400:
            raise errors.Invalid("the TTL must be between 1 and 86400 seconds")
        if zone not in self.publisher.zones:
            raise errors.NotFound(f"no domain {zone}")
        return self.set_setting(zone, "", "dynamic_ttl", ttl, actor)

    def set_unsigned_networks(self, zone: str, networks: list[str], actor: str) -> Outcome:
        """Let unsigned updates from NETWORKS register their clients' own names in ZONE ([]: none may)."""
        canonical = zones.unsigned_networks(networks)
        return self.set_setting(zone, "unsigned", "networks", list(canonical) if canonical else None, actor)

    def set_kerberos_rules(self, zone: str, rules: list[str], actor: str) -> Outcome:
        """Make RULES ZONE's [kerberos] rules ([]: none), checked first (ddns.krbrules): a commit to zone.toml."""
        krbrules.parse_rules(rules, normalize_name(zone))
        return self.set_setting(normalize_name(zone), "kerberos", "rules", list(rules) or None, actor)

    def set_setting(self, zone: str, table: str, key: str, value: zonetoml.TomlValue | None, actor: str) -> Outcome:
        """Set KEY of TABLE in ZONE's zone.toml (None: remove it) as an admin's commit, then a reload."""
        zone = self._zone_of(zone)
        path = self.publisher.root / zone / zones.SETTINGS_FILE
        try:
            return self.publisher.update_settings(zone, zonetoml.with_setting(path.read_text(), table, key, value), actor)
        except (KeyError, FileNotFoundError) as exc:  # the zone left the repository just now
            raise errors.NotFound(f"no domain {zone}") from exc
        except OSError as exc:  # a full disk: the files are back as HEAD has them, nothing changed
            raise errors.Unavailable(f"the change could not be committed: {exc}") from exc

    def configure(self, zone: str, public: bool, groups: list[str], ttl: int | None, actor: str) -> Outcome | None:
        """Who may use ZONE and, if TTL is given, its host records' TTL: all checked before anything changes.

        The TTL (a commit that can still be refused) goes first, the access (a
        row of an existing domain) after it, so a refusal changes nothing.
        Returns the TTL's outcome (None: no TTL given).
        """
        clean = _clean_groups(groups)
        if not public and not clean:
            raise errors.Invalid(f"name at least one group that may use {zone}")
        self.store.domain(zone)  # errors.NotFound before anything changes
        outcome = self.set_dynamic_ttl(zone, ttl, actor) if ttl is not None else None
        self.set_access(zone, public, clean)
        return outcome


def _clean_groups(groups: list[str]) -> list[str]:
    """The group names of a domain's access rule, deduplicated and sorted; refused when too many or too long."""
    clean = sorted({g.strip() for g in groups if g.strip()})
    if any(len(g) > 200 for g in clean) or len(clean) > 50:
        raise errors.Invalid("at most 50 groups of at most 200 characters each")
    return clean
