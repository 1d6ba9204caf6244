"""Whole-sandbox resources, in one folder batch under bubblewrap: /tmp and /dev/shm (memory),
the writable folders on disk, threads, memory no process's resident size shows (memfd), a
read-only / and /dev; and the sandbox's cgroups. Each attack is stopped and the limits report
names the limit that fired; the honest student keeps full marks and hits no limit.

The attacks are those of the issue (18 x 250 MB in /tmp, 12 x 250 MB in HOME, 400 threads)
scaled to this batch's lower limits, so the test writes tens of MB, not gigabytes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest

from autograde.batch.grade import grade_batch
from autograde.sandbox.launcher import SandboxCgroups, SandboxSettings
from hostile.hostile_class import GOOD_ADD, LIMITS, REPO, needs_bwrap, read_scores, total

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
# the cgroup controllers the launcher may use here
WRITABLE_CGROUPS = {kind for kind, root in SandboxCgroups.roots() if os.access(root, os.W_OK)}
MEMORY_CGROUP = bool(WRITABLE_CGROUPS & {"memory", "v2"})
# the defaults stop the sizes (tmp 512 MB, disk 1024 MB, 256 threads); these stop the
# same attacks at a tenth of the bytes
RESOURCE_LIMITS = dataclasses.replace(LIMITS, memory_mb=400, tmp_mb=48, disk_mb=64,
                                      max_threads=100)
# Write `count` files of `mb` MB into `folder`, then wait to be stopped (a determined student
# swallows the error of a full disk and keeps what it wrote).
FILLER = """\
import os, time
chunk = b'0' * (1 << 20)
for index in range({count}):
    try:
        with open(os.path.join({folder}, f'fill{{index}}'), 'wb') as handle:
            for _ in range({mb}):
                handle.write(chunk)
    except OSError as error:
        print('write failed:', error)
time.sleep(600)
"""
# small stacks: each thread's stack counts in the per-process data rlimit (memory_mb)
THREADS = """\
import threading, time
threading.stack_size(1 << 18)
try:
    for _ in range(400):
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
except RuntimeError as error:
    print('thread refused:', error)
time.sleep(600)
"""
# memory no process's resident size shows: memfd files written, never mapped (each below the
# file-size limit)
MEMFD = """\
import os, time
chunk = b'0' * (1 << 20)
files = []
for index in range(800):
    if index % 200 == 0:
        files.append(os.memfd_create('hoard'))
    os.write(files[-1], chunk)
time.sleep(600)
"""
READ_ONLY = """\
for path in ('/planted', '/dev/planted'):
    try:
        open(path, 'w').write('x')
        print(path, 'wr' + 'itten')
    except OSError as error:
        print(path, 'refused:', error.strerror)
"""


@pytest.fixture(scope="module")
def batch(toy_class):
    c = toy_class
    out = c.root / "out"
    c.add("tmpfiller", {"add": FILLER.format(count=18, mb=8, folder="'/tmp'")})
    c.add("shmfiller", {"add": FILLER.format(count=18, mb=8, folder="'/dev/shm'")})
    c.add("homefiller", {"add": FILLER.format(count=12, mb=16,
                                              folder="os.environ['HOME']")})
    c.add("threader", {"add": THREADS})
    if MEMORY_CGROUP:
        c.add("memfd", {"add": MEMFD})
    c.add("rootwriter", {"add": READ_ONLY + GOOD_ADD})
    result = grade_batch(c.subs, out, workers=2, limits=RESOURCE_LIMITS,
                         solutions_dir=c.solutions, show_progress=False)
    return result, read_scores(out), out


def _limits_hit(batch, student: str) -> list[str]:
    return [hit.get("limit") for hit in batch[0].answers[(student, "01_toy")].limits]


@needs_bwrap
def test_honest_student_keeps_full_marks_and_hits_no_limit(batch):
    result, scores, _ = batch
    assert result.ok, result.failures
    assert total(scores, "alice") == 3 and total(scores, "bob") == 0
    assert _limits_hit(batch, "alice") == []


@needs_bwrap
@pytest.mark.parametrize("student, limit", [("tmpfiller", "tmp"), ("shmfiller", "tmp"),
                                            ("homefiller", "disk"), ("threader", "threads")])
def test_attacker_is_stopped_by_the_limit_it_hit(batch, student, limit):
    assert _limits_hit(batch, student) == [limit], batch[0].answers[(student, "01_toy")].limits
    assert total(batch[1], student) == 0
    report = (batch[2] / "report.md").read_text()
    assert f"**{student} / 01_toy**" in report


@needs_bwrap
@pytest.mark.skipif(not MEMORY_CGROUP, reason="no writable memory cgroup here")
def test_memory_no_process_shows_is_stopped_by_the_memory_cgroup(batch):
    assert _limits_hit(batch, "memfd") == ["memory"], batch[0].answers[("memfd", "01_toy")]
    assert total(batch[1], "memfd") == 0


@needs_bwrap
def test_root_and_dev_are_read_only(batch):
    html = (batch[2] / "feedback" / "rootwriter" / "01_toy.html").read_text()
    assert "/planted refused: Read-only file system" in html
    assert "/dev/planted refused: Read-only file system" in html
    assert "written" not in html


PROBE_CGROUP = """\
import sys
from pathlib import Path
from autograde.sandbox.launcher import SandboxSettings, run_sandboxed, writable_folders
settings = SandboxSettings(**{settings!r})
report = Path(sys.argv[1])
probe = ("from pathlib import Path; import sys\\n"
         "paths = dict(line.split(':')[1:] for line in open('/proc/self/cgroup').read().split())\\n"
         "root = Path('/sys/fs/cgroup')\\n"
         "found = {{name: (root / name / paths[name].lstrip('/'))\\n"
         "         for name in ('cpu', 'pids', 'memory')}}\\n"
         "print(found['cpu'].name, (found['cpu'] / 'cpu.cfs_quota_us').read_text().strip(),\\n"
         "      (found['pids'] / 'pids.max').read_text().strip(),\\n"
         "      (found['memory'] / 'memory.limit_in_bytes').read_text().strip())\\n")
with open(report, 'w') as log:
    outcome = run_sandboxed([sys.executable, '-c', probe], settings, [], log)
print(outcome.returncode, outcome.status)
"""


@pytest.mark.skipif(not WRITABLE_CGROUPS >= {"cpu", "memory", "pids"},
                    reason="no writable cgroup v1 cpu, memory and pids controllers here")
def test_each_sandbox_gets_its_own_cpu_and_task_cgroups(tmp_path):
    """Its processes run in cgroups of their own (an equal CPU weight, ``cpus`` as a quota,
    tasks capped one past max_threads), removed when the sandbox ends."""
    settings = dataclasses.asdict(SandboxSettings(use_bwrap=False, cpus=0.5, max_threads=99))
    report = tmp_path / "probe.txt"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(PROBE_CGROUP.format(
        settings=settings)), str(report)], cwd=REPO, capture_output=True, text=True,
        timeout=60)
    assert done.stdout.split()[0] == "0", done.stdout + done.stderr
    name, quota, tasks, memory = report.read_text().split()
    assert name.startswith("nanolm-autograde-") and quota == "50000" and tasks == "100"
    assert memory == str((4096 + 2 * 512) << 20)
    for controller, root in SandboxCgroups.roots():
        assert not (root / name).exists(), f"the sandbox's {controller} cgroup outlived it"
