"""One nbgrader batch with hostile students (toy lessons, short limits), and a resumed batch.

Every hostile submission is graded or reported with a clear reason, the batch finishes with
exit status 0, and the well-behaved students' grades are exactly what they would be alone.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from autograde_toy import write_submission, write_toy_solutions

from autograde.authoring.release import release
from autograde.batch.grade import grade_batch
from autograde.batch.worker import Limits
from autograde.sandbox.launcher import bwrap_path
from autograde.student.submit import submit

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

REPO = Path(__file__).resolve().parents[2]
# The per-cell limit leaves room for importing torch on a busy machine.
# The wall clock is far beyond what any cell limit (and the kill after it) takes, so that
# which limit ends a stuck cell never depends on the machine's load.
LIMITS = Limits(cell_timeout_s=10, notebook_timeout_s=120, memory_mb=1500, output_bytes=100_000)
GOOD_ADD = "def add(a, b):\n    return a + b"
GOOD_SCALE = "def scale(x, factor):\n    return [v * factor for v in x]"
WRONG_MASK = "def causal_mask(T, device=None):\n    return torch.ones(T, T, dtype=torch.bool).triu()"


def _hostile_class(root: Path) -> tuple[Path, Path, Path]:
    solutions = write_toy_solutions(root / "solutions")
    lessons = root / "lessons"
    release(lessons, solutions)
    subs = root / "submissions"

    def sub(student, lesson="01_toy", sources=None, **kwargs):
        return write_submission(lessons, subs, student, lesson, sources, **kwargs)

    for lesson in ("01_toy", "02_toy"):
        sub("alice", lesson, solutions_dir=solutions)      # the solutions: full marks
        sub("bob", lesson)                                  # untouched: zero
    sub("loop", sources={"add": "while True:\n    pass", "scale": GOOD_SCALE})
    sub("stubborn", sources={"add": GOOD_ADD, "scale": (
        "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
        "    except KeyboardInterrupt:\n        pass")})
    sub("exiter", sources={"add": GOOD_ADD, "scale": "import os\nos._exit(3)"})
    sub("bomb", sources={"add": "hog = bytearray(8 << 30)\n" + GOOD_ADD, "scale": GOOD_SCALE})
    sub("printer", sources={"add": "for i in range(2_000_000):\n    print('x' * 50)\n" + GOOD_ADD,
                            "scale": GOOD_SCALE})
    sub("deleter", sources={"add": GOOD_ADD, "scale": GOOD_SCALE}, delete=("test_scale",))
    sub("editor", sources={"add": "def add(a, b):\n    return 0", "scale": GOOD_SCALE,
                           "test_add": "print('all good')"})
    sub("patcher", "02_toy", sources={"causal_mask": (
        "import nanolm_lib.course.attention\nimport nanolm_lib.grading.checks\n" + WRONG_MASK + "\n"
        "nanolm_lib.course.attention.causal_mask = causal_mask\n"
        "nanolm_lib.grading.checks.check_close = lambda *args, **kwargs: None")})
    tamper = sub("tamper", sources={"add": GOOD_ADD, "scale": GOOD_SCALE}) / "01_toy.ipynb"
    nb = nbformat.read(str(tamper), as_version=4)
    fake_test = nbformat.from_dict(copy.deepcopy(dict(nb.cells[3])))  # a pasted copy of
    fake_test.source, fake_test.id = "assert False", "pasted01"        # test_add that fails
    nb.cells.insert(1, fake_test)
    nb.cells[3].metadata["nbgrader"]["schema_version"] = 99  # nbgrader would refuse the file
    nbformat.write(nb, str(tamper))
    (subs / "malformed" / "01_toy").mkdir(parents=True)
    (subs / "malformed" / "01_toy" / "01_toy.ipynb").write_text("{not json")
    (subs / "missing" / "01_toy").mkdir(parents=True)  # a folder without the notebook
    if bwrap_path():
        sub("writer", sources={"scale": GOOD_SCALE, "add": (
            "import pathlib\n"
            f"for target in {[str(root / 'out' / 'gradebook.db'), str(REPO / 'nanolm_lib' / 'attention.py'), str(subs / 'alice' / '01_toy' / '01_toy.ipynb')]!r}:\n"
            "    try:\n        pathlib.Path(target).write_text('overwritten')\n"
            "    except OSError:\n        pass\n" + GOOD_ADD)})
    return solutions, subs, root / "out"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    solutions, subs, out = _hostile_class(root)
    attention_before = (REPO / "nanolm_lib" / "course" / "attention.py").read_bytes()
    alice_before = (subs / "alice" / "01_toy" / "01_toy.ipynb").read_bytes()
    result = grade_batch(subs, out, workers=2, limits=LIMITS, solutions_dir=solutions,
                         show_progress=False)
    assert (REPO / "nanolm_lib" / "course" / "attention.py").read_bytes() == attention_before
    assert (subs / "alice" / "01_toy" / "01_toy.ipynb").read_bytes() == alice_before
    scores = json.loads((out / "scores.json").read_text())
    return result, scores, out


def _total(scores, student, lesson):
    return sum(entry["score"] for entry in scores[student][lesson].values())


def test_batch_finishes_and_well_behaved_students_are_unaffected(hostile):
    result, scores, out = hostile
    assert result.ok, result.failures
    assert _total(scores, "alice", "01_toy") == 3 and _total(scores, "alice", "02_toy") == 2
    assert all(e["error"] is None for q in scores["alice"].values() for e in q.values())
    assert _total(scores, "bob", "01_toy") == 0 and _total(scores, "bob", "02_toy") == 0
    assert "NotImplementedError" in scores["bob"]["01_toy"]["test_add"]["error"]
    with open(out / "grades.csv") as handle:
        rows = {(r["student_id"], r["assignment"]): float(r["score"]) for r in csv.DictReader(handle)}
    assert rows[("alice", "01_toy")] == 3.0 and rows[("alice", "02_toy")] == 2.0
    assert rows[("bob", "01_toy")] == 0.0
    for name in ("summary.md", "summary.png", "report.md", "feedback/alice/01_toy.html"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "| 01_toy | test_add | 1 |" in summary and "NotImplementedError" in summary


@pytest.mark.parametrize("student, question, kept, reason", [
    ("loop", "test_add", ("test_scale",), "per-cell limit of 10 s"),
    # a cell that ignores the interrupt: the kernel is killed seconds after the cell limit,
    # and the notebook is graded on what completed
    ("stubborn", "test_scale", ("test_add",), "did not stop within 5 s of the interrupt"),
    ("exiter", "test_scale", ("test_add",), "exited with code 3"),
    ("bomb", "test_add", ("test_scale",), "memory limit"),
    ("printer", "test_add", ("test_scale",), "printed more than 100000 bytes"),
    ("deleter", "test_scale", ("test_add",), "test cell missing"),
    ("editor", "test_add", ("test_scale",), "AssertionError: add(1, 2) should be 3"),
    ("malformed", "test_add", (), "malformed notebook"),
    ("missing", "test_add", (), "missing notebook"),
])
def test_hostile_submission_is_graded_on_what_completed(hostile, student, question, kept,
                                                        reason):
    result, scores, out = hostile
    entry = scores[student]["01_toy"][question]
    reasons = reason if isinstance(reason, tuple) else (reason,)
    assert entry["score"] == 0 and any(r in entry["error"] for r in reasons), entry
    for other in kept:
        assert scores[student]["01_toy"][other]["score"] == scores["alice"]["01_toy"][other]["score"]
    assert f"**{student} / 01_toy**" in (out / "report.md").read_text()


def test_tampered_nbgrader_metadata_is_repaired(hostile):
    result, scores, out = hostile
    assert _total(scores, "tamper", "01_toy") == 3
    problems = result.answers[("tamper", "01_toy")].problems
    assert any("metadata repaired" in p and "restored" in p and "plain cell" in p
               for p in problems), problems


def test_patching_the_reference_scores_nothing_and_is_flagged(hostile):
    result, scores, out = hostile
    assert scores["patcher"]["02_toy"]["test_causal_mask"]["score"] == 0
    assert "causal_mask(4)" in scores["patcher"]["02_toy"]["test_causal_mask"]["error"]
    flags = result.answers[("patcher", "02_toy")].flags
    assert {f["kind"] for f in flags} == {"patch"}
    assert any("nanolm_lib.course.attention.causal_mask" in f["message"] for f in flags)
    assert "nanolm_lib.grading.checks.check_close" in (out / "report.md").read_text()


@pytest.mark.skipif(not bwrap_path(), reason="bubblewrap is not installed: weaker isolation")
def test_sandboxed_submission_cannot_write_outside_its_folder(hostile):
    result, scores, out = hostile
    assert _total(scores, "writer", "01_toy") == 3  # the writes failed quietly, the code ran
    assert "bubblewrap" in result.isolation


def _grades(out: Path) -> str:
    return (out / "grades.csv").read_text()


def _processes_mentioning(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or " Z " in (proc / "stat").read_text():
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in command:
            found.append(command[:200])
    return found


def test_resumed_batch_gives_the_same_grades(tmp_path):
    solutions = write_toy_solutions(tmp_path / "solutions")
    release(tmp_path / "lessons", solutions)
    subs = tmp_path / "submissions"
    # ben's notebook waits on a FIFO the test controls, when it exists: the interrupted batch
    # stops there for certain (ann graded, ben running, cat not started), whatever the load
    gate = tmp_path / "gate"
    wait_on_gate = (f"import os\nif os.path.exists({str(gate)!r}):\n"
                    f"    open({str(gate)!r}).read()\nraise NotImplementedError()")
    for student, add in (("ann", GOOD_ADD), ("ben", wait_on_gate), ("cat", GOOD_ADD)):
        write_submission(tmp_path / "lessons", subs, student, "01_toy", {"add": add})
    # the kernel must see the gate: this test is about resuming, not isolation
    limits = Limits(cell_timeout_s=60, notebook_timeout_s=120, use_bwrap=False)
    # The uninterrupted run reads the same work as LMS zips made by `submit`, and keeps its
    # gradebook at another SQLAlchemy URL (--db).
    zips = tmp_path / "zips"
    for student in ("ann", "ben", "cat"):
        # the submission time is when the notebook was saved, which the zip keeps (to the
        # second) and a copy of the zip does not change
        notebook = subs / student / "01_toy" / "01_toy.ipynb"
        saved = int(notebook.stat().st_mtime)
        os.utime(notebook, (saved, saved))
        archive = submit(subs / student, student=student, out_dir=zips)
        os.utime(archive, (0, 0))
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    straight = grade_batch(zips, tmp_path / "straight", limits=limits, solutions_dir=solutions,
                           db_url=elsewhere, show_progress=False)
    assert straight.graded == 3 and not (tmp_path / "straight" / "gradebook.db").exists()
    assert "UNSAFE" in (tmp_path / "straight" / "report.md").read_text().splitlines()[0]
    from nbgrader.api import Gradebook

    with Gradebook(elsewhere) as gb:
        assert gb.find_submission("01_toy", "ann").score == 1.0

    # Interrupt a second batch (SIGKILL to its process group) while ben's kernel waits.
    os.mkfifo(gate)
    out = tmp_path / "resumed"
    command = [sys.executable, "-m", "autograde", "grade", str(subs), "--out", str(out),
               "--solutions", str(solutions), "--cell-timeout", "60", "--notebook-timeout",
               "120", "--unsafe-no-isolation"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "NANOLM_PROGRESS": "0"})
    # opening the FIFO for writing returns once ben's kernel has opened it for reading; ben
    # then reads until the test closes it, and ann's answer is merged meanwhile
    with open(gate, "w"):
        deadline = time.monotonic() + 60
        while not (out / ".state" / "ann" / "01_toy.json").is_file() \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    gate.unlink()
    # its workers, sandbox launchers and kernels go with it (parent-death signals)
    deadline = time.monotonic() + 30
    while _processes_mentioning(out) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_mentioning(out), _processes_mentioning(out)
    assert sorted(p.name for p in (out / ".state").rglob("*.json")) == ["01_toy.json"]
    assert (out / ".state" / "ann" / "01_toy.json").is_file()

    resumed = grade_batch(subs, out, limits=limits, solutions_dir=solutions, show_progress=False)
    assert resumed.skipped == 1 and resumed.graded == 2
    assert _grades(out) == _grades(tmp_path / "straight")
    again = grade_batch(subs, out, limits=limits, solutions_dir=solutions, show_progress=False)
    assert again.graded == 0 and _grades(out) == _grades(tmp_path / "straight")
