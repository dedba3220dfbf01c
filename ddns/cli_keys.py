"""``ddns key``: make, list and revoke TSIG keys from the command line (registered by ddns.cli).

``ddns key add FQDN`` prints the host's key file, ``--acme`` its ACME key's,
``ddns key add NAME --zone ZONE --rule RULE...`` a zone key's; the secret is
in that output only. ``ddns key list`` never shows secrets. The command line
acts as the operator: it may manage every key.
"""
from __future__ import annotations

import argparse
import functools
import json
from typing import TYPE_CHECKING, Callable

from . import keyconfigs, keyrules
from .errors import DdnsError, codes

if TYPE_CHECKING:
    from .cli import Env
    from .service import Service

OpenService = Callable[[argparse.Namespace, "Env"], "Service"]


def _refusals(fn: Callable[[argparse.Namespace, "Env"], int]) -> Callable[[argparse.Namespace, "Env"], int]:
    """A refusal is "error: ..." on stderr and its exit status from ddns.errors.CODES."""
    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace, env: "Env") -> int:
        try:
            return fn(args, env)
        except DdnsError as exc:
            env.err(f"error: {exc}")
            return codes(exc).exit
    return wrapper


def register(sub: argparse._SubParsersAction, command: Callable[..., argparse.ArgumentParser],
             open_service: OpenService) -> None:
    """Add ``key add|list|delete`` to the parser; COMMAND is ddns.cli's way of adding one."""

    @_refusals
    def cmd_add(args: argparse.Namespace, env: "Env") -> int:
        service = open_service(args, env)
        key, secret = service.add_key(None, args.name, acme=args.acme, zone=args.zone, rules=tuple(args.rule or ()),
                                      algorithm=args.algorithm)
        if args.json:
            env.out(json.dumps({"name": key.name, "algorithm": key.algorithm, "secret": secret}, indent=2))
        else:
            env.out(keyconfigs.key_file(key.name, key.algorithm, secret).rstrip("\n"))
            env.err(f"key {key.name} ({key.kind}) made; its secret is shown only this once")
        return 0

    @_refusals
    def cmd_list(args: argparse.Namespace, env: "Env") -> int:
        keys = open_service(args, env).keys(None)
        if args.json:
            env.out(json.dumps([keyconfigs.key_json(k) for k in keys], indent=2, sort_keys=True))
            return 0
        lines = [f"{k.name}  {k.kind}  {k.algorithm}  {k.host or k.zone}" + (f"  {'; '.join(k.rules)}" if k.rules else "")
                 for k in keys]
        env.out("\n".join(lines) or "no keys")
        return 0

    @_refusals
    def cmd_delete(args: argparse.Namespace, env: "Env") -> int:
        key = open_service(args, env).delete_key(None, args.name)
        env.out(json.dumps({"name": key.name, "deleted": True}) if args.json
                else f"key {key.name} deleted; updates signed with it are refused from now on")
        return 0

    key = sub.add_parser("key", help="manage TSIG keys (RFC 2136 updates)").add_subparsers(dest="key_command",
                                                                                          required=True)
    p = command("add", cmd_add, "make a TSIG key; prints its key file (the secret) once", key, json_output=True)
    p.add_argument("name", help="the host's fqdn (host and ACME keys) or the zone key's name")
    p.add_argument("--acme", action="store_true", help="the host's ACME key: only TXT at _acme-challenge.FQDN")
    p.add_argument("--zone", help="a zone key bound to ZONE, with --rule")
    p.add_argument("--rule", action="append", metavar="RULE",
                   help="a zone key's rule 'grant|deny MATCH [TARGET] [TYPES...]' (repeatable; first match wins)")
    p.add_argument("--algorithm", default=keyrules.DEFAULT_ALGORITHM, choices=keyrules.ALGORITHMS)
    command("list", cmd_list, "list TSIG keys (never their secrets)", key, json_output=True)
    p = command("delete", cmd_delete, "revoke a TSIG key at once", key, json_output=True)
    p.add_argument("name")
