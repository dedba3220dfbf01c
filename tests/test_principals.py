"""Kerberos principals as identities (Service.principal_identity) and principals linked to hosts."""
from __future__ import annotations

import pytest

from ddns import config as configmod
from ddns import errors, policy
from ddns.model import Actor, Grant, Match, Op, Operation
from ddns.service import Service

ZONE = "dyn.example.test"
REALM = "EXAMPLE.TEST"
ACTOR = Actor("krb5:x", "127.0.0.1", "rfc2136")


def service_of(instance, realm: str = REALM) -> Service:
    return Service.open(configmod.load(instance.config_path, environ={}, overrides={"kerberos.realm": realm}))


def may(identity, name: str, rtype: str = "A", rdata: str = "192.0.2.1", zone: str = ZONE) -> bool:
    try:
        policy.authorize(identity, zone, [Operation(Op.ADD, name, rtype, rdata)])
    except errors.Refused:
        return False
    return True


def test_a_host_principal_of_the_realm_may_change_its_registered_host_by_default(instance):
    instance.add_host(f"vm1.{ZONE}")
    instance.add_host(f"vm2.{ZONE}")
    service = service_of(instance)
    identity = service.principal_identity(f"host/vm1.{ZONE}@{REALM}", ZONE, ACTOR)
    assert identity is not None and identity.signer == f"vm1.{ZONE}" and identity.actor == ACTOR
    assert Grant(True, Match.PTR_SELF, f"vm1.{ZONE}", frozenset({"PTR"})) in identity.grants
    assert may(identity, f"vm1.{ZONE}") and may(identity, f"vm1.{ZONE}", "TXT", '"x"')
    assert not may(identity, f"vm2.{ZONE}")            # another host's name
    assert not may(identity, f"vm1.{ZONE}", "MX", f"10 vm1.{ZONE}.")
    assert identity.guard()


@pytest.mark.parametrize("principal", [
    f"host/vm1.{ZONE}@example.test",          # the realm compared exactly: case matters
    f"host/vm1.{ZONE}@OTHER.TEST",            # another realm
    f"host/vm1.{ZONE}@{REALM}@X",             # a second '@'
    f"host/vm3.{ZONE}@{REALM}",               # no such host
    f"vm1$@{REALM}",                          # a machine account is not a host principal
    f"HOST/vm1.{ZONE}@{REALM}",               # the service name is "host"
    f"host/vm1.{ZONE}/x@{REALM}",
    "", "x" * 10000, f"host/vm1.{ZONE}\u00e9@{REALM}", f"host/vm1.{ZONE}\n@{REALM}",
])
def test_other_principals_get_nothing(instance, principal):
    instance.add_host(f"vm1.{ZONE}")
    assert service_of(instance).principal_identity(principal, ZONE, ACTOR) is None


def test_without_a_realm_host_principals_get_nothing(instance):
    instance.add_host(f"vm1.{ZONE}")
    assert service_of(instance, realm="").principal_identity(f"host/vm1.{ZONE}@{REALM}", ZONE, ACTOR) is None


def test_a_linked_principal_gets_its_hosts_rights_and_one_principal_links_one_host(instance):
    instance.add_host(f"vm1.{ZONE}")
    instance.add_host(f"vm2.{ZONE}")
    service = service_of(instance, realm="")
    service.set_principal(f"VM1.{ZONE}.", f"alice@{REALM}")
    assert service.host(f"vm1.{ZONE}").principal == f"alice@{REALM}"
    identity = service.principal_identity(f"alice@{REALM}", ZONE, ACTOR)
    assert identity is not None and may(identity, f"vm1.{ZONE}") and not may(identity, f"vm2.{ZONE}")
    with pytest.raises(errors.Conflict):
        service.set_principal(f"vm2.{ZONE}", f"alice@{REALM}")
    assert service.host(f"vm2.{ZONE}").principal is None
    service.set_principal(f"vm1.{ZONE}", None)
    assert service.principal_identity(f"alice@{REALM}", ZONE, ACTOR) is None
    service.set_principal(f"vm2.{ZONE}", f"alice@{REALM}")  # free again
    assert service.host(f"vm2.{ZONE}").principal == f"alice@{REALM}"


@pytest.mark.parametrize("principal", ["", "alice", "alice@", "@R", "a@b@c", "m$$@R", "host/a_b@R", "a b@R",
                                       "x" * 10000 + "@R", "\u00e9@R", "a\\@R"])
def test_a_bad_principal_is_not_linked(instance, principal):
    instance.add_host(f"vm1.{ZONE}")
    service = service_of(instance)
    with pytest.raises(errors.Invalid):
        service.set_principal(f"vm1.{ZONE}", principal)
    assert service.host(f"vm1.{ZONE}").principal is None


def test_linking_a_missing_host_is_not_found(instance):
    with pytest.raises(errors.NotFound):
        service_of(instance).set_principal(f"nohost.{ZONE}", f"alice@{REALM}")


def test_a_deleted_hosts_principal_is_refused_by_the_guard(instance):
    instance.add_host(f"vm1.{ZONE}")
    service = service_of(instance)
    service.set_principal(f"vm1.{ZONE}", f"alice@{REALM}")
    linked = service.principal_identity(f"alice@{REALM}", ZONE, ACTOR)
    default = service.principal_identity(f"host/vm1.{ZONE}@{REALM}", ZONE, ACTOR)
    assert linked.guard() and default.guard()
    assert instance.cli("host", "delete", f"vm1.{ZONE}").code == 0
    assert not linked.guard() and not default.guard()
    assert service.principal_identity(f"alice@{REALM}", ZONE, ACTOR) is None
    instance.add_host(f"vm1.{ZONE}")  # registered anew: the old identity stays refused
    assert not default.guard()
