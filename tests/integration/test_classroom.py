"""A class graded in shards: ``autograde grade --shard K/N`` into one gradebook, then
``--merge N``, against the same batch graded in one piece into SQLite.

Real services, each started and stopped by its test (tests/classroom_services.py): PostgreSQL
from Debian's ``postgresql`` package (two shards write to it at once), and a single-node Slurm
cluster (``slurm-wlm`` and ``munge``) that runs ``autograde grade --slurm``'s array job. Each
test skips with one line where its service cannot start. The batch is lesson 01 handed in by
three students: the solution, the untouched lesson and a half-done one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from classroom_services import Unavailable, postgres_server, slurm_cluster

from autograde.batch.grade import Shard
from autograde.course import LESSONS_DIR, SOLUTIONS_DIR, GraderError

REPO = Path(__file__).resolve().parents[2]
LESSON = "01_tokenizer"
HALF_DONE = ("get_pair_counts", "merge_pair")  # the half-done student's finished questions

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(300)]


def _autograde(*args, **popen) -> subprocess.Popen:
    env = {**os.environ, "NANOLM_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "-m", "autograde", *map(str, args)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def _finish(process: subprocess.Popen) -> str:
    output = process.communicate(timeout=240)[0]
    assert process.returncode == 0, output[-3000:]
    return output


def _write_class(submissions: Path) -> list[str]:
    solution = nbformat.read(str(SOLUTIONS_DIR / LESSON / f"{LESSON}.ipynb"), as_version=4)
    answers = {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in solution.cells
               if cell.metadata.get("nbgrader", {}).get("solution")}
    for student, finished in (("ann", tuple(answers)), ("ben", ()), ("dan", HALF_DONE)):
        lesson = nbformat.read(str(LESSONS_DIR / LESSON / f"{LESSON}.ipynb"), as_version=4)
        for cell in lesson.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") in finished:
                cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
        folder = submissions / student / LESSON
        folder.mkdir(parents=True)
        nbformat.write(lesson, str(folder / f"{LESSON}.ipynb"))
    return ["ann", "ben", "dan"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The class and its grades from one unsharded run into SQLite (the reference)."""
    root = tmp_path_factory.mktemp("classroom")
    submissions = root / "submissions"
    students = _write_class(submissions)
    _finish(_autograde("grade", submissions, "--out", root / "sqlite"))
    return submissions, students, root / "sqlite"


def _scores(db_url: str) -> dict:
    """(student, lesson, question) -> score, read through nbgrader's gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        return {(sub.student.id, sub.assignment.name, grade.name): grade.score
                for assignment in gb.assignments for sub in assignment.submissions
                for notebook in sub.notebooks for grade in notebook.grades}


def test_shards_split_every_pair_once_and_refuse_a_bad_spec():
    positions = range(11)
    shares = [[p for p in positions if Shard(k, 3).takes(p)] for k in (1, 2, 3)]
    assert sorted(sum(shares, [])) == list(positions)
    assert [len(share) for share in shares] == [4, 4, 3]
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("3", "0/2", "3/2", "a/b"):
        with pytest.raises(GraderError, match=f"--shard '{bad}'"):
            Shard.parse(bad)


def test_two_shards_write_one_postgresql_gradebook_at_once(batch, tmp_path):
    submissions, students, reference = batch
    with _running(postgres_server, "PostgreSQL") as db_url:
        out = tmp_path / "sharded"
        shards = [_autograde("grade", submissions, "--out", out, "--db", db_url,
                             "--shard", f"{k}/2") for k in (1, 2)]
        logs = [_finish(shard) for shard in shards]
        assert "shard 1/2: graded 2 notebooks" in logs[0], logs[0]
        assert "shard 2/2: graded 1 notebooks" in logs[1], logs[1]
        assert not (out / "grades.csv").exists()  # the shards write no report
        assert not (out / "gradebook.db").exists()  # nor a SQLite gradebook

        merged = _finish(_autograde("grade", submissions, "--out", out, "--db", db_url,
                                    "--merge", "2"))
        assert "merged 3 graded notebooks of 2 shards" in merged, merged
        expected = _scores(f"sqlite:///{reference / 'gradebook.db'}")
        assert {key[0] for key in expected} == set(students)
        assert _scores(db_url) == expected
        assert sum(expected.values()) > 0 and 0 in expected.values()
        for output in ("grades.csv", "scores.json"):
            assert (out / output).read_text() == (reference / output).read_text(), output
        for student in students:
            assert (out / "feedback" / student / f"{LESSON}.html").is_file()


@contextlib.contextmanager
def _running(service, what: str):
    """The service started for the test (skipped, saying why, where it cannot start), stopped
    after it."""
    try:
        context = service()
        value = context.__enter__()
    except Unavailable as why:
        pytest.skip(f"{what} cannot start here: {why}")
    try:
        yield value
    finally:
        context.__exit__(None, None, None)


def _slurm(env: dict, *command: str) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"
    return done.stdout


def _wait_until(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_slurm_array_grades_in_shards_and_reruns_a_shard_that_died(batch, tmp_path):
    """Task 1 of the array is cancelled as soon as it runs (a node lost, a time limit): the
    merge resubmits shard 1 alone, and the final merge has every grade of the SQLite run."""
    submissions, students, reference = batch
    with _running(slurm_cluster, "Slurm") as env:
        out = tmp_path / "slurm"
        submitted = subprocess.run(
            [sys.executable, "-m", "autograde", "grade", submissions, "--out", out, "--slurm",
             "--shards", "2"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert submitted.returncode == 0, submitted.stderr
        array = submitted.stdout.split("Slurm array job ")[1].split()[0]

        def state_of_task_1() -> str:
            return _slurm(env, "squeue", "-h", "-j", f"{array}_1", "-o", "%T").strip()

        _wait_until(lambda: state_of_task_1() == "RUNNING", "shard 1 to run")
        _slurm(env, "scancel", f"{array}_1")
        # the merge resubmits shard 1 and a merge from inside a running job: the queue is
        # empty only when the last merge has ended
        _wait_until(lambda: not _slurm(env, "squeue", "-h").strip(), "the queue to empty")

        logs = out / "slurm"
        merge_log = (logs / "merge.log").read_text()
        assert "shard(s) 1 of 2 did not finish: resubmitted alone" in merge_log, merge_log
        assert "merged 3 graded notebooks of 2 shards" in merge_log, merge_log
        shard_1 = (logs / "shard-1.log").read_text()
        assert shard_1.count("shard 1/2: graded") == 1, shard_1  # the cancelled run ended none
        graded, kept = _counts(shard_1, "shard 1/2: graded ")
        assert graded + kept == 2, shard_1  # what it had graded before it died was kept
        assert (logs / "shard-2.log").read_text().count("shard 2/2: graded 1 notebooks") == 1
        assert _scores(f"sqlite:///{out / 'gradebook.db'}") == \
            _scores(f"sqlite:///{reference / 'gradebook.db'}")
        for output in ("grades.csv", "scores.json"):
            assert (out / output).read_text() == (reference / output).read_text(), output


def _counts(log: str, prefix: str) -> tuple[int, int]:
    """(graded, unchanged) from a shard's "graded N notebooks (M unchanged ..." line."""
    words = log.split(prefix)[1].split()
    return int(words[0]), int(words[2].lstrip("("))
