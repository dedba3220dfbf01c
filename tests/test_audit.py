"""Who changed what, from where: ``ddns history`` and ``ddns audit`` read it back from
the commits, and plain git (log --grep, blame) tells the same story.

Real service, real named, real HTTP over loopback; the client addresses recorded
are documentation addresses passed by a trusted proxy (X-Forwarded-For).
"""
from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timezone

from conftest import Instance, pushed_upstream, start_serving

ZONE = "dyn.example.test"
OTHER = "other.example.test"
H1, H2, B1 = f"h1.{ZONE}", f"h2.{ZONE}", f"b1.{OTHER}"
SINCE_EVER = "2000-01-01"

ROW = ("host", "type", "old", "new", "actor", "client", "interface")


def rows(result, keys=ROW) -> list[tuple]:
    assert result.code == 0, result.err
    return [tuple(r[k] for k in keys) for r in result.json()]


def audit(inst: Instance, *args: str) -> list[tuple]:
    return rows(inst.cli("audit", *args, "--json"))


def history(inst: Instance, fqdn: str) -> list[tuple]:
    return rows(inst.cli("history", fqdn, "--json"), ROW[1:])


def bag(items) -> list:
    """ITEMS in a fixed order (None sorts too)."""
    return sorted(items, key=repr)


def git_now() -> str:
    """Now, in a form git's --since / --until read exactly."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S +0000")


def blame_authors(inst: Instance, zone: str) -> dict[str, str]:
    """Line of ZONE's dynamic records -> author of the commit that wrote it (git blame of each shard file)."""
    authors, author = {}, None
    for path in inst.git("ls-tree", "-r", "--name-only", "HEAD", "--", f"{zone}/dynamic/").split():
        for line in inst.git("blame", "--line-porcelain", "HEAD", "--", path).splitlines():
            if line.startswith("author "):
                author = line[len("author "):]
            elif line.startswith("\t"):
                authors[line[1:]] = author
    return authors


def test_history_of_a_host_from_its_updates(running):
    """The `running` fixture trusts no proxy: a forged X-Forwarded-For is not believed."""
    inst = running.instance
    secret = inst.add_host(H1)
    assert running.update(H1, secret, "myip=192.0.2.11") == (200, "good 192.0.2.11\n")
    assert running.update(H1, secret, "myip=192.0.2.11") == (200, "nochg 192.0.2.11\n")  # no commit
    assert running.update(H1, secret, "myip=192.0.2.12", **{"X-Forwarded-For": "203.0.113.99"}) == \
        (200, "good 192.0.2.12\n")
    assert running.update(H1, secret, "myip=2001:db8::11", **{"User-Agent": "router/2.0"}) == \
        (200, "good 2001:db8::11\n")
    r = inst.cli("host", "set", H1, "192.0.2.13")
    assert r.code == 0, r.err
    r = inst.cli("host", "delete", H1)
    assert r.code == 0, r.err

    entries = inst.cli("history", H1, "--json").json()
    got = [tuple(e[k] for k in ROW[1:]) for e in entries]
    actor = f"host:{H1}"
    # newest first; the deletion is one commit with both families
    assert got[2:] == [
        ("A", "192.0.2.12", "192.0.2.13", "cli:unknown", "", "cli"),
        ("AAAA", None, "2001:db8::11", actor, "127.0.0.1", "dyndns2"),
        ("A", "192.0.2.11", "192.0.2.12", actor, "127.0.0.1", "dyndns2"),  # the forged header is ignored
        ("A", None, "192.0.2.11", actor, "127.0.0.1", "dyndns2"),
    ]
    assert sorted(got[:2]) == [("A", "192.0.2.13", None, "cli:unknown", "", "cli"),
                               ("AAAA", "2001:db8::11", None, "cli:unknown", "", "cli")]
    assert entries[0]["commit"] == entries[1]["commit"]
    assert len({e["commit"] for e in entries}) == 5
    assert [e["agent"] for e in entries[3:5]] == ["router/2.0", entries[4]["agent"]]
    assert entries[4]["agent"].startswith("Python-urllib/")
    assert all(len(e["request"]) == 16 for e in entries[3:])  # dyndns2 requests carry an id
    assert all(datetime.fromisoformat(e["when"]) for e in entries)

    # the commits of that history, found with plain git
    found = inst.git("log", "--format=%H", f'--grep="host":"{H1}"').split()
    assert found == list(dict.fromkeys(e["commit"] for e in entries))
    assert inst.cli("history", f"h9.{ZONE}", "--json").json() == []
    assert inst.cli("history", f"h9.{ZONE}").out == f"no changes of h9.{ZONE}\n"
    text = inst.cli("history", H1).out
    assert "A    None -> 192.0.2.11" not in text and "A    - -> 192.0.2.11  by host:" in text


def test_audit_filters_and_plain_git_tell_who_changed_what_from_where(instance):
    inst = instance
    running = start_serving(inst, {"http.trusted_proxies": ["127.0.0.1"]})
    try:
        _scenario(inst, running)
    finally:
        running.stop.set()
        running.thread.join(30)


def _scenario(inst: Instance, running) -> None:
    xff = "X-Forwarded-For"
    # ---- phase one: hosts update themselves, behind a proxy
    s1 = inst.add_host(H1)
    s2 = inst.add_host(H2)
    assert running.update(H1, s1, "myip=192.0.2.11", **{xff: "203.0.113.7"}) == (200, "good 192.0.2.11\n")
    # without myip the client's address is published: the rightmost hop that is not a trusted proxy
    assert running.update(H2, s2, "", **{xff: "198.51.100.66, 203.0.113.8"}) == (200, "good 203.0.113.8\n")
    # no header from the trusted proxy: the proxy's own address
    assert running.update(H1, s1, "myip=2001:db8::11") == (200, "good 2001:db8::11\n")
    assert running.update(H1, s1, "myip=192.0.2.11", **{xff: "203.0.113.7"}) == (200, "nochg 192.0.2.11\n")
    phase_one = [
        (H1, "A", None, "192.0.2.11", f"host:{H1}", "203.0.113.7", "dyndns2"),
        (H2, "A", None, "203.0.113.8", f"host:{H2}", "203.0.113.8", "dyndns2"),
        (H1, "AAAA", None, "2001:db8::11", f"host:{H1}", "127.0.0.1", "dyndns2"),
    ]
    time.sleep(1.2)
    boundary = git_now()
    time.sleep(1.2)

    # ---- phase two: an account token for two hosts in one request, the CLI, a second zone and user
    token = inst.cli("user", "token", "alice", "--json").json()["token"]
    assert running.update("alice", token, f"hostname={H1},{H2}&myip=192.0.2.21", **{xff: "203.0.113.21"}) == \
        (200, "good 192.0.2.21\ngood 192.0.2.21\n")
    r = inst.cli("host", "set", H2, "192.0.2.22")
    assert r.code == 0, r.err
    r = inst.cli("domain", "add", OTHER)
    assert r.code == 0, r.err
    sb = inst.add_host(B1, owner="bob")
    assert running.update(B1, sb, "myip=198.51.100.5", **{xff: "203.0.113.50"}) == (200, "good 198.51.100.5\n")
    token_rows = [
        (H1, "A", "192.0.2.11", "192.0.2.21", "user:alice", "203.0.113.21", "dyndns2"),
        (H2, "A", "203.0.113.8", "192.0.2.21", "user:alice", "203.0.113.21", "dyndns2"),
    ]
    cli_row = (H2, "A", "192.0.2.21", "192.0.2.22", "cli:unknown", "", "cli")
    bob_row = (B1, "A", None, "198.51.100.5", f"host:{B1}", "203.0.113.50", "dyndns2")
    phase_two = token_rows + [cli_row, bob_row]
    everything = phase_one + phase_two

    # ---- ddns audit: exactly these changes, newest first
    result = inst.cli("audit", "--since", SINCE_EVER, "--json")
    assert bag(rows(result)) == bag(everything)
    entries = result.json()
    assert rows(result)[0] == bob_row and rows(result)[-1] == phase_one[0]
    whens = [datetime.fromisoformat(e["when"]) for e in entries]
    assert whens == sorted(whens, reverse=True)
    token_commits = {e["commit"] for e in entries if e["actor"] == "user:alice"}
    assert len(token_commits) == 1  # one request, one commit
    assert len({e["commit"] for e in entries}) == len(everything) - 1

    # time ranges
    assert bag(audit(inst, "--since", SINCE_EVER, "--until", boundary)) == bag(phase_one)
    assert bag(audit(inst, "--since", boundary)) == bag(phase_two)
    assert bag(audit(inst, "--since", SINCE_EVER, "--until", "2099-01-01")) == bag(everything)
    assert audit(inst, "--since", "2099-01-01") == []
    assert inst.cli("audit", "--since", "2099-01-01").out == "no changes\n"

    # actors (a substring of the actor), zones, and both with a time range
    assert bag(audit(inst, "--since", SINCE_EVER, "--actor", "user:alice")) == bag(token_rows)
    assert bag(audit(inst, "--since", SINCE_EVER, "--actor", f"host:{H1}")) == bag(
        r for r in phase_one if r[0] == H1)
    cli_rows = audit(inst, "--since", SINCE_EVER, "--actor", "cli")
    assert cli_rows == [cli_row] and cli_rows[0][4].startswith("cli")
    assert audit(inst, "--since", SINCE_EVER, "--actor", "user:bob") == []
    assert audit(inst, "--since", SINCE_EVER, "--zone", OTHER) == [bob_row]
    assert bag(audit(inst, "--since", SINCE_EVER, "--zone", ZONE)) == bag(everything[:-1])
    assert audit(inst, "--since", SINCE_EVER, "--zone", "example.test") != []  # a parent zone holds them all
    assert audit(inst, "--since", SINCE_EVER, "--zone", "le.test") == []       # not a suffix match
    assert bag(audit(inst, "--since", boundary, "--zone", ZONE)) == bag(token_rows + [cli_row])
    assert audit(inst, "--since", SINCE_EVER, "--until", boundary, "--zone", OTHER) == []
    assert audit(inst, "--since", boundary, "--actor", f"host:{H1}") == []

    text = inst.cli("audit", "--since", boundary, "--actor", "user:alice").out
    assert f"{H1} A 192.0.2.11 -> 192.0.2.21  by user:alice  from 203.0.113.21  via dyndns2" in text
    assert f"{H2} A 203.0.113.8 -> 192.0.2.21  by user:alice  from 203.0.113.21  via dyndns2" in text

    # ---- ddns history of each host
    assert history(inst, H1) == [
        ("A", "192.0.2.11", "192.0.2.21", "user:alice", "203.0.113.21", "dyndns2"),
        ("AAAA", None, "2001:db8::11", f"host:{H1}", "127.0.0.1", "dyndns2"),
        ("A", None, "192.0.2.11", f"host:{H1}", "203.0.113.7", "dyndns2"),
    ]
    assert history(inst, H2) == [
        ("A", "192.0.2.21", "192.0.2.22", "cli:unknown", "", "cli"),
        ("A", "203.0.113.8", "192.0.2.21", "user:alice", "203.0.113.21", "dyndns2"),
        ("A", None, "203.0.113.8", f"host:{H2}", "203.0.113.8", "dyndns2"),
    ]
    assert history(inst, B1) == [("A", None, "198.51.100.5", f"host:{B1}", "203.0.113.50", "dyndns2")]
    assert history(inst, H1.upper()) == history(inst, H1)  # names are case-insensitive

    # ---- the same facts with plain git
    for host in (H1, H2, B1):
        commits = [e["commit"] for e in inst.cli("history", host, "--json").json()]
        found = inst.git("log", "--format=%H", f'--grep="host":"{host}"').split()
        assert found == list(dict.fromkeys(commits)), host
    authors = inst.git("log", "--format=%an", f'--grep="host":"{H2}"').split()
    assert authors == ["cli:unknown", "user:alice", f"host:{H2}"]
    patch = inst.git("log", "-p", "--format=%H", f'--grep="host":"{H1}"', "--", f"{ZONE}/dynamic/")
    assert "+h1 A 192.0.2.21" in patch and "-h1 A 192.0.2.11" in patch and "+h1 AAAA 2001:db8::11" in patch

    assert blame_authors(inst, ZONE) == {
        "h1 A 192.0.2.21": "user:alice",
        "h1 AAAA 2001:db8::11": f"host:{H1}",
        "h2 A 192.0.2.22": "cli:unknown",
    }
    assert blame_authors(inst, OTHER) == {"b1 A 198.51.100.5": f"host:{B1}"}


def test_trailers_count_only_in_commits_the_service_made(running, tmp_path):
    """An upstream without the ddns hooks (say a Git server that only notifies the service) takes
    any push: trailers in a human's commit, even one that borrows the service's name, are no history."""
    inst = running.instance
    for hook in (inst.dir / "zones.git" / "hooks").iterdir():
        hook.unlink()
    secret = inst.add_host(H1)
    assert running.update(H1, secret, "myip=192.0.2.1") == (200, "good 192.0.2.1\n")
    genuine = history(inst, H1)
    assert genuine == [("A", None, "192.0.2.1", f"host:{H1}", "127.0.0.1", "dyndns2")]
    clone = tmp_path / "admin"
    pushed_upstream(inst)  # else the service's deferred push and the clone's race: one of the pushes is refused
    subprocess.run(["git", "clone", "-q", "-b", "main", str(inst.dir / "zones.git"), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}

    def forge(message: str, name: str, email: str, path: str, line: str) -> None:
        target = clone / path
        target.write_text(target.read_text() + line)
        ident = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
                 "GIT_COMMITTER_EMAIL": email}
        subprocess.run(["git", "-C", str(clone), "commit", "-qam", message], check=True, env={**env, **ident})

    trailer = ('Ddns-Change: {"host":"%s","type":"A","old":"192.0.2.1","new":"203.0.113.66","actor":"%s",'
               '"client":"","interface":"dyndns2"}')
    forge("Add mail2\n\n" + trailer % (H1, "mallory"), "Mallory", "mallory@example.test",
          f"{ZONE}/static.zone", "mail2 IN A 192.0.2.25\n")
    forge("Add mail3\n\n" + trailer % (H1, "framed-service"), "ddns", "ddns@localhost",
          f"{ZONE}/static.zone", "mail3 IN A 192.0.2.26\n")
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True, env=env)
    assert inst.cli("apply").code == 0
    assert "203.0.113.66" in inst.git("log", "--format=%B")  # the forged commits are in the history ...
    assert history(inst, H1) == genuine  # ... but not in what history and audit report
    assert [r for r in audit(inst, "--since", SINCE_EVER) if r[3] == "203.0.113.66"] == []
    assert len(audit(inst, "--since", SINCE_EVER)) >= 1
