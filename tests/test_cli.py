"""The ddns command against a real instance: users, domains, hosts, history."""
from ddns import cli


def test_user_add_list_and_duplicates(instance):
    r = instance.cli("user", "add", "alice", "--password-stdin", "--json", stdin="s3cret\n")
    assert r.code == cli.Exit.OK and r.json() == {"name": "alice", "admin": False}
    r = instance.cli("user", "add", "root", "--admin", "--password-stdin", stdin="pw\n")
    assert r.code == cli.Exit.OK
    assert instance.cli("user", "list", "--json").json() == [{"name": "alice", "admin": False},
                                                              {"name": "root", "admin": True}]
    r = instance.cli("user", "add", "alice", "--password-stdin", stdin="x\n")
    assert r.code == cli.Exit.ERROR and "exists" in r.err
    r = instance.cli("user", "add", "bad name;", "--password-stdin", stdin="x\n")
    assert r.code == cli.Exit.ERROR and "user names" in r.err


def test_host_add_refuses_bad_reserved_and_taken_names(instance):
    instance.add_user("alice")
    before = instance.commit_count()
    for name, message in [("www.dyn.example.test", "reserved"), ("ns1.dyn.example.test", "reserved"),
                          ("a.b.dyn.example.test", "only one label"), ("x.example.org", "not in a domain"),
                          ("*.dyn.example.test", "invalid label"), ("dyn.example.test", "not in a domain")]:
        r = instance.cli("host", "add", name, "--owner", "alice")
        assert r.code == cli.Exit.ERROR, name
        assert message in r.err, (name, r.err)
    r = instance.cli("host", "add", "vm1.dyn.example.test", "--owner", "nobody")
    assert r.code == cli.Exit.ERROR and "no user" in r.err
    r = instance.cli("host", "add", "VM1.Dyn.Example.Test.", "--owner", "alice", "--json")
    assert r.code == cli.Exit.OK
    assert r.json()["fqdn"] == "vm1.dyn.example.test" and len(r.json()["secret"]) >= 32
    r = instance.cli("host", "add", "vm1.dyn.example.test", "--owner", "alice")
    assert r.code == cli.Exit.ERROR and "taken" in r.err
    assert instance.commit_count() == before  # registering a host is not a DNS change


def test_host_set_list_delete_and_history(running):
    inst = running.instance
    inst.add_host("vm1.dyn.example.test")
    r = inst.cli("host", "set", "vm1.dyn.example.test", "203.0.113.5")
    assert r.code == cli.Exit.OK, r.err
    r = inst.cli("host", "set", "vm1.dyn.example.test", "2001:db8::5")
    assert r.code == cli.Exit.OK, r.err
    assert inst.dig("vm1.dyn.example.test", "A") == ["203.0.113.5"]
    assert inst.dig("vm1.dyn.example.test", "AAAA") == ["2001:db8::5"]
    hosts = inst.cli("host", "list", "--json").json()
    assert [(h["fqdn"], h["ipv4"], h["ipv6"], h["owner"]) for h in hosts] == [
        ("vm1.dyn.example.test", "203.0.113.5", "2001:db8::5", "alice")]

    before = inst.commit_count()
    r = inst.cli("host", "set", "vm1.dyn.example.test", "127.0.0.1")
    assert r.code == cli.Exit.ERROR and "loopback" in r.err
    r = inst.cli("host", "set", "vm1.dyn.example.test", "203.0.113.5\n$INCLUDE /etc/passwd")
    assert r.code == cli.Exit.ERROR
    assert inst.commit_count() == before

    r = inst.cli("host", "delete", "vm1.dyn.example.test")
    assert r.code == cli.Exit.OK, r.err
    assert inst.dig("vm1.dyn.example.test", "A") == []
    assert inst.dig("vm1.dyn.example.test", "AAAA") == []
    assert inst.cli("host", "list", "--json").json() == []
    history = inst.cli("history", "vm1.dyn.example.test", "--json").json()
    assert [(h["type"], h["old"], h["new"]) for h in history] == [
        ("A", "203.0.113.5", None), ("AAAA", "2001:db8::5", None),
        ("AAAA", None, "2001:db8::5"), ("A", None, "203.0.113.5")]
    assert {h["interface"] for h in history} == {"cli"}
    assert all(h["actor"].startswith("cli") for h in history)
    r = inst.cli("host", "delete", "vm1.dyn.example.test")
    assert r.code == cli.Exit.ERROR and "no host" in r.err


def test_domain_add_serves_a_new_zone(running):
    inst = running.instance
    r = inst.cli("domain", "add", "home.example.test", "--json")
    assert r.code == cli.Exit.OK, r.err
    assert inst.cli("domain", "list", "--json").json() == [{"zone": "dyn.example.test", "hosts": 0},
                                                            {"zone": "home.example.test", "hosts": 0}]
    from conftest import query
    assert len(query(inst.dns_port, "home.example.test", "SOA")) == 1
    secret = inst.add_host("nas.home.example.test")
    assert running.update("nas.home.example.test", secret, "myip=198.51.100.20") == (200, "good 198.51.100.20\n")
    assert inst.dig("nas.home.example.test") == ["198.51.100.20"]
    assert inst.cli("domain", "list", "--json").json()[1] == {"zone": "home.example.test", "hosts": 1}
    assert inst.cli("domain", "add", "home.example.test").code == cli.Exit.ERROR
    assert inst.cli("domain", "add", "bad zone").code == cli.Exit.ERROR


def test_config_errors_are_usage_errors(instance):
    instance.config_path.write_text(instance.config_path.read_text() + "\n[extra]\nbogus = 1\n")
    r = instance.cli("host", "list")
    assert r.code == cli.Exit.USAGE and "extra.bogus" in r.err


def test_config_command_documents_every_setting(instance):
    from ddns.config import SETTINGS
    out = instance.cli("config").out
    for setting in SETTINGS:
        assert setting.env_name in out
