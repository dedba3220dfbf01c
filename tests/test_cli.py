"""The ddns command against a real instance: users, domains, hosts, history."""
import gc
import io

import pytest

from ddns import cli, errors


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


@pytest.mark.parametrize("kind, args, message", [
    (errors.Kind.INVALID, ("host", "add", "a..b.dyn.example.test", "--owner", "alice"), "empty label"),
    (errors.Kind.INVALID, ("domain", "add", "team.example.test", "--ns", "ns;1.example.net"), "name server"),
    (errors.Kind.NOT_FOUND, ("host", "secret", "nope.dyn.example.test"), "no host nope.dyn.example.test"),
    (errors.Kind.NOT_FOUND, ("user", "token", "nobody"), "no user nobody"),
    (errors.Kind.CONFLICT, ("domain", "add", "dyn.example.test"), "domain dyn.example.test exists"),
    (errors.Kind.CONFLICT, ("user", "add", "alice"), "user alice exists"),
    (errors.Kind.INVALID, ("check", "no-such-revision", "--repo", "zones"), "git rev-parse"),
], ids=["bad-name", "bad-ns", "no-host", "no-user", "domain-exists", "user-exists", "bad-revision"])
def test_each_refusal_exits_as_the_table_says_and_changes_nothing(instance, kind, args, message):
    instance.add_user("alice")
    before = instance.commit_count(), instance.cli("domain", "list", "--json").out
    args = tuple(str(instance.repo) if a == "zones" else a for a in args)
    r = instance.cli(*args)
    assert r.code == errors.CODES[kind].exit and r.code != cli.Exit.OK
    assert r.err.startswith("error: ") and message in r.err and "Traceback" not in r.err, r.err
    assert (instance.commit_count(), instance.cli("domain", "list", "--json").out) == before


def test_bind_unavailable_exits_as_the_table_says_and_adds_no_zone(instance):
    before = instance.commit_count()
    out, err = io.StringIO(), io.StringIO()
    env = cli.Env(stdout=out, stderr=err, stdin=io.StringIO(""), cwd=instance.dir,
                  environ={"DDNS_BIND_CHECKZONE": str(instance.dir / "no-such-named-checkzone")})
    code = cli.main(["-c", str(instance.config_path), "domain", "add", "team.example.test"], env)
    assert code == errors.CODES[errors.Kind.UNAVAILABLE].exit and "named-checkzone" in err.getvalue(), err.getvalue()
    assert instance.commit_count() == before
    assert [d["zone"] for d in instance.cli("domain", "list", "--json").json()] == ["dyn.example.test"]


def test_a_stopped_serve_leaves_nothing_frozen(serve):
    """The serve takes what it loaded out of the collector's walks, and gives it back at its stop:
    the tests run many serves in one process, whose stopped services must be freed."""
    running = serve()
    assert gc.get_freeze_count() > 0
    running.stop.set()
    running.thread.join(30)
    assert not running.thread.is_alive()
    assert gc.get_freeze_count() == 0
