"""Attacks on the sandbox and the grader's own files, in one folder batch under bubblewrap,
and on collecting (zips, ids) and the gradebook without a kernel."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograde.batch.collect import MAX_MEMBERS, collect
from autograde.batch.grade import grade_batch
from hostile.hostile_class import (
    GOOD_ADD,
    LIMITS,
    REPO,
    needs_bwrap,
    read_scores,
    total,
    tree_digest,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
SECRET = "hostile-suite-dummy-secret-1234"
READER = """\
import os, pathlib
found = []
for target in {targets!r}:
    try:
        p = pathlib.Path(target)
        found.append(target + ' LEAK' + 'ED ' + (p.read_text()[:80] if p.is_file() else str(os.listdir(p))))
    except Exception as error:
        found.append(target + ' blo' + 'cked')
found.append('env ' + ('LEAK' + 'ED ' + os.environ['GRADER_TOKEN'] if 'GRADER_TOKEN' in os.environ else 'cl' + 'ean'))
print(found)
"""
ESCAPE = """\
import ctypes, os, pathlib, subprocess
libc = ctypes.CDLL('libc.so.6', use_errno=True)
libc.umount2(b'/tmp', 2)
libc.mount(b'none', b'/', None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND: read-write
subprocess.run('umount -l /tmp; mount -o remount,rw /', shell=True)
for target in {targets!r}:
    try:
        pathlib.Path(target).write_text('escaped')
    except OSError:
        pass
print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])
"""
SWAP = """\
import os
os.remove('01_toy.ipynb')
os.symlink({target!r}, '01_toy.ipynb')
"""
KILLER = "import os, signal\nos.kill(-1, signal.SIGKILL)\n"
DAEMON = """\
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1)  # hostile-daemon-marker
        for target in {targets!r}:
            try:
                open(target, 'w').write('daemon')
            except OSError:
                pass
        time.sleep(600)
    os._exit(0)
"""
MEMORY = """\
import subprocess, sys, time
hold = 'block = b"1" * (700 << 20); import time; time.sleep(600)'
children = [subprocess.Popen([sys.executable, '-c', hold]) for _ in range(3)]
time.sleep(600)
"""
# 3 GB of address space mapped read-only, as a CUDA build of torch maps its libraries at import:
# not memory the limit is for (nothing is allocated)
MAPPER = ("import mmap\n"
          "libraries = mmap.mmap(-1, 3 << 30, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)\n")
FORKS = "import subprocess\nprocs = [subprocess.Popen(['sleep', '600']) for _ in range(120)]\n" \
        "import time\ntime.sleep(600)"
FORGE = """\
import pathlib
run = pathlib.Path.cwd().parent.parent  # where the grader keeps its control folder
for path in [run / 'control' / 'kernel-status.json', *run.glob('**/kernel-status.json')]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"limit": "exit", "message": "the GRADER crashed"}')
    except OSError:
        pass
"""


def _notebook(folder: Path) -> Path:
    return folder / "01_toy.ipynb"


def _edit(path: Path, change) -> None:
    nb = nbformat.read(str(path), as_version=4)
    change(nb)
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def batch(toy_class, tmp_path_factory):
    """One batch: alice, bob and every attacker; returns (result, scores, out, before)."""
    if not os.environ.get("GRADER_TOKEN"):
        os.environ["GRADER_TOKEN"] = SECRET  # a grader's secret, e.g. an LMS token
    c = toy_class
    out = c.root / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the grader's own file")
    targets = [str(REPO / "nanolm_lib" / "grading" / "checks.py"), str(out / "gradebook.db"),
               str(out / "keep.txt"), str(c.canary)]
    # files, not folders: bwrap makes the folders on the way to what it mounts (empty)
    home_files = sorted(str(p) for p in Path.home().iterdir() if p.is_file())[:3]
    c.add("reader", {"add": READER.format(targets=[
        str(REPO / ".git" / "HEAD"), str(REPO / "solutions"), str(c.solutions / "01_toy"),
        "/etc/shadow", "/home", str(out / "keep.txt"), str(out / "gradebook.db"),
        *home_files])})
    c.add("escaper", {"add": ESCAPE.format(targets=targets)})
    for name, target in (("swapchecks", targets[0]), ("swapdb", targets[1]),
                         ("swapcanary", targets[3])):
        c.add(name, {"add": SWAP.format(target=target)})
    c.add("killer", {"add": KILLER})
    c.add("daemon", {"add": DAEMON.format(targets=targets)})
    c.add("hog", {"add": GOOD_ADD, "scale": MEMORY})
    c.add("forker", {"add": GOOD_ADD, "scale": FORKS})
    c.add("mapper", {"add": MAPPER + GOOD_ADD}, solutions=True)
    c.add("forger", {"add": FORGE + "import os\nos._exit(1)"})
    # only the student's notebook reaches the kernel: a shipped module is not importable
    (c.add("shipper", {"add": "from helper import add"}) / "helper.py").write_text(GOOD_ADD)
    # special files in a folder submission: refused, even with the right answers
    os.symlink("/etc/passwd", c.add("linker", solutions=True) / "data.txt")
    os.mkfifo(c.add("fifo", solutions=True) / "pipe")
    # a forged timestamp.txt is not the submission time
    (c.add("backdated", solutions=True) / "timestamp.txt").write_text("2000-01-01 00:00:00 UTC")
    printer = c.add("printer", {"add": GOOD_ADD})
    _edit(_notebook(printer), lambda nb: nb.cells.extend(
        nbformat.v4.new_code_cell("print('x' * 900_000)") for _ in range(60)))
    scripter = c.add("scripter", {"add": GOOD_ADD + "\nfrom IPython.display import HTML, "
                                  "display\ndisplay(HTML('<img src=x onerror=alert(2)>"
                                  "<a href=\"javascript:alert(3)\">x</a>'))"})
    _edit(_notebook(scripter), lambda nb: nb.cells.append(
        nbformat.v4.new_markdown_cell("<script>alert(1)</script> hello")))
    malformed = c.add("malformed", solutions=True)

    def break_metadata(nb):
        nb.cells[2].metadata["nbgrader"] = "solution"     # add: a string
        nb.cells[3].metadata["nbgrader"]["grade_id"] = ["test_add"]   # a list
    _edit(_notebook(malformed), break_metadata)

    before = {"nanolm_lib": tree_digest(REPO / "nanolm_lib"), "canary": c.canary.read_text(),
              "solutions": tree_digest(c.solutions), "keep": (out / "keep.txt").read_text()}
    result = grade_batch(c.subs, out, workers=2, limits=LIMITS, solutions_dir=c.solutions,
                         show_progress=False)
    return result, read_scores(out), out, before


def _answer(batch, student):
    return batch[0].answers[(student, "01_toy")]


@needs_bwrap
def test_batch_finishes_and_honest_keeps_full_marks(batch, toy_class):
    result, scores, out, before = batch
    assert result.ok, result.failures
    assert total(scores, "alice") == 3 and total(scores, "bob") == 0
    assert tree_digest(REPO / "nanolm_lib") == before["nanolm_lib"]
    assert tree_digest(toy_class.solutions) == before["solutions"]
    assert toy_class.canary.read_text() == before["canary"]
    assert (out / "keep.txt").read_text() == before["keep"]
    report = (out / "report.md").read_text()
    assert "bubblewrap" in report.splitlines()[2] and "the GRADER crashed" not in report


@needs_bwrap
@pytest.mark.parametrize("student", ["reader", "escaper", "swapchecks", "swapdb", "swapcanary",
                                     "killer", "daemon", "forger", "shipper"])
def test_attacker_scores_zero(batch, student):
    assert total(batch[1], student) == 0, batch[1][student]


@needs_bwrap
def test_nothing_secret_is_readable(batch):
    html = (batch[2] / "feedback" / "reader" / "01_toy.html").read_text()
    assert "blocked" in html and "LEAKED" not in html and SECRET not in html
    assert "env clean" in html


@needs_bwrap
def test_root_in_the_sandbox_has_no_capabilities(batch):
    html = (batch[2] / "feedback" / "escaper" / "01_toy.html").read_text()
    assert "0000000000000000" in html


@needs_bwrap
def test_no_process_outlives_the_batch(batch):
    alive = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"hostile-daemon-marker" in (proc / "cmdline").read_bytes():
                alive.append(proc.name)
        except OSError:
            continue
    assert not alive


@needs_bwrap
@pytest.mark.parametrize("student, reason", [
    ("hog", "memory limit of 1500 MB for the whole sandbox"),   # 3 x 700 MB processes
    ("forker", "more than 40 processes"),
])
def test_whole_sandbox_limits(batch, student, reason):
    """The stuck and looping kernels are in tests/integration/test_autograde_batch.py."""
    scores = batch[1]
    assert scores[student]["01_toy"]["test_scale"]["score"] == 0
    assert reason in scores[student]["01_toy"]["test_scale"]["error"], scores[student]
    assert scores[student]["01_toy"]["test_add"]["score"] == 1


@needs_bwrap
def test_mapped_but_unallocated_memory_is_not_limited(batch):
    """Address space is not memory: 3 GB mapped read-only under a 1.5 GB limit scores full."""
    assert total(batch[1], "mapper") == 3, batch[1]["mapper"]


@needs_bwrap
@pytest.mark.parametrize("student, reason", [("linker", "is a symbolic link"),
                                             ("fifo", "is a FIFO")])
def test_special_files_are_refused_with_a_reason(batch, student, reason):
    assert total(batch[1], student) == 0
    assert any(reason in p and "refused" in p for p in _answer(batch, student).problems)


@needs_bwrap
def test_forged_timestamp_is_not_trusted(batch):
    assert not _answer(batch, "backdated").submission["timestamp"].startswith("2000")
    assert total(batch[1], "backdated") == 3


@needs_bwrap
def test_output_is_capped_per_notebook(batch):
    feedback = batch[2] / "feedback" / "printer" / "01_toy.html"
    assert feedback.stat().st_size < 2 * LIMITS.notebook_output_bytes
    hits = [hit["message"] for hit in _answer(batch, "printer").limits]
    assert len(hits) == 1 and re.fullmatch(  # the cell named: one of the 60 printing cells
        f"the notebook printed more than {LIMITS.notebook_output_bytes} bytes in all; output "
        r"from code cell \d+ \(\"print\('x' \* 900_000\)\"\) on was dropped", hits[0]), hits
    assert total(batch[1], "printer") == 1   # add passed; the cells ran on


@needs_bwrap
def test_feedback_is_sanitised(batch):
    html = (batch[2] / "feedback" / "scripter" / "01_toy.html").read_text()
    # the cell's source shows the attack as escaped text; no live tag or attribute remains
    assert "hello" in html and "<script>alert" not in html
    assert not re.search(r"<[a-z]+[^>]*\sonerror=", html)
    assert not re.search(r"<a[^>]*href=[\"']?javascript:", html)


@needs_bwrap
def test_malformed_metadata_is_graded_with_a_reason(batch):
    assert "malformed" in batch[1]
    assert any("metadata repaired" in p for p in _answer(batch, "malformed").problems)


# --------------------------------------------------------------------------- no kernel needed
def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)


def test_hostile_zips_are_refused_or_extracted_once(tmp_path):
    zips = tmp_path / "zips"
    zips.mkdir()
    notebook = b'{"cells": []}'
    _zip(zips / "honest_1.zip", {"01_toy/01_toy.ipynb": notebook})
    _zip(zips / "many_1.zip", {f"01_toy/f{i}": b"x" for i in range(MAX_MEMBERS + 1)})
    _zip(zips / "linker_1.zip", {"01_toy/01_toy.ipynb": notebook}, {"01_toy/x": "/etc/passwd"})
    # eight lessons, each folder inside the one before, 1 MB in each: every member once
    chain = [f"0{k}_l{k}" for k in range(1, 9)]
    nested = {"/".join(chain[:depth]) + f"/{chain[depth - 1]}.ipynb": notebook
              for depth in range(1, 9)}
    nested.update({"/".join(chain[:depth]) + "/big": b"0" * (1 << 20) for depth in range(1, 9)})
    _zip(zips / "nester_1.zip", nested)
    _zip(zips / "._1.zip", {"01_toy/01_toy.ipynb": notebook})
    _zip(zips / ".._1.zip", {"01_toy/01_toy.ipynb": notebook})
    found, notes = collect(zips, tmp_path / "x")
    assert sorted(found) == ["honest", "linker", "many", "nester"]
    assert found["many"] == {} and any("many_1.zip" in n and "files" in n for n in notes)
    assert found["linker"] == {} and any("symbolic link" in n for n in notes)
    extracted = sum(p.stat().st_size for p in (tmp_path / "x" / "nester").rglob("*")
                    if p.is_file())
    assert sorted(found["nester"]) == chain and 8 << 20 <= extracted < 9 << 20
    assert sum(1 for n in notes if "not a valid student id" in n or "does not match" in n) == 2


def test_a_locked_gradebook_is_retried_then_reported(tmp_path):
    import sqlite3

    from autograde.batch.answer import Answer
    from autograde.batch.grade import _merge_with_retries
    from autograde.course import create_gradebook

    db = tmp_path / "gradebook.db"
    create_gradebook(f"sqlite:///{db}")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        error = _merge_with_retries(f"sqlite:///{db}", ("amy", "01_toy"),
                                    Answer("amy", "01_toy", submission={"notebooks": {}}),
                                    attempts=1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert error and "locked" in error


def test_copies_never_follow_links(tmp_path):
    from autograde.course import SpecialFileError, safe_copy_tree

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ok.txt").write_text("ok")
    os.symlink("/dev/zero", tmp_path / "src" / "zero")
    with pytest.raises(SpecialFileError, match="symbolic link"):
        safe_copy_tree(tmp_path / "src", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
    subprocess.run(["true"], check=True)
