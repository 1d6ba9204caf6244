"""``python -m autograde bench``: seconds per notebook and the speed-up of parallel workers.

A synthetic class: ``students`` copies of the solution notebooks (every cell runs, as for a
complete submission; the slowest realistic case) for the chosen lessons, graded once per
worker count into a fresh output folder. Reports wall time, seconds per notebook, the
speed-up over one worker and the projected time for a class of 50 students x all lessons,
then each lesson's seconds per notebook by grading step.
Results go to ``bench-results/autograde.json`` (:func:`nanolm_lib.lab.benchmarks.write_results`).
The machine may be shared: the figures are ratios measured in one run.

``bench --shards 1 2 4`` grades the same class as N concurrent ``autograde grade --shard K/N``
processes (as on N cluster nodes, here sharing this machine's cores) and the merge, and reports
per shard count: wall time, CPU seconds (the whole machine's busy time, so run it on an
otherwise idle machine; the load average is recorded),
notebooks per CPU-second and per core-second (wall time x cores), and each shard's overhead:
its wall time less the seconds its workers spent on notebooks (start-up, template course,
staged library, gradebook), and the disk the outputs take per notebook; then the seconds per
notebook of each grading step (:attr:`autograde.batch.answer.Answer.phases`: collect and scan,
kernel and cells, hidden cases, feedback, the gradebook write). Results:
``bench-results/autograde-shards.json``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograde.batch.grade import grade_batch
from autograde.batch.worker import Limits
from autograde.course import SOLUTIONS_DIR, lesson_names
from nanolm_lib.lab.benchmarks import write_results
from nanolm_lib.lab.tables import format_table

CLASS_SIZE = 50


def run(students: int = 10, lessons: list[str] | None = None, workers: list[int] | None = None,
        solutions_dir: Path = SOLUTIONS_DIR, out_dir: str | Path = "bench-results") -> dict:
    """Grade the synthetic class with each worker count; print a table, return the figures."""

    lessons = lessons or lesson_names(solutions_dir)
    workers = workers or [1, 2]
    rows = []
    with tempfile.TemporaryDirectory(prefix="autograde-bench-") as tmp:
        submissions = Path(tmp) / "submissions"
        for index in range(students):
            for lesson in lessons:
                shutil.copytree(Path(solutions_dir) / lesson,
                                submissions / f"student{index:03d}" / lesson)
        notebooks = students * len(lessons)
        for count in workers:
            out = Path(tmp) / f"out-{count}"
            started = time.perf_counter()
            result = grade_batch(submissions, out, workers=count, solutions_dir=solutions_dir,
                                 limits=Limits(cell_timeout_s=600, notebook_timeout_s=1800))
            seconds = time.perf_counter() - started
            per_notebook = [answer.seconds for answer in result.answers.values()]
            rows.append({"workers": count, "notebooks": notebooks, "wall_s": seconds,
                         "s_per_notebook": seconds / notebooks,
                         "worker_s_per_notebook": sum(per_notebook) / max(len(per_notebook), 1),
                         "failures": len(result.failures)})
            per_lesson = {lesson: _mean_phases(
                [{"seconds": a.seconds, "phases": a.phases} for (_, graded), a in
                 result.answers.items() if graded == lesson]) for lesson in lessons}
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = base / row["wall_s"]
        row[f"class_of_{CLASS_SIZE}_min"] = (
            row["s_per_notebook"] * CLASS_SIZE * len(lesson_names(solutions_dir)) / 60)
    print(format_table(rows))
    print(f"seconds per notebook by lesson and step (the run with {workers[-1]} workers):")
    print(format_table([{"lesson": lesson, **steps} for lesson, steps in per_lesson.items()]))
    results = {"device": "cpu", "students": students, "lessons": lessons,
               "cpu_count": os.cpu_count(), "rows": rows, "by_lesson_s": per_lesson}
    path = write_results("autograde", results, out_dir)
    print(f"results written to {path}")
    return results


def _write_class(root: Path, students: int, lessons: list[str], solutions_dir: Path) -> int:
    for index in range(students):
        for lesson in lessons:
            shutil.copytree(Path(solutions_dir) / lesson, root / f"student{index:03d}" / lesson)
    return students * len(lessons)


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (Linux ``/proc/stat``): the batch's
    kernels run in sandboxes whose processes its own rusage never collects (children's rusage
    counted 152 CPU seconds for 200 notebooks that kept a worker busy for 1,400 s); elsewhere,
    the children's rusage, a lower bound."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _mean_phases(answers: list[dict]) -> dict[str, float]:
    """Mean seconds per notebook of each grading step (:attr:`Answer.phases`), and in all."""
    totals: dict[str, float] = {"all": sum(answer["seconds"] for answer in answers)}
    for answer in answers:
        for step, seconds in answer.get("phases", {}).items():
            totals[step] = totals.get(step, 0.0) + seconds
    return {step: total / max(len(answers), 1) for step, total in totals.items()}


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def run_shards(students: int = 4, lessons: list[str] | None = None,
               shard_counts: list[int] | None = None, solutions_dir: Path = SOLUTIONS_DIR,
               out_dir: str | Path = "bench-results") -> dict:
    """Grade the synthetic class in N concurrent shards and merge, for each N; print a table."""

    lessons = lessons or ["01_tokenizer"]
    shard_counts = shard_counts or [1, 2, 4]
    cores = os.cpu_count() or 1
    env = {**os.environ, "NANOLM_PROGRESS": "0"}
    rows, phases = [], {}
    with tempfile.TemporaryDirectory(prefix="autograde-bench-") as tmp:
        submissions = Path(tmp) / "submissions"
        notebooks = _write_class(submissions, students, lessons, solutions_dir)
        for count in shard_counts:
            out = Path(tmp) / f"out-{count}"
            command = [sys.executable, "-m", "autograde", "grade", str(submissions), "--out",
                       str(out), "--solutions", str(solutions_dir)]
            cpu_before, started = _busy_cpu_s(), time.perf_counter()
            shards = [(time.perf_counter(), subprocess.Popen(
                command + ["--shard", f"{k}/{count}"], env=env, stdout=subprocess.DEVNULL))
                for k in range(1, count + 1)]
            shard_wall = []
            for began, process in shards:
                if process.wait():
                    raise RuntimeError(f"a shard of {count} failed: {' '.join(command)}")
                shard_wall.append(time.perf_counter() - began)
            graded_s = time.perf_counter() - started
            subprocess.run(command + ["--merge", str(count)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            cpu = _busy_cpu_s() - cpu_before
            # each worker's seconds per notebook, from the answers the shards kept
            kept = [json.loads(path.read_text())["answer"]
                    for path in (out / ".state").glob("*/*.json")]  # one per submission
            worked = [answer["seconds"] for answer in kept]
            overhead = max(shard_wall) - sum(worked) / count
            rows.append({"shards": count, "notebooks": notebooks, "wall_s": wall,
                         "shards_wall_s": graded_s, "merge_s": wall - graded_s,
                         "cpu_s": cpu, "nb_per_cpu_s": notebooks / cpu,
                         "nb_per_core_s": notebooks / (wall * min(cores, count)),
                         "worker_s_per_nb": sum(worked) / len(worked),
                         "overhead_per_shard_s": overhead,
                         "disk_kb_per_nb": _folder_bytes(out) / notebooks / 1024})
            phases[count] = _mean_phases(kept)
    print(format_table(rows))
    print("seconds per notebook, by step (each worker's, then the batch's gradebook write):")
    print(format_table([{"shards": count, **steps} for count, steps in phases.items()]))
    results = {"device": "cpu", "students": students, "lessons": lessons, "cpu_count": cores,
               "load_average": os.getloadavg(), "rows": rows, "phases_s_per_nb": phases}
    path = write_results("autograde-shards", results, out_dir)
    print(f"results written to {path}")
    return results
