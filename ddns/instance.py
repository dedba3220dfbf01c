"""Setting up an instance on disk: config, database, zones repositories, private BIND, hooks.

What ``ddns init`` and ``ddns hooks install`` do, apart from the command line,
so tests and benchmarks make instances the same way. Secrets are created
readable by the service only (``private``).
"""
from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from . import bind, config as configmod, errors, keyconfigs, namedconf, private, provenance, resource_dir, zones
from .auth import new_secret
from .gitrepo import ZonesRepo
from .publishing.incremental import RELOAD, resolve_mode
from .publishing.publisher import Publisher
from .service import Service


def init_instance(directory: Path, http_port: int = 8080, dns_port: int = 5353, rndc_port: int | None = None,
                  zone: str = "dyn.example.test", extra: Mapping[str, Any] | None = None,
                  update_port: int = 0) -> configmod.Config:
    """A self-contained instance in DIRECTORY: config, SQLite, zones repo, private BIND.

    UPDATE_PORT is the RFC 2136 listener's (``ddns init`` asks for 5053; 0: none).

    The config, the database and BIND's directory are for the service's user
    only (``private``); the bare repository keeps a hash of the push token.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "ddns.toml"
    if config_path.exists():
        raise errors.Conflict(f"{config_path} exists; not overwriting an instance")
    values = {"http.port": http_port, "bind.port": dns_port, "bind.rndc_port": rndc_port or dns_port + 1,
              "dnsupdate.port": update_port,
              "zones.upstream": "zones.git", "zones.push_token": new_secret(), **(extra or {})}
    private.write_new(config_path, configmod.render_toml(values))
    cfg = configmod.load(config_path, environ={})
    bind_dir = cfg.path("bind.dir")
    private.make_dir(bind_dir)  # rndc.key
    bind.create_rndc_key(bind_dir)
    cfg.path("bind.zones_conf").write_text(bind.zones_conf({}))
    prepare_managed_bind(cfg)
    repo_dir = cfg.path("zones.repo")
    shutil.copytree(resource_dir("zones-repo"), repo_dir, dirs_exist_ok=True)
    repo = ZonesRepo.init(repo_dir, fsync=cfg["zones.git_fsync"])
    repo.commit(["."], "Start the zones repository\n")
    if cfg.upstream:
        bare = Path(cfg.upstream)
        subprocess.run(["git", "init", "-q", "--bare", "-b", cfg["zones.branch"], str(bare)], check=True)
        repo.set_upstream(str(bare))
    service = Service.open(cfg)
    service.add_domain(zone, actor="ddns init")
    if cfg.upstream:
        service.publisher.push(cfg["zones.branch"], cfg["zones.push_token"])
        install_hooks(bare, config_path, cfg["zones.push_token"])
    return cfg


def prepare_managed_bind(cfg: configmod.Config) -> None:
    """The managed named's keys (generated once) and named.conf (written again), before it starts.

    The publisher key signs updates (an instance made by an older version has
    none: ``ddns serve`` calls this first, so it publishes incrementally too);
    the transfer key is the secondaries' (``ddns secondary config``). A
    named.conf that ddns did not write (no header) is left alone.
    """
    bind_dir = cfg.path("bind.dir")
    key = cfg.path("bind.publisher_key")
    if cfg["bind.publish"] != RELOAD and key is not None and not key.exists():
        bind.create_publisher_key(key)
    transfer = cfg.path("bind.transfer_key")
    if transfer is not None and not transfer.exists():
        bind.create_publisher_key(transfer, bind.TRANSFER_KEY_NAME)
    conf = bind_dir / "named.conf"
    if conf.exists() and not conf.read_text().startswith(bind.NAMED_CONF_HEADER):
        return
    text = bind.named_conf(bind_dir, cfg.path("bind.zones_conf"), cfg["bind.listen"], cfg["bind.port"],
                           cfg["bind.rndc_port"], key if key is not None and key.exists() else None, transfer,
                           cfg["bind.notify"], namedconf.endpoints(cfg["bind.also_notify"], "bind.also_notify"),
                           full_loads=_journals_full_loads(cfg, key))
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)


def open_serving(cfg: configmod.Config) -> tuple[Service, bind.ManagedNamed | None]:
    """The service of ``ddns serve``, its zones loaded, and its managed named (if any) started.

    named loads only its own copies of the zones, which are written only from
    what is committed, never the working tree: so once the repository is
    recovered, a named whose copies of every zone are there, and whose zone
    list names exactly them, starts while the zones load (named's own load of
    a zone of 100k records takes about as long as ours); a stale copy is the
    reconcile's to load again, as at any start. Without them (a new zone, an
    instance of an older version) named starts after the load, on copies
    written from what was loaded.
    """
    if not cfg["bind.managed"]:
        return Service.open(cfg), None
    rndc = bind.Rndc(cfg["bind.rndc_server"], cfg["bind.rndc_port"], cfg.path("bind.rndc_key"))
    named = bind.ManagedNamed(cfg.path("bind.dir"), rndc, cfg["bind.named"])

    def launch_if_ready(publisher: Publisher) -> None:
        if publisher.named.copies_ready(zones.list_zones(publisher.root)):
            named.launch()

    try:
        service = Service.open(cfg, before_load=launch_if_ready)
        if named.process is None:
            service.prepare_named()
            named.launch()
        named.wait_ready()
    except BaseException:
        named.stop()
        raise
    return service, named


def freeze_loaded() -> None:
    """Take what the start-up made (the zones' records, the modules) out of the cyclic garbage collector's walks.

    It lives as long as the process, yet every full collection (a few a
    burst) walked all of it again: 50-70 ms each at 10k records. Collected
    once first, so no start-up garbage is kept for good (``gc.freeze``).
    """
    gc.collect()
    gc.freeze()


def unfreeze_loaded() -> None:
    """Give what ``freeze_loaded`` took back to the collector, at the serve's stop: a serve run in a
    thread (the tests run many in one process) must leave no stopped service's graph frozen for good."""
    gc.unfreeze()


def _journals_full_loads(cfg: configmod.Config, key: Path | None) -> bool:
    """Whether named keeps the differences of full loads (``ixfr-from-differences``) for secondaries:
    in reload mode, beside its own copies of the zones (never a journal in the Git working tree)."""
    zone_dir = cfg.path("bind.zone_dir")
    return zone_dir is not None and resolve_mode(cfg["bind.publish"], key, zone_dir) == RELOAD


def demo_key(service: Service, directory: Path, fqdn: str) -> Path:
    """A new host key for FQDN (replacing the last run's) in DIRECTORY/demo.key, readable by this user only."""
    for key in service.keys(None, host=fqdn, kind="host"):
        service.delete_key(None, key.name)
    key, secret = service.add_key(None, fqdn)
    path = directory / "demo.key"
    path.unlink(missing_ok=True)
    private.write_new(path, keyconfigs.key_file(key.name, key.algorithm, secret))
    return path


HOOK_FILES = {"pre-receive": 0o755, "post-receive": 0o755, "ddns-service-push": 0o644}


def install_hooks(bare: Path, config_path: Path | None, token: str) -> None:
    """Install pre-receive and post-receive into the bare repository BARE, tied to CONFIG_PATH.

    The repository keeps only the SHA-256 of the service's push TOKEN (every
    pusher may be able to read its config); a plain token that an older
    version stored there is removed.
    """
    hooks_dir = bare / "hooks"
    hooks_dir.mkdir(exist_ok=True)
    for name, mode in HOOK_FILES.items():
        target = hooks_dir / name
        shutil.copyfile(resource_dir("hooks") / name, target)
        target.chmod(mode)
    settings = {"ddns.python": sys.executable, "receive.advertisePushOptions": "true"}
    if token:
        settings[provenance.TOKEN_HASH_CONFIG] = provenance.token_hash(token)
    if config_path is not None:
        settings["ddns.config"] = str(config_path.resolve())
    for key, value in settings.items():
        subprocess.run(["git", "-C", str(bare), "config", key, value], check=True)
    unset = [provenance.LEGACY_TOKEN_CONFIG] + ([] if token else [provenance.TOKEN_HASH_CONFIG])
    for key in unset:  # exit code 5: it was not set
        subprocess.run(["git", "-C", str(bare), "config", "--unset-all", key], check=False, capture_output=True)


def narrow_secrets(cfg: configmod.Config) -> None:
    """Take others' access off the config and BIND's directory and key (an older version made them 0644 / 0755)."""
    for path in (cfg.source, cfg.path("bind.dir"), cfg.path("bind.rndc_key"), cfg.path("bind.publisher_key"),
                 cfg.path("bind.transfer_key")):
        if path is not None:
            private.narrow(path)
