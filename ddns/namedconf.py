"""named.conf text for serving from secondaries: the hidden primary's options and a secondary's whole file.

The publisher's named is a hidden primary: it sends NOTIFY (``notify``,
``also-notify``) at once after each change (``notify-delay 0``, ``notify-rate``), keeps the
differences of full-file loads in reload mode (``ixfr-from-differences``) so
secondaries transfer only what changed, and gives zone transfers
only to holders of the transfer key (or the publisher key, which ``ddns
check --served`` signs its AXFR with). A secondary configured by
``secondary_conf`` transfers the catalog zone (``ddns.catalog``) and, through
``catalog-zones``, every zone it lists, from each primary in turn.

Every value that reaches the text is checked here first (addresses, ports,
paths, names): nothing a setting or an argument holds can add named.conf
syntax. Pure: values in, text out.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable

from . import keyconfigs
from .catalog import catalog_name
from .errors import Invalid
from .keyrules import key_name

NOTIFY_MODES = ("yes", "explicit", "no")
SECONDARY_HEADER = "# written by `ddns secondary config`: a secondary of the ddns hidden primaries"
# NOTIFYs a second (primary) and SOA queries a second (secondary): named releases them in ticks of
# 10 / rate seconds, so the default 20 holds back each one after the first by up to half a second.
QUICK_RATE = 10000
# A path named.conf quotes: absolute, of these characters only (no quote, backslash, brace, semicolon, newline).
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+@=,:~ -]*")


class BadNamedValue(Invalid):
    """A setting or argument that would not be a single, plain value in named.conf."""


@dataclass(frozen=True)
class Endpoint:
    """An address and optional port, as named.conf writes them (``192.0.2.7 port 5300``)."""

    address: str
    port: int | None = None

    def __str__(self) -> str:
        return self.address if self.port is None else f"{self.address} port {self.port}"


def address(value: str, what: str) -> str:
    """VALUE as a canonical IPv4 or IPv6 address (no scope); BadNamedValue naming WHAT otherwise."""
    try:
        if "%" in value:
            raise ValueError("a scoped address")
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise BadNamedValue(f"{what}: {value!r} is not an IP address ({exc})") from None


def port(value: object, what: str) -> int:
    """VALUE as a port number 1-65535; BadNamedValue naming WHAT otherwise."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise BadNamedValue(f"{what}: {value!r} is not a port number (1-65535)")
    return int(text)


def endpoint(value: object, what: str) -> Endpoint:
    """``ADDR`` or ``ADDR port PORT`` (the format of bind.also_notify and secondary.primaries)."""
    parts = value.split(" ") if isinstance(value, str) else []
    if len(parts) == 1:
        return Endpoint(address(parts[0], what))
    if len(parts) == 3 and parts[1] == "port":
        return Endpoint(address(parts[0], what), port(parts[2], what))
    raise BadNamedValue(f"{what}: {value!r} is not \"ADDRESS\" or \"ADDRESS port PORT\" (e.g. \"192.0.2.7 port 5300\")")


def endpoints(values: object, what: str) -> list[Endpoint]:
    """A setting's list of endpoints, each checked; BadNamedValue for anything but a list of them."""
    if not isinstance(values, (list, tuple)):
        raise BadNamedValue(f"{what} must be a list like [\"192.0.2.7 port 5300\"]")
    return [endpoint(v, what) for v in values]


def safe_path(value: str, what: str) -> str:
    """VALUE as a path named.conf can quote: absolute, plain characters only."""
    if not _SAFE_PATH.fullmatch(value):
        raise BadNamedValue(f"{what}: {value!r} must be an absolute path of letters, digits and ._/+@=,:~- "
                            "(no quotes, backslashes, braces, semicolons or line breaks)")
    return value.rstrip("/") or "/"


def plain_key_name(name: str) -> str:
    """NAME when it is a key name as ddns writes them (letters, digits, '-', '_', dots); BadNamedValue otherwise."""
    try:
        plain = key_name(name) == name
    except Invalid:
        plain = False
    if not plain:
        raise BadNamedValue(f"not a plain key name: {str(name)[:100]!r}")
    return name


def plain_zone_name(name: str, what: str) -> str:
    """NAME when it is a zone name as ddns writes them (lower case, no final dot); BadNamedValue naming WHAT otherwise."""
    try:
        plain = catalog_name(name) if isinstance(name, str) else ""
    except Invalid:
        plain = ""
    if not plain or plain != name:
        raise BadNamedValue(f"{what}: {str(name)[:100]!r} is not a zone name like catalog.ddns.invalid")
    return name


def checked_endpoint(value: object, what: str) -> Endpoint:
    """VALUE when it is an ``Endpoint`` of a valid address and port (anything else could carry syntax)."""
    if not isinstance(value, Endpoint):
        raise BadNamedValue(f"{what}: {str(value)[:100]!r} is not an address and port")
    return Endpoint(address(value.address, what), None if value.port is None else port(value.port, what))


def primary_options(notify: str, also_notify: Iterable[Endpoint], transfer_keys: Iterable[str],
                    full_loads: bool) -> str:
    """The options block lines of the hidden primary (indented four spaces, one statement a line).

    TRANSFER_KEYS: the names of the keys that may transfer zones; none: nobody may.
    FULL_LOADS (bind.publish = reload): every change is a full load, whose
    differences named keeps (``ixfr-from-differences``) so secondaries still
    transfer only them. In incremental mode named journals each update itself;
    there ``ixfr-from-differences`` would make named refuse a full load whose
    serial is not above the one it serves -- which repairing a zone changed
    behind ddns's back needs -- so a rare full load reaches secondaries as AXFR.
    """
    if notify not in NOTIFY_MODES:
        raise BadNamedValue(f"bind.notify: {notify!r} is not one of {', '.join(NOTIFY_MODES)}")
    targets = "".join(f" {e};" for e in also_notify)
    keys = "".join(f' key "{plain_key_name(k)}";' for k in transfer_keys) or " none;"
    lines = [f"notify {notify};", "notify-delay 0;", f"notify-rate {QUICK_RATE};", f"allow-transfer {{{keys} }};"]
    if full_loads:
        lines.append("ixfr-from-differences yes;")
    if targets and notify != "no":
        lines.insert(1, f"also-notify {{{targets} }};")
    return "".join(f"    {line}\n" for line in lines)


@dataclass(frozen=True)
class TransferKey:
    name: str
    algorithm: str
    secret: str


def secondary_conf(catalog: str, key: TransferKey, primaries: list[Endpoint], listen: str, listen_port: int,
                   directory: str) -> str:
    """A whole named.conf of a secondary in DIRECTORY answering on LISTEN:LISTEN_PORT (``named -c FILE -g``).

    It transfers the catalog zone CATALOG from PRIMARIES with KEY, and every
    zone the catalog lists from the same primaries (``catalog-zones``); it
    answers queries only, gives no transfers, sends no NOTIFY and has no
    control channel (``rndc`` off). Every argument is checked here, whatever
    the caller checked: a quote, brace or line break in one is refused.
    """
    if not primaries:
        raise BadNamedValue("a secondary needs at least one primary")
    catalog = plain_zone_name(catalog, "bind.catalog_zone")
    key = TransferKey(plain_key_name(key.name), key.algorithm, key.secret)  # algorithm, secret: key_file checks
    primaries = [checked_endpoint(e, "secondary.primaries") for e in primaries]
    listen = address(listen, "--listen")
    listen_port = port(listen_port, "--port")
    directory = safe_path(directory, "--dir")
    six = ipaddress.ip_address(listen).version == 6
    wildcard = listen in ("0.0.0.0", "::")
    heard = f"listen-on{'-v6' if six else ''} port {listen_port} {{ {'any' if wildcard else listen}; }};"
    quiet = "listen-on { none; };" if six else "listen-on-v6 { none; };"
    servers = "".join(f' {e} key "{key.name}";' for e in primaries)
    return f"""{SECONDARY_HEADER}
# (from the catalog zone {catalog}); start it with: named -g -c THIS_FILE
{keyconfigs.key_file(key.name, key.algorithm, key.secret).rstrip()}
controls {{ }};
options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    managed-keys-directory "{directory}";
    {heard}
    {quiet}
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ none; }};
    serial-query-rate {QUICK_RATE};
    catalog-zones {{
        zone "{catalog}" default-primaries {{{servers} }} zone-directory "{directory}" in-memory no min-update-interval 1;
    }};
}};
zone "{catalog}" {{
    type secondary;
    primaries {{{servers} }};
    file "{catalog}.db";
}};
"""
