"""bench/trace_serve.py, the bench's trace mode: every publisher stage shows up as
``ddns serve`` runs it (PublisherThread: commit under the lock, then the wait and
the answers in a watcher). Runs in a child process: the trace wraps functions
process-wide."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import require

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import json, logging, sys
    logging.basicConfig()
    from pathlib import Path
    sys.path.insert(0, sys.argv[1] + "/bench")
    sys.path.insert(0, sys.argv[1])
    import trace_serve
    trace_serve.install()
    from ddns.gitrepo import ZonesRepo
    from ddns.model import Actor, Operation, Update
    from ddns.publishing.bindtarget import PublishTarget
    from ddns.publishing.memtarget import MemoryNamed
    from ddns.publishing.publish_queue import PublisherThread
    from ddns.publishing.publisher import Publisher
    from ddns.wiring import ZONE_TEMPLATES
    repo = Path(sys.argv[2])
    zone = "dyn.example.test"
    publisher = Publisher(ZonesRepo(repo), [ZONE_TEMPLATES], PublishTarget(rndc=None, control=MemoryNamed(repo)),
                          fsync=False)
    publisher.load()
    publisher.reconcile()
    thread = PublisherThread(publisher)
    thread.start()
    futures = [f for i in range(5) for f in thread.submit(
        [Update(zone, tuple(Operation.replace(f"h{i}.{zone}", "A", ["192.0.2.%d" % (i + 1)])), actor=Actor("t"))])]
    print(json.dumps([[f.result(30).outcome.value, f.result(30).reason] for f in futures]))
    thread.stop()
    print(json.dumps({name: len(samples) for name, samples in trace_serve.SAMPLES.items()}))
""")

STAGES = {"pub batch size", "pub apply", "pub format", "pub render", "pub files", "pub git commit",
          "pub rndc reload", "pub named publish", "pub group under lock", "pub wait served", "pub answer",
          "pub group total"}


def test_every_publisher_stage_is_traced_as_the_publisher_thread_runs_it(instance):
    require("git")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO), str(instance.repo)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcomes, counts = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    assert {o for o, _ in outcomes} == {"published"}, proc.stderr
    assert STAGES <= set(counts), STAGES - set(counts)
    groups = counts["pub batch size"]
    for per_group in ("pub apply", "pub named publish", "pub group under lock", "pub wait served", "pub answer",
                      "pub group total"):
        assert counts[per_group] == groups
