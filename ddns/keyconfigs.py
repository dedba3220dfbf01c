"""A TSIG key's files and ready-to-paste client snippets (the page that shows a new key once). Pure.

The key file is what ``tsig-keygen`` writes and ``nsupdate -k FILE``, BIND,
certbot's dns-rfc2136 and lego read: ``key "NAME" { algorithm A; secret "S"; };``.
As in ``ddns.clientconfigs``, inputs are checked rather than quoted: the key
name is a domain name (letters, digits, '-', '_', dots), the algorithm one we
make, the secret base64, the server an address or host name and the port a
number, so nothing in them needs quoting in a key file, an ini file, an
environment line or a here-document.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .clientconfigs import ClientConfig
from .errors import Invalid
from .keyrules import ALGORITHMS, key_name
from .keystore import KeyInfo

_SECRET = re.compile(r"[A-Za-z0-9+/]+={0,2}\Z")
_SERVER = re.compile(r"[A-Za-z0-9.:-]+\Z")
KEY_DIR = "/etc/ddns"
ACME_TTL = 60
WILDCARD_LISTEN = ("", "0.0.0.0", "::")


def key_json(key: KeyInfo) -> dict[str, Any]:
    """A key as lists show it (``ddns key list --json``, the API): everything but the secret."""
    return {"name": key.name, "kind": key.kind, "algorithm": key.algorithm, "host": key.host, "zone": key.zone,
            "rules": list(key.rules), "created": key.created}


def key_file(name: str, algorithm: str, secret: str) -> str:
    """The BIND key file (``key "NAME" { ... };``) of the key NAME."""
    _check(name, algorithm, secret)
    return f'key "{name}" {{\n\talgorithm {algorithm};\n\tsecret "{secret}";\n}};\n'


def update_endpoint(listen: str, port: int, public_url: str) -> tuple[str, int]:
    """Where clients send updates: the listener's address, or the service's host when it listens on every address."""
    if listen in WILDCARD_LISTEN:
        return urlsplit(public_url).hostname or "127.0.0.1", port
    return listen, port


def key_configs(name: str, algorithm: str, secret: str, kind: str, fqdn: str, zone: str,
                server: str, port: int) -> list[ClientConfig]:
    """The key file and the snippets that use it: nsupdate, and for an ACME key certbot and lego.

    FQDN is the name the example changes (a host key's host, an ACME key's
    challenge name, a zone key's zone); ZONE the zone it is in. PORT 0 (the
    update listener is off here): the key file only.
    """
    _check(name, algorithm, secret)
    fqdn, zone = key_name(fqdn), key_name(zone)
    if not _SERVER.match(server or "") or not isinstance(port, int) or not 0 <= port < 65536:
        raise Invalid(f"not a server and port: {server!r} {port!r}")
    path = f"{KEY_DIR}/{name}.key"
    configs = [ClientConfig("keyfile", "Key file", path, key_file(name, algorithm, secret),
                            f"Save it as {path}, readable by root only (install -m 600): whoever can read it can "
                            f"sign updates as {name}.")]
    if port == 0:
        return configs
    configs.append(_nsupdate(path, kind, fqdn, zone, server, port))
    if kind == "acme":
        configs += [_certbot(name, algorithm, secret, fqdn, server, port), _lego(name, algorithm, secret, fqdn, server, port)]
    return configs


def _check(name: str, algorithm: str, secret: str) -> None:
    if key_name(name) != name:
        raise Invalid(f"not a key name as stored: {name!r}")
    if algorithm not in ALGORITHMS:
        raise Invalid(f"not an algorithm ddns makes keys with: {algorithm!r}")
    if not _SECRET.match(secret or ""):
        raise Invalid("the secret must be base64")


def _nsupdate(path: str, kind: str, fqdn: str, zone: str, server: str, port: int) -> ClientConfig:
    if kind == "acme":
        change = f'update delete {fqdn} TXT\nupdate add {fqdn} {ACME_TTL} TXT "challenge-token"\n'
        note = f"Sets the TXT record {fqdn} (what a DNS-01 challenge asks for); this key may change nothing else."
    elif kind == "host":
        change = f"update delete {fqdn} A\nupdate add {fqdn} 300 A 192.0.2.10\n"
        note = f"Replaces {fqdn}'s address (A; AAAA and TXT work alike); this key may change nothing else."
    else:
        change = f'update add {fqdn} 300 TXT "hello"\n'
        note = f"An update signed with the key; its rules decide what it may change in {zone}."
    text = f"nsupdate -k {path} <<'EOF'\nserver {server} {port}\nzone {zone}\n{change}send\nEOF\n"
    return ClientConfig("nsupdate", "nsupdate", "", text, note)


def _certbot(name: str, algorithm: str, secret: str, fqdn: str, server: str, port: int) -> ClientConfig:
    domain = fqdn.removeprefix("_acme-challenge.")
    ini = f"{KEY_DIR}/certbot-rfc2136.ini"
    text = (f"# {ini} (mode 600)\n"
            f"dns_rfc2136_server = {server}\n"
            f"dns_rfc2136_port = {port}\n"
            f"dns_rfc2136_name = {name}\n"
            f"dns_rfc2136_secret = {secret}\n"
            f"dns_rfc2136_algorithm = {algorithm.upper()}\n"
            "\n"
            f"certbot certonly --dns-rfc2136 --dns-rfc2136-credentials {ini} -d {domain}\n")
    return ClientConfig("certbot", "certbot (dns-rfc2136)", ini, text,
                        f"Save the first lines as {ini} (mode 600; certbot needs the server as an IP address), "
                        f"then run the command: certbot proves {domain} through the TXT record {fqdn}.")


def _lego(name: str, algorithm: str, secret: str, fqdn: str, server: str, port: int) -> ClientConfig:
    domain = fqdn.removeprefix("_acme-challenge.")
    host = f"[{server}]" if ":" in server else server
    text = (f"RFC2136_NAMESERVER={host}:{port} \\\n"
            f"RFC2136_TSIG_KEY={name}. \\\n"
            f"RFC2136_TSIG_ALGORITHM={algorithm}. \\\n"
            f"RFC2136_TSIG_SECRET={secret} \\\n"
            f"lego --email you@example.org --dns rfc2136 --domains {domain} run\n")
    return ClientConfig("lego", "lego (rfc2136)", "", text,
                        f"Run it where lego keeps its account (or put the variables in its environment file): "
                        f"lego proves {domain} through the TXT record {fqdn}.")
