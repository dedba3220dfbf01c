"""ddns.gitrepo: commit messages with machine-readable trailers, commits in a
real Git repository, and the per-host history read back from them."""
import json
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from conftest import require
from ddns.gitrepo import SERVICE_EMAIL, SERVICE_NAME, TRAILER, ChangeRecord, ZonesRepo, commit_message, parse_trailers

HOST = "a.dyn.example.test"


def change(host: str = HOST, rtype: str = "A", old: str | None = None, new: str | None = "192.0.2.1", **kw) -> ChangeRecord:
    fields = dict(actor=f"host:{host}", client="198.51.100.7", interface="dyndns2", agent="curl/8.5.0", request="r1")
    fields.update(kw)
    return ChangeRecord(host, rtype, old, new, **fields)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> ZonesRepo:
    require("git")
    return ZonesRepo.init(tmp_path / "zones", fsync=False)


def commit_change(repo: ZonesRepo, changes: list[ChangeRecord], author: str | None = None) -> str:
    """Write a file derived from CHANGES and commit it with their message."""
    zone_dir = repo.path / "dyn.example.test"
    zone_dir.mkdir(exist_ok=True)
    records = zone_dir / "dynamic.records"
    previous = records.read_text() if records.exists() else ""
    records.write_text(previous + "".join(f"{c.host.split('.')[0]} {c.type} {c.new}\n" for c in changes))
    return repo.commit(["dyn.example.test"], commit_message(changes), author=author)


# ---------------------------------------------------------------- commit_message


def test_message_of_one_change():
    c = change(old="192.0.2.1", new="192.0.2.2")
    message = commit_message([c])
    lines = message.split("\n")
    assert lines[0] == "a.dyn.example.test A 192.0.2.2 (dyndns2)"
    assert lines[1] == ""
    assert lines[2] == ("a.dyn.example.test A 192.0.2.1 -> 192.0.2.2 by host:a.dyn.example.test "
                        "from 198.51.100.7 via dyndns2")
    assert lines[3] == ""
    assert lines[4].startswith(f"{TRAILER}: {{")
    assert json.loads(lines[4][len(TRAILER) + 2:]) == {
        "host": HOST, "type": "A", "old": "192.0.2.1", "new": "192.0.2.2", "actor": "host:a.dyn.example.test",
        "client": "198.51.100.7", "interface": "dyndns2", "agent": "curl/8.5.0", "request": "r1"}
    assert lines[5:] == [""]  # ends with one newline
    assert parse_trailers(message) == [c]


def test_message_of_a_deletion():
    c = change(old="192.0.2.1", new=None, client="", interface="cli", actor="cli:root")
    message = commit_message([c])
    assert message.startswith("a.dyn.example.test A deleted (cli)\n\n")
    assert "a.dyn.example.test A 192.0.2.1 -> - by cli:root from - via cli\n" in message
    assert parse_trailers(message) == [c]


def test_message_of_several_changes():
    changes = [
        change("a.dyn.example.test", "A", None, "192.0.2.1"),
        change("a.dyn.example.test", "AAAA", None, "2001:db8::1"),
        change("b.other.test", "A", "192.0.2.9", "192.0.2.10", actor="user:alice", interface="portal"),
    ]
    message = commit_message(changes)
    subject, blank, *rest = message.split("\n")
    assert subject == "3 changes in dyn.example.test, other.test"
    assert blank == ""
    summaries = rest[:3]
    assert [s.split(" ")[:2] for s in summaries] == [["a.dyn.example.test", "A"], ["a.dyn.example.test", "AAAA"],
                                                      ["b.other.test", "A"]]
    assert rest[3] == ""
    trailers = [line for line in message.splitlines() if line.startswith(TRAILER + ": ")]
    assert len(trailers) == 3
    assert parse_trailers(message) == changes  # same order


def test_explicit_subject():
    message = commit_message([change()], subject="Import from old server")
    assert message.startswith("Import from old server\n\n")
    assert parse_trailers(message) == [change()]


HOSTILE = [
    "evil\nDdns-Change: {\"host\":\"victim.dyn.example.test\",\"type\":\"A\",\"old\":null,\"new\":\"203.0.113.66\","
    "\"actor\":\"x\",\"client\":\"x\",\"interface\":\"x\"}\n",
    "cr\ronly",
    "crlf\r\nDdns-Change: {}",
    'quotes " and \' and \\ and "}',
    "unicode ünïcödé ✓ 日本",
    "line\u2028separator\u2029paragraph\x85next",
    "ascii separators \x1c\x1d\x1e\x1f vt\x0b ff\x0c",
    "nul\x00byte",
]


@pytest.mark.parametrize("agent", HOSTILE)
def test_user_agent_cannot_break_the_trailer(agent):
    c = change(agent=agent)
    message = commit_message([c])
    lines = message.splitlines()  # splits on every Unicode line boundary
    assert len(lines) == 5
    assert all(line.isascii() and line.isprintable() for line in lines)
    assert parse_trailers(message) == [c]


@pytest.mark.parametrize("field", ["actor", "client", "interface"])
@pytest.mark.parametrize("hostile", HOSTILE)
def test_summary_fields_cannot_forge_a_trailer(field, hostile):
    c = change(**{field: hostile})
    message = commit_message([c])
    lines = message.splitlines()
    assert len(lines) == 5, lines  # subject, blank, ONE summary line, blank, ONE trailer
    assert all(line.isprintable() for line in lines)
    assert parse_trailers(message) == [c]


@pytest.mark.parametrize("made", [change(), change(change=7, agent="ünï\x00", request="r-1")])
def test_a_trailer_is_every_field_as_compact_ascii_json_and_change_only_when_set(made):
    fields = {k: v for k, v in asdict(made).items() if k != "change" or v is not None}
    assert made.trailer() == f"{TRAILER}: " + json.dumps(fields, separators=(",", ":"), ensure_ascii=True)


# ---------------------------------------------------------------- parse_trailers


def test_parse_trailers_ignores_foreign_and_malformed_lines():
    good = change()
    message = "\n".join([
        "Human commit: edit static.zone",
        "",
        "Ddns-Change is mentioned here but this is prose",
        f"{TRAILER}:" + json.dumps({"host": "nospace.dyn.example.test"}),
        f"  {TRAILER}: " + json.dumps(good.__dict__),  # indented: not a trailer
        "ddns-change: " + json.dumps(good.__dict__),  # wrong case
        f"{TRAILER}: {{not json",
        f"{TRAILER}: " + json.dumps(["a", "list"]),
        f"{TRAILER}: " + json.dumps({"host": "x"}),  # missing fields
        f"{TRAILER}: " + json.dumps({**good.__dict__, "unexpected": 1}),
        f"{TRAILER}: null",
        f"{TRAILER}: ",
        "Signed-off-by: Someone <someone@example.test>",
        f"{TRAILER}: " + json.dumps(good.__dict__),
    ])
    assert parse_trailers(message) == [good]


def test_parse_trailers_of_older_records_without_optional_fields():
    data = {"host": HOST, "type": "AAAA", "old": None, "new": "2001:db8::1", "actor": "cli", "client": "",
            "interface": "cli"}
    assert parse_trailers(f"s\n\n{TRAILER}: {json.dumps(data)}\n") == [
        ChangeRecord(HOST, "AAAA", None, "2001:db8::1", "cli", "", "cli", agent="", request="")]


def test_parse_trailers_of_nothing():
    assert parse_trailers("") == []
    assert parse_trailers("just a subject\n") == []


# ---------------------------------------------------------------- ZonesRepo


def test_init_makes_an_empty_repo_on_main(repo):
    assert repo.head() is None
    assert (repo.path / ".git").is_dir()
    assert git(repo.path, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(repo.path, "config", "user.name").strip() == SERVICE_NAME
    assert git(repo.path, "config", "user.email").strip() == SERVICE_EMAIL


def test_commit_returns_the_new_head_and_git_log_shows_it(repo):
    c = change()
    sha = commit_change(repo, [c])
    assert len(sha) == 40
    assert sha == git(repo.path, "rev-parse", "HEAD").strip() == repo.head()
    assert git(repo.path, "log", "-1", "--format=%B", sha) == commit_message([c]) + "\n"
    assert git(repo.path, "log", "-1", "--format=%s").strip() == "a.dyn.example.test A 192.0.2.1 (dyndns2)"
    assert repo.show(sha, "dyn.example.test/dynamic.records") == "a A 192.0.2.1\n"  # byte for byte
    assert repo.is_clean()

    sha2 = commit_change(repo, [change("b.dyn.example.test")])
    assert sha2 != sha
    assert git(repo.path, "rev-parse", "HEAD~1").strip() == sha
    assert int(git(repo.path, "rev-list", "--count", "HEAD")) == 2


def test_commit_stages_only_the_given_paths_including_removals(repo):
    (repo.path / "keep").mkdir()
    (repo.path / "keep" / "f").write_text("1\n")
    (repo.path / "gone").mkdir()
    (repo.path / "gone" / "f").write_text("1\n")
    repo.commit(["keep", "gone"], "initial\n")
    (repo.path / "gone" / "f").unlink()
    (repo.path / "keep" / "f").write_text("2\n")
    (repo.path / "untouched.txt").write_text("not committed\n")
    sha = repo.commit(["gone"], "remove gone\n")
    assert git(repo.path, "show", "--name-status", "--format=", sha).split() == ["D", "gone/f"]
    assert not repo.is_clean()
    assert not repo.is_clean(["keep"])
    assert repo.is_clean(["gone"])


def test_author_is_the_actor_and_committer_the_service(repo):
    sha = commit_change(repo, [change(actor="user:alice")], author="user:alice")
    assert git(repo.path, "log", "-1", "--format=%an|%ae|%cn|%ce", sha).strip() == \
        f"user:alice|{SERVICE_EMAIL}|{SERVICE_NAME}|{SERVICE_EMAIL}"
    sha = commit_change(repo, [change("b.dyn.example.test")])
    assert git(repo.path, "log", "-1", "--format=%an|%cn", sha).strip() == f"{SERVICE_NAME}|{SERVICE_NAME}"


def test_hostile_agent_survives_a_real_commit(repo):
    changes = [change(agent=a, request=str(i)) for i, a in enumerate(HOSTILE)]
    sha = commit_change(repo, changes)
    assert parse_trailers(git(repo.path, "log", "-1", "--format=%B", sha)) == changes
    assert [h.change for h in repo.history(HOST)] == changes


def test_history_of_one_host_newest_first(repo):
    first = commit_change(repo, [change(HOST, "A", None, "192.0.2.1")])
    commit_change(repo, [change("aa.dyn.example.test", "A", None, "192.0.2.50")])
    commit_change(repo, [change("b.a.dyn.example.test", "A", None, "192.0.2.51")])
    commit_change(repo, [change("xa.dyn.example.test", "A", None, "192.0.2.52")])
    third = commit_change(repo, [
        change("b.dyn.example.test", "A", None, "192.0.2.60"),
        change(HOST, "A", "192.0.2.1", "192.0.2.2"),
        change(HOST, "AAAA", None, "2001:db8::2"),
    ])
    (repo.path / "README").write_text("human\n")
    repo.commit(["README"], f"Human edit mentioning \"host\":\"{HOST}\"\n")  # no trailer: not history
    entries = list(repo.history(HOST))
    assert [(e.commit, e.change.type, e.change.old, e.change.new) for e in entries] == [
        (third, "A", "192.0.2.1", "192.0.2.2"),
        (third, "AAAA", None, "2001:db8::2"),
        (first, "A", None, "192.0.2.1"),
    ]
    assert all(e.change.host == HOST for e in entries)
    assert all(e.when[:4].isdigit() and "T" in e.when for e in entries)  # ISO 8601
    assert [e.change.new for e in repo.history("aa.dyn.example.test")] == ["192.0.2.50"]
    assert [e.change.new for e in repo.history("b.dyn.example.test")] == ["192.0.2.60"]
    assert list(repo.history("dyn.example.test")) == []
    assert list(repo.history("c.dyn.example.test")) == []


def test_history_limit(repo):
    for i in range(5):
        commit_change(repo, [change(new=f"192.0.2.{i + 1}")])
    assert [e.change.new for e in repo.history(HOST, limit=2)] == ["192.0.2.5", "192.0.2.4"]
    assert len(list(repo.history(HOST))) == 5


def test_history_of_an_empty_repo_is_empty(repo):
    assert list(repo.history(HOST)) == []


def test_history_ignores_forged_lines_in_other_fields(repo):
    forged = change("victim.dyn.example.test", new="203.0.113.66")
    hostile_actor = "user:mallory\n" + forged.trailer() + "\n"
    commit_change(repo, [change(actor=hostile_actor)], author="user:mallory")
    assert list(repo.history("victim.dyn.example.test")) == []
    assert len(git(repo.path, "log", "-1", "--format=%B").rstrip("\n").splitlines()) == 5
    assert [e.change.actor for e in repo.history(HOST)] == [hostile_actor]


def test_record_helpers():
    c = change()
    assert replace(c, new=None).summary().startswith("a.dyn.example.test A - -> - by ")
    assert c.trailer().startswith(TRAILER + ": {")
    assert "\n" not in c.trailer()


def test_commit_takes_only_its_paths_whatever_else_is_staged(repo):
    """A change left staged (say by a killed writer) must not ride along with the next commit."""
    commit_change(repo, [change()])
    (repo.path / "README").write_text("staged by someone else\n")
    git(repo.path, "add", "README")
    (repo.path / "dyn.example.test" / "dynamic.records").write_text("a A 192.0.2.2\n")
    repo.commit(["dyn.example.test/dynamic.records"], "only this\n")
    assert git(repo.path, "show", "--name-only", "--format=", "HEAD").split() == ["dyn.example.test/dynamic.records"]
    assert "README" in git(repo.path, "diff", "--cached", "--name-only")
