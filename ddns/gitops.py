"""Checking and planning human changes to the zones repository (pull requests, pushes).

In the spirit of octoDNS: a plan (records added / removed / changed per zone)
and a separate safety check over it, both pure; ``check_revision`` renders a
revision's zones in a temporary directory -- the head from the sources, the
shards in place of its ``$INCLUDE`` lines -- and runs the real named-checkzone
on the assembled file, naming the file and line a human has to fix.
``committed_zone`` assembles a zone as committed at a revision (``ddns show``).
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dns.exception
import dns.rdatatype
import dns.zone
import jinja2

from . import bind, errors, shards, zones
from .gitrepo import TRAILER
from .provenance import is_service_file

# (owner relative to the zone, type) -> sorted "TTL RDATA" texts
Records = dict[tuple[str, str], tuple[str, ...]]

FORCE_TRAILER = "Ddns-Force"
FORCE_PUSH_OPTION = "ddns-force"
MIN_RECORDS_FOR_SHARE = 10  # smaller zones are exempt from the share guard rail


def zone_records(text: str, zone: str) -> Records:
    """The records of a zone file, SOA left out (its serial changes with every publish)."""
    parsed = dns.zone.from_text(text, origin=zone + ".", relativize=True, check_origin=False)
    records: Records = {}
    for name, node in parsed.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype == dns.rdatatype.SOA:
                continue
            key = (name.to_text(), dns.rdatatype.to_text(rdataset.rdtype))
            records[key] = tuple(sorted(f"{rdataset.ttl} {rdata.to_text()}" for rdata in rdataset))
    return records


@dataclass
class ZonePlan:
    """What a change does to one zone."""

    zone: str
    status: str  # "added", "removed", "changed"
    added: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    removed: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    changed: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    existing: int = 0  # record sets before the change

    @property
    def empty(self) -> bool:
        return self.status == "changed" and not (self.added or self.removed or self.changed)

    def as_dict(self) -> dict:
        return {"zone": self.zone, "status": self.status, "existing": self.existing,
                "added": [{"name": n, "type": t, "values": list(v)} for n, t, v in self.added],
                "removed": [{"name": n, "type": t, "values": list(v)} for n, t, v in self.removed],
                "changed": [{"name": n, "type": t, "old": list(o), "new": list(w)} for n, t, o, w in self.changed]}


def diff_records(zone: str, old: Records | None, new: Records | None) -> ZonePlan:
    """The plan from OLD to NEW records (None: the zone does not exist on that side)."""
    status = "added" if old is None else "removed" if new is None else "changed"
    old, new = old or {}, new or {}
    plan = ZonePlan(zone, status, existing=len(old))
    for key in sorted(set(old) | set(new)):
        name, rtype = key
        if key not in old:
            plan.added.append((name, rtype, new[key]))
        elif key not in new:
            plan.removed.append((name, rtype, old[key]))
        elif old[key] != new[key]:
            plan.changed.append((name, rtype, old[key], new[key]))
    return plan


def guard_problems(plan: ZonePlan, max_share: float, min_records: int = MIN_RECORDS_FOR_SHARE) -> list[str]:
    """What makes PLAN too dangerous to publish without being forced."""
    problems = []
    if plan.status == "removed":
        problems.append(f"{plan.zone}: the whole zone would be removed ({plan.existing} record sets)")
        return problems
    if plan.status == "changed":
        # A TTL change (zone.toml's ttl) keeps the delegation: only other name servers count.
        apex_ns = [c for c in plan.changed if c[:2] == ("@", "NS")
                   and sorted(v.split(" ", 1)[-1] for v in c[2]) != sorted(v.split(" ", 1)[-1] for v in c[3])]
        apex_ns += [r for r in plan.removed if r[:2] == ("@", "NS")]
        if apex_ns:
            problems.append(f"{plan.zone}: the apex NS records would change")
        touched = len(plan.removed) + len(plan.changed)
        if plan.existing >= min_records and touched > max_share * plan.existing:
            problems.append(f"{plan.zone}: {touched} of {plan.existing} record sets would be deleted or rewritten "
                            f"(more than {max_share:.0%})")
    return problems


def format_plan(plans: list[ZonePlan]) -> str:
    """The plan as Markdown, fit for a pull-request comment."""
    if not plans or all(p.empty for p in plans):
        return "No DNS changes.\n"
    out = []
    for plan in plans:
        if plan.empty:
            continue
        out.append(f"### {plan.zone} ({plan.status})\n")
        out.append(f"{len(plan.added)} added, {len(plan.removed)} removed, {len(plan.changed)} changed "
                   f"(of {plan.existing} record sets)\n")
        rows = [f"| + | `{n}` | {t} | {', '.join(v)} |" for n, t, v in plan.added]
        rows += [f"| - | `{n}` | {t} | {', '.join(v)} |" for n, t, v in plan.removed]
        rows += [f"| ~ | `{n}` | {t} | {', '.join(o)} → {', '.join(w)} |" for n, t, o, w in plan.changed]
        if rows:
            out.append("| | name | type | records |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(out)


# ---- checking a revision of a repository --------------------------------------------------

def git_output(repo: Path, *args: str, check: bool = True) -> str:
    """Output of ``git -C REPO ARGS`` (stripped); GitOpsError when it fails and CHECK."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise GitOpsError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


class GitOpsError(errors.Invalid):
    """A revision could not be read."""


def zones_at(repo: Path, rev: str | None) -> set[str]:
    """Zones (directories with a zone.toml) at REV; none for no revision."""
    if rev is None:
        return set()
    names = git_output(repo, "ls-tree", "--name-only", "-r", rev).splitlines()
    return {p.split("/")[0] for p in names if p.count("/") == 1 and p.endswith("/" + zones.SETTINGS_FILE)}


def tree_files(repo: Path, rev: str, prefix: str) -> list[tuple[str, str, bytes]]:
    """(mode, path, content) of every blob under PREFIX at REV: two git processes, whatever the number of files."""
    entries = []
    for entry in filter(None, git_output(repo, "ls-tree", "-r", "-z", rev, "--", prefix).split("\0")):
        meta, path = entry.split("\t", 1)
        mode, kind, oid = meta.split()
        if kind == "blob":
            entries.append((mode, path, oid))
    if not entries:
        return []
    proc = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch"], capture_output=True, check=True,
                          input="".join(f"{oid}\n" for _, _, oid in entries).encode())
    out, pos, files = proc.stdout, 0, []
    for mode, path, _ in entries:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        files.append((mode, path, out[header_end + 1: header_end + 1 + size]))
        pos = header_end + 2 + size  # the content, then a newline
    return files


def _materialize(repo: Path, rev: str, zone: str, target: Path) -> Path:
    """Write ZONE's files at REV into TARGET/ZONE as a checkout has them (symbolic links as links, unfollowed)."""
    zone_dir = target / zone
    zone_dir.mkdir(parents=True, exist_ok=True)
    for mode, path, blob in tree_files(repo, rev, f"{zone}/"):
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            os.symlink(blob, target / path)
        else:
            (target / path).write_bytes(blob)
    return zone_dir


def committed_zone(repo: Path, zone: str, rev: str = "HEAD") -> str:
    """ZONE as committed at REV, as one file (its head with the shards in place): what named serves.

    NotFound when REV is no revision or has no such zone; a revision of the
    old layout has the whole zone in its head already.
    """
    commit = git_output(repo, "rev-parse", "-q", "--verify", f"{rev}^{{commit}}", check=False)
    if not commit or rev.startswith("-"):
        raise errors.NotFound(f"no revision {rev!r} in the zones repository")
    files = {path[len(zone) + 1:]: blob for _, path, blob in tree_files(repo, commit, f"{zone}/")}
    head = files.get(zones.rendered_file(zone))
    if head is None:
        raise errors.NotFound(f"no zone {zone!r} at {rev}")
    text = head.decode()
    try:
        return shards.assemble(text, {rel: files[rel].decode() for rel in shards.included(text)})
    except KeyError as exc:
        raise errors.NotFound(f"{zone} at {rev} includes {exc.args[0]}, which that revision lacks") from exc


def zone_records_in(files: dict[str, str]) -> dict:
    """The dynamic records of a zone's files (path relative to the zone -> text): its shards or the old dynamic.records."""
    found = {rel: text for rel, text in files.items() if shards.is_shard_path(rel) or rel == zones.DYNAMIC_FILE}
    return shards.parse_shards(found)


@dataclass
class ZoneCheck:
    zone: str
    text: str | None      # the rendered zone, when it could be rendered
    errors: list[str]


# The labels hosts use in a zone now (beyond those of the revision checked): the service's newest records.
HostLabels = Callable[[str], set[str]]


def render_zone_at(repo: Path, rev: str, zone: str, template_dirs: list[Path], checkzone: str,
                   host_labels: HostLabels | None = None, shard_count: int = shards.DEFAULT_SHARDS) -> ZoneCheck:
    """Render ZONE as REV has it (its own dynamic records and serial) and run named-checkzone.

    SHARD_COUNT is the service's (``zones.shards``): the file checked is then
    the one named loads, line for line, so the lines errors name are its.

    The sources are checked as the publisher checks them (zones.ZoneSource.read,
    zones.check_host_names, against REV's and HOST_LABELS' hosts) before any
    tool reads them. Errors name the file a human edits: ``ZONE/static.zone:LINE: message``.
    """
    with tempfile.TemporaryDirectory(prefix="ddns-check-") as tmp:
        zone_dir = _materialize(repo, rev, zone, Path(tmp))
        try:
            source = zones.ZoneSource.read(zone_dir)
            template = zones.template_environment(template_dirs).get_template(zones.TEMPLATE_FILE)
            dynamic = shards.ShardedRecords.of(zone_records_in(shards.record_files(zone_dir)), shard_count)
            zones.check_host_names(source, {label for label, _ in dynamic} | (host_labels(zone) if host_labels else set()))
            rendered_path = zone_dir / zones.rendered_file(zone)
            serial = (zones.serial_of(rendered_path.read_text()) if rendered_path.exists() else None) or 1
            text = shards.render_flat(template, source.settings, serial, source.static_text, dynamic)
        except (OSError, UnicodeError, errors.Invalid, jinja2.TemplateError) as exc:  # refused sources, bad lines
            return ZoneCheck(zone, None, [_source_error(zone, exc)])
        check_path = Path(tmp) / "candidate.zone"
        check_path.write_text(text)
        message = bind.check_zone(zone, check_path, checkzone)
        if message is None:
            return ZoneCheck(zone, text, [])
        return ZoneCheck(zone, text, _map_errors(message, str(check_path), text, source.static_text, zone))


def _source_error(zone: str, exc: Exception) -> str:
    """EXC as an error naming the file to fix (the zone template is the operator's, not a file of the zone)."""
    if isinstance(exc, zones.SourceError):
        return f"{zone}/{exc}"
    if isinstance(exc, jinja2.TemplateError):
        return f"{zone}: the zone template: {exc}"
    if isinstance(exc, zones.BadRecordLine):  # it names the shard file
        return f"{zone}/{exc}"
    return f"{zone}: {exc}"


def _map_errors(message: str, check_path: str, text: str, static_text: str, zone: str) -> list[str]:
    """named-checkzone's ``FILE:LINE: msg`` lines, with LINE moved back into static.zone."""
    static_start = text[: text.find(static_text)].count("\n") + 1 if static_text and static_text in text else None
    static_lines = static_text.count("\n") + 1 if static_text else 0
    errors = []
    for line in message.splitlines():
        match = re.search(re.escape(check_path) + r":(\d+): (.*)", line)
        if match:
            n, what = int(match.group(1)), match.group(2)
            if static_start is not None and static_start <= n < static_start + static_lines:
                errors.append(f"{zone}/{zones.STATIC_FILE}:{n - static_start + 1}: {what}")
            else:
                errors.append(f"{zone}/{zones.SETTINGS_FILE} (rendered line {n}): {what}")
        elif "not loaded due to errors" not in line and "loading from master file" not in line:
            errors.append(f"{zone}: {line.strip()}")
    return errors or [f"{zone}: {message.strip()}"]


@dataclass
class CheckReport:
    """The verdict on the change from BASE to REV."""

    base: str | None
    rev: str
    plans: list[ZonePlan] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # invalid: never publishable
    guarded: list[str] = field(default_factory=list)     # dangerous: publishable when forced

    def ok(self, forced: bool = False) -> bool:
        return not self.errors and (forced or not self.guarded)

    def as_dict(self) -> dict:
        return {"base": self.base, "rev": self.rev, "errors": self.errors, "guarded": self.guarded,
                "plans": [p.as_dict() for p in self.plans if not p.empty]}


def check_revision(repo: Path, rev: str, base: str | None, template_dirs: list[Path], *,
                   checkzone: str = "named-checkzone", max_share: float = 0.3,
                   allow_service_files: bool = False, host_labels: HostLabels | None = None,
                   shard_count: int = shards.DEFAULT_SHARDS, catalog: str = "") -> CheckReport:
    """Validate REV against BASE: touched zones render and pass named-checkzone, guard rails hold.

    ``allow_service_files`` is for the service's own pushes; humans may not
    touch the rendered head, anything under ZONE/dynamic/ (nor the old
    dynamic.records), nor forge audit trailers.
    ``host_labels`` gives the hosts' names in a zone now, so a static record
    cannot take the name of a host newer than REV. ``shard_count`` is zones.shards.
    Nor may humans touch the directory of the catalog zone CATALOG (``ddns.catalog``; "": none).
    """
    report = CheckReport(base, rev)
    if base is not None:
        changed_paths = git_output(repo, "diff", "--name-only", base, rev).splitlines()
    else:
        changed_paths = git_output(repo, "ls-tree", "-r", "--name-only", rev).splitlines()
    if not allow_service_files:
        for path in changed_paths:
            if catalog and path.split("/")[0] == catalog:
                report.errors.append(f"{path}: the catalog zone {catalog} is written by the service only; "
                                     "it lists the zones by itself")
            elif is_service_file(path):
                report.errors.append(f"{path}: written by the service only; change zone.toml or static.zone instead")
        log_range = f"{base}..{rev}" if base else rev
        if any(line.startswith(TRAILER + ":") for line in git_output(repo, "log", "--format=%B", log_range).splitlines()):
            report.errors.append(f"a pushed commit carries a {TRAILER} trailer: only the service writes those")
    touched = sorted({p.split("/")[0] for p in changed_paths if "/" in p})
    old_zones, new_zones = zones_at(repo, base), zones_at(repo, rev)
    for zone in touched:
        if zone not in old_zones and zone not in new_zones:
            continue
        old_records = new_records = None
        if zone in new_zones:
            result = render_zone_at(repo, rev, zone, template_dirs, checkzone, host_labels, shard_count)
            new_records = _records_or_errors(result)
            if result.errors:
                report.errors += result.errors
                continue
        if zone in old_zones:
            before = render_zone_at(repo, base, zone, template_dirs, checkzone, shard_count=shard_count)
            old_records = _records_or_errors(before)
            if old_records is None and new_records is not None:
                old_records = {}  # the base was broken: everything counts as added
        plan = diff_records(zone, old_records, new_records)
        report.plans.append(plan)
        report.guarded += guard_problems(plan, max_share)
    return report


def _records_or_errors(check: ZoneCheck) -> Records | None:
    """The records of a checked zone; a file named-checkzone takes but the planner cannot read is an error, not a crash."""
    if check.errors or check.text is None:
        return None
    try:
        return zone_records(check.text, check.zone)
    except dns.exception.DNSException as exc:
        check.errors.append(f"{check.zone}: the rendered zone cannot be planned: {exc}")
        return None


def host_labels_at(repo: Path, rev: str) -> HostLabels:
    """The hosts' labels per zone as REV's dynamic records have them (for ``ddns check``: the published branch)."""
    def labels(zone: str) -> set[str]:
        files = {path[len(zone) + 1:]: blob.decode() for _, path, blob in tree_files(repo, rev, f"{zone}/")}
        return {label for label, _ in zone_records_in(files)}
    return labels


def host_labels_in(tree: Path) -> HostLabels:
    """The hosts' labels per zone in a working tree (for pre-receive: the service's clone, newer than the
    pushed-to repository by up to one push)."""
    def labels(zone: str) -> set[str]:
        return {label for label, _ in zone_records_in(shards.record_files(tree / zone))}
    return labels


def forced_by_commits(repo: Path, base: str | None, rev: str) -> bool:
    """A ``Ddns-Force: yes`` trailer in any pushed commit forces the guard rails."""
    log_range = f"{base}..{rev}" if base else rev
    out = git_output(repo, "log", "--format=%B", log_range)
    return any(re.match(rf"{FORCE_TRAILER}:\s*(yes|true|1)\s*$", line, re.I) for line in out.splitlines())
