"""ddns.config: one TOML file plus DDNS_<SECTION>_<NAME> environment overrides."""
import tomllib
from pathlib import Path

import pytest

from ddns import config
from ddns.config import SETTINGS, ConfigError, find_config_file, load, reference_markdown, render_toml

DEFAULTS = {s.key: s.default for s in SETTINGS}


def write(tmp_path: Path, text: str, name: str = "ddns.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- defaults and file values


def test_defaults_without_file():
    cfg = load(None, environ={})
    assert cfg.as_dict() == DEFAULTS
    assert cfg["http.port"] == 8080
    assert cfg["bind.managed"] is True
    assert cfg["http.trusted_proxies"] == []
    assert cfg.source is None
    assert cfg.base_dir == Path.cwd()


def test_registry_is_consistent():
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    for s in SETTINGS:
        section, name = s.key.split(".")
        assert s.env_name == f"DDNS_{section.upper()}_{name.upper()}"
        assert s.doc.strip()
        if s.is_path:
            assert isinstance(s.default, str)


def test_defaults_are_not_shared_between_loads():
    a = load(None, environ={})
    a.as_dict()["http.trusted_proxies"].append("192.0.2.1")
    assert load(None, environ={})["http.trusted_proxies"] == []
    assert config.SETTINGS[[s.key for s in SETTINGS].index("http.trusted_proxies")].default == []


def test_file_values(tmp_path):
    path = write(tmp_path, """
[http]
listen = "0.0.0.0"
port = 8443
trusted_proxies = ["10.0.0.1", "192.168.0.0/16"]

[bind]
managed = false
verify_timeout = 2

[dyndns2]
allow_loopback = true
""")
    cfg = load(path, environ={})
    assert cfg["http.listen"] == "0.0.0.0"
    assert cfg["http.port"] == 8443
    assert cfg["http.trusted_proxies"] == ["10.0.0.1", "192.168.0.0/16"]
    assert cfg["bind.managed"] is False
    assert cfg["bind.verify_timeout"] == 2.0 and isinstance(cfg["bind.verify_timeout"], float)
    assert cfg["dyndns2.allow_loopback"] is True
    assert cfg["http.threads"] == DEFAULTS["http.threads"]  # untouched settings keep defaults
    assert cfg.source == path


def test_relative_paths_resolve_against_the_config_files_directory(tmp_path):
    path = write(tmp_path, """
[store]
path = "data/ddns.sqlite3"
[zones]
repo = "../shared/zones"
[http]
tls_cert = "/etc/ssl/ddns.pem"
""", name="etc/ddns/ddns.toml")
    cfg = load(path, environ={})
    conf_dir = (tmp_path / "etc" / "ddns").resolve()
    assert cfg.base_dir == conf_dir
    assert cfg.path("store.path") == conf_dir / "data" / "ddns.sqlite3"
    assert cfg.path("zones.repo") == conf_dir / ".." / "shared" / "zones"
    assert cfg.path("bind.rndc_key") == conf_dir / "bind" / "rndc.key"  # defaults too
    assert cfg.path("http.tls_cert") == Path("/etc/ssl/ddns.pem")  # absolute stays
    assert cfg.path("http.tls_key") is None  # empty means unset
    assert cfg.path("zones.templates") is None


def test_relative_config_path_is_resolved(tmp_path, monkeypatch):
    write(tmp_path, '[store]\npath = "x.db"\n', name="sub/ddns.toml")
    monkeypatch.chdir(tmp_path)
    cfg = load(Path("sub/ddns.toml"), environ={})
    assert cfg.base_dir.is_absolute()
    assert cfg.path("store.path") == (tmp_path / "sub" / "x.db").resolve()


def test_public_url():
    assert load(None, environ={}).public_url == "http://127.0.0.1:8080"
    cfg = load(None, environ={}, overrides={"http.tls_cert": "c.pem", "http.port": 8443, "http.listen": "192.0.2.1"})
    assert cfg.public_url == "https://192.0.2.1:8443"
    cfg = load(None, environ={}, overrides={"http.public_url": "https://ddns.example.test/"})
    assert cfg.public_url == "https://ddns.example.test"


# ---------------------------------------------------------------- environment


def test_environment_overrides(tmp_path):
    path = write(tmp_path, "[http]\nport = 9000\n[bind]\nmanaged = true\n")
    cfg = load(path, environ={
        "DDNS_HTTP_PORT": "9100",
        "DDNS_BIND_MANAGED": "false",
        "DDNS_HTTP_TRUSTED_PROXIES": "a,b",
        "DDNS_BIND_VERIFY_TIMEOUT": "0.5",
        "DDNS_DYNDNS2_REALM": "My DDNS",
        "DDNS_UNRELATED": "ignored",
        "HOME": "/nowhere",
    })
    assert cfg["http.port"] == 9100  # env beats the file
    assert cfg["bind.managed"] is False
    assert cfg["http.trusted_proxies"] == ["a", "b"]
    assert cfg["bind.verify_timeout"] == 0.5
    assert cfg["dyndns2.realm"] == "My DDNS"


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True),
    ("false", False), ("False", False), ("0", False), ("no", False),
])
def test_environment_booleans(text, expected):
    assert load(None, environ={"DDNS_BIND_MANAGED": text})["bind.managed"] is expected


@pytest.mark.parametrize("text, expected", [
    ("", []),
    ("a", ["a"]),
    (" a , b ,, c ", ["a", "b", "c"]),
    ("10.0.0.0/8,2001:db8::/32", ["10.0.0.0/8", "2001:db8::/32"]),
])
def test_environment_lists(text, expected):
    assert load(None, environ={"DDNS_HTTP_TRUSTED_PROXIES": text})["http.trusted_proxies"] == expected


def test_overrides_beat_environment():
    cfg = load(None, environ={"DDNS_HTTP_PORT": "9100"}, overrides={"http.port": 9200})
    assert cfg["http.port"] == 9200


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize("env, words", [
    ({"DDNS_HTTP_PORT": "eighty"}, ["DDNS_HTTP_PORT", "http.port", "int", "eighty"]),
    ({"DDNS_HTTP_PORT": ""}, ["DDNS_HTTP_PORT", "http.port"]),
    ({"DDNS_HTTP_PORT": "80.5"}, ["DDNS_HTTP_PORT", "80.5"]),
    ({"DDNS_BIND_MANAGED": "maybe"}, ["DDNS_BIND_MANAGED", "bind.managed", "true or false", "maybe"]),
    ({"DDNS_BIND_MANAGED": ""}, ["DDNS_BIND_MANAGED"]),
    ({"DDNS_BIND_VERIFY_TIMEOUT": "soon"}, ["DDNS_BIND_VERIFY_TIMEOUT", "bind.verify_timeout", "float", "soon"]),
])
def test_bad_environment_values(env, words):
    with pytest.raises(ConfigError) as info:
        load(None, environ=env)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("[http]\nport = true\n", ["http.port", "int"]),
    ("[http]\nport = 80.5\n", ["http.port", "int"]),
    ('[http]\nport = "eighty"\n', ["http.port", "eighty"]),
    ("[bind]\nmanaged = 1\n", ["bind.managed", "bool"]),
    ('[bind]\nmanaged = "perhaps"\n', ["bind.managed", "perhaps"]),
    ("[http]\nlisten = 127\n", ["http.listen", "str"]),
    ("[bind]\nverify_timeout = true\n", ["bind.verify_timeout"]),
    ("[http]\ntrusted_proxies = 5\n", ["http.trusted_proxies", "list"]),
    ("[http]\nport = 8080\nport = 8081\n", []),
    ("[http\nport = 8080\n", []),
    ("port = 8080\n", ["[port]", "table"]),
])
def test_bad_file_values(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(path) in str(info.value)  # says which file
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("text, key", [
    ("[http]\nprot = 8080\n", "http.prot"),
    ("[htpp]\nport = 8080\n", "htpp.port"),
    ("[http.extra]\nx = 1\n", "http.extra"),
])
def test_unknown_setting_in_file(tmp_path, text, key):
    with pytest.raises(ConfigError, match="unknown setting " + key.replace(".", r"\.")):
        load(write(tmp_path, text), environ={})


def test_unknown_override():
    with pytest.raises(ConfigError, match="unknown setting http.prot"):
        load(None, environ={}, overrides={"http.prot": 1})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no config file"):
        load(tmp_path / "absent.toml", environ={})


def test_string_settings_take_environment_text_verbatim():
    assert load(None, environ={"DDNS_HTTP_LISTEN": "::1"})["http.listen"] == "::1"


# ---------------------------------------------------------------- find_config_file


def test_find_config_file_order(tmp_path):
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "ddns.toml").write_text("")
    env = {"DDNS_CONFIG": str(tmp_path / "from-env.toml")}
    assert find_config_file("explicit.toml", env, cwd=here) == Path("explicit.toml")
    assert find_config_file(None, env, cwd=here) == tmp_path / "from-env.toml"
    assert find_config_file(None, {}, cwd=here) == here / "ddns.toml"
    assert find_config_file(None, {"DDNS_CONFIG": ""}, cwd=here) == here / "ddns.toml"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_config_file(None, {}, cwd=empty) is None


def test_config_named_by_environment_must_exist(tmp_path):
    path = find_config_file(None, {"DDNS_CONFIG": str(tmp_path / "missing.toml")}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="no config file"):
        load(path, environ={})


# ---------------------------------------------------------------- render_toml / reference


def test_render_toml_of_defaults_loads_back_to_defaults(tmp_path):
    text = render_toml({})
    assert all(table == {} for table in tomllib.loads(text).values())  # every value commented out
    assert load(write(tmp_path, text), environ={}).as_dict() == DEFAULTS


def _changed(default):
    """A value of the same type as DEFAULT that differs from it."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 7
    if isinstance(default, float):
        return default + 0.25
    if isinstance(default, list):
        return ["10.0.0.1", "2001:db8::/32"]
    return (default or "value") + "-changed"


def test_render_toml_round_trip_of_every_setting(tmp_path):
    values = {s.key: _changed(s.default) for s in SETTINGS}
    values.update({
        "http.listen": "::",
        "http.tls_key": "/etc/ssl/private/k.pem",
        "zones.repo": "zones repo",
        "bind.verify_timeout": 1e-3,
        "dyndns2.realm": 'say "hi" \\ to C:\\dns',
        "dyndns2.blocked_user_agents": ["bad\"agent", "back\\slash", "ünïcödé"],
    })
    assert all(values[k] != v for k, v in DEFAULTS.items())
    cfg = load(write(tmp_path, render_toml(values)), environ={})
    assert cfg.as_dict() == values
    for key, value in values.items():
        assert type(cfg[key]) is type(value), key


def test_render_toml_round_trip_of_control_characters(tmp_path):
    values = {"dyndns2.realm": "line1\nline2\ttab\r\x00\x1f\x7f end"}
    cfg = load(write(tmp_path, render_toml(values)), environ={})
    assert cfg["dyndns2.realm"] == values["dyndns2.realm"]


def test_render_toml_partial_values_keep_other_defaults(tmp_path):
    text = render_toml({"http.port": 9999})
    assert "port = 9999" in text.splitlines()
    assert "# listen = \"127.0.0.1\"" in text.splitlines()
    cfg = load(write(tmp_path, text), environ={})
    assert cfg.as_dict() == {**DEFAULTS, "http.port": 9999}


def test_render_toml_documents_every_setting():
    text = render_toml({})
    for s in SETTINGS:
        assert s.env_name in text
        assert s.doc in text


def test_reference_markdown_lists_every_setting():
    text = reference_markdown()
    lines = text.splitlines()
    assert lines[0].startswith("| setting |")
    rows = lines[2:]
    assert len(rows) == len(SETTINGS)
    for s, row in zip(SETTINGS, rows):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[0] == f"`{s.key}`"
        assert cells[2] == f"`{s.env_name}`"
        assert cells[3] == s.doc


def test_readme_documents_every_setting_as_the_registry_says():
    from pathlib import Path
    from ddns.config import reference_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert reference_markdown() in readme, "regenerate the README table with: ddns config --markdown"
