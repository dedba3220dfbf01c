"""The reference for GSS-TSIG: a real MIT KDC, `kinit -kt` and `nsupdate -g` against a plain BIND.

Before ddns takes Kerberos-signed updates itself, this pins down what the
real parts do together here: BIND with `tkey-gssapi-keytab` and
`krb5-self` accepts host/vm1's update of vm1 and refuses its update of vm2.
A client step that later fails against ddns is then ddns's fault. The KDC
fixture itself is checked too: kadmin errors surface, and a principal asked
for twice keeps one key.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import dns.exception
import pytest

from acme import stop
from conftest import free_port, query, require, wait_until
from testkit.kdc import Kdc
from kerberos_fixtures import kdc  # noqa: F401  (the session's KDC)

ZONE = "dyn.example.test"
MNAME = f"ns1.{ZONE}"


def start_gss_named(directory: Path, kdc: Kdc) -> tuple[int, subprocess.Popen]:
    require("named", "nsupdate", "dig")
    directory.mkdir(parents=True, exist_ok=True)
    d = directory.resolve()
    kdc.principal(f"DNS/{MNAME}", d / "dns.keytab")
    (directory / "zone.db").write_text(
        f"$TTL 60\n@ SOA {MNAME}. hostmaster.{ZONE}. 1 3600 600 86400 60\n@ NS {MNAME}.\nns1 A 127.0.0.1\n")
    port = free_port()
    (directory / "named.conf").write_text(f"""
options {{
    directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";
    managed-keys-directory "{d}"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
    recursion no; dnssec-validation no; notify no;
    tkey-gssapi-keytab "{d}/dns.keytab";
}};
zone "{ZONE}" {{ type primary; file "{d}/zone.db";
    update-policy {{ grant {kdc.realm} krb5-self . A AAAA TXT; }}; }};
""")
    with open(directory / "named.log", "ab") as out:
        process = subprocess.Popen(["named", "-g", "-c", str(directory / "named.conf")], env=kdc.env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"named exited: {(directory / 'named.log').read_text()}")
        try:
            return bool(query(port, ZONE, "SOA", timeout=0.5))
        except (OSError, dns.exception.Timeout):
            return False

    wait_until(serving, 15, what="the GSS-TSIG named")
    return port, process


def nsupdate_g(env: dict[str, str], port: int, lines: list[str]) -> subprocess.CompletedProcess:
    script = "\n".join([f"server 127.0.0.1 {port}", f"zone {ZONE}", *lines, "send", ""])
    return subprocess.run(["nsupdate", "-g"], input=script, env=env, capture_output=True, text=True, timeout=30)


def test_krb5_self_lets_a_host_change_only_its_own_name(kdc, tmp_path):
    port, named = start_gss_named(tmp_path / "named", kdc)
    try:
        keytab = tmp_path / "vm1.keytab"
        principal = kdc.principal(f"host/vm1.{ZONE}", keytab)
        env = kdc.kinit(keytab, principal, tmp_path / "vm1.cc")
        own = nsupdate_g(env, port, [f"update add vm1.{ZONE} 60 A 192.0.2.71"])
        assert own.returncode == 0, own.stderr
        assert query(port, f"vm1.{ZONE}", "A") == ["192.0.2.71"]
        other = nsupdate_g(env, port, [f"update add vm2.{ZONE} 60 A 192.0.2.72"])
        assert other.returncode != 0 and "REFUSED" in other.stderr, other.stderr
        assert query(port, f"vm2.{ZONE}", "A") == []
    finally:
        stop(named)


def test_the_kdc_fixture_reports_kadmin_errors_and_shares_principals(kdc, tmp_path):
    # kadmin.local exits 0 when a query fails: Kdc.kadmin must read its error lines
    with pytest.raises(RuntimeError, match="does not exist"):
        kdc.kadmin("getprinc nosuch/principal")
    # asking twice for a principal exports the same key: the first keytab still gets tickets
    first, second = tmp_path / "first.keytab", tmp_path / "second.keytab"
    principal = kdc.principal("host/shared.example.test", first)
    assert kdc.principal("host/shared.example.test", second) == principal
    kdc.kinit(first, principal, tmp_path / "first.cc")
    kdc.kinit(second, principal, tmp_path / "second.cc")
