"""The portal's ready-to-paste client configurations (ddns.clientconfigs).

Unit tests check the text; the real-client tests give each generated config to
the real client (curl, ddclient, inadyn, the dhclient hook) against the real
service and check what BIND serves. A test changes only what it must (the
address discovery, so that a known address gets registered); every other byte
is the generated text. Where the config finds its own address (/myip or the
request's source), a service that accepts loopback addresses runs it unchanged.
"""
from __future__ import annotations

import dataclasses
import shlex
import stat
import subprocess

import pytest

from conftest import require, serving
from ddns.clientconfigs import ClientConfig, client_configs
from test_clients import HOOK, ROOT, ddclient, head_records, inadyn, private_file, run, tool

try:
    import yaml
except ImportError:  # PyYAML is no dependency of ddns: written_files() alone then checks the user data
    yaml = None

ZONE = "dyn.example.test"
FQDN = f"myvm.{ZONE}"
SECRET = "Qx7-abc_DEF0123456789-_zyxwvutsrqpo"  # the alphabet of auth.new_secret (token_urlsafe)
KEYS = ["curl", "cloud-init", "ddclient", "inadyn", "dhclient", "router"]


def configs(public_url: str, fqdn: str = FQDN, secret: str = SECRET) -> dict[str, ClientConfig]:
    result = client_configs(public_url, fqdn, secret)
    assert [c.key for c in result] == KEYS
    return {c.key: c for c in result}


def written_files(user_data: str) -> dict[str, str]:
    """cloud-init's write_files as {path: content}, read without a YAML library:
    ``  - path: P`` starts an entry, ``    content: |`` a literal block indented by six."""
    files: dict[str, str] = {}
    path, block = None, None
    for line in user_data.splitlines(keepends=True):
        if block is not None:
            if line.startswith("      ") or not line.strip():
                block.append(line[6:] if line.strip() else "\n")
                continue
            files[path], block = "".join(block), None
        if line.startswith("  - path: "):
            path = line[len("  - path: "):].strip()
        elif line == "    content: |\n":
            block = []
    if block is not None:
        files[path] = "".join(block)
    return files


def ddclient_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def inadyn_settings(text: str) -> dict[str, str]:
    """The settings of the one ``custom ddns { }`` block, quotes removed."""
    lines = text.splitlines()
    start = lines.index("custom ddns {")
    end = lines.index("}", start)
    settings = {}
    for line in lines[start + 1:end]:
        key, value = (part.strip() for part in line.split("=", 1))
        assert key not in settings, key
        settings[key] = value[1:-1] if value.startswith('"') and value.endswith('"') else value
    return settings


def hook_settings(text: str) -> dict[str, str]:
    """KEY=VALUE lines as hooks/dhclient-exit-hook reads them (comments skipped, values verbatim)."""
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def replace_once(text: str, old: str, new: str) -> str:
    """The one adaptation a test makes, of a line that must be there exactly once."""
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


def note_command(note: str) -> str:
    """The shell command the dhclient note carries between backquotes."""
    assert note.count("`") == 2, note
    return note.split("`")[1]


# ------------------------------------------------------------------ unit tests

def test_one_config_per_client():
    result = configs("https://ddns.example.org")
    assert [(c.key, c.title, c.filename) for c in result.values()] == [
        ("curl", "curl", ""),
        ("cloud-init", "cloud-init (user data)", "user-data"),
        ("ddclient", "ddclient.conf", "/etc/ddclient.conf"),
        ("inadyn", "inadyn.conf", "/etc/inadyn.conf"),
        ("dhclient", "dhclient exit hook", "/etc/ddns/dhclient.conf"),
        ("router", "Router (update URL)", ""),
    ]
    for c in result.values():
        assert c.text.endswith("\n") and "\n\n" not in c.text, c.key
        assert c.note and "\n" not in c.note, c.key


def test_fqdn_and_secret_where_they_must_be():
    c = configs("https://ddns.example.org")

    assert shlex.split(c["curl"].text) == [
        "curl", "-fsS", "-u", f"{FQDN}:{SECRET}", f"https://ddns.example.org/nic/update?hostname={FQDN}"]

    assert written_files(c["cloud-init"].text)["/etc/ddns/curl.conf"] == (
        f'user = "{FQDN}:{SECRET}"\n'
        'url = "https://ddns.example.org/nic/update"\n'
        "max-time = 30\nretry = 5\nretry-connrefused\nsilent\nshow-error\nfail\n")

    assert ddclient_lines(c["ddclient"].text) == [
        "protocol=dyndns2",
        "use=web, web=https://ddns.example.org/myip",
        "server=ddns.example.org",
        "ssl=yes",
        f"login={FQDN}",
        f"password='{SECRET}'",
        FQDN,
    ]

    assert inadyn_settings(c["inadyn"].text) == {
        "hostname": FQDN,
        "username": FQDN,
        "password": SECRET,
        "ssl": "true",
        "ddns-server": "ddns.example.org",
        "ddns-path": "/nic/update?hostname=%h&myip=%i",
        "checkip-server": "ddns.example.org",
        "checkip-path": "/myip",
        "checkip-ssl": "true",
    }

    assert hook_settings(c["dhclient"].text) == {
        "DDNS_SERVER": "https://ddns.example.org", "DDNS_FQDN": FQDN, "DDNS_SECRET_FILE": "/etc/ddns/secret"}
    assert SECRET not in c["dhclient"].text  # the settings file is not private: the secret has its own file
    assert note_command(c["dhclient"].note) == (
        "install -D -m 644 hooks/dhclient-exit-hook /etc/dhcp/dhclient-exit-hooks.d/ddns && "
        "install -D -m 600 /dev/null /etc/ddns/secret && "
        f"printf '%s\\n' '{SECRET}' >/etc/ddns/secret")

    assert c["router"].text.splitlines() == [
        "https://ddns.example.org/nic/update?hostname=<domain>&myip=<ipaddr>",
        f"https://{FQDN}:{SECRET}@ddns.example.org/nic/update?hostname={FQDN}&myip=<ipaddr>",
    ]
    assert FQDN in c["router"].note and "password" in c["router"].note

    # The secret is in every text but the hook's settings, and in no other note.
    assert [k for k, v in c.items() if SECRET in v.text] == ["curl", "cloud-init", "ddclient", "inadyn", "router"]
    assert [k for k, v in c.items() if SECRET in v.note] == ["dhclient"]


@pytest.mark.parametrize("scheme, ddclient_ssl, inadyn_ssl", [("https", "yes", "true"), ("http", "no", "false")])
def test_https_and_http(scheme, ddclient_ssl, inadyn_ssl):
    c = configs(f"{scheme}://ddns.example.org")
    assert f"\nssl={ddclient_ssl}\n" in c["ddclient"].text
    assert f"web={scheme}://ddns.example.org/myip\n" in c["ddclient"].text
    inadyn_conf = inadyn_settings(c["inadyn"].text)
    assert (inadyn_conf["ssl"], inadyn_conf["checkip-ssl"]) == (inadyn_ssl, inadyn_ssl)
    assert shlex.split(c["curl"].text)[-1].startswith(f"{scheme}://ddns.example.org/nic/update?")
    assert f'url = "{scheme}://ddns.example.org/nic/update"' in c["cloud-init"].text
    assert hook_settings(c["dhclient"].text)["DDNS_SERVER"] == f"{scheme}://ddns.example.org"
    assert all(line.startswith(f"{scheme}://") for line in c["router"].text.splitlines())
    other = "http" if scheme == "https" else "https"
    assert not any(f"{other}://" in v.text for v in c.values())


def test_port_and_path_prefix_in_every_config():
    c = configs("https://ddns.example.org:8443/ddns")
    base = "https://ddns.example.org:8443/ddns"

    assert shlex.split(c["curl"].text)[-1] == f"{base}/nic/update?hostname={FQDN}"
    assert f'url = "{base}/nic/update"\n' in written_files(c["cloud-init"].text)["/etc/ddns/curl.conf"]
    # ddclient's server= is host[:port] only; its dyndns2 request goes to server + script.
    assert ddclient_lines(c["ddclient"].text)[1:4] == [
        f"use=web, web={base}/myip", "server=ddns.example.org:8443", "script=/ddns/nic/update"]
    settings = inadyn_settings(c["inadyn"].text)
    assert (settings["ddns-server"], settings["ddns-path"]) == ("ddns.example.org:8443",
                                                              "/ddns/nic/update?hostname=%h&myip=%i")
    assert (settings["checkip-server"], settings["checkip-path"]) == ("ddns.example.org:8443", "/ddns/myip")
    assert hook_settings(c["dhclient"].text)["DDNS_SERVER"] == base
    assert c["router"].text.splitlines() == [
        f"{base}/nic/update?hostname=<domain>&myip=<ipaddr>",
        f"https://{FQDN}:{SECRET}@ddns.example.org:8443/ddns/nic/update?hostname={FQDN}&myip=<ipaddr>",
    ]
    for v in c.values():
        assert "ddns.example.org:8443" in v.text, v.key


def test_no_prefix_no_script_line_and_a_trailing_slash_is_ignored():
    plain = configs("http://127.0.0.1:8080")
    assert not any(line.startswith("script=") for line in ddclient_lines(plain["ddclient"].text))
    assert configs("http://127.0.0.1:8080/") == plain
    assert configs("https://example.org/ddns/") == configs("https://example.org/ddns")


def test_curl_line_is_quoted_for_sh():
    line = configs("http://127.0.0.1:8080/ddns")["curl"].text
    assert line == (f"curl -fsS -u '{FQDN}:{SECRET}' "
                    f"'http://127.0.0.1:8080/ddns/nic/update?hostname={FQDN}'\n")
    argv = shlex.split(line)
    assert argv == ["curl", "-fsS", "-u", f"{FQDN}:{SECRET}", f"http://127.0.0.1:8080/ddns/nic/update?hostname={FQDN}"]
    # sh itself splits it the same way (the ? and & of a URL are no glob or job control inside quotes).
    require("sh")
    out = subprocess.run(["sh", "-c", "set -- " + line.removeprefix("curl") + 'printf "%s\\n" "$@"'],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == argv[1:]


def test_cloud_init_user_data_is_yaml():
    text = configs("https://ddns.example.org")["cloud-init"].text
    assert text.startswith("#cloud-config\n")
    files = written_files(text)
    assert list(files) == ["/etc/ddns/curl.conf", "/etc/systemd/system/ddns-update.service",
                           "/etc/systemd/system/ddns-update.timer"]
    assert "ExecStart=/usr/bin/curl -K /etc/ddns/curl.conf\n" in files["/etc/systemd/system/ddns-update.service"]
    assert "OnUnitActiveSec=10min\n" in files["/etc/systemd/system/ddns-update.timer"]
    if yaml is not None:
        data = yaml.safe_load(text)
        assert {f["path"]: f["content"] for f in data["write_files"]} == files
        assert (data["write_files"][0]["owner"], data["write_files"][0]["permissions"]) == ("root:root", "0600")
        assert data["runcmd"] == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "ddns-update.timer"]]


@pytest.mark.parametrize("public_url, fqdn, secret", [
    ("ftp://ddns.example.org", FQDN, SECRET),
    ("ddns.example.org", FQDN, SECRET),
    ("https://", FQDN, SECRET),
    ("https://ddns.example.org/nic?x=1", FQDN, SECRET),
    ("https://ddns.example.org/#x", FQDN, SECRET),
    ("https://user:pw@ddns.example.org", FQDN, SECRET),
    ("https://ddns.example.org/d'dns", FQDN, SECRET),
    ("https://ddns.example.org/d%68ns", FQDN, SECRET),  # % would be a format specifier in inadyn's ddns-path
    ("https://ddns example.org", FQDN, SECRET),
    ("https://ddns.example.org:99999", FQDN, SECRET),
    ("https://ddns.example.org", "my vm.dyn.example.test", SECRET),
    ("https://ddns.example.org", "myvm.dyn.example.test'; reboot", SECRET),
    ("https://ddns.example.org", "", SECRET),
    ("https://ddns.example.org", FQDN, ""),
    ("https://ddns.example.org", FQDN, "it's"),
    ("https://ddns.example.org", FQDN, 'a"b'),
    ("https://ddns.example.org", FQDN, "a\nb"),
    ("https://ddns.example.org", FQDN, "a/b+c="),
])
def test_refuses_what_no_config_can_carry_safely(public_url, fqdn, secret):
    with pytest.raises(ValueError):
        client_configs(public_url, fqdn, secret)


def test_pure_and_frozen():
    first = client_configs("https://ddns.example.org", FQDN, SECRET)
    assert client_configs("https://ddns.example.org", FQDN, SECRET) == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        first[0].text = "rm -rf /"


# ----------------------------------------------------------- real clients

@pytest.fixture
def loopback(instance):
    """The service accepting loopback addresses, for configs that find their own address
    (the request's source or /myip): on this machine that is 127.0.0.1."""
    with serving(instance, {"dyndns2.allow_loopback": True}) as r:
        yield r


def register(running, name: str) -> tuple[str, str, dict[str, ClientConfig]]:
    fqdn = f"{name}.{ZONE}"
    secret = running.instance.add_host(fqdn)
    return fqdn, secret, configs(running.url, fqdn, secret)


def test_curl_line_with_myip(running):
    inst = running.instance
    fqdn, _, c = register(running, "curl1")
    argv = shlex.split(c["curl"].text)
    argv[-1] += "&myip=192.0.2.101"  # the adaptation the note suggests
    tool("curl")
    r = run(argv)
    assert (r.returncode, r.stdout) == (0, "good 192.0.2.101\n"), r.stderr
    assert inst.dig(fqdn) == ["192.0.2.101"]
    [rec] = head_records(inst)
    assert (rec.host, rec.new, rec.actor) == (fqdn, "192.0.2.101", f"host:{fqdn}")
    assert rec.agent.startswith("curl/")


def test_curl_line_as_generated_registers_the_callers_address(loopback):
    fqdn, _, c = register(loopback, "curl2")
    tool("curl")
    r = run(shlex.split(c["curl"].text))
    assert (r.returncode, r.stdout) == (0, "good 127.0.0.1\n"), r.stderr
    assert loopback.instance.dig(fqdn) == ["127.0.0.1"]


def test_cloud_init_curl_config_as_generated(loopback, tmp_path):
    """What the systemd unit runs: ``curl -K /etc/ddns/curl.conf`` with the file from the user data."""
    inst = loopback.instance
    fqdn, _, c = register(loopback, "cloudvm")
    conf = private_file(tmp_path / "curl.conf", written_files(c["cloud-init"].text)["/etc/ddns/curl.conf"])
    tool("curl")
    r = run(["curl", "-K", str(conf)])
    assert (r.returncode, r.stdout) == (0, "good 127.0.0.1\n"), r.stderr
    assert inst.dig(fqdn) == ["127.0.0.1"]
    before = inst.commit_count()
    r = run(["curl", "-K", str(conf)])  # the timer's next run
    assert (r.returncode, r.stdout) == (0, "nochg 127.0.0.1\n"), r.stderr
    assert inst.commit_count() == before


def test_ddclient_conf_with_a_given_address(running, tmp_path):
    inst = running.instance
    fqdn, _, c = register(running, "ddc1")
    conf = replace_once(c["ddclient"].text, f"use=web, web={running.url}/myip\n", "use=ip, ip=192.0.2.102\n")
    r = ddclient(tmp_path, "gen", conf)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"SENDING:  GET /nic/update?system=dyndns&hostname={fqdn}&myip=192.0.2.102 HTTP/1.1" in out, out
    assert f"SUCCESS:  updating {fqdn}: good: IP address set to 192.0.2.102" in out, out
    assert "FAILED" not in out, out
    assert inst.dig(fqdn) == ["192.0.2.102"]
    [rec] = head_records(inst)
    assert (rec.host, rec.new, rec.actor) == (fqdn, "192.0.2.102", f"host:{fqdn}")
    assert rec.agent.startswith("ddclient/3.10"), rec.agent


def test_ddclient_conf_as_generated_asks_myip(loopback, tmp_path):
    fqdn, _, c = register(loopback, "ddc2")
    r = ddclient(tmp_path, "asis", c["ddclient"].text)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "SENDING:  GET /myip HTTP/1.1" in out, out
    assert f"SUCCESS:  updating {fqdn}: good: IP address set to 127.0.0.1" in out, out
    assert loopback.instance.dig(fqdn) == ["127.0.0.1"]


def test_inadyn_conf_with_a_given_address(running, tmp_path):
    inst = running.instance
    fqdn, _, c = register(running, "ina1")
    # checkip-command takes precedence over checkip-server/-path.
    conf = replace_once(c["inadyn"].text, "\n}\n", '\n    checkip-command = "echo 192.0.2.103"\n}\n')
    r = inadyn(tmp_path, "gen", conf)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"GET /nic/update?hostname={fqdn}&myip=192.0.2.103 HTTP/1.0" in out, out
    assert f"Successful alias table update for {fqdn} => new IP# 192.0.2.103" in out, out
    assert inst.dig(fqdn) == ["192.0.2.103"]
    [rec] = head_records(inst)
    assert (rec.host, rec.new, rec.actor) == (fqdn, "192.0.2.103", f"host:{fqdn}")
    assert rec.agent.startswith("inadyn/2.10"), rec.agent


def test_inadyn_conf_as_generated_asks_myip(loopback, tmp_path):
    fqdn, _, c = register(loopback, "ina2")
    # inadyn refuses loopback addresses from a checkip server unless told not to verify them.
    r = inadyn(tmp_path, "asis", "verify-address = false\n" + c["inadyn"].text)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "GET /myip HTTP/1.0" in out, out
    assert f"Successful alias table update for {fqdn} => new IP# 127.0.0.1" in out, out
    assert loopback.instance.dig(fqdn) == ["127.0.0.1"]


def test_dhclient_hook_installed_and_configured_as_the_page_says(running, tmp_path):
    """The note's install command (its /etc paths moved into tmp_path) installs the hook and
    the secret; the generated settings file, byte for byte, configures it; DDNS_SECRET_FILE
    in the environment (which the hook prefers to the file) points at the moved secret."""
    inst = running.instance
    fqdn, secret, c = register(running, "dhcpvm")
    hook = tmp_path / "dhclient-exit-hooks.d" / "ddns"
    secret_file = tmp_path / "etc-ddns" / "secret"
    command = note_command(c["dhclient"].note)
    command = command.replace("/etc/dhcp/dhclient-exit-hooks.d/ddns", str(hook))
    command = command.replace("/etc/ddns/secret", str(secret_file))
    require("sh", "install")
    r = run(["sh", "-c", command], cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert hook.read_bytes() == HOOK.read_bytes()
    assert secret_file.read_text() == secret + "\n"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    settings = tmp_path / "dhclient.conf"
    settings.write_text(c["dhclient"].text)
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "DDNS_HOOK_CONFIG": str(settings),
           "DDNS_SECRET_FILE": str(secret_file), "DDNS_INTERFACE": "eth0", "DDNS_LOG": "stderr",
           "interface": "eth0", "reason": "BOUND", "new_ip_address": "192.0.2.104", "old_ip_address": ""}
    r = run(["/bin/sh", str(hook)], env=env)
    assert r.returncode == 0, r.stderr
    assert "good 192.0.2.104" in r.stderr, r.stderr
    assert inst.dig(fqdn) == ["192.0.2.104"]
    [rec] = head_records(inst)
    assert (rec.host, rec.new, rec.actor) == (fqdn, "192.0.2.104", f"host:{fqdn}")
    assert rec.agent.startswith("ddns-dhclient-hook/")


def test_router_urls(running):
    """A router fills in <domain> and <ipaddr> and sends the FQDN and secret as Basic credentials;
    the second line carries the credentials itself."""
    inst = running.instance
    fqdn, secret, c = register(running, "router")
    template, filled = c["router"].text.splitlines()
    tool("curl")

    url = template.replace("<domain>", fqdn).replace("<ipaddr>", "192.0.2.105")
    r = run(["curl", "-fsS", "--max-time", "30", "-u", f"{fqdn}:{secret}", url])
    assert (r.returncode, r.stdout) == (0, "good 192.0.2.105\n"), r.stderr
    assert inst.dig(fqdn) == ["192.0.2.105"]

    r = run(["curl", "-fsS", "--max-time", "30", filled.replace("<ipaddr>", "192.0.2.106")])
    assert (r.returncode, r.stdout) == (0, "good 192.0.2.106\n"), r.stderr
    assert inst.dig(fqdn) == ["192.0.2.106"]


def test_clients_send_the_path_prefix(running, tmp_path):
    """With a path prefix (a service behind a reverse proxy at /ddns) ddclient and inadyn send
    their update to /ddns/nic/update: here the service itself answers that path 404, so only
    the request line the clients log is checked, and that nothing changed."""
    inst = running.instance
    fqdn = f"prefixed.{ZONE}"
    secret = inst.add_host(fqdn)
    c = configs(running.url + "/ddns", fqdn, secret)
    before = inst.commit_count()

    conf = replace_once(c["ddclient"].text, f"use=web, web={running.url}/ddns/myip\n", "use=ip, ip=192.0.2.107\n")
    r = ddclient(tmp_path, "prefix", conf)
    out = r.stdout + r.stderr
    assert f"SENDING:  GET /ddns/nic/update?system=dyndns&hostname={fqdn}&myip=192.0.2.107 HTTP/1.1" in out, out
    assert "SUCCESS" not in out, out

    conf = replace_once(c["inadyn"].text, "\n}\n", '\n    checkip-command = "echo 192.0.2.108"\n}\n')
    r = inadyn(tmp_path, "prefix", conf)
    out = r.stdout + r.stderr
    assert f"GET /ddns/nic/update?hostname={fqdn}&myip=192.0.2.108 HTTP/1.0" in out, out
    assert "Successful alias table update" not in out, out

    assert inst.commit_count() == before
    assert inst.dig(fqdn) == []
