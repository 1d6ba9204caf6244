"""``python -m autograde bench``: seconds per notebook and the speed-up of parallel workers.

A synthetic class: ``students`` copies of the solution notebooks (every cell runs, as for a
complete submission; the slowest realistic case) for the chosen lessons, graded once per
worker count into a fresh output folder. Reports wall time, seconds per notebook, the
speed-up over one worker and the projected time for a class of 50 students x all lessons.
Results go to ``bench-results/autograde.json`` (:func:`nanolm_lib.benchmarks.write_results`).
The machine may be shared: the figures are ratios measured in one run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from autograde.course import SOLUTIONS_DIR, lesson_names
from autograde.worker import Limits

CLASS_SIZE = 50


def run(students: int = 10, lessons: list[str] | None = None, workers: list[int] | None = None,
        solutions_dir: Path = SOLUTIONS_DIR, out_dir: str | Path = "bench-results") -> dict:
    """Grade the synthetic class with each worker count; print a table, return the figures."""
    from autograde.grade import grade_batch
    from nanolm_lib.benchmarks import write_results
    from nanolm_lib.tables import format_table

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
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = base / row["wall_s"]
        row[f"class_of_{CLASS_SIZE}_min"] = (
            row["s_per_notebook"] * CLASS_SIZE * len(lesson_names(solutions_dir)) / 60)
    print(format_table(rows))
    results = {"device": "cpu", "students": students, "lessons": lessons,
               "cpu_count": os.cpu_count(), "rows": rows}
    path = write_results("autograde", results, out_dir)
    print(f"results written to {path}")
    return results
