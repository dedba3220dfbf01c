"""The one exception root: every kind has its codes, every refusal class is of its kind and no ValueError."""
from __future__ import annotations

import dns.rcode
import pytest

from ddns import bind, cli, config, dyndns2, errors, gitops, gitrepo, store, validate, zones
from ddns.publishing import publisher
from ddns.portal import refusal

KIND_CLASSES = {errors.Invalid: errors.Kind.INVALID, errors.Refused: errors.Kind.REFUSED,
                errors.NotFound: errors.Kind.NOT_FOUND, errors.Conflict: errors.Kind.CONFLICT,
                errors.TooMany: errors.Kind.TOO_MANY, errors.Busy: errors.Kind.BUSY,
                errors.Unavailable: errors.Kind.UNAVAILABLE, errors.Internal: errors.Kind.INTERNAL}


@pytest.mark.parametrize("kind", list(errors.Kind), ids=lambda k: k.value)
def test_every_kind_has_an_exit_status_an_http_status_and_an_rcode(kind):
    codes = errors.CODES[kind]
    assert codes.exit in set(cli.Exit) - {cli.Exit.OK}  # one of the CLI's documented failure statuses
    assert 400 <= codes.http <= 599
    dns.rcode.from_text(codes.rcode)  # a real rcode name


def test_every_kind_has_its_class():
    assert set(KIND_CLASSES.values()) == set(errors.Kind)
    for cls, kind in KIND_CLASSES.items():
        assert cls("x").kind is kind and errors.codes(cls("x")) == errors.CODES[kind]


@pytest.mark.parametrize("cls, kind", [
    (validate.InvalidName, errors.Invalid), (validate.InvalidAddress, errors.Invalid),
    (zones.SourceError, errors.Invalid), (zones.BadRecordLine, errors.Invalid),
    (config.ConfigError, errors.Invalid), (gitops.GitOpsError, errors.Invalid), (dyndns2.BadRequest, errors.Invalid),
    (store.NotFound, errors.NotFound), (store.Conflict, errors.Conflict), (store.Busy, errors.Busy),
    (gitrepo.SyncConflict, errors.Conflict), (gitrepo.PushFailed, errors.Unavailable),
    (publisher.ZoneHeld, errors.Unavailable), (bind.BindError, errors.Unavailable),
], ids=lambda v: v.__name__)
def test_each_refusal_is_of_its_kind_and_never_a_value_error(cls, kind):
    assert issubclass(cls, kind)
    assert not issubclass(cls, (ValueError, LookupError, RuntimeError))  # our own slips are bugs, not refusals


@pytest.mark.parametrize("kind", list(errors.Kind), ids=lambda k: k.value)
def test_the_cli_exit_status_of_each_kind_is_the_table_s(kind):
    error = next(cls for cls, k in KIND_CLASSES.items() if k is kind)("refused")
    assert cli.exit_status(error) == errors.CODES[kind].exit


def test_a_configuration_that_cannot_be_used_is_a_usage_error():
    assert cli.exit_status(config.ConfigError("bad")) == cli.Exit.USAGE


@pytest.mark.parametrize("kind", list(errors.Kind), ids=lambda k: k.value)
def test_the_portal_s_status_of_each_kind_is_the_table_s_with_a_sentence(kind):
    error = next(cls for cls, k in KIND_CLASSES.items() if k is kind)("the name x is taken")
    assert refusal(error) == (errors.CODES[kind].http, "The name x is taken.")
    assert refusal(errors.Invalid("why?")) == (400, "Why?")
