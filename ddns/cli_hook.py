"""``ddns hook pre-receive|post-receive``: the zones repository's hooks (run by ddns.cli).

pre-receive checks each pushed revision of the published branch
(``gitops.check_revision``: valid zones, the guard rails unless forced) and
refuses the push when one fails; post-receive publishes what was pushed. The
service's own pushes were validated and published already.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from . import catalog, gitops, provenance
from .config import Config
from .service import Service
from .wiring import shard_count, zone_template_dirs

ZERO = "0" * 40


def run_hook(which: str, cfg: Config, repo: Path, environ: Mapping[str, str], stdin_text: str,
             err: Callable[[str], None]) -> bool:
    """Run hook WHICH in the bare repository REPO for the 'OLD NEW REF' lines of STDIN_TEXT; False: refuse."""
    options = provenance.push_options(environ)
    if provenance.is_service_push(options, gitops.git_output(repo, "config", provenance.TOKEN_HASH_CONFIG, check=False)):
        return True  # the service's own push: already validated and published
    branch_ref = f"refs/heads/{cfg['zones.branch']}"
    lines = [line.split() for line in stdin_text.splitlines() if line.strip()]
    updates = [(old, new) for old, new, ref in lines if ref == branch_ref]
    if which == "post-receive":
        if updates:
            for zone, state in sorted(Service.open(cfg).sync().items()):
                err(f"ddns: zone {zone}: {state}")
        return True
    ok = True
    for old, new in updates:
        if new == ZERO:
            err(f"ddns: refusing to delete {branch_ref}")
            ok = False
        elif not _check_push(cfg, repo, None if old == ZERO else old, new, options, err):
            ok = False
    return ok


def _check_push(cfg: Config, repo: Path, old: str | None, new: str, options: list[str],
                err: Callable[[str], None]) -> bool:
    """Whether the push of NEW over OLD may land; says why not (or what it changes) on ERR."""
    report = gitops.check_revision(repo, new, old, zone_template_dirs(cfg),
                                   checkzone=cfg["bind.checkzone"], max_share=cfg["zones.max_change_share"],
                                   host_labels=gitops.host_labels_in(cfg.path("zones.repo")),
                                   shard_count=shard_count(cfg), catalog=catalog.catalog_name(cfg["bind.catalog_zone"]))
    forced = gitops.FORCE_PUSH_OPTION in options or gitops.forced_by_commits(repo, old, new)
    for error in report.errors:
        err(f"ddns: error: {error}")
    for problem in report.guarded:
        err(f"ddns: {'forced' if forced else 'refused'}: {problem}")
    if report.guarded and not forced:
        err(f"ddns: push again with `git push -o {gitops.FORCE_PUSH_OPTION}` or a "
            f"`{gitops.FORCE_TRAILER}: yes` trailer if this is intended")
    if not report.ok(forced):
        return False
    err("ddns: " + gitops.format_plan(report.plans).strip().replace("\n", "\nddns: "))
    return True
