"""Ready-to-paste client configurations for one host (the portal's "secret shown once" page).

Pure string building, no I/O: the same text for the same input. Each config is
what README.md's Clients section shows, filled in for one host; the tests feed
every one of them to the real client (curl, ddclient, inadyn, the dhclient hook)
against the real service.

The inputs end up inside shell commands, curl/ddclient/inadyn config files,
YAML and URLs, each with its own quoting rules. Rather than trusting a quoting
function per format, the inputs are checked first: the public URL must be
http(s) with a plain host, an optional port and an optional path prefix of URL
characters that need no escaping anywhere (no ``%``, which inadyn's ddns-path
would read as a format specifier); the FQDN a host name; the secret URL-safe
base64 (what ``auth.new_secret`` makes). Anything else raises ValueError.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_NETLOC = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)*\Z")
_FQDN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_SECRET = re.compile(r"[A-Za-z0-9_-]+\Z")

HOOK_PATH = "/etc/dhcp/dhclient-exit-hooks.d/ddns"
HOOK_CONFIG = "/etc/ddns/dhclient.conf"
SECRET_FILE = "/etc/ddns/secret"


@dataclass(frozen=True)
class ClientConfig:
    """One client's configuration, as the portal shows it (frozen: rendered once, only read)."""

    key: str  # "curl", "cloud-init", "ddclient", "inadyn", "dhclient", "router"
    title: str  # heading on the page
    filename: str  # where the text goes, or "" when it is not a file
    text: str  # the config, ready to paste
    note: str  # one sentence: where it goes / what it does


@dataclass(frozen=True)
class _Base:
    """public_url taken apart: each client wants the pieces in its own form."""

    url: str  # scheme://netloc/prefix, no trailing slash
    scheme: str  # "http" or "https"
    netloc: str  # host[:port], the form ddclient's server= and inadyn's *-server take
    prefix: str  # "" or "/some/path", prepended to /nic/update and /myip


def _base(public_url: str) -> _Base:
    """Check and split the service's base URL (a ValueError names what is wrong)."""
    parts = urlsplit(public_url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"public_url must start with http:// or https://: {public_url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"public_url takes no credentials, query or fragment: {public_url!r}")
    if not _NETLOC.match(parts.netloc):
        raise ValueError(f"public_url needs a plain host[:port]: {public_url!r}")
    _ = parts.port  # raises ValueError for a port out of range
    prefix = parts.path.rstrip("/")
    if not _PREFIX.match(prefix):
        raise ValueError(f"public_url's path may hold only letters, digits and ._~- between slashes: {public_url!r}")
    return _Base(f"{parts.scheme}://{parts.netloc}{prefix}", parts.scheme, parts.netloc, prefix)


def _sh(word: str) -> str:
    """Single-quote WORD for sh, always (shlex.quote leaves 'a:b' bare; a pasted line reads better quoted)."""
    return "'" + word.replace("'", "'\"'\"'") + "'"


def client_configs(public_url: str, fqdn: str, secret: str) -> list[ClientConfig]:
    """Every client configuration for host FQDN with SECRET, served at PUBLIC_URL.

    Order: curl, cloud-init, ddclient, inadyn, dhclient, router (what the page shows).
    """
    base = _base(public_url)
    if not _FQDN.match(fqdn) or ".." in fqdn or len(fqdn) > 253:
        raise ValueError(f"not a host name: {fqdn!r}")
    if not _SECRET.match(secret):
        raise ValueError("the secret must be URL-safe base64 (letters, digits, - and _)")
    update = f"{base.url}/nic/update"
    myip = f"{base.url}/myip"
    https = base.scheme == "https"
    return [
        _curl(update, fqdn, secret),
        _cloud_init(update, fqdn, secret),
        _ddclient(base, myip, https, fqdn, secret),
        _inadyn(base, https, fqdn, secret),
        _dhclient(base, fqdn, secret),
        _router(base, update, fqdn, secret),
    ]


def _curl(update: str, fqdn: str, secret: str) -> ClientConfig:
    text = f"curl -fsS -u {_sh(f'{fqdn}:{secret}')} {_sh(f'{update}?hostname={fqdn}')}\n"
    return ClientConfig(
        "curl", "curl", "", text,
        "Run it on the host to register the address the request comes from (add &myip=ADDRESS "
        "to the URL to register another one); the secret shows in the process list and shell history while it runs.")


def _cloud_init(update: str, fqdn: str, secret: str) -> ClientConfig:
    # README.md's Clients section, filled in; the curl config keeps the secret off command lines.
    text = f"""\
#cloud-config
write_files:
  - path: /etc/ddns/curl.conf
    owner: root:root
    permissions: "0600"
    content: |
      user = "{fqdn}:{secret}"
      url = "{update}"
      max-time = 30
      retry = 5
      retry-connrefused
      silent
      show-error
      fail
  - path: /etc/systemd/system/ddns-update.service
    content: |
      [Unit]
      Description=Register this VM's address with ddns
      Wants=network-online.target
      After=network-online.target
      [Service]
      Type=oneshot
      ExecStart=/usr/bin/curl -K /etc/ddns/curl.conf
  - path: /etc/systemd/system/ddns-update.timer
    content: |
      [Unit]
      Description=Re-register with ddns every 10 minutes
      [Timer]
      OnBootSec=30s
      OnUnitActiveSec=10min
      [Install]
      WantedBy=timers.target
runcmd:
  - [systemctl, daemon-reload]
  - [systemctl, enable, --now, ddns-update.timer]
"""
    return ClientConfig(
        "cloud-init", "cloud-init (user data)", "user-data", text,
        f"Give it to the VM as user data: it writes a root-only curl config and a systemd timer "
        f"that registers the VM's address as {fqdn} at boot and every 10 minutes.")


def _ddclient(base: _Base, myip: str, https: bool, fqdn: str, secret: str) -> ClientConfig:
    # ddclient 3.10's dyndns2 asks http(s)://SERVER + SCRIPT (script defaults to
    # /nic/update, ssl=yes makes it https); server= is host[:port] only, so a path
    # prefix goes into script=.
    script = f"script={base.prefix}/nic/update\n" if base.prefix else ""
    text = (f"# ddclient.conf for {fqdn} (ddclient 3.10 or later)\n"
            "protocol=dyndns2\n"
            f"use=web, web={myip}\n"
            f"server={base.netloc}\n"
            f"{script}"
            f"ssl={'yes' if https else 'no'}\n"
            f"login={fqdn}\n"
            f"password='{secret}'\n"
            f"{fqdn}\n")
    return ClientConfig(
        "ddclient", "ddclient.conf", "/etc/ddclient.conf", text,
        f"Save it as /etc/ddclient.conf (mode 600): ddclient asks {myip} for this network's "
        f"public address and updates {fqdn} whenever it changes.")


def _inadyn(base: _Base, https: bool, fqdn: str, secret: str) -> ClientConfig:
    # inadyn 2.10: "ssl" covers the update; a custom checkip-server does not follow
    # it (checkip-ssl defaults to true), so checkip-ssl is spelled out as well.
    ssl = "true" if https else "false"
    text = (f"# inadyn.conf for {fqdn} (inadyn 2.10)\n"
            "custom ddns {\n"
            f'    hostname    = "{fqdn}"\n'
            f'    username    = "{fqdn}"\n'
            f'    password    = "{secret}"\n'
            f"    ssl         = {ssl}\n"
            f'    ddns-server = "{base.netloc}"\n'
            f'    ddns-path   = "{base.prefix}/nic/update?hostname=%h&myip=%i"\n'
            f'    checkip-server = "{base.netloc}"\n'
            f'    checkip-path   = "{base.prefix}/myip"\n'
            f"    checkip-ssl    = {ssl}\n"
            "}\n")
    return ClientConfig(
        "inadyn", "inadyn.conf", "/etc/inadyn.conf", text,
        f"Save it as /etc/inadyn.conf (mode 600): inadyn asks {base.url}/myip for this network's "
        f"public address and updates {fqdn} whenever it changes.")


def _dhclient(base: _Base, fqdn: str, secret: str) -> ClientConfig:
    # KEY=VALUE lines the shipped hooks/dhclient-exit-hook reads as data. The secret
    # lives in its own mode-600 file, so it is only in the note's install command,
    # never in this (world-readable) settings file.
    # No comment may follow a value on its line: the hook would read it as part of the value.
    text = ("# Settings of the ddns dhclient exit hook (read as data, never executed)\n"
            f"DDNS_SERVER={base.url}\n"
            f"DDNS_FQDN={fqdn}\n"
            f"DDNS_SECRET_FILE={SECRET_FILE}\n"
            "# Interface(s) to act on (default: the one of the default route; \"all\" for every one):\n"
            "# DDNS_INTERFACE=eth0\n"
            "# Seconds per request (default 15):\n"
            "# DDNS_TIMEOUT=15\n")
    install = (f"install -D -m 644 hooks/dhclient-exit-hook {HOOK_PATH} && "
               f"install -D -m 600 /dev/null {SECRET_FILE} && "
               f"printf '%s\\n' {_sh(secret)} >{SECRET_FILE}")
    return ClientConfig(
        "dhclient", "dhclient exit hook", HOOK_CONFIG, text,
        f"Save it as {HOOK_CONFIG} after installing the hook from the ddns sources and the secret, "
        f"as root: `{install}`")


def _router(base: _Base, update: str, fqdn: str, secret: str) -> ClientConfig:
    # <domain> and <ipaddr> are the placeholders of AVM, OpenWrt and most "custom
    # DynDNS" router forms. The second line is for routers that take only a URL;
    # the checks above leave nothing in FQDN or SECRET that needs percent-encoding.
    filled = f"{base.scheme}://{fqdn}:{secret}@{base.netloc}{base.prefix}/nic/update?hostname={fqdn}&myip=<ipaddr>"
    text = f"{update}?hostname=<domain>&myip=<ipaddr>\n{filled}\n"
    return ClientConfig(
        "router", "Router (update URL)", "", text,
        f"In the router's custom DynDNS settings enter the first URL with user name {fqdn}, "
        f"the secret as password and {fqdn} as domain; a router that takes only a URL gets the second line.")
