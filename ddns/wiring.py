"""How the publisher is built from the configuration: its repository, templates and BIND target.

Apart from the service so that tools which need only the publisher (the
CLI's repository checks, the benchmarks, the tests) build it the way
``ddns serve`` does, without the rest of the service.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from . import bind, catalog, resource_dir, shards
from .config import Config
from .gitrepo import ZonesRepo
from .publishing.bindtarget import PublishTarget
from .publishing.incremental import resolve_mode
from .publishing.publisher import Publisher

ZONE_TEMPLATES = resource_dir("templates") / "zone"


def zone_template_dirs(config: Config) -> list[Path]:
    """Where zone.j2 is looked up: the configured override first, then the shipped one."""
    return [p for p in [config.path("zones.templates"), ZONE_TEMPLATES] if p]


def shard_count(config: Config) -> int:
    """zones.shards, checked: the service's number of shards, which the repository checks render with too."""
    return shards.check_count(config["zones.shards"])


def build_publisher(config: Config, clock: Callable[[], float] = time.time, kind: type[Publisher] = Publisher,
                    **extra) -> Publisher:
    """The publisher (of class KIND, given EXTRA arguments) for CONFIG's zones repository and BIND."""
    rndc = bind.Rndc(config["bind.rndc_server"], config["bind.rndc_port"], config.path("bind.rndc_key"))
    target = PublishTarget(rndc=rndc, dns_server=config["bind.listen"], dns_port=config["bind.port"],
                           verify_timeout=config["bind.verify_timeout"], zones_conf=config.path("bind.zones_conf"),
                           checkzone=config["bind.checkzone"], zone_dir=config.path("bind.zone_dir"),
                           mode=resolve_mode(config["bind.publish"], config.path("bind.publisher_key"),
                                             config.path("bind.zone_dir")),
                           update_key=config.path("bind.publisher_key"),
                           fsync=config["zones.git_fsync"])
    repo = ZonesRepo(config.path("zones.repo"))
    if config.upstream:
        repo.set_upstream(config.upstream)
    return kind(repo, zone_template_dirs(config), target, clock=clock, fsync=config["zones.git_fsync"],
             shard_count=shard_count(config),
             catalog_zone=catalog.catalog_name(config["bind.catalog_zone"]), **extra)
