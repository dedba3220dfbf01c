"""A real MIT Kerberos KDC on loopback, in a temp dir, for the GSS-TSIG tests.

Debian's krb5-kdc, krb5-admin-server (kadmin.local) and krb5-user (kinit);
nothing runs as a system service and nothing outside the directory is read:
every command gets KRB5_CONFIG / KRB5_KDC_PROFILE / KRB5RCACHEDIR. Missing
tools make the tests fail, never skip.

Several KDCs may run at once, each with its own realm (``start_kdc(dir,
realm="OTHER.TEST")``); each one's krb5.conf maps ``.example.test`` to its own
realm, so a client using it asks its own KDC for ``DNS/ns1.<zone>``. Shared
KDCs for a whole run are the fixtures of kerberos_fixtures.py.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .instance import free_port, require, wait_until

REALM = "EXAMPLE.TEST"
TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist")


@dataclass
class Kdc:
    """A running KDC: its realm, port and the environment every Kerberos command needs."""

    directory: Path
    realm: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), env={**self.env, **(env or {})}, capture_output=True, text=True,
                                timeout=30, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")
        return result

    def kadmin(self, query: str, tolerate: str = "") -> str:
        """Run one kadmin.local QUERY; RuntimeError when it reports an error (it exits 0 even then).

        An error message containing TOLERATE (when given) is not one.
        """
        result = self.run("kadmin.local", "-r", self.realm, "-q", query)
        errors = [line for line in result.stderr.splitlines() if _KADMIN_ERROR.match(line)
                  and not (tolerate and tolerate in line)]
        if errors:
            raise RuntimeError(f"kadmin.local {query!r}: {'; '.join(errors)}")
        return result.stdout

    def principal(self, name: str, keytab: Path) -> str:
        """NAME@REALM (created with a random key unless it exists) added to KEYTAB; returns the full principal.

        The key is exported as it is (``-norandkey``), so several tests of a
        shared KDC may ask for the same principal without invalidating each
        other's keytabs; KEYTAB may already hold other principals (of this or
        another realm).
        """
        self.kadmin(f"addprinc -randkey {name}", tolerate="already exists")
        self.kadmin(f"ktadd -norandkey -k {keytab} {name}")
        return f"{name}@{self.realm}"

    def kinit(self, keytab: Path, principal: str, ccache: Path) -> dict[str, str]:
        """A ticket for PRINCIPAL from KEYTAB in CCACHE; returns the environment that uses it."""
        env = {**self.env, "KRB5CCNAME": f"FILE:{ccache}"}
        self.run("kinit", "-kt", str(keytab), principal, env=env)
        return env


# kadmin.local's error lines: "add_principal: Principal or policy already exists while creating ..."
_KADMIN_ERROR = re.compile(r"^[a-z_]+: .+ while ")


def _write_config(directory: Path, realm: str, port: int) -> dict[str, str]:
    d = directory.resolve()
    (directory / "krb5.conf").write_text(f"""[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
[realms]
    {realm} = {{
        kdc = 127.0.0.1:{port}
    }}
[domain_realm]
    .example.test = {realm}
""")
    (directory / "kdc.conf").write_text(f"""[kdcdefaults]
    kdc_ports = {port}
    kdc_tcp_ports = {port}
[realms]
    {realm} = {{
        database_name = {d}/principal
        key_stash_file = {d}/stash
        acl_file = {d}/kadm5.acl
        kdc_ports = {port}
        kdc_tcp_ports = {port}
    }}
""")
    (directory / "kadm5.acl").write_text("")
    return {**os.environ, "KRB5_CONFIG": str(d / "krb5.conf"), "KRB5_KDC_PROFILE": str(d / "kdc.conf"),
            "KRB5RCACHEDIR": str(d)}


def start_kdc(directory: Path, realm: str = REALM) -> Kdc:
    """Create a realm's database in DIRECTORY and run krb5kdc in the foreground on a free loopback port."""
    require(*TOOLS)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = _write_config(directory, realm, port)
    subprocess.run(["kdb5_util", "create", "-s", "-r", realm, "-P", secrets.token_hex(16)], env=env,
                   check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    with open(directory / "kdc.log", "ab") as out:
        process = subprocess.Popen(["krb5kdc", "-n", "-r", realm], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    kdc = Kdc(directory, realm, port, env, process)
    probe = directory / "probe.keytab"
    principal = kdc.principal("probe/ready", probe)

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"krb5kdc exited: {(directory / 'kdc.log').read_text()}")
        try:
            kdc.kinit(probe, principal, directory / "probe.cc")
            return True
        except RuntimeError:
            return False

    try:
        wait_until(answers, 20, what="the KDC to issue a ticket")
    except BaseException:
        stop_kdc(kdc)
        raise
    return kdc


def stop_kdc(kdc: Kdc) -> None:
    kdc.process.terminate()
    try:
        kdc.process.wait(10)
    except subprocess.TimeoutExpired:
        kdc.process.kill()
        kdc.process.wait(10)
