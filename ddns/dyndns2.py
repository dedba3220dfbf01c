"""The dyndns2 protocol (``/nic/update``) as dyn.com, noip.com and their clients speak it.

``parse_hostnames`` and ``parse_addresses`` are pure: they turn the query into
hostnames and addresses or an answer code. ``handle_update`` authenticates,
makes one update per host (each address replaces its family's RRset) and maps
the outcome through one table: deciding ``nochg`` is the publisher's
(UNCHANGED), not this module's. ``answer_now`` is the same plan for the one
case the service can answer without waiting (a host repeating its address), or
None.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from . import errors
from .model import Actor, Grant, Identity, Match, Operation, Outcome, Update
from .service import Service
from .store import Host, User
from .validate import AddressPolicy, InvalidAddress, InvalidName, normalize_name, parse_address, record_type

MAX_PARAM_LENGTH = 1024

# The one table from the neutral outcome to dyndns2's words ({} : the addresses, v4 first).
ANSWERS = {
    Outcome.PUBLISHED: "good {}",
    Outcome.UNCHANGED: "nochg {}",
    Outcome.UNSERVED: "dnserr",
    Outcome.REFUSED: "nohost",   # deleted while the request was on its way: nothing changed
    Outcome.FAILED: "911",
    Outcome.UNMET: "911",
}


@dataclass(frozen=True)
class UpdateRequest:
    """What the web layer extracted from one HTTP request."""

    credentials: tuple[str, str] | None
    params: dict[str, list[str]]   # decoded query (and form) values, in order
    client: str                    # the client's address after trusted-proxy handling
    agent: str = ""
    tls: bool = False
    request_id: str = ""


@dataclass
class Answer:
    status: int
    lines: list[str]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> str:
        return "\n".join(self.lines) + "\n"


class BadRequest(errors.Invalid):
    """The request itself is unusable; ``code`` is the answer for it."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name, [])
    if len(values) > 1 and len(set(values)) > 1:
        raise BadRequest("notfqdn" if name == "hostname" else "badip", f"{name} given more than once")
    value = values[0] if values else None
    if value is not None and len(value) > MAX_PARAM_LENGTH:
        raise BadRequest("notfqdn" if name == "hostname" else "badip", f"{name} too long")
    return value


def parse_addresses(params: dict[str, list[str]], client: str, policy: AddressPolicy) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses to publish: ``myip`` (v4, v6 or ``v4,v6``) and ``myipv6``, else the client's.

    At most one address per family; the answer lists them v4 first. Blanks
    around an address are refused, not trimmed: a value that is not exactly an
    address is not what the client meant to publish.
    """
    texts: list[tuple[str, str]] = []
    for name in ("myip", "myipv6"):
        value = _single(params, name)
        if value:
            texts += [(name, t) for t in value.split(",")]
    if not texts:
        texts = [("client", client)]
    by_family: dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for name, text in texts:
        try:
            addr = parse_address(text, policy)
        except InvalidAddress as exc:
            raise BadRequest("badip", str(exc)) from exc
        if name == "myipv6" and addr.version != 6:
            raise BadRequest("badip", f"myipv6 holds an IPv4 address: {addr}")
        if addr.version in by_family and by_family[addr.version] != addr:
            raise BadRequest("badip", f"two IPv{addr.version} addresses given")
        by_family[addr.version] = addr
    return [by_family[v] for v in sorted(by_family)]


def parse_hostnames(params: dict[str, list[str]], username: str, max_hosts: int) -> list[str]:
    """Hostnames in request order; the username (the host's FQDN) when none is given.

    Raises BadRequest("numhost") for too many; bad names are kept as given and
    answered ``notfqdn`` on their own line.
    """
    value = _single(params, "hostname")
    names = [n.strip() for n in value.split(",")] if value else [username]
    if len(names) > max_hosts:
        raise BadRequest("numhost", f"more than {max_hosts} hostnames")
    return names


def answer_now(service: Service, req: UpdateRequest) -> Answer | None:
    """REQ's answer when the service can give it without waiting (a host repeating its address: nochg), else None.

    For the HTTP loop thread (ddns.httpserver), which must not block: only a
    host's own credentials naming itself, a secret verified lately and an
    unchanged address are answered here (``Service.unchanged_now``); anything
    else, every refusal included, is None and goes to ``handle_update`` on a
    worker, which decides it as ever. The answer is the one ``handle_update``
    gives: the same plan, the same table.
    """
    if req.credentials is None or _blocked_agent(service, req.agent):
        return None
    username, secret = req.credentials
    try:
        names = parse_hostnames(req.params, username, service.config["dyndns2.max_hosts"])
        addresses = parse_addresses(req.params, req.client, service.policy)
    except BadRequest:
        return None
    if len(names) != 1:
        return None

    def plan(host: Host) -> tuple[Identity, list[Update]] | None:
        if _resolve_host(service, host, names[0]) is not host:
            return None
        return _plan(service, host, [host], addresses, _actor(host, req))

    if service.unchanged_now(username, secret, req.client, (req.agent or "")[:200], req.tls, plan) is None:
        return None
    return Answer(200, [ANSWERS[Outcome.UNCHANGED].format(_shown(addresses))])


def _blocked_agent(service: Service, agent: str) -> bool:
    return any(bad and bad in agent for bad in service.config["dyndns2.blocked_user_agents"])


def _actor(principal: Host | User, req: UpdateRequest) -> Actor:
    return Actor(f"host:{principal.fqdn}" if isinstance(principal, Host) else f"user:{principal.name}",
                 req.client, "dyndns2", (req.agent or "")[:200], req.request_id)


def _shown(addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> str:
    return ",".join(str(a) for a in addresses)


def _plan(service: Service, principal: Host | User, hosts: list[Host],
          addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address], actor: Actor) -> tuple[Identity, list[Update]]:
    """PRINCIPAL's identity for HOSTS' A and AAAA, and one update per host: each address replaces its family's RRset.

    The principal may change each host's own records; each update is guarded by "its host is still registered".
    """
    identities = [service.host_identity(host, actor) for host in hosts]
    identity = Identity(actor, principal.fqdn if isinstance(principal, Host) else "",
                        tuple(Grant(True, Match.NAME, host.fqdn, frozenset({"A", "AAAA"})) for host in hosts))
    return identity, [
        Update(host.zone, tuple(op for addr in addresses for op in Operation.replace(host.fqdn, record_type(addr), [str(addr)])),
               guard=own.guard)
        for host, own in zip(hosts, identities)]


def handle_update(service: Service, req: UpdateRequest) -> Answer:
    config = service.config
    agent = req.agent or ""
    if _blocked_agent(service, agent):
        return Answer(200, ["badagent"])
    challenge = {"WWW-Authenticate": f'Basic realm="{config["dyndns2.realm"]}"'}
    if req.credentials is None:
        return Answer(401, ["badauth"], challenge)
    username, secret = req.credentials
    verdict, principal = service.authenticate(username, secret, req.client)
    if verdict == "badauth":
        return Answer(401, ["badauth"], challenge)
    if verdict == "abuse":
        return Answer(200, ["abuse"])
    try:
        names = parse_hostnames(req.params, username, config["dyndns2.max_hosts"])
        addresses = parse_addresses(req.params, req.client, service.policy)
    except BadRequest as exc:
        return Answer(200, [exc.code])
    if isinstance(principal, Host) and principal.blocked:
        return Answer(200, ["abuse"])

    actor = _actor(principal, req)
    answers: list[str | None] = [None] * len(names)
    hosts: list[tuple[int, Host]] = []
    for line, name in enumerate(names):
        host = _resolve_host(service, principal, name)
        if isinstance(host, str):
            answers[line] = host
        elif host.blocked:
            answers[line] = "abuse"
        else:
            hosts.append((line, host))
    shown = _shown(addresses)
    results = service.update_many(*_plan(service, principal, [host for _, host in hosts], addresses, actor))
    for (line, host), result in zip(hosts, results):
        answers[line] = ANSWERS[result.outcome].format(shown)
        if result.outcome not in (Outcome.FAILED, Outcome.UNMET, Outcome.REFUSED):
            service.note_update(host.fqdn, req.client, agent[:200], req.tls)
    return Answer(200, [a or "911" for a in answers])


def _resolve_host(service: Service, principal: Host | User, name: str) -> Host | str:
    """The host NAME if PRINCIPAL may update it, else the answer code for its line."""
    try:
        fqdn = normalize_name(name)
    except InvalidName:
        return "notfqdn"
    if "." not in fqdn:
        return "notfqdn"
    if isinstance(principal, Host):
        return principal if fqdn == principal.fqdn else "nohost"
    try:
        host = service.host(fqdn)
    except errors.NotFound:
        return "nohost"
    return host if host.owner_id == principal.id else "nohost"
