"""The spine, end to end over real sockets: curl -> /nic/update -> Git -> BIND."""
import subprocess

from ddns import gitops, shards, zones
from ddns.gitrepo import parse_trailers

from conftest import wait_until


def curl(url: str, *args: str) -> str:
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args, url], check=True, capture_output=True,
                          text=True).stdout


def test_curl_update_is_committed_and_served(running):
    inst = running.instance
    secret = inst.add_host("myvm.dyn.example.test")
    before = inst.commit_count()

    body = curl(f"http://myvm.dyn.example.test:{secret}@127.0.0.1:{inst.http_port}/nic/update?myip=192.0.2.44")
    assert body == "good 192.0.2.44\n"
    assert inst.dig("myvm.dyn.example.test", "A") == ["192.0.2.44"]
    assert inst.commit_count() == before + 1
    records = parse_trailers(inst.git("log", "-1", "--format=%B"))
    assert [(r.host, r.type, r.old, r.new, r.interface, r.client) for r in records] == [
        ("myvm.dyn.example.test", "A", None, "192.0.2.44", "dyndns2", "127.0.0.1")]
    assert records[0].agent.startswith("curl/")

    body = curl(f"http://127.0.0.1:{inst.http_port}/nic/update?myip=2001:db8::44", "-u", f"myvm.dyn.example.test:{secret}")
    assert body == "good 2001:db8::44\n"
    assert inst.dig("myvm.dyn.example.test", "AAAA") == ["2001:db8::44"]
    assert inst.dig("myvm.dyn.example.test", "A") == ["192.0.2.44"]  # the other family stays

    body = curl(f"http://127.0.0.1:{inst.http_port}/nic/update?myip=192.0.2.44", "-u", f"myvm.dyn.example.test:{secret}")
    assert body == "nochg 192.0.2.44\n"
    assert inst.commit_count() == before + 2

    history = inst.cli("history", "myvm.dyn.example.test", "--json").json()
    assert [(h["type"], h["old"], h["new"]) for h in history] == [("AAAA", None, "2001:db8::44"), ("A", None, "192.0.2.44")]


def test_rendered_file_in_git_is_what_bind_serves(running):
    inst = running.instance
    secret = inst.add_host("web.dyn.example.test")
    status, body = running.update("web.dyn.example.test", secret, "myip=198.51.100.9")
    assert (status, body) == (200, "good 198.51.100.9\n")
    head = inst.git("show", "HEAD:dyn.example.test/dyn.example.test.zone")
    committed = inst.cli("show", "dyn.example.test").out  # the head with its shards assembled
    serial = inst.served_serial()
    assert f"( {serial} " in head and f"( {serial} " in committed
    assert "web A 198.51.100.9" not in head and "web A 198.51.100.9\n" in committed
    assert gitops.zone_records(committed, "dyn.example.test")[("web", "A")] == ("60 198.51.100.9",)
    assert inst.records("dyn.example.test") == "web A 198.51.100.9\n"


def axfr(inst, zone: str) -> str:
    """The zone as named serves it: a zone transfer with dig (one SOA), signed: named gives none unsigned."""
    proc = subprocess.run(["dig", "@127.0.0.1", "-p", str(inst.dns_port), "-k", str(inst.dir / "bind" / "transfer.key"),
                           zone, "AXFR", "+onesoa", "+nocmd",
                           "+nostats", "+nocomments"], capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout


def test_what_bind_serves_is_the_assembled_commit(running):
    """After updates that add, change and delete records in several shards, an AXFR of named equals the
    zone assembled from HEAD's head and shards, SOA serial included."""
    inst = running.instance
    zone = "dyn.example.test"
    secrets = {label: inst.add_host(f"{label}.{zone}") for label in ("s1", "s2", "s3", "s4")}
    for n, (label, secret) in enumerate(secrets.items()):
        assert running.update(f"{label}.{zone}", secret, f"myip=192.0.2.{n + 1}") == (200, f"good 192.0.2.{n + 1}\n")
    assert running.update(f"s2.{zone}", secrets["s2"], "myip=2001:db8::2") == (200, "good 2001:db8::2\n")
    assert running.update(f"s1.{zone}", secrets["s1"], "myip=198.51.100.1") == (200, "good 198.51.100.1\n")
    assert inst.cli("host", "delete", f"s3.{zone}").code in (0, 3)
    wait_until(lambda: inst.served_serial() == zones.serial_of(inst.cli("show", zone).out), 10,
               what="named serving HEAD's serial")
    committed = inst.cli("show", zone).out
    assert "$INCLUDE" not in committed and len(shards.included(inst.git("show", f"HEAD:{zone}/{zone}.zone"))) >= 2
    served = axfr(inst, zone)
    assert gitops.zone_records(served, zone) == gitops.zone_records(committed, zone)
    soa = [line.split() for line in served.splitlines() if "\tSOA\t" in line or " SOA " in line]
    assert int(soa[0][6]) == zones.serial_of(committed)
    assert gitops.zone_records(committed, zone)[("s1", "A")] == ("60 198.51.100.1",)
    assert ("s3", "A") not in gitops.zone_records(served, zone)


def test_last_update_metadata_is_written_in_the_background(running):
    import time

    inst = running.instance
    secret = inst.add_host("meta.dyn.example.test")
    assert running.update("meta.dyn.example.test", secret, "myip=192.0.2.90",
                          **{"User-Agent": "router/1.0"}) == (200, "good 192.0.2.90\n")
    deadline = time.monotonic() + 5
    while inst.cli("host", "list", "--json").json()[0]["last_client"] is None:  # another connection, as another process
        assert time.monotonic() < deadline, "last-update metadata never reached the database"
        time.sleep(0.1)
    host = running.service.store.host("meta.dyn.example.test")
    assert (host.last_client, host.last_agent, host.last_tls) == ("127.0.0.1", "router/1.0", False)
