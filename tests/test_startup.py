"""Start-up with many hosts: the fast paths of the checks every loaded record passes, and the order
``ddns serve`` starts in (named beside the zone load, reconcile once named serves what it loaded).

The fast paths must give exactly the verdicts of the full checks: each test
compares them with a way through the full checks (an IPv4-mapped address,
dnspython itself, the label-by-label rules) over the edge cases.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from conftest import Instance, ServeProcess, http, wait_until
from ddns import bind, errors, records, zones
from ddns.auth import hash_secret, new_secret
from ddns.gitrepo import ZonesRepo
from ddns.model import Actor, Operation, Outcome, Update
from ddns.publishing.bindtarget import PublishTarget
from ddns.publishing.memtarget import MemoryNamed
from ddns.publishing.publisher import Publisher
from ddns.service import Service
from ddns.wiring import ZONE_TEMPLATES
from ddns.store import Conflict, Store
from ddns.validate import AddressPolicy, InvalidAddress, normalize_name, parse_address

ZONE = "dyn.example.test"
POLICIES = [AddressPolicy(p, lo) for p in (True, False) for lo in (True, False)]


def ipv4_cases() -> list[str]:
    """Per first octet its edges and an inner address, plus the special ranges' own edges."""
    cases = []
    for first in range(256):
        cases += [f"{first}.0.0.0", f"{first}.0.0.1", f"{first}.1.2.3", f"{first}.254.255.255", f"{first}.255.255.255"]
    cases += ["169.254.0.1", "169.253.255.255", "169.255.0.0", "127.0.0.1", "10.0.0.1", "172.16.0.1", "100.64.0.1",
              "192.0.2.1", "198.51.100.7", "203.0.113.9", "192.168.1.1", "255.255.255.255", "0.0.0.0"]
    return cases


def verdict(text: str, policy: AddressPolicy) -> str:
    try:
        return f"ok {parse_address(text, policy)}"
    except InvalidAddress as exc:
        return f"refused {exc}"


@pytest.mark.parametrize("policy", POLICIES)
def test_a_dotted_quad_gets_the_verdict_of_the_full_checks(policy):
    # "::ffff:a.b.c.d" is parsed by ipaddress and mapped to the same IPv4 address: every check runs on it
    for text in ipv4_cases():
        assert verdict(text, policy) == verdict(f"::ffff:{text}", policy), text


def test_what_is_no_canonical_dotted_quad_is_refused_as_before():
    for text in ["010.1.2.3", "1.2.3", "1.2.3.4.5", "256.1.2.3", " 1.2.3.4", "1.2.3.4\n", "1.2.3.04", "0x7f.0.0.1", "", "1.2.3.4/32"]:
        assert verdict(text, AddressPolicy(True, True)).startswith("refused"), text


def dnspython_a(text: str) -> str:
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, text).to_text()
    except Exception as exc:  # dnspython's own refusal, whatever kind
        return f"refused {type(exc).__name__}"


def ours_a(text: str) -> str:
    try:
        return records.canonical("A", text)
    except errors.Invalid:
        return "refused"


def test_canonical_a_text_is_dnspythons():
    for text in ipv4_cases() + ["010.1.2.3", "1.2.3", "256.1.2.3", "1.2.3.04"]:
        expected = dnspython_a(text)
        assert ours_a(text) == ("refused" if expected.startswith("refused") else expected), text


def label_by_label(name: str) -> str:
    """record_name's rules without its fast path (names without underscores)."""
    text = name[:-1] if name.endswith(".") else name
    if not text or len(text) > 253:
        raise errors.Invalid("too long")
    return ".".join(normalize_name(part) for part in text.split("."))


@pytest.mark.parametrize("name", [
    "h000001", "a", "a-b", "a--b", "ab--cd", "-a", "a-", "A", "Host.Example", "a" * 63, "a" * 64, "x." * 126 + "x",
    "x." * 126 + "xy", "xn--fa-hia", "xn--zz", "a.xn--fa-hia", "a.xn--zz", "xn-a", "b.", "a..b", "a b", "é",
    "1.2.3.4", "0", "a.b.c.d.e"])
def test_record_names_get_the_label_checks_verdict(name):
    try:
        expected = label_by_label(name)
    except errors.Invalid:
        with pytest.raises(errors.Invalid):
            records.record_name(name)
        return
    assert records.record_name(name) == expected


def test_many_hosts_are_added_in_one_transaction_or_none(instance: Instance):
    store = Store(instance.config.path("store.path"))
    owner = store.add_user("bulk", None, False, 1.0).id
    hashed = hash_secret(new_secret(), 4)
    assert store.add_hosts([(f"h{i}.{ZONE}", ZONE, owner, hashed) for i in range(50)], 2.0, "bulk") == 50
    with pytest.raises(Conflict):
        store.add_hosts([(f"new{i}.{ZONE}", ZONE, owner, hashed) for i in range(5)] + [(f"h3.{ZONE}", ZONE, owner, hashed)], 3.0)
    assert store.count("hosts") == 50 and store.find_host(f"new0.{ZONE}") is None
    assert store.host(f"h49.{ZONE}").comment == "bulk"


class StartingNamed(MemoryNamed):
    """A named started just now: for its first LOADING queries it answers none and refuses reloads
    (it is loading the zone files), then it serves what the files say."""

    def __init__(self, root: Path, loading: int):
        super().__init__(root)
        self.loading = loading

    def served_serial(self, zone: str, timeout: float) -> int | None:
        with self._lock:
            if self.loading > 0:
                self.loading -= 1
                if self.loading == 0:
                    self.served[zone] = zones.serial_of((self.root / zone / zones.rendered_file(zone)).read_text())
                return None
        return super().served_serial(zone, timeout)

    def reload(self, zone: str, timeout: float) -> None:
        if self.loading > 0:
            raise bind.BindError(f"rndc reload {zone}: zone load in progress")
        super().reload(zone, timeout)


def test_start_waits_for_named_to_serve_what_it_loaded_before_reconciling(instance: Instance):
    cfg = instance.config
    named = StartingNamed(instance.repo, loading=4)
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES],
                          PublishTarget(rndc=None, control=named, verify_timeout=2.0))
    publisher.load()
    service = Service(cfg, Store(cfg.path("store.path")), publisher)
    try:
        status = service.start()
    finally:
        service.stop()
    # without the wait the reconcile found the zone unserved, its reload refused: "unserved" until a retry
    assert status == {ZONE: "served"} and named.loading == 0
    assert ZONE not in publisher.named.unserved


def test_serve_with_many_hosts_answers_nochg_and_good_at_once(instance: Instance, tmp_path: Path):
    """The real start: named beside the zone load, in the process's main thread, 300 hosts."""
    service = instance.open_service()
    service.publisher.named.settings.rndc = None  # named is not running yet: `ddns serve` starts it
    owner = service.accounts.add_user("bulk").id
    secret = new_secret()
    fqdns = [f"h{i:03d}.{ZONE}" for i in range(300)]
    service.store.add_hosts([(f, ZONE, owner, hash_secret(secret, 4)) for f in fqdns[:1]]
                            + [(f, ZONE, owner, hash_secret(new_secret(), 4)) for f in fqdns[1:]], 1.0)
    actor = Actor("test", interface="test")
    results = service.publish([Update(ZONE, tuple(Operation.replace(f, "A", [f"10.0.{i // 250}.{i % 250 + 1}"])),
                                      actor=actor) for i, f in enumerate(fqdns)])
    assert {r.outcome for r in results} == {Outcome.PUBLISHED}
    proc = ServeProcess(instance, tmp_path / "serve.log")
    proc.start()
    try:
        wait_until(lambda: "serving on" in proc.log_path.read_text(), 30, what="serve's ready line")
        assert f"zone {ZONE}: served" in proc.log_path.read_text()
        def update(fqdn: str, address: str) -> str:
            return http(f"{instance.url}/nic/update?hostname={fqdn}&myip={address}", auth=(fqdn, secret))[1].strip()

        assert update(fqdns[0], "10.0.0.1") == "nochg 10.0.0.1"
        assert instance.dig(fqdns[299]) == ["10.0.1.50"]
        assert update(fqdns[0], "10.9.9.9") == "good 10.9.9.9"
        assert instance.dig(fqdns[0]) == ["10.9.9.9"]
        assert update(fqdns[1], "10.9.9.8") == "badauth"  # another host's secret
        assert instance.dig(fqdns[1]) == ["10.0.0.2"]
    finally:
        proc.stop()
    assert proc.proc.returncode == 0


def test_serve_imports_no_openid_client_unless_configured():
    code = "import sys, ddns.cli, ddns.web, ddns.listener; print('keycloak' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent)).stdout
    assert out.strip() == "False"
