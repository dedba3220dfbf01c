"""``ddns secondary config``: a whole named.conf for a secondary of this publisher (registered by ddns.cli).

The secondary transfers the catalog zone (bind.catalog_zone) from this
publisher's named (bind.listen, bind.port) and the further primaries in
secondary.primaries (a standby publisher's hidden primary), signed with the
transfer key (bind.transfer_key), and through ``catalog-zones`` every zone
the catalog lists: a zone added or removed in ddns comes and goes on the
secondary with no edit of this file. The output holds the key's secret: it
is written to stdout only, for the operator to put where named reads it.
"""
from __future__ import annotations

import argparse
import base64
from typing import TYPE_CHECKING, Callable

from . import catalog, namedconf
from .cli_base import Exit
from .errors import DdnsError, Invalid, codes
from .rndc import RndcError, RndcKey

if TYPE_CHECKING:
    from .cli_base import Env
    from .config import Config

LoadConfig = Callable[[argparse.Namespace, "Env"], "Config"]
DEFAULT_DIR = "/var/cache/bind"


class NoTransferKey(Invalid):
    """The transfer key file is missing or unreadable."""


def register(sub: argparse._SubParsersAction, command: Callable[..., argparse.ArgumentParser],
             load_config: LoadConfig) -> None:
    """Add ``secondary config``; COMMAND is ddns.cli's way of adding one."""
    secondary = sub.add_parser("secondary", help="BIND secondaries of the hidden primary").add_subparsers(
        dest="secondary_command", required=True)
    p = command("config", lambda a, e: _config(a, e, load_config),
                "print a complete named.conf for a secondary (catalog zone, primaries, transfer key)", secondary)
    p.add_argument("--listen", default="0.0.0.0", help="address the secondary answers on (default: every IPv4 one)")
    p.add_argument("--port", default="53", help="DNS port the secondary answers on (default 53)")
    p.add_argument("--dir", default=DEFAULT_DIR, help=f"its working directory, for the zones' files (default {DEFAULT_DIR})")


def _config(args: argparse.Namespace, env: "Env", load_config: LoadConfig) -> int:
    try:
        cfg = load_config(args, env)
        text = secondary_config(cfg, args.listen, args.port, args.dir)
    except namedconf.BadNamedValue as exc:
        env.err(f"error: {exc}")
        return Exit.USAGE
    except DdnsError as exc:
        env.err(f"error: {exc}")
        return codes(exc).exit
    env.stdout.write(text)
    env.stdout.flush()
    return 0


def secondary_config(cfg: "Config", listen: str, port: object, directory: str) -> str:
    """The named.conf text of a secondary of CFG's publisher (``namedconf.secondary_conf``)."""
    name = catalog.catalog_name(cfg["bind.catalog_zone"])
    if not name:
        raise namedconf.BadNamedValue("bind.catalog_zone is not set: secondaries learn the zones from the "
                                      "catalog zone (set it, e.g. to catalog.ddns.invalid, and restart ddns serve)")
    own = namedconf.address(cfg["bind.listen"], "bind.listen")
    primaries = [] if own in ("0.0.0.0", "::") else [namedconf.Endpoint(own, namedconf.port(cfg["bind.port"], "bind.port"))]
    primaries += namedconf.endpoints(cfg["secondary.primaries"], "secondary.primaries")
    if not primaries:
        raise namedconf.BadNamedValue("bind.listen is a wildcard: list this publisher's address in secondary.primaries")
    return namedconf.secondary_conf(name, _transfer_key(cfg), primaries, listen, port, directory)


def _transfer_key(cfg: "Config") -> namedconf.TransferKey:
    path = cfg.path("bind.transfer_key")
    if path is None:
        raise namedconf.BadNamedValue("bind.transfer_key is not set: secondaries transfer zones with that key")
    try:
        key = RndcKey.from_file(path)
    except (OSError, RndcError, ValueError) as exc:
        raise NoTransferKey(f"no transfer key in {path} ({exc}); `ddns serve` makes it for the managed named, "
                            "or make it with tsig-keygen") from exc
    return namedconf.TransferKey(namedconf.plain_key_name(key.name), key.algorithm,
                                 base64.b64encode(key.secret).decode())
