"""``ddns`` command line: set up an instance, run it, manage users, domains and hosts."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from . import __version__, catalog, cli_db, cli_hook, cli_kerberos, cli_keys, cli_secondary, cli_show, cli_trust, config as configmod, errors, gitops
from .cli_base import Env, Exit
from .cli_serve import cmd_quickstart, cmd_serve
from .model import Outcome
from .records import record_name
from .instance import init_instance, install_hooks
from .service import Service
from .wiring import shard_count, zone_template_dirs


def _emit(env: Env, args: argparse.Namespace, data: Any, text: str) -> None:
    env.out(json.dumps(data, indent=2, sort_keys=True) if getattr(args, "json", False) else text)


def _outcome_exit(env: Env, outcome: Outcome, what: str) -> Exit:
    if outcome == Outcome.FAILED:
        env.err(f"error: {what} failed; nothing changed")
        return Exit.ERROR
    if outcome == Outcome.UNSERVED:
        env.err(f"warning: {what} is committed, but BIND does not serve it yet (it will be retried)")
        return Exit.PUBLISH_FAILED
    return Exit.OK


def _load_config(args: argparse.Namespace, env: Env) -> configmod.Config:
    path = configmod.find_config_file(args.config, env.environ, env.cwd)
    return configmod.load(path, env.environ)


def _open(args: argparse.Namespace, env: Env) -> Service:
    return Service.open(_load_config(args, env))


# ---- commands ------------------------------------------------------------------
def cmd_init(args, env: Env) -> Exit:
    cfg = init_instance(Path(args.dir), args.http_port, args.dns_port, args.rndc_port, args.zone,
                        update_port=args.update_port)
    env.out(f"Created an instance in {args.dir}: config {cfg.source}, zone {args.zone}.")
    env.out(f"Start it with: ddns -c {cfg.source} serve")
    return Exit.OK


def cmd_user_add(args, env: Env) -> Exit:
    service = _open(args, env)
    password = None
    if args.password_stdin:
        password = env.stdin.readline().rstrip("\n")
        if not password:
            env.err("error: empty password on stdin")
            return Exit.USAGE
    elif getattr(env.stdin, "isatty", lambda: False)():
        password = getpass.getpass("Password (empty for none): ") or None
    user = service.accounts.add_user(args.name, password, args.admin)
    _emit(env, args, {"name": user.name, "admin": user.is_admin}, f"user {user.name} added{' (admin)' if user.is_admin else ''}")
    return Exit.OK


def cmd_user_token(args, env: Env) -> Exit:
    service = _open(args, env)
    token = service.accounts.new_user_token(args.name)
    _emit(env, args, {"name": args.name, "token": token},
          f"Account token for {args.name} (shown once; it updates any of the user's hosts, username = {args.name}):\n{token}")
    return Exit.OK


def cmd_user_list(args, env: Env) -> Exit:
    service = _open(args, env)
    users = service.accounts.users()
    _emit(env, args, [{"name": u.name, "admin": u.is_admin} for u in users],
          "\n".join(f"{u.name}{'  (admin)' if u.is_admin else ''}" for u in users) or "no users")
    return Exit.OK


def cmd_domain_add(args, env: Env) -> Exit:
    service = _open(args, env)
    outcome = service.add_domain(args.zone, args.ns, actor=_cli_actor(env))
    _emit(env, args, {"zone": args.zone, "outcome": outcome.value}, f"domain {args.zone} added")
    return _outcome_exit(env, outcome, f"zone {args.zone}")


def cmd_domain_list(args, env: Env) -> Exit:
    service = _open(args, env)
    domains = service.domains()
    _emit(env, args, [{"zone": d.domain.zone, "hosts": d.hosts} for d in domains],
          "\n".join(f"{d.domain.zone}  {d.hosts} hosts" for d in domains) or "no domains")
    return Exit.OK


def cmd_host_add(args, env: Env) -> Exit:
    service = _open(args, env)
    host, secret = service.add_host(args.fqdn, args.owner, args.comment or "")
    url = service.config.public_url
    _emit(env, args, {"fqdn": host.fqdn, "owner": args.owner, "secret": secret},
          f"host {host.fqdn} added. Its secret (shown once):\n{secret}\n"
          f"Update with: curl -u '{host.fqdn}:{secret}' '{url}/nic/update'")
    return Exit.OK


def cmd_host_secret(args, env: Env) -> Exit:
    service = _open(args, env)
    secret = service.regenerate_secret(args.fqdn)
    _emit(env, args, {"fqdn": args.fqdn, "secret": secret},
          f"new secret for {args.fqdn} (shown once; the old one no longer works):\n{secret}")
    return Exit.OK


def cmd_host_list(args, env: Env) -> Exit:
    service = _open(args, env)
    views = service.list_hosts(args.owner)
    owners = {u.id: u.name for u in service.accounts.users()}
    rows = [{"fqdn": v.host.fqdn, "owner": owners.get(v.host.owner_id), "ipv4": v.ipv4, "ipv6": v.ipv6,
             "last_update": v.host.last_update, "last_client": v.host.last_client,
             "auth_faults": v.host.auth_faults, "comment": v.host.comment, "principal": v.host.principal} for v in views]
    text = "\n".join(f"{r['fqdn']}  {r['ipv4'] or '-'}  {r['ipv6'] or '-'}  owner={r['owner']}"
                     + (f"  principal={r['principal']}" if r["principal"] else "") for r in rows)
    _emit(env, args, rows, text or "no hosts")
    return Exit.OK


def cmd_host_delete(args, env: Env) -> Exit:
    service = _open(args, env)
    outcome = service.delete_host(args.fqdn, actor=_cli_actor(env))
    _emit(env, args, {"fqdn": args.fqdn, "outcome": outcome.value}, f"host {args.fqdn} deleted")
    return _outcome_exit(env, outcome, f"deleting {args.fqdn}")


def _cli_actor(env: Env) -> str:
    """Who changes DNS from the command line, as the audit trail names them."""
    return "cli:" + (env.environ.get("SUDO_USER") or env.environ.get("USER") or "unknown")


def cmd_host_set(args, env: Env) -> Exit:
    service = _open(args, env)
    outcome = service.set_address(args.fqdn, args.ip, _cli_actor(env))
    _emit(env, args, {"fqdn": args.fqdn, "address": args.ip, "outcome": outcome.value},
          f"{args.fqdn}: {outcome.value} {args.ip}")
    return _outcome_exit(env, outcome, f"setting {args.fqdn}")


def cmd_history(args, env: Env) -> Exit:
    service = _open(args, env)
    entries = service.history(args.fqdn)
    rows = [{"commit": e.commit, "when": e.when, "host": e.change.host, "type": e.change.type, "old": e.change.old,
             "new": e.change.new, "actor": e.change.actor, "client": e.change.client, "interface": e.change.interface,
             "agent": e.change.agent, "request": e.change.request} for e in entries]
    own = record_name(args.fqdn)  # names below it (the host's ACME challenges) are named in the text
    text = "\n".join(f"{r['when']}  {'' if r['host'] == own else r['host'] + ' '}{r['type']:<4} "
                     f"{r['old'] or '-'} -> {r['new'] or '-'}  by {r['actor']}"
                     f"  from {r['client'] or '-'}  via {r['interface']}  {r['commit'][:10]}" for r in rows)
    _emit(env, args, rows, text or f"no changes of {args.fqdn}")
    return Exit.OK


def _check_served(args, env: Env) -> Exit:
    """Compare what named serves (AXFR) with the committed zones; exit 1 when any differs."""
    service = Service.open(_load_config(args, env))
    report = service.served_differences(args.served)
    if args.json:
        env.out(json.dumps({"zones": report, "ok": not any(report.values())}, indent=2))
    else:
        for zone, lines in report.items():
            env.out(f"zone {zone}: " + ("served as committed" if not lines else f"{len(lines)} RR sets differ"))
            for line in lines:
                env.out("  " + line)
    return Exit.ERROR if any(report.values()) else Exit.OK


def cmd_check(args, env: Env) -> Exit:
    """Validate a revision of a zones repository (a pull request) and print its plan; --served: named against Git."""
    if args.served is not None:
        return _check_served(args, env)
    repo = Path(args.repo) if args.repo else env.cwd
    rev = gitops.git_output(repo, "rev-parse", "--verify", args.rev)
    cfg = _load_config(args, env)  # defaults in an admin's clone without a ddns.toml
    base = args.base
    upstream = gitops.git_output(repo, "rev-parse", "--verify", "-q", f"origin/{cfg['zones.branch']}", check=False)
    if base is None:  # where the branch left the published one; without a remote, the parent
        base = gitops.git_output(repo, "merge-base", upstream, rev, check=False) if upstream else None
        if not upstream:
            base = gitops.git_output(repo, "rev-parse", "--verify", "-q", f"{rev}~1", check=False) or None
    else:
        base = gitops.git_output(repo, "rev-parse", "--verify", base)
    report = gitops.check_revision(repo, rev, base, zone_template_dirs(cfg), checkzone=cfg["bind.checkzone"],
                                   max_share=cfg["zones.max_change_share"], shard_count=shard_count(cfg),
                                   host_labels=gitops.host_labels_at(repo, upstream) if upstream else None,
                                   catalog=catalog.catalog_name(cfg["bind.catalog_zone"]))
    forced = gitops.forced_by_commits(repo, base, rev)
    if args.json:
        env.out(json.dumps({**report.as_dict(), "forced": forced, "ok": report.ok(forced)}, indent=2))
    else:
        for error in report.errors:
            env.out(f"error: {error}")
        for problem in report.guarded:
            env.out(f"refused unless forced: {problem}" if not forced else f"forced: {problem}")
        if args.plan:
            env.out(gitops.format_plan(report.plans))
        elif report.ok(forced):
            env.out("ok")
    return Exit.OK if report.ok(forced) else Exit.ERROR


def cmd_apply(args, env: Env) -> Exit:
    """Take in the upstream's branch and publish it (what post-receive runs).

    Every zone is reconciled, not only those this run took in: a running
    ``ddns serve`` may have taken the same push in first, and the exit code
    must still say whether every zone is served.
    """
    service = _open(args, env)
    status = service.sync(always_reconcile=True)
    _emit(env, args, status, "\n".join(f"zone {z}: {s}" for z, s in sorted(status.items())) or "nothing to publish")
    bad = [z for z, s in status.items() if s.startswith("broken") or s == "unserved"]
    return Exit.PUBLISH_FAILED if bad else Exit.OK


def cmd_hooks_install(args, env: Env) -> Exit:
    cfg = _load_config(args, env)
    install_hooks(Path(args.repo), cfg.source, cfg["zones.push_token"])
    env.out(f"hooks installed in {args.repo}")
    return Exit.OK


def cmd_hook(args, env: Env) -> Exit:
    """Run inside a bare repository's hook (``cli_hook``): stdin has 'OLD NEW REF' lines."""
    ok = cli_hook.run_hook(args.which, _load_config(args, env), env.cwd, env.environ, env.stdin.read(), env.err)
    return Exit.OK if ok else Exit.ERROR


def cmd_audit(args, env: Env) -> Exit:
    service = _open(args, env)
    entries = service.audit(args.since, args.until)
    rows = []
    for e in entries:
        c = e.change
        if args.actor and args.actor not in c.actor:
            continue
        if args.zone and not (c.host == args.zone or c.host.endswith("." + args.zone)):
            continue
        rows.append({"commit": e.commit, "when": e.when, "host": c.host, "type": c.type, "old": c.old, "new": c.new,
                     "actor": c.actor, "client": c.client, "interface": c.interface, "agent": c.agent,
                     "request": c.request})
    text = "\n".join(f"{r['when']}  {r['host']} {r['type']} {r['old'] or '-'} -> {r['new'] or '-'}  by {r['actor']}"
                     f"  from {r['client'] or '-'}  via {r['interface']}  {r['commit'][:10]}" for r in rows)
    _emit(env, args, rows, text or "no changes")
    return Exit.OK


def cmd_config(args, env: Env) -> Exit:
    if args.markdown:
        env.out(configmod.reference_markdown())
    else:
        env.out(configmod.render_toml({}))
    return Exit.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddns", description="Dynamic DNS where every change is a Git commit.")
    parser.add_argument("-c", "--config", help="config file (default: $DDNS_CONFIG, then ./ddns.toml)")
    parser.add_argument("--version", action="version", version=f"ddns {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help: str, parent=sub, json_output: bool = False) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        if json_output:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = command("init", cmd_init, "create a self-contained instance in DIR")
    p.add_argument("dir")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--dns-port", type=int, default=5353)
    p.add_argument("--rndc-port", type=int, default=None, help="default: DNS port + 1")
    p.add_argument("--zone", default="dyn.example.test")
    p.add_argument("--update-port", type=int, default=5053, help="port of the RFC 2136 listener (0: none)")

    p = command("serve", cmd_serve, "run the web service, the publisher and (if managed) named")
    p.add_argument("--role", choices=("all", "web", "publisher"), help="a cluster node's role (default: cluster.role)")

    p = command("quickstart", cmd_quickstart, "create (first run) and serve a demo instance in DIR")
    p.add_argument("dir", nargs="?", default="ddns-demo")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--dns-port", type=int, default=5353)
    p.add_argument("--rndc-port", type=int, default=None, help="default: DNS port + 1")
    p.add_argument("--zone", default="dyn.example.test")
    p.add_argument("--update-port", type=int, default=5053, help="port of the RFC 2136 listener (0: none)")

    p = command("config", cmd_config, "print every setting with its default and documentation")
    p.add_argument("--markdown", action="store_true", help="as a Markdown table")

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    p = command("add", cmd_user_add, "add a user", user, json_output=True)
    p.add_argument("name")
    p.add_argument("--admin", action="store_true")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p = command("token", cmd_user_token, "create an account token (replaces the old one)", user, json_output=True)
    p.add_argument("name")
    command("list", cmd_user_list, "list users", user, json_output=True)

    domain = sub.add_parser("domain", help="manage domains").add_subparsers(dest="domain_command", required=True)
    p = command("add", cmd_domain_add, "add a zone (created in the repository if new) for hosts", domain, json_output=True)
    p.add_argument("zone")
    p.add_argument("--ns", "--nameserver", dest="ns", action="append", help="name server of the zone (repeatable; default ns1.ZONE with glue; "
                                                 "a reverse zone needs one: its server's name is in a forward zone)")
    command("list", cmd_domain_list, "list domains", domain, json_output=True)
    cli_trust.register(sub, domain, command, _open)

    host = sub.add_parser("host", help="manage hosts").add_subparsers(dest="host_command", required=True)
    p = command("add", cmd_host_add, "register a host; prints its secret once", host, json_output=True)
    p.add_argument("fqdn")
    p.add_argument("--owner", required=True)
    p.add_argument("--comment")
    p = command("secret", cmd_host_secret, "replace a host's secret; the old one stops working", host, json_output=True)
    p.add_argument("fqdn")
    p = command("list", cmd_host_list, "list hosts with their addresses", host, json_output=True)
    p.add_argument("--owner")
    p = command("delete", cmd_host_delete, "delete a host and its records", host, json_output=True)
    p.add_argument("fqdn")
    p = command("set", cmd_host_set, "set a host's address by hand", host, json_output=True)
    p.add_argument("fqdn")
    p.add_argument("ip")

    cli_keys.register(sub, command, _open)
    cli_kerberos.register(domain, host, command, _open, _cli_actor, _outcome_exit)

    p = command("history", cmd_history, "every change of a host, read from Git", json_output=True)
    p.add_argument("fqdn")

    p = command("audit", cmd_audit, "every change in a time range, read from Git", json_output=True)
    p.add_argument("--since", required=True, help="a date git understands: 2026-11-01, '2 hours ago', ...")
    p.add_argument("--until")
    p.add_argument("--actor", help="only changes whose actor contains this")
    p.add_argument("--zone", help="only changes of hosts in this zone")

    p = command("check", cmd_check, "validate a revision of a zones repository (a pull request); --plan prints its changes",
                json_output=True)
    p.add_argument("rev", nargs="?", default="HEAD")
    p.add_argument("--repo", help="the zones repository clone (default: the current directory)")
    p.add_argument("--base", help="compare with this revision (default: merge base with origin/main, else REV~1)")
    p.add_argument("--plan", action="store_true", help="print the added / removed / changed records per zone (Markdown)")
    p.add_argument("--served", nargs="*", metavar="ZONE",
                   help="instead: compare what named serves (AXFR) with the committed zones (default all); exit 1 if any differs")

    cli_show.register(sub, command, _load_config)
    cli_secondary.register(sub, command, _load_config)
    cli_db.register(sub, command, _load_config)

    command("apply", cmd_apply, "take in the upstream's branch and publish it", json_output=True)

    hooks = sub.add_parser("hooks", help="git hooks of the zones repository").add_subparsers(dest="hooks_command", required=True)
    p = command("install", cmd_hooks_install, "install pre-receive and post-receive into a bare repository", hooks)
    p.add_argument("repo")

    p = command("hook", cmd_hook, "(run by the installed hooks) validate or publish a push")
    p.add_argument("which", choices=["pre-receive", "post-receive"])
    return parser


def exit_status(error: errors.DdnsError) -> int:
    """The exit status of a command that ended with ERROR: ``errors.CODES``; a configuration that cannot be used is USAGE."""
    return Exit.USAGE if isinstance(error, configmod.ConfigError) else errors.codes(error).exit


def main(argv: list[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args, env))
    except errors.DdnsError as exc:
        env.err(f"error: {exc}")
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
