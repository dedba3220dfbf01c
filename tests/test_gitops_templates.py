"""Zone templates are code: only the operator's (``zones.templates``) and the shipped one run.

A ``zone.j2`` pushed into the zones repository must never reach Jinja: not in
``pre-receive``, not in ``ddns check`` (a pull request's CI), not in the
publisher. Each attack below would run a command (creating a marker file),
fill the memory or never end if it were rendered; the tests prove that none
of it happens, that the refusal names the file, and that each path stays
bounded in time. Real git, real hooks, real named.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ddns import cli, provenance, resource_dir, zones

from conftest import Instance, free_port, require, serving
from test_gitops_hooks import (ZONE, admin_clone, append, assert_accepted, assert_refused, bare, commit, edit, git,
                               push, state, static_path)

ROOT = Path(__file__).resolve().parent.parent  # this checkout: subprocesses must run its ddns
TEMPLATE = f"{ZONE}/zone.j2"
BOUND = 60.0  # seconds: generous on a loaded machine; an endless template would never finish


def attacks(marker: Path) -> dict[str, str]:
    """Templates that would touch MARKER, exhaust memory or never end if rendered."""
    touch = f"touch {marker}"
    return {
        "subclasses": ("{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
                       f"{{{{ c(['touch', '{marker}']).wait() }}}}{{% endif %}}{{% endfor %}}\n"),
        "cycler": f"{{{{ cycler.__init__.__globals__.os.popen('{touch}').read() }}}}\n",
        "lipsum": f"{{{{ lipsum.__globals__['os'].popen('{touch}').read() }}}}\n",
        "joiner": f"{{{{ joiner.__init__.__globals__['os'].system('{touch}') }}}}\n",
        "huge output": "{% for i in range(10**6) %}{{ 'x' * 10**6 }}{% endfor %}\n",
        "endless loop": "{% for a in range(10**9) %}{% for b in range(10**9) %}{% endfor %}{% endfor %}\n",
    }


def ddns(inst: Instance, *args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m ddns.cli -c CONFIG ARGS`` as its own process (killed after BOUND); (process, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DDNS_SERVICE_PUSH", None)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ddns.cli", "-c", str(inst.config_path), *args],
                          capture_output=True, text=True, cwd=str(cwd or inst.dir), env=env, timeout=BOUND)
    return proc, time.monotonic() - start


def test_pushed_zone_template_is_refused_by_pre_receive_and_never_rendered(running, tmp_path):
    inst = running.instance
    marker = tmp_path / "pwned"
    clone = admin_clone(inst, tmp_path)
    for name, template in attacks(marker).items():
        edit(clone, TEMPLATE, template)
        commit(clone, f"A per-zone template ({name})")
        before = state(inst)
        start = time.monotonic()
        out = assert_refused(push(clone))
        elapsed = time.monotonic() - start
        assert not marker.exists(), f"{name}: the pushed template ran a command"
        assert f"remote: ddns: error: {TEMPLATE}: " in out, (name, out)
        assert "not supported" in out, out
        assert elapsed < BOUND, f"{name}: pre-receive took {elapsed:.1f}s"
        assert state(inst) == before, f"{name}: a refused push changed something"
        git(clone, "reset", "-q", "--hard", "HEAD~1")
    # the zone still takes a plain change: nothing was left behind
    append(clone, static_path(), "www IN A 192.0.2.80\n")
    commit(clone, "Add www")
    assert_accepted(push(clone))
    assert inst.dig("www." + ZONE, "A") == ["192.0.2.80"]


def test_ddns_check_refuses_a_zone_template_without_rendering_it(instance, tmp_path):
    marker = tmp_path / "pwned"
    clone = admin_clone(instance, tmp_path)
    for name, template in attacks(marker).items():
        git(clone, "checkout", "-q", "-B", "pr", "origin/main")
        edit(clone, TEMPLATE, template)
        commit(clone, f"A per-zone template ({name})")
        proc, elapsed = ddns(instance, "check", "--repo", str(clone), "--json")
        assert not marker.exists(), f"{name}: ddns check ran the template"
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        report = json.loads(proc.stdout)
        assert report["ok"] is False
        assert [e.split(": ")[0] for e in report["errors"]] == [TEMPLATE], report
        assert elapsed < BOUND
    proc, _ = ddns(instance, "check", "--repo", str(clone), "--plan")
    assert proc.returncode == 1 and f"error: {TEMPLATE}: " in proc.stdout, proc.stdout + proc.stderr


def test_publisher_never_renders_a_template_from_the_repository(instance, tmp_path):
    """A zone.j2 that reached the published branch (an older version accepted it) breaks only its zone, loudly."""
    marker = tmp_path / "pwned"
    payload = attacks(marker)["cycler"] + attacks(marker)["endless loop"]
    clone = admin_clone(instance, tmp_path)
    edit(clone, TEMPLATE, payload)
    edit(clone, "zone.j2", payload)  # next to the zones: never a template either
    commit(clone, "Per-zone templates from before")
    env = {**os.environ, **provenance.push_environment(instance.config["zones.push_token"])}
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True, timeout=BOUND,
                   capture_output=True, env=env)  # past the hooks
    proc, elapsed = ddns(instance, "apply", "--json")
    assert not marker.exists(), "the publisher ran a template from the repository"
    status = json.loads(proc.stdout)
    assert status[ZONE].startswith(f"broken: {zones.TEMPLATE_FILE}: per-zone templates are not supported"), status
    assert proc.returncode == 3
    assert elapsed < BOUND
    # the rendered file in Git stays the last good one, and a restarted service does not run it either
    assert instance.git("show", f"HEAD:{ZONE}/{ZONE}.zone").startswith(f"; {ZONE} -- rendered by ddns")
    proc, elapsed = ddns(instance, "apply", "--json")
    assert not marker.exists() and elapsed < BOUND


def test_operator_template_still_renders_the_zones(tmp_path):
    """The operator's zones.templates (a path in the config file: trusted) renders, checks and is served."""
    require("named", "git", "named-checkzone")
    templates = tmp_path / "operator-templates"
    templates.mkdir()
    shipped = (resource_dir("templates") / "zone" / "zone.j2").read_text()
    (templates / "zone.j2").write_text("; operator template for {{ zone.name | upper }}\n" + shipped)
    directory = tmp_path / "inst"
    http_port, dns_port, rndc_port = free_port(), free_port(), free_port()
    cli.init_instance(directory, http_port, dns_port, rndc_port,
                      extra={"security.bcrypt_rounds": 4, "bind.verify_timeout": 3.0, "zones.git_fsync": False,
                             "zones.templates": str(templates)})
    inst = Instance(directory, directory / "ddns.toml", http_port, dns_port, rndc_port)
    assert inst.git("show", f"HEAD:{ZONE}/{ZONE}.zone").startswith(f"; operator template for {ZONE.upper()}\n")
    with serving(inst):
        clone = admin_clone(inst, tmp_path)
        append(clone, static_path(), "www IN A 192.0.2.80\n")
        commit(clone, "Add www")
        proc, _ = ddns(inst, "check", "--repo", str(clone), "--plan")
        assert proc.returncode == 0 and "| + | `www` | A | 3600 192.0.2.80 |" in proc.stdout, proc.stdout + proc.stderr
        out = assert_accepted(push(clone))
        assert f"remote: ddns: zone {ZONE}: published" in out, out
        assert inst.dig("www." + ZONE, "A") == ["192.0.2.80"]
        assert inst.git("show", f"HEAD:{ZONE}/{ZONE}.zone").startswith(f"; operator template for {ZONE.upper()}\n")
