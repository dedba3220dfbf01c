"""Two web nodes and two publisher nodes as real `ddns serve` processes on one machine.

Real PostgreSQL (the changes table, the election), a real bare upstream,
a real named per publisher. Updates through either web node are committed
once each (each change id in exactly one upstream commit) and served by the
active publisher's named; a `kill -9` of the active publisher during a burst
loses nothing that was answered good, applies nothing twice, and answers
the rest good or with a retryable 911.
"""
import collections
import http.client as http_client
import threading
import time

import pytest

from testkit.cluster import ZONE, change_ids_per_commit, make_node, make_seed, upstream_trailers
from conftest import REQUIRED_TOOLS, free_port, http, require, wait_until
from pgserver import pg_server, pg_url  # noqa: F401

LOCK_ID = 991


@pytest.fixture
def seed(tmp_path, pg_url):
    """The instance the nodes share (upstream, zone, store on PG_URL)."""
    require(*REQUIRED_TOOLS)
    return make_seed(tmp_path / "seed", pg_url)


@pytest.fixture
def cluster(seed, pg_url):
    """The seed instance and four nodes (started: web1, web2, pub1, pub2); every node stopped after."""
    nodes = {name: make_node(seed, pg_url, name, role, LOCK_ID)
             for name, role in (("pub1", "publisher"), ("pub2", "publisher"), ("web1", "web"), ("web2", "web"))}
    try:
        for name in ("pub1", "pub2", "web1", "web2"):
            nodes[name].start()
        for node in nodes.values():
            node.wait_up()
        yield seed, nodes
    finally:
        for node in nodes.values():
            node.stop()


def _active(nodes) -> str:
    """The one publisher whose /healthz says active (waited for); the other must say standby."""
    def one():
        states = {name: nodes[name].active() for name in ("pub1", "pub2")}
        return [n for n, a in states.items() if a] if sum(states.values()) == 1 else None
    [name] = wait_until(one, 60, what="one active publisher")
    return name


def _hosts(seed, count: int, prefix: str) -> list[tuple[str, str]]:
    service = seed.open_service()
    service.accounts.add_user("alice")
    return [(f"{prefix}{i}.{ZONE}", service.add_host(f"{prefix}{i}.{ZONE}", "alice")[1]) for i in range(count)]


def _update(node, fqdn: str, secret: str, address: str, timeout: float = 60) -> str:
    status, body, _ = http(f"{node.url}/nic/update?hostname={fqdn}&myip={address}", auth=(fqdn, secret),
                           timeout=timeout)
    return body.strip()


def test_updates_through_both_web_nodes_are_published_once_each(cluster):
    seed, nodes = cluster
    active = nodes[_active(nodes)]
    hosts = _hosts(seed, 12, "w")
    answers = {}
    for i, (fqdn, secret) in enumerate(hosts):
        web = nodes["web1" if i % 2 else "web2"]
        answers[fqdn] = _update(web, fqdn, secret, f"192.0.2.{i + 1}")
    assert answers == {fqdn: f"good 192.0.2.{i + 1}" for i, (fqdn, _) in enumerate(hosts)}
    for i, (fqdn, _) in enumerate(hosts):
        assert active.dig(fqdn) == [f"192.0.2.{i + 1}"]
    ids = [i for commit in change_ids_per_commit(seed) for i in commit]
    assert len(ids) == len(set(ids)) == len(hosts)  # each change in one commit, none twice
    changed = {(c.host, c.new) for commit in upstream_trailers(seed) for c in commit if c.change is not None}
    assert changed == {(fqdn, f"192.0.2.{i + 1}") for i, (fqdn, _) in enumerate(hosts)}
    # the same address again is nochg (decided by the publisher: a web node has no served snapshot)
    fqdn, secret = hosts[0]
    assert _update(nodes["web1"], fqdn, secret, "192.0.2.1") == "nochg 192.0.2.1"
    health = nodes["web1"].health()
    assert "active" not in health and health["status"] == "ok"

    # a host deleted through a web node: its records through the table, then the host
    service = seed.open_service()
    token = service.accounts.new_api_token(service.store.user("alice"), "t")
    gone, _ = hosts[1]
    status, body, _ = http(f"{nodes['web2'].url}/api/v1/hosts/{gone}", headers={"Authorization": f"Bearer {token}"},
                           method="DELETE")
    assert status in (200, 204), body
    assert active.dig(gone) == [] and service.store.find_host(gone) is None
    deleted = [c for commit in upstream_trailers(seed) for c in commit if c.host == gone and c.new is None]
    assert len(deleted) == 1 and deleted[0].change is not None and deleted[0].interface == "api"


def test_kill_9_of_the_active_publisher_during_a_burst_loses_nothing_answered_good(cluster):
    seed, nodes = cluster
    first = _active(nodes)
    standby = "pub2" if first == "pub1" else "pub1"
    clients, rounds = 10, 6
    hosts = _hosts(seed, clients, "k")
    answers: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)  # fqdn -> [(address, answer)]
    lock = threading.Lock()

    def burst(c: int, fqdn: str, secret: str) -> None:
        for r in range(rounds):
            address = f"198.51.100.{c * rounds + r + 1}"
            web = nodes["web1" if (c + r) % 2 else "web2"]
            try:
                answer = _update(web, fqdn, secret, address, timeout=90)
            except (OSError, http_client.HTTPException) as exc:
                answer = f"no answer: {exc}"
            with lock:
                answers[fqdn].append((address, answer))

    workers = [threading.Thread(target=burst, args=(c, *hosts[c]), daemon=True) for c in range(clients)]
    for w in workers:
        w.start()
    wait_until(lambda: sum(len(a) for a in answers.values()) >= clients, 60, interval=0.002, what="answers")
    killed_at = time.monotonic()
    nodes[first].kill()
    assert wait_until(lambda: nodes[standby].active(), 30, what="the standby to take over")
    failover = time.monotonic() - killed_at
    for w in workers:
        w.join(120)
        assert not w.is_alive()

    kinds = collections.Counter(answer.split()[0] for a in answers.values() for _, answer in a)
    assert set(kinds) <= {"good", "911"}, answers  # good, or a clear retryable answer
    assert kinds["good"] > clients, kinds
    committed = {(c.host, c.new) for commit in upstream_trailers(seed) for c in commit}
    for fqdn, sent in answers.items():
        for address, answer in sent:
            if answer.startswith("good"):
                assert answer == f"good {address}" and (fqdn, address) in committed, f"{fqdn} {address} lost"
    ids = [i for commit in change_ids_per_commit(seed) for i in commit]
    assert len(ids) == len(set(ids)), "a change was committed twice"
    new = nodes[standby]
    for fqdn, sent in answers.items():  # the new active's named serves each host's last committed address
        last = [address for address, _ in sent if (fqdn, address) in committed][-1:]
        assert wait_until(lambda: new.dig(fqdn) == last, 10, what=f"{fqdn} served")
    assert failover < 30


def test_an_active_publisher_whose_lock_connection_dies_stops_and_the_standby_publishes(cluster, pg_url):
    import psycopg

    seed, nodes = cluster
    first = _active(nodes)
    standby = "pub2" if first == "pub1" else "pub1"
    [(fqdn, secret)] = _hosts(seed, 1, "c")
    assert _update(nodes["web1"], fqdn, secret, "203.0.113.1") == "good 203.0.113.1"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        [(pid,)] = conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
                                (LOCK_ID,)).fetchall()
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert nodes[first].proc.wait(10) == 75  # it stopped at once, answering nothing more
    assert wait_until(lambda: nodes[standby].active(), 15, what="the standby to take over")
    assert _update(nodes["web2"], fqdn, secret, "203.0.113.2") == "good 203.0.113.2"
    assert nodes[standby].dig(fqdn) == ["203.0.113.2"]
    ids = [i for commit in change_ids_per_commit(seed) for i in commit]
    assert len(ids) == len(set(ids)) == 2


def _rfc2136_update(port: int, fqdn: str, key: dict, address: str) -> int:
    """A TSIG-signed RFC 2136 update replacing FQDN's A record, sent over UDP; the answer's rcode."""
    import dns.query
    import dns.tsig
    import dns.update

    update = dns.update.UpdateMessage(ZONE, keyring=dns.tsig.Key(key["name"] + ".", key["secret"], key["algorithm"]))
    update.replace(fqdn + ".", 60, "A", address)
    return dns.query.udp(update, "127.0.0.1", port=port, timeout=30).rcode()


def _cluster_errors(node) -> float:
    status, body, _ = http(f"{node.url}/metrics")
    assert status == 200, body
    [value] = [line.split()[-1] for line in body.splitlines() if line.startswith('ddns_errors_total{component="cluster"}')]
    return float(value)


def test_a_web_node_without_an_active_publisher_answers_a_retryable_911(seed, pg_url):
    """dyndns2 answers 911, RFC 2136 SERVFAIL; each unanswered hand-over is counted once, whatever asked."""
    import dns.rcode
    import psycopg

    update_port = free_port()
    web = make_node(seed, pg_url, "web", "web", LOCK_ID, {"bind.verify_timeout": 0.5, "cluster.takeover_seconds": 1.0,
                                                          "dnsupdate.port": update_port})
    [(fqdn, secret)] = _hosts(seed, 1, "n")
    made = seed.cli("key", "add", fqdn, "--json")
    assert made.code == 0, made.err
    try:
        web.start()
        web.wait_up()
        status, body, headers = http(f"{web.url}/nic/update?hostname={fqdn}&myip=192.0.2.7", auth=(fqdn, secret))
        after_dyndns2 = _cluster_errors(web)
        rcode = _rfc2136_update(update_port, fqdn, made.json(), "192.0.2.8")
        after_rfc2136 = _cluster_errors(web)
    finally:
        web.stop()
    assert (status, body, headers.get("Retry-After")) == (503, "911\n", "5")
    assert rcode == dns.rcode.SERVFAIL
    assert (after_dyndns2, after_rfc2136) == (1.0, 2.0)
    with psycopg.connect(pg_url) as conn:  # still queued: the next active publisher applies them
        assert conn.execute("SELECT state FROM changes").fetchall() == [("queued",), ("queued",)]
