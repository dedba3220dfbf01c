"""Serving from secondaries, end to end: ddns's named is the hidden primary of a second, real named
configured only from `ddns secondary config` (README: Secondaries).

The secondary learns the zones from the catalog zone and follows every change by NOTIFY and
IXFR: an update answered good is served by it within a second, a zone added with the CLI or
removed by a push comes and goes with no edit of its config, and nobody transfers a zone
without the transfer key. Nothing is mocked.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from ddns import bind, catalog
from ddns.service import default_zone_files

from conftest import Instance, free_port, pushed_upstream, require, wait_until
from test_gitops_hooks import admin_clone, assert_accepted, assert_refused, commit, git, push
from testkit.secondary import SecondaryNamed

CATALOG = "catalog.ddns.invalid"
FQDN = "web.dyn.example.test"


class Secondary(SecondaryNamed):
    """The instance's secondary on a loopback high port, its named.conf printed by `ddns secondary config`."""

    def __init__(self, instance: Instance, directory: Path, port: int):
        require("named", "dig")
        super().__init__(directory, port)
        printed = instance.cli("secondary", "config", "--listen", "127.0.0.1", "--port", str(self.port),
                               "--dir", str(self.dir))
        assert printed.code == 0, printed.err
        self.conf.write_text(printed.out)

    def records(self, name: str, rtype: str = "A") -> list[str] | None:
        return bind.served_records(name, rtype, "127.0.0.1", self.port, timeout=0.5)


def hidden_primary(instance: Instance, secondary_port: int) -> None:
    """The instance's config names the catalog zone and notifies the secondary (as an operator writes it)."""
    text = instance.config_path.read_text()
    settings = f'[bind]\ncatalog_zone = "{CATALOG}"\nalso_notify = ["127.0.0.1 port {secondary_port}"]\n'
    instance.config_path.write_text(text.replace("[bind]\n", settings, 1))


@pytest.fixture
def secondary(instance: Instance, tmp_path: Path):
    """The secondary (not started yet) of the instance, which notifies it."""
    port = free_port()
    hidden_primary(instance, port)
    made = Secondary(instance, tmp_path / "secondary", port)
    yield made
    made.stop()


def a_larger_zone(instance: Instance, count: int = 40) -> None:
    """Static records, committed as an admin would, so a one-record change is smaller than the zone (IXFR, not AXFR)."""
    static = instance.repo / instance.zone / "static.zone"
    static.write_text(static.read_text() + "".join(f"static{n} IN A 192.0.2.{n}\n" for n in range(count)))
    instance.git("commit", "-qam", "more static records")


def incremental_transfers(instance: Instance) -> int:
    """The real IXFRs (not AXFR-style ones) of the instance's zone the hidden primary gave."""
    log = (instance.dir / "bind" / "named.log").read_text()
    return len(re.findall(rf"transfer of '{re.escape(instance.zone)}/IN': IXFR started", log))


def serves_zone(sec: Secondary, zone: str, serial: int | None = None, timeout: float = 15.0) -> int:
    def check():
        got = sec.serial(zone)
        return got if got is not None and (serial is None or got >= serial) else None
    return wait_until(check, timeout, 0.02, f"the secondary serving {zone}" + (f" at {serial}" if serial else ""))


def served_within(sec: Secondary, name: str, wanted: list[str], seconds: float) -> float:
    """Poll the secondary for NAME's A records until they are WANTED; how long it took (fails past SECONDS)."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        if sec.records(name) == wanted:
            return time.monotonic() - start
        assert time.monotonic() < deadline, f"the secondary did not serve {name} {wanted} within {seconds}s:\n" \
                                            f"{sec.log()[-3000:]}"
        time.sleep(0.002)


def test_an_update_answered_good_is_served_by_the_secondary_within_a_second(instance, serve, secondary):
    a_larger_zone(instance)
    secret = instance.add_host(FQDN)
    running = serve()
    secondary.start()
    serves_zone(secondary, CATALOG)
    serves_zone(secondary, instance.zone, running.service.publisher.zones[instance.zone].serial)
    took = []
    for n in range(1, 6):
        assert running.update(FQDN, secret, f"myip=192.0.2.{n}") == (200, f"good 192.0.2.{n}\n")
        took.append(served_within(secondary, FQDN, [f"192.0.2.{n}"], 1.0))
    assert max(took) < 1.0, took
    assert secondary.serial(instance.zone) == instance.served_serial()
    assert re.search(rf"transfer of '{re.escape(instance.zone)}/IN' from 127\.0\.0\.1#{instance.dns_port}: "
                     r"connected using .* TSIG ddns-transfer", secondary.log())
    assert incremental_transfers(instance) >= 4  # what changed, not the zone


def test_full_loads_reach_the_secondary_as_incremental_transfers(instance, serve, secondary):
    """bind.publish = reload: named re-reads the whole file, and ixfr-from-differences still gives IXFR."""
    a_larger_zone(instance)
    secret = instance.add_host(FQDN)
    running = serve({"bind.publish": "reload"})
    assert "ixfr-from-differences yes;" in (instance.dir / "bind" / "named.conf").read_text()
    secondary.start()
    serves_zone(secondary, instance.zone, running.service.publisher.zones[instance.zone].serial)
    for n in (7, 8):
        assert running.update(FQDN, secret, f"myip=198.51.100.{n}") == (200, f"good 198.51.100.{n}\n")
        served_within(secondary, FQDN, [f"198.51.100.{n}"], 1.0)
    assert incremental_transfers(instance) >= 2, (instance.dir / "bind" / "named.log").read_text()[-3000:]


def test_zones_added_with_the_cli_or_the_portal_are_served_by_the_secondary_and_a_removed_one_goes(
        instance, serve, secondary, tmp_path):
    running = serve()
    secondary.start()
    serves_zone(secondary, instance.zone)
    config_before = secondary.conf.read_text()

    added = instance.cli("domain", "add", "second.example.test")
    assert added.code == 0, added.err
    serves_zone(secondary, "second.example.test")
    head = instance.git("show", f"HEAD:{CATALOG}/{CATALOG}.zone")
    assert catalog.members(head) == sorted([instance.zone, "second.example.test"])
    assert instance.git("log", "-1", "--format=%s") .startswith(f"Catalog {CATALOG}")
    assert f'zone "{CATALOG}"' in (instance.dir / "bind" / "zones.conf").read_text()
    # the portal's way: the running service's own publisher (Service.add_domain, as portal.py calls it)
    running.service.add_domain("third.example.test", actor="portal:admin")
    serves_zone(secondary, "third.example.test")

    # an admin removes the zone by a push (its zone.toml and static.zone): post-receive publishes it
    pushed_upstream(instance)
    clone = admin_clone(instance, tmp_path)
    git(clone, "rm", "-q", "second.example.test/zone.toml", "second.example.test/static.zone")
    commit(clone, "Retire second.example.test")
    assert_accepted(push(clone, "ddns-force"))
    wait_until(lambda: secondary.records("second.example.test", "SOA") is None, 15, 0.02,
               "the secondary dropping second.example.test")
    assert secondary.serial(instance.zone) is not None  # the other zone stays
    assert "second.example.test" not in catalog.members(instance.git("show", f"HEAD:{CATALOG}/{CATALOG}.zone"))
    assert secondary.conf.read_text() == config_before
    assert running.service.publisher.catalog.text() == (instance.repo / CATALOG / f"{CATALOG}.zone").read_text()


def test_a_zone_a_push_adds_reaches_the_secondary_and_pushes_may_not_touch_the_catalog(instance, serve, secondary,
                                                                                   tmp_path):
    serve()
    secondary.start()
    serves_zone(secondary, CATALOG)
    pushed_upstream(instance)
    clone = admin_clone(instance, tmp_path)
    for path in (f"{CATALOG}/{CATALOG}.zone", f"{CATALOG}/zone.toml"):
        target = clone / path
        target.write_text((target.read_text() if target.exists() else "") + "; an admin's edit\n")
        commit(clone, f"edit {path}")
        out = assert_refused(push(clone, "ddns-force"))
        assert f"{path}: the catalog zone {CATALOG} is written by the service only" in out
        git(clone, "reset", "-q", "--hard", "HEAD~1")
    settings, static = default_zone_files("pushed.example.test", [], "127.0.0.1")
    (clone / "pushed.example.test").mkdir()
    (clone / "pushed.example.test" / "zone.toml").write_text(settings)
    (clone / "pushed.example.test" / "static.zone").write_text(static)
    commit(clone, "Add pushed.example.test")
    assert_accepted(push(clone))
    serves_zone(secondary, "pushed.example.test")


def test_no_transfer_without_the_key(instance, serve, secondary):
    serve()
    zone = instance.zone

    def dig_axfr(*key: str) -> str:
        proc = subprocess.run(["dig", "@127.0.0.1", "-p", str(instance.dns_port), *key, zone, "AXFR", "+nocmd"],
                              capture_output=True, text=True, timeout=30)
        return proc.stdout + proc.stderr

    refused = dig_axfr()
    assert "Transfer failed" in refused and "SOA" not in refused.replace("; Transfer failed.", "")
    wrong = instance.dir / "wrong.key"
    bind.create_publisher_key(wrong, bind.TRANSFER_KEY_NAME)  # the right name, another secret
    assert "SOA" not in dig_axfr("-k", str(wrong)).replace("Transfer failed", "")
    for key in ("transfer.key", "publisher.key"):
        assert f"{zone}.\t" in dig_axfr("-k", str(instance.dir / "bind" / key)) and "Transfer failed" not in \
            dig_axfr("-k", str(instance.dir / "bind" / key))
    secondary.start()
    serves_zone(secondary, zone)
    from_secondary = subprocess.run(["dig", "@127.0.0.1", "-p", str(secondary.port), "-k",
                                     str(instance.dir / "bind" / "transfer.key"), zone, "AXFR"],
                                    capture_output=True, text=True, timeout=30).stdout
    assert "Transfer failed" in from_secondary  # a secondary gives no transfers at all
    assert "secret" not in (instance.dir / "bind" / "named.log").read_text()
