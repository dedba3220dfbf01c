"""``ddns domain kerberos`` and ``ddns host principal``: Kerberos rules and principals (registered by ddns.cli).

``ddns domain kerberos ZONE --rule RULE...`` makes RULE... the zone's
``[kerberos] rules`` (a commit to its zone.toml, as a pull request would
make), ``--clear`` removes them, neither prints them. ``ddns host principal
FQDN PRINCIPAL`` links a principal to a host (``--clear`` unlinks it): that
principal may then change the host's records over GSS-TSIG.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Callable

from .errors import Invalid

if TYPE_CHECKING:
    from .cli import Env
    from .model import Outcome
    from .service import Service


def register(domain: argparse._SubParsersAction, host: argparse._SubParsersAction,
             command: Callable[..., argparse.ArgumentParser],
             open_service: Callable[[argparse.Namespace, "Env"], "Service"], actor: Callable[["Env"], str],
             outcome_exit: Callable[["Env", "Outcome", str], int]) -> None:
    """Add ``domain kerberos`` and ``host principal``; the callables are ddns.cli's."""

    def cmd_rules(args: argparse.Namespace, env: "Env") -> int:
        service = open_service(args, env)
        if args.clear and args.rule:
            raise Invalid("give --rule or --clear, not both")
        if not args.clear and not args.rule:
            rules = service.kerberos_rules(args.zone)
            env.out(json.dumps(list(rules), indent=2) if args.json else "\n".join(rules) or "no Kerberos rules")
            return 0
        outcome = service.set_kerberos_rules(args.zone, [] if args.clear else args.rule, actor(env))
        env.out(json.dumps({"zone": args.zone, "rules": args.rule or [], "outcome": outcome.value}) if args.json
                else f"{args.zone}: {len(args.rule or [])} Kerberos rules ({outcome.value})")
        return outcome_exit(env, outcome, f"setting the Kerberos rules of {args.zone}")

    def cmd_principal(args: argparse.Namespace, env: "Env") -> int:
        if args.clear == (args.principal is not None):
            raise Invalid("give a PRINCIPAL or --clear")
        service = open_service(args, env)
        service.set_principal(args.fqdn, None if args.clear else args.principal)
        host = service.host(args.fqdn)
        env.out(json.dumps({"fqdn": host.fqdn, "principal": host.principal}) if args.json
                else f"{host.fqdn}: principal {host.principal or '(none)'}")
        return 0

    p = command("kerberos", cmd_rules, "show or set the zone's Kerberos (GSS-TSIG) rules in its zone.toml", domain,
                json_output=True)
    p.add_argument("zone")
    p.add_argument("--rule", action="append", metavar="RULE",
                   help="'grant|deny IDENTITY MATCH [NAME] [TYPES...]', e.g. 'grant EXAMPLE.ORG krb5-self . A AAAA' "
                        "(repeatable, in order; replaces the zone's rules)")
    p.add_argument("--clear", action="store_true", help="remove the zone's Kerberos rules")
    p = command("principal", cmd_principal, "link a Kerberos principal to a host (it may then update the host)",
                host, json_output=True)
    p.add_argument("fqdn")
    p.add_argument("principal", nargs="?", help="e.g. host/vm1.example.org@EXAMPLE.ORG or alice@EXAMPLE.ORG")
    p.add_argument("--clear", action="store_true", help="unlink the host's principal")
