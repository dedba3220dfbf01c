"""``ddns domain unsigned`` and ``ddns kerberos check``: who may update a zone without a key (registered by ddns.cli).

``ddns domain unsigned ZONE --network N...`` lets clients in those networks
register their own address unsigned (``ddns.trusted``), ``--clear`` stops it;
both are a commit of the zone's zone.toml, as a pull request would make.
``ddns kerberos check`` says, per zone, whether the keytab holds the
principal ``nsupdate -g`` will ask a ticket for, and how to make it.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .cli import Env
    from .service import Service

OpenService = Callable[[argparse.Namespace, "Env"], "Service"]


def register(sub: argparse._SubParsersAction, domain: argparse._SubParsersAction,
             command: Callable[..., argparse.ArgumentParser], open_service: OpenService) -> None:
    """Add ``domain unsigned`` and ``kerberos check``; COMMAND is ddns.cli's way of adding one."""
    p = command("unsigned", lambda a, e: _unsigned(a, e, open_service),
                "let unsigned updates from trusted networks register their clients' own addresses", domain,
                json_output=True)
    p.add_argument("zone")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--network", action="append", help="a network like 192.0.2.0/24 (repeatable; replaces the list)")
    which.add_argument("--clear", action="store_true", help="accept no unsigned updates (the default)")
    kerberos = sub.add_parser("kerberos", help="GSS-TSIG (Kerberos)").add_subparsers(dest="kerberos_command",
                                                                                      required=True)
    command("check", lambda a, e: _check(a, e, open_service),
            "say per zone whether kerberos.keytab holds DNS/<SOA MNAME>@REALM", kerberos, json_output=True)


def _unsigned(args: argparse.Namespace, env: "Env", open_service: OpenService) -> int:
    from .cli import _cli_actor, _emit, _outcome_exit

    service = open_service(args, env)
    networks = [] if args.clear else args.network
    outcome = service.set_unsigned_networks(args.zone, networks, _cli_actor(env))
    now = service.unsigned_networks(args.zone)
    _emit(env, args, {"zone": args.zone, "networks": list(now), "outcome": outcome.value},
          f"{args.zone}: unsigned updates from {', '.join(now)}" if now else f"{args.zone}: no unsigned updates")
    return _outcome_exit(env, outcome, f"the settings of {args.zone}")


def _check(args: argparse.Namespace, env: "Env", open_service: OpenService) -> int:
    from .cli import Exit
    from .kerberos_check import advice

    service = open_service(args, env)
    entries = service.kerberos_check()
    if args.json:
        env.out(json.dumps(entries, indent=2, sort_keys=True))
    else:
        for line in advice(entries, service.config.path("kerberos.keytab")):
            env.out(line)
    return Exit.OK if entries and all(e["present"] for e in entries) else Exit.ERROR
