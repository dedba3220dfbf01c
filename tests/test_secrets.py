"""Secrets at rest: what ``ddns init`` and the store create is for the service's user only.

The config holds the push token (and OIDC / webhook secrets), the database
secret hashes and sessions, bind/rndc.key the key that controls named. The
bare repository that pushers read holds none of them (only a hash of the
push token; test_gitops_hooks.py shows that a pusher cannot use it).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ddns import cli
from ddns.store import Store

from conftest import REQUIRED_TOOLS, free_port, require


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_instance(directory: Path, umask: int) -> Path:
    """``ddns init`` under UMASK (the modes must not depend on it); returns the config path."""
    require(*REQUIRED_TOOLS)
    old = os.umask(umask)
    try:
        cli.init_instance(directory, free_port(), free_port(), free_port(),
                          extra={"security.bcrypt_rounds": 4, "zones.git_fsync": False})
    finally:
        os.umask(old)
    return directory / "ddns.toml"


def test_init_leaves_secrets_readable_by_the_service_only(tmp_path):
    directory = tmp_path / "inst"
    config_path = make_instance(directory, 0o000)
    inst_cfg = cli.configmod.load(config_path, environ={})
    db = inst_cfg.path("store.path")
    store = Store(db)
    store.add_user("alice", None, False, 0.0)  # a write: the -wal and -shm files exist now
    assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
    assert mode(config_path) == 0o600
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert mode(path) == 0o600, f"{path.name}: {oct(mode(path))}"
    bind_dir = inst_cfg.path("bind.dir")
    assert mode(bind_dir) == 0o700
    assert mode(bind_dir / "rndc.key") & 0o077 == 0
    token = inst_cfg["zones.push_token"].encode()
    rndc_secret = next(line.split('"')[1] for line in (bind_dir / "rndc.key").read_text().splitlines()
                       if "secret" in line).encode()
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if token in data or rndc_secret in data or path in (db, bind_dir / "rndc.key"):
            assert "zones.git" not in path.parts, f"{path} in the repository pushers read holds a secret"
            assert mode(path) & 0o077 == 0, f"{path}: {oct(mode(path))}"


def test_store_narrows_a_database_left_readable_by_others(tmp_path):
    db = tmp_path / "old.sqlite3"
    Store(db).add_user("alice", None, False, 0.0)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.chmod(0o644)
    store = Store(db)
    assert [u.name for u in store.users()] == ["alice"]
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert mode(path) == 0o600, f"{path.name}: {oct(mode(path))}"


def test_only_the_token_itself_proves_a_service_push():
    from ddns import provenance

    token = "s3cret-token"
    stored = provenance.token_hash(token)
    env = provenance.push_environment(token)
    assert token not in " ".join(env)  # keys only; the value goes through git's environment config
    assert provenance.is_service_push([f"ddns-service-token={token}"], stored)
    assert provenance.is_service_push(["ddns-force", f"ddns-service-token={token}"], stored)
    for options in ([], [f"ddns-service-token={stored}"], ["ddns-service-token="], [token],
                    [f"ddns-service-token={token}x"], [f"x-ddns-service-token={token}"]):
        assert not provenance.is_service_push(options, stored), options
    assert not provenance.is_service_push([f"ddns-service-token={token}"], "")
    assert not provenance.is_service_push([f"ddns-service-token={token}", "ddns-service-token=\u00e9"], "\u00e9")
    assert provenance.push_options({"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "a",
                                    "GIT_PUSH_OPTION_1": "b"}) == ["a", "b"]
    assert provenance.push_options({"GIT_PUSH_OPTION_COUNT": "x"}) == []


def test_serve_narrows_what_an_older_version_left_readable(instance):
    """An instance made before: config 0644, bind/ 0755, database 0644, the service clone's config 0644."""
    from conftest import serving

    cfg = instance.config
    loose = [instance.config_path, cfg.path("store.path"), instance.repo / ".git" / "config"]
    for path in loose:
        path.chmod(0o644)
    cfg.path("bind.dir").chmod(0o755)
    with serving(instance):
        pass
    for path in loose:
        assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"
    assert mode(cfg.path("bind.dir")) == 0o700
