"""The control-channel client against a real named (no rndc process)."""
import subprocess

import pytest

from conftest import free_port, require
from ddns import bind
from ddns.rndc import RndcClient, RndcError, RndcKey, decode_message, decode_table, encode_message, encode_table


def test_tables_round_trip():
    table = {"_ctrl": {"_ser": b"1", "_nonce": b"42"}, "_data": {"type": b"reload example.test", "bin": bytes(range(256))}}
    assert decode_table(encode_table(table)) == table


def test_message_is_signed_over_everything_after_auth():
    key = RndcKey("k", "hmac-sha256", b"secret")
    message = encode_message(key, {"_ser": b"1"}, {"type": b"status"})
    decoded = decode_message(message[4:])
    assert list(decoded) == ["_auth", "_ctrl", "_data"]
    hsha = decoded["_auth"]["hsha"]
    assert len(hsha) == 89 and hsha[0] == 163 and hsha[45:] == b"\0" * 44
    other = encode_message(RndcKey("k", "hmac-sha256", b"other"), {"_ser": b"1"}, {"type": b"status"})
    assert decode_message(other[4:])["_auth"] != decoded["_auth"]


def test_key_file_from_rndc_confgen(tmp_path):
    require("rndc-confgen")
    path = bind.create_rndc_key(tmp_path)
    key = RndcKey.from_file(path)
    assert (key.name, key.algorithm, len(key.secret)) == ("rndc-key", "hmac-sha256", 32)
    (tmp_path / "bad.key").write_text('key "x" { algorithm hmac-md5; secret "AAAA"; };\n')
    with pytest.raises(RndcError, match="unsupported algorithm"):
        RndcKey.from_file(tmp_path / "bad.key")


@pytest.fixture
def named(instance):
    require("named")
    cfg = instance.config
    rndc = bind.Rndc(cfg["bind.rndc_server"], cfg["bind.rndc_port"], cfg.path("bind.rndc_key"))
    with bind.ManagedNamed(cfg.path("bind.dir"), rndc) as managed:
        yield instance, rndc, managed


def test_commands_on_a_real_named(named):
    instance, rndc, _ = named
    assert rndc.status()
    key = RndcKey.from_file(instance.config.path("bind.rndc_key"))
    client = RndcClient("127.0.0.1", instance.rndc_port, key)
    assert "BIND 9" in client.command("status")
    # the managed named takes the publisher's updates: it refuses to reload the zone under them
    with pytest.raises(RndcError, match="dynamic zone"):
        client.command(f"reload {instance.zone}")
    client.command(f"freeze {instance.zone}")
    assert "thaw" in client.command(f"thaw {instance.zone}")
    with pytest.raises(RndcError, match="no matching zone"):
        client.command("reload no.such.zone")
    with pytest.raises(bind.BindError, match="no matching zone"):
        rndc.reload("no.such.zone")


def test_wrong_key_and_closed_port_are_errors(named):
    instance, _, _ = named
    wrong = RndcClient("127.0.0.1", instance.rndc_port, RndcKey("rndc-key", "hmac-sha256", b"x" * 32), timeout=5)
    with pytest.raises(RndcError):
        wrong.command("status")
    key = RndcKey.from_file(instance.config.path("bind.rndc_key"))
    with pytest.raises(RndcError, match="control channel"):
        RndcClient("127.0.0.1", free_port(), key, timeout=5).command("status")  # nothing listens there


def test_rndc_binary_agrees_that_named_is_up(named):
    """The same named answers the real rndc: our client talks to the channel rndc uses."""
    require("rndc")
    instance, _, _ = named
    out = subprocess.run(["rndc", "-s", "127.0.0.1", "-p", str(instance.rndc_port), "-k",
                          str(instance.config.path("bind.rndc_key")), "status"], capture_output=True, text=True)
    assert out.returncode == 0 and "server is up and running" in out.stdout
