"""GSS-TSIG against a real ``ddns serve``: a context negotiated by testkit/gssclient.py signs updates
that are committed (the trailer names ``krb5:PRINCIPAL``) and served by named (dig).

Real KDC, real python-gssapi on both sides, the managed named; nothing mocked.
Host principals ``host/NAME@EXAMPLE.TEST`` change their registered host NAME
with no zone rules, because ``kerberos.realm`` is set (krb5-self by default).
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import dns.rcode
import dns.tsig
import dns.update
import pytest

from testkit import gssclient
from gss_fixtures import ZONE, Realm, realm  # noqa: F401 (fixture)

CLIENTS = 20


def changes(instance) -> list[dict]:
    """Every Ddns-Change trailer of the zones repository's history."""
    body = instance.git("log", "--format=%B")
    return [json.loads(line.split(": ", 1)[1]) for line in body.splitlines() if line.startswith("Ddns-Change: ")]


@pytest.fixture
def gss_serve(realm: Realm, instance, serve):
    """(instance, realm, listener port): ddns serve with GSS-TSIG over the realm's keytab, host vm1 registered."""
    instance.add_host(f"vm1.{ZONE}")
    for i in range(CLIENTS):
        instance.add_host(f"c{i:02d}.{ZONE}")
    serve({"kerberos.keytab": str(realm.keytab), "kerberos.realm": realm.kdc.realm})
    return instance, realm, instance.update_port


def replace_a(name: str, address: str) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage(ZONE + ".")
    update.replace(f"{name}.{ZONE}.", 60, "A", address)
    return update


@pytest.mark.parametrize("algorithm", ["gss-tsig", "gss.microsoft.com"])
def test_gss_signed_update_is_committed_and_served(gss_serve, algorithm):
    instance, realm, port = gss_serve
    principal, ccache = realm.ticket(f"host/vm1.{ZONE}")
    session = gssclient.negotiate(port, ccache, realm.target, algorithm=algorithm)
    before = instance.commit_count()
    answer = gssclient.send(port, replace_a("vm1", "192.0.2.41"), session)
    assert answer.rcode() == dns.rcode.NOERROR and answer.had_tsig
    assert instance.dig(f"vm1.{ZONE}") == ["192.0.2.41"]
    assert instance.commit_count() == before + 1
    trailer = json.loads(instance.git("log", "-1", "--format=%(trailers:key=Ddns-Change,valueonly)").strip())
    assert trailer["actor"] == f"krb5:{principal}" and trailer["interface"] == "rfc2136"
    refused = gssclient.send(port, replace_a("c00", "192.0.2.42"), session)  # another host's name
    assert refused.rcode() == dns.rcode.REFUSED and instance.dig(f"c00.{ZONE}") == []
    assert gssclient.delete(port, session).rcode() == dns.rcode.NOERROR
    gone = gssclient.send(port, replace_a("vm1", "192.0.2.43"), session, verify=False)
    assert gone.rcode() == dns.rcode.NOTAUTH and gone.tsig[0].error == dns.rcode.BADKEY
    assert instance.dig(f"vm1.{ZONE}") == ["192.0.2.41"] and instance.commit_count() == before + 1


def test_twenty_clients_negotiate_and_update_at_once_each_with_its_own_context(gss_serve):
    """Each client its own ticket, context and host; a client signing with a neighbour's key name is refused."""
    instance, realm, port = gss_serve
    tickets = [realm.ticket(f"host/c{i:02d}.{ZONE}") for i in range(CLIENTS)]
    sessions: list[gssclient.Session | None] = [None] * CLIENTS
    negotiated = threading.Barrier(CLIENTS, timeout=60)

    def client(i: int) -> tuple[int, int]:
        _, ccache = tickets[i]
        algorithm = ("gss-tsig", "gss.microsoft.com")[i % 2]
        sessions[i] = session = gssclient.negotiate(port, ccache, realm.target, algorithm=algorithm)
        negotiated.wait()
        answer = gssclient.send(port, replace_a(f"c{i:02d}", f"192.0.2.{100 + i}"), session)
        neighbour = sessions[(i + 1) % CLIENTS]
        posing = gssclient.Session(neighbour.keyname, neighbour.algorithm, session.context,
                                   dns.tsig.Key(neighbour.keyname, session.context, neighbour.key.algorithm))
        stolen = gssclient.send(port, replace_a(f"c{(i + 1) % CLIENTS:02d}", "192.0.2.250"), posing, verify=False)
        return answer.rcode(), stolen.tsig[0].error if stolen.rcode() == dns.rcode.NOTAUTH else -1

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    assert [rcode for rcode, _ in results] == [dns.rcode.NOERROR] * CLIENTS
    assert [error for _, error in results] == [dns.rcode.BADSIG] * CLIENTS
    for i in range(CLIENTS):
        assert instance.dig(f"c{i:02d}.{ZONE}") == [f"192.0.2.{100 + i}"]
    actors = {(c["actor"], c["host"]) for c in changes(instance) if c["host"].startswith("c")}
    assert actors == {(f"krb5:{tickets[i][0]}", f"c{i:02d}.{ZONE}") for i in range(CLIENTS)}
