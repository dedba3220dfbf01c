"""What comes from the service itself: its pushes and its audit records.

The service proves its pushes with a secret token (``zones.push_token``),
presented as a push option (``ddns-service-token=TOKEN``): push options reach
the hooks on every transport (local, ssh, smart HTTP), an environment variable
only on local pushes. The option is set through git's environment config
(``push.pushOption``), never on the command line, where ``ps`` would show it
to every local user. The bare repository keeps only the token's SHA-256
(``ddns.servicetokenhash``): whoever can read the repository's config learns
nothing that lets a push skip the checks.

Audit records (``Ddns-Change`` trailers) count only in commits the service
made: committed by the service's identity, not a merge, and touching nothing
but the files only the service writes (ZONE/ZONE.zone, ZONE/dynamic/*, the
old layout's ZONE/dynamic.records).
A human commit cannot pass that: pre-receive refuses pushes that touch those
files or carry trailers. A trailer in any other commit (a forged identity
that also edits static.zone, a commit from an upstream without the ddns hooks)
is not shown by ``ddns history`` or ``ddns audit``.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Mapping

from . import zones
from .shards import SHARD_DIR

SERVICE_NAME = "ddns"
SERVICE_EMAIL = "ddns@localhost"
SERVICE_PUSH_OPTION = "ddns-service-token"
TOKEN_HASH_CONFIG = "ddns.servicetokenhash"
LEGACY_TOKEN_CONFIG = "ddns.servicetoken"  # the plain token older versions kept in the bare repository


def token_hash(token: str) -> str:
    """What the bare repository stores: SHA-256 of the token (a random 256-bit secret, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def push_environment(token: str) -> dict[str, str]:
    """Environment for ``git push`` that presents TOKEN as a push option (nothing on the command line)."""
    if not token:
        return {}
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "push.pushOption",
            "GIT_CONFIG_VALUE_0": f"{SERVICE_PUSH_OPTION}={token}"}


def push_options(environ: Mapping[str, str]) -> list[str]:
    """The push options a hook received (GIT_PUSH_OPTION_COUNT, GIT_PUSH_OPTION_0, ...)."""
    try:
        count = int(environ.get("GIT_PUSH_OPTION_COUNT", "0") or 0)
    except ValueError:
        return []
    return [environ.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(count)]


def is_service_push(options: Iterable[str], stored_hash: str) -> bool:
    """Whether one of OPTIONS carries the token whose hash the repository keeps."""
    prefix = SERVICE_PUSH_OPTION + "="
    return bool(stored_hash) and any(
        option.startswith(prefix) and hmac.compare_digest(token_hash(option[len(prefix):]).encode(), stored_hash.encode())
        for option in options)


def is_service_file(path: str) -> bool:
    """Files only the service writes: ZONE/ZONE.zone, anything under ZONE/dynamic/, the old ZONE/dynamic.records."""
    parts = path.split("/")
    if len(parts) > 2:
        return parts[1] == SHARD_DIR
    return len(parts) == 2 and (parts[1] in (zones.DYNAMIC_FILE, SHARD_DIR) or parts[1] == zones.rendered_file(parts[0]))


def made_by_service(committer: str, parents: int, paths: list[str]) -> bool:
    """Whether a commit's trailers are the service's: COMMITTER is "name <email>", PATHS what it changed."""
    return (committer == f"{SERVICE_NAME} <{SERVICE_EMAIL}>" and parents <= 1 and bool(paths)
            and all(is_service_file(p) for p in paths))
