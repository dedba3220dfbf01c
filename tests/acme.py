"""A real ACME server (Pebble) and real ACME clients (certbot, lego) for the DNS-01 tests.

Pebble validates a DNS-01 challenge by asking one DNS server for the TXT at
``_acme-challenge.NAME`` (``-dnsserver``): the tests point it at the named
that serves the zone, so a certificate is issued only when the TXT the client
set really is served. Pebble is started once per DNS server and session
(``pebbles``); ``PEBBLE_VA_NOSLEEP`` drops its random validation delay, no
nonce is rejected on purpose and no authorization is reused, so every client
run really proves its name. Missing programs FAIL the test (see .ci/run).
"""
from __future__ import annotations

import base64
import os
import re
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import pytest

from conftest import free_port, query, require, wait_until

CERTBOT = "/usr/bin/certbot"   # Debian's: it and its rfc2136 plugin live in the system Python
EMAIL = "admin@example.org"
CLIENT_TIMEOUT = 120


def require_acme_tools() -> None:
    require("pebble", "lego", "openssl")
    if not Path(CERTBOT).exists():
        pytest.fail(f"required tool missing: {CERTBOT} (install certbot python3-certbot-dns-rfc2136; see .ci/run)")


@dataclass
class Pebble:
    """One running Pebble: its ACME directory URL and the certificate its HTTPS endpoint uses."""

    url: str
    tls_cert: Path        # trust this to talk to Pebble (not the CA that signs issued certificates)
    management: str       # https://127.0.0.1:M: /roots/0 is the root of the certificates it issues
    process: subprocess.Popen
    log: Path

    def root(self, directory: Path) -> Path:
        """The root certificate that issued certificates chain to, written to DIRECTORY."""
        path = directory / "pebble-root.pem"
        path.write_bytes(_get(self.management + "/roots/0", self.tls_cert))
        return path


def _get(url: str, cafile: Path) -> bytes:
    with urllib.request.urlopen(url, timeout=5, context=ssl.create_default_context(cafile=str(cafile))) as resp:
        return resp.read()


def _tls_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "pebble-cert.pem", directory / "pebble-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def start_pebble(directory: Path, dns_port: int, timeout: float = 30) -> Pebble:
    """Pebble on loopback, validating DNS-01 against 127.0.0.1:DNS_PORT; ready when its directory answers."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = _tls_cert(directory)
    port, management = free_port(), free_port()
    config = directory / "pebble-config.json"
    config.write_text('{"pebble": {"listenAddress": "127.0.0.1:%d", "managementListenAddress": "127.0.0.1:%d", '
                      '"certificate": "%s", "privateKey": "%s", "httpPort": %d, "tlsPort": %d, '
                      '"ocspResponderURL": "", "externalAccountBindingRequired": false}}'
                      % (port, management, cert, key, free_port(), free_port()))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    log = directory / "pebble.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    pebble = Pebble(f"https://127.0.0.1:{port}/dir", cert, f"https://127.0.0.1:{management}", process, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"pebble exited with {process.returncode}: {log.read_text()}")
        try:
            _get(pebble.url, cert)
            return pebble
        except OSError:
            if time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"pebble did not answer in {timeout}s: {log.read_text()}")
            time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def pebbles(tmp_path_factory):
    """pebbles(dns_port) -> Pebble: one Pebble per DNS server for the whole session, stopped at its end."""
    require_acme_tools()
    started: dict[int, Pebble] = {}

    def get(dns_port: int) -> Pebble:
        if dns_port not in started:
            started[dns_port] = start_pebble(tmp_path_factory.mktemp("pebble"), dns_port)
        return started[dns_port]

    yield get
    for pebble in started.values():
        stop(pebble.process)


# ------------------------------------------------------------------ clients

@dataclass(frozen=True)
class Tsig:
    name: str        # no trailing dot
    secret: str      # base64
    algorithm: str = "hmac-sha256"


def _run(args: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LEGO_", "RFC2136_", "HTTPREQ_"))}
    proc = subprocess.run(args, env={**base, **env}, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _lego(pebble: Pebble, names: list[str], directory: Path, provider: str, env: dict[str, str],
          resolver_port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    domains = [arg for name in names for arg in ("--domains", name)]
    _run(["lego", "--server", pebble.url, "--email", EMAIL, "--accept-tos", *domains, "--dns", provider, "--dns.disable-cp", "--dns.resolvers", f"127.0.0.1:{resolver_port}",
          "--path", str(directory), "run"],
         {"LEGO_CA_CERTIFICATES": str(pebble.tls_cert), f"{provider.upper()}_POLLING_INTERVAL": "1", **env}, f"lego --dns {provider}")
    return directory / "certificates" / f"{names[0].replace('*', '_')}.crt"


def lego_rfc2136(pebble: Pebble, name: str, directory: Path, key: Tsig, update_port: int, dns_port: int) -> Path:
    """lego's rfc2136 provider obtains a certificate for NAME; the path of its certificate (with chain)."""
    env = {"RFC2136_NAMESERVER": f"127.0.0.1:{update_port}", "RFC2136_TSIG_KEY": key.name + ".",
           "RFC2136_TSIG_SECRET": key.secret, "RFC2136_TSIG_ALGORITHM": key.algorithm + "."}
    return _lego(pebble, [name], directory, "rfc2136", env, dns_port)


def lego_httpreq(pebble: Pebble, names: list[str], directory: Path, endpoint: str, user: str, password: str,
                 dns_port: int) -> Path:
    """lego's httpreq provider (default mode) obtains one certificate for NAMES through ENDPOINT."""
    env = {"HTTPREQ_ENDPOINT": endpoint, "HTTPREQ_USERNAME": user, "HTTPREQ_PASSWORD": password}
    return _lego(pebble, names, directory, "httpreq", env, dns_port)


def certbot_rfc2136(pebble: Pebble, name: str, directory: Path, key: Tsig, update_port: int) -> Path:
    """certbot with certbot-dns-rfc2136 obtains a certificate for NAME; the path of its fullchain.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    credentials = directory / "rfc2136.ini"
    credentials.touch(0o600)
    credentials.write_text(f"dns_rfc2136_server = 127.0.0.1\ndns_rfc2136_port = {update_port}\n"
                           f"dns_rfc2136_name = {key.name}\ndns_rfc2136_secret = {key.secret}\n"
                           f"dns_rfc2136_algorithm = {key.algorithm.upper()}\n")
    _run([CERTBOT, "certonly", "--server", pebble.url, "--non-interactive", "--agree-tos", "-m", EMAIL,
          "--no-eff-email", "-d", name, "--dns-rfc2136", "--dns-rfc2136-credentials", str(credentials),
          "--dns-rfc2136-propagation-seconds", "0",
          "--config-dir", str(directory / "config"), "--work-dir", str(directory / "work"),
          "--logs-dir", str(directory / "logs")],
         {"REQUESTS_CA_BUNDLE": str(pebble.tls_cert)}, "certbot --dns-rfc2136")
    return directory / "config" / "live" / name / "fullchain.pem"


# ------------------------------------------------------------- certificates

def dns_names(cert: Path) -> set[str]:
    """The DNS names in CERT's subjectAltName."""
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                         check=True, capture_output=True, text=True).stdout
    return set(re.findall(r"DNS:([^,\s]+)", out))


def verify_chain(cert: Path, root: Path) -> None:
    """CERT (leaf first, then its chain) was issued under ROOT; raises AssertionError otherwise."""
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted", str(cert), str(cert)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------- a plain BIND zone

@dataclass
class PlainZone:
    """A zone in a private named that takes RFC 2136 updates itself (BIND's update-policy): the floor."""

    zone: str
    port: int
    key: Tsig
    process: subprocess.Popen


def start_plain_named(directory: Path, zone: str, host: str) -> PlainZone:
    """named on loopback serving ZONE, where only the key _acme-challenge.HOST may set TXT at that name."""
    require("named")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    key = Tsig(f"_acme-challenge.{host}", base64.b64encode(os.urandom(32)).decode())
    (directory / "zone.db").write_text(
        f"$TTL 60\n@ SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n@ NS ns.{zone}.\n"
        f"ns A 127.0.0.1\n")
    d = directory.resolve()
    (directory / "named.conf").write_text(f"""
key "{key.name}" {{ algorithm {key.algorithm}; secret "{key.secret}"; }};
options {{
    directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";
    managed-keys-directory "{d}"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
    recursion no; dnssec-validation no; notify no;
}};
zone "{zone}" {{ type primary; file "{d}/zone.db";
    update-policy {{ grant {key.name}. name _acme-challenge.{host}. TXT; }}; }};
""")
    with open(directory / "named.log", "ab") as out:
        process = subprocess.Popen(["named", "-g", "-c", str(directory / "named.conf")],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: process.poll() is not None or _soa(zone, port), 15, what="the plain named")
    except AssertionError:
        stop(process)
        raise
    if process.poll() is not None:
        raise RuntimeError(f"named exited: {(directory / 'named.log').read_text()}")
    return PlainZone(zone, port, key, process)


def _soa(zone: str, port: int) -> bool:
    try:
        return bool(query(port, zone, "SOA", timeout=0.5))
    except (OSError, dns.exception.Timeout):
        return False
