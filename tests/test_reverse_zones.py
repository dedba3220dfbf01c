"""Reverse zones managed by ddns, with real BIND and the real nsupdate and dig.

A host key may set the PTR records that point at its own name (ptr-self) and no
other; ``dig -x`` sees them.
"""
from __future__ import annotations

import subprocess

import pytest

from conftest import Instance, require
from test_rfc2136 import failed_with, make_key, nsupdate
from ddns import cli

REV = "2.0.192.in-addr.arpa"
REV6 = "8.b.d.0.1.0.0.2.ip6.arpa"
NS = "ns1.dyn.example.test"


def dig_x(inst: Instance, address: str) -> list[str]:
    """``dig -x ADDRESS`` against the instance's named."""
    require("dig")
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(inst.dns_port), "-x", address, "+short", "+time=5", "+tries=1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split())


def unchanged(inst: Instance, address: str, run) -> str:
    """RUN()'s nsupdate failure; no commit, and BIND serves what it did."""
    commits, served = inst.commit_count(), dig_x(inst, address)
    failure = run()
    assert inst.commit_count() == commits and dig_x(inst, address) == served
    return failure


def test_reverse_zones_are_served_and_need_a_name_server(running):
    inst = running.instance
    refused = inst.cli("domain", "add", REV)
    assert refused.code == cli.Exit.ERROR and "needs its name server" in refused.err
    assert REV not in inst.cli("domain", "list").out
    for zone in (REV, REV6):
        r = inst.cli("domain", "add", zone, "--ns", NS)
        assert r.code == cli.Exit.OK, r.err
        assert inst.git("show", f"HEAD:{zone}/static.zone").count(" A ") == 0  # no glue in a reverse zone
        [soa] = [line for line in inst.git("show", f"HEAD:{zone}/{zone}.zone").splitlines() if " SOA " in line]
        assert f" SOA {NS}. hostmaster.{zone}. " in soa
    from conftest import query
    assert query(inst.dns_port, REV, "NS") == [NS + "."] and query(inst.dns_port, REV6, "NS") == [NS + "."]
    refused = inst.cli("host", "add", f"7.{REV}", "--owner", "root")
    assert refused.code == cli.Exit.ERROR and "reverse zone" in refused.err


@pytest.mark.parametrize("zone", ["256.0.192.in-addr.arpa", "1.2.3.4.5.in-addr.arpa", "02.0.192.in-addr.arpa",
                                  "ab.ip6.arpa", "g.8.b.d.0.1.0.0.2.ip6.arpa", "1-2.in-addr.arpa", "x.in-addr.arpa"])
def test_malformed_reverse_zones_are_refused(instance, zone):
    r = instance.cli("domain", "add", zone, "--ns", NS)
    assert r.code == cli.Exit.ERROR and r.err.startswith("error: ")
    assert zone not in instance.git("ls-tree", "--name-only", "HEAD")


def test_a_host_key_sets_only_the_ptr_records_of_its_own_name(instance, serve):
    vm1, vm2 = f"vm1.{instance.zone}", f"vm2.{instance.zone}"
    instance.add_host(vm1)
    instance.add_host(vm2)
    key1, key2 = make_key(instance, vm1), make_key(instance, vm2)
    serve()
    assert instance.cli("domain", "add", REV, "--ns", NS).code == 0
    assert instance.cli("domain", "add", REV6, "--nameserver", NS).code == 0  # --ns's long name
    name = f"7.{REV}"

    assert failed_with(nsupdate(instance, [f"update add {name} 300 PTR {vm1}."], key1.k, zone=REV)) == ""
    assert dig_x(instance, "192.0.2.7") == [vm1 + "."]
    assert "by key:" + vm1 in instance.cli("history", name).out  # the audit names the key
    # pointing elsewhere, any other type, deleting another's PTR: REFUSED, nothing changes
    for lines in ([f"update add {name} 300 PTR {vm2}."], [f"update add {name} 300 PTR vm1.example.net."],
                  [f"update add {name} 300 TXT \"x\""], [f"update delete {name} PTR {vm2}."],
                  [f"update add {name} 300 PTR {vm1}.", f"update add 8.{REV} 300 PTR {vm2}."]):
        assert unchanged(instance, "192.0.2.7", lambda: failed_with(nsupdate(instance, lines, key1.k, zone=REV))) \
            == "REFUSED", lines
    # two hosts share an address: deleting "the PTR RRset" deletes only one's own record
    assert failed_with(nsupdate(instance, [f"update add {name} 300 PTR {vm2}."], key2.k, zone=REV)) == ""
    assert dig_x(instance, "192.0.2.7") == sorted([vm1 + ".", vm2 + "."])
    assert failed_with(nsupdate(instance, [f"update delete {name} PTR"], key1.k, zone=REV)) == ""
    assert dig_x(instance, "192.0.2.7") == [vm2 + "."]
    assert failed_with(nsupdate(instance, [f"update delete {name}"], key2.k, zone=REV)) == ""
    assert dig_x(instance, "192.0.2.7") == []
    # IPv6 likewise
    v6 = "2001:db8::1"
    v6name = "1." + "0." * 23 + REV6
    assert failed_with(nsupdate(instance, [f"update add {v6name} 300 PTR {vm1}."], key1.k, zone=REV6)) == ""
    assert dig_x(instance, v6) == [vm1 + "."]
    assert unchanged(instance, v6, lambda: failed_with(
        nsupdate(instance, [f"update add {v6name} 300 PTR {vm2}."], key1.k, zone=REV6))) == "REFUSED"
    # a target is one spelling: written in capitals, it is stored lower-case, and deleting the RRset finds it
    v6other = "2." + "0." * 23 + REV6
    assert failed_with(nsupdate(instance, [f"update add {v6other} 300 PTR {vm1.upper()}."], key1.k, zone=REV6)) == ""
    assert f"{v6other[: -len(REV6) - 1]} 300 PTR {vm1}.\n" in instance.records(REV6)
    assert failed_with(nsupdate(instance, [f"update delete {v6other} PTR"], key1.k, zone=REV6)) == ""
    assert dig_x(instance, "2001:db8::2") == []
