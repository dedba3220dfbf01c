"""ACME DNS-01 challenges over HTTP, in the format of lego's ``httpreq`` provider (default mode).

``POST /acme/httpreq/present`` and ``POST /acme/httpreq/cleanup`` with the JSON
body ``{"fqdn": "_acme-challenge.myvm.dyn.example.org.", "value": "..."}`` and
HTTP Basic auth with the host's own dyndns2 credentials (user: the host's FQDN,
password: its secret). ``present`` adds VALUE to the TXT RRset at
``_acme-challenge.<host>`` with the short TTL ``acme.txt_ttl`` (several values
may coexist: a certificate for the name and its wildcard needs two);
``cleanup`` removes that value only. A host can only prove its own name.

``parse`` is pure; ``handle`` is parse -> authenticate -> one ``Service.update``
-> the HTTP status of the outcome, from ``STATUS``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from . import errors
from .keyrules import ACME_PREFIX
from .model import Actor, Op, Operation, Outcome
from .service import Service
from .store import Host
from .validate import InvalidName, normalize_name

PREFIX = "/acme/httpreq"
ACTIONS = ("present", "cleanup")
MAX_BODY_BYTES = 4096
# An ACME DNS-01 value is the base64url SHA-256 of the key authorization (43 characters, RFC 8555
# section 8.4); anything else -- spaces, quotes, newlines, zone-file syntax -- is refused, not escaped.
VALUE = re.compile(r"[A-Za-z0-9_-]{1,255}")

STATUS: dict[Outcome, tuple[int, str]] = {
    Outcome.PUBLISHED: (200, "ok: served"),
    Outcome.UNCHANGED: (200, "ok: unchanged"),
    Outcome.UNSERVED: (202, "accepted: committed, not served yet (retried)"),
    Outcome.REFUSED: (403, "refused"),
    Outcome.UNMET: (409, "conflict"),
    Outcome.FAILED: (503, "failed: nothing changed, try again later"),
}


@dataclass(frozen=True)
class Request:
    """What the web layer extracted from one HTTP request."""

    action: str                              # "present" or "cleanup"
    credentials: tuple[str, str] | None
    body: bytes                              # at most MAX_BODY_BYTES + 1 bytes of it
    client: str
    agent: str = ""
    request_id: str = ""


@dataclass
class Answer:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> str:
        return json.dumps({"status": self.status, "message": self.message}) + "\n"


@dataclass(frozen=True)
class Challenge:
    host: str    # the host whose name is proven: absolute, lower-case, no trailing dot
    value: str

    @property
    def name(self) -> str:
        return ACME_PREFIX + self.host

    @property
    def rdata(self) -> str:
        return f'"{self.value}"'


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise errors.Invalid("a key is given twice")
    return dict(pairs)


def parse(body: bytes) -> Challenge:
    """The challenge in BODY; errors.Invalid for anything but the JSON of lego's default mode."""
    if len(body) > MAX_BODY_BYTES:
        raise errors.Invalid(f"the body is longer than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise errors.Invalid("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise errors.Invalid('the body must be a JSON object {"fqdn": ..., "value": ...}')
    fqdn, value = data.get("fqdn"), data.get("value")
    if not isinstance(fqdn, str) or not isinstance(value, str):
        raise errors.Invalid('"fqdn" and "value" must be strings (lego httpreq default mode, not RAW)')
    if not VALUE.fullmatch(value):
        raise errors.Invalid('"value" must be an ACME DNS-01 value (base64url)')
    if fqdn[:len(ACME_PREFIX)].lower() != ACME_PREFIX:
        raise errors.Invalid(f'"fqdn" must start with {ACME_PREFIX}')
    try:
        host = normalize_name(fqdn[len(ACME_PREFIX):])
    except InvalidName as exc:
        raise errors.Invalid(f'"fqdn": {exc}') from exc
    return Challenge(host, value)


def operations(action: str, challenge: Challenge, ttl: int) -> list[Operation]:
    """present: add the value (beside any other); cleanup: remove that value only."""
    if action == "present":
        return [Operation(Op.ADD, challenge.name, "TXT", challenge.rdata, ttl)]
    return [Operation(Op.DELETE_RR, challenge.name, "TXT", challenge.rdata)]


def handle(service: Service, req: Request) -> Answer:
    """One present or cleanup: the credentials first (so nothing about the body leaks to a guesser),
    then the body, then one update as the host itself, whose grants allow exactly this TXT."""
    challenge_header = {"WWW-Authenticate": f'Basic realm="{service.config["dyndns2.realm"]}"'}
    if req.credentials is None:
        return Answer(401, "credentials required: the host's FQDN and secret", challenge_header)
    verdict, principal = service.authenticate(*req.credentials, req.client)
    if verdict == "abuse":
        return Answer(429, "too many failures, or the host is blocked", {"Retry-After": "60"})
    if verdict != "ok":
        return Answer(401, "bad credentials", challenge_header)
    if not isinstance(principal, Host):
        return Answer(403, "use the host's own FQDN and secret, not an account token")
    try:
        challenge = parse(req.body)
        if challenge.host != principal.fqdn:
            raise errors.Refused(f"{principal.fqdn} may only set {ACME_PREFIX}{principal.fqdn}")
        zone = service.find_zone(challenge.name)
        if zone is None:  # a merge removed the host's zone
            raise errors.NotFound(f"{challenge.name} is in no zone of this service")
        actor = Actor(f"host:{principal.fqdn}", req.client, "httpreq", req.agent[:200], req.request_id)
        identity = service.host_identity(principal, actor)
        result = service.update(identity, zone, operations(req.action, challenge, service.config["acme.txt_ttl"]))
    except errors.DdnsError as exc:
        return Answer(errors.codes(exc).http, str(exc))
    status, message = STATUS[result.outcome]
    return Answer(status, message, {"Retry-After": "5"} if status == 503 else {})
