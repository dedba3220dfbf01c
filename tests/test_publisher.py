"""Publisher behaviour that needs no named: which zones get validated again."""
import shutil
import stat

from conftest import require
from ddns.publishing.bindtarget import PublishTarget
from ddns.gitrepo import ZonesRepo
from ddns.publishing.publisher import Publisher
from ddns.wiring import ZONE_TEMPLATES

ZONE = "dyn.example.test"


def counting_checkzone(tmp_path):
    """The real named-checkzone, behind a wrapper that counts its runs."""
    require("named-checkzone")
    count = tmp_path / "checkzone.count"
    wrapper = tmp_path / "checkzone"
    wrapper.write_text(f'#!/bin/sh\necho run >> "{count}"\nexec "{shutil.which("named-checkzone") or "/usr/sbin/named-checkzone"}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper), lambda: len(count.read_text().splitlines()) if count.exists() else 0


def test_reconcile_validates_a_zone_again_only_when_its_files_changed(instance, tmp_path):
    checkzone, runs = counting_checkzone(tmp_path)
    publisher = Publisher(ZonesRepo(instance.repo), [ZONE_TEMPLATES], PublishTarget(rndc=None, checkzone=checkzone))
    publisher.load()
    assert runs() == 1
    assert publisher.reconcile() == {ZONE: "served"}
    assert runs() == 1  # nothing changed: the validated state is kept

    static = instance.repo / ZONE / "static.zone"
    static.write_text(static.read_text() + "www IN A 192.0.2.80\n")
    assert publisher.reconcile() == {ZONE: "published"}
    assert runs() == 2  # the human-edited file changed: validated again, then published
    assert "www IN A 192.0.2.80" in (instance.repo / ZONE / f"{ZONE}.zone").read_text()
    assert publisher.reconcile() == {ZONE: "served"}
    assert runs() == 2
