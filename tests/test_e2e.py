"""The spine, end to end over real sockets: curl -> /nic/update -> Git -> BIND."""
import subprocess

from ddns.gitrepo import parse_trailers


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
    committed = inst.git("show", "HEAD:dyn.example.test/dyn.example.test.zone")
    serial = inst.served_serial()
    assert f"( {serial} " in committed
    assert "web 60 IN A 198.51.100.9" in committed
    assert inst.git("show", "HEAD:dyn.example.test/dynamic.records") == "web A 198.51.100.9\n"


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
