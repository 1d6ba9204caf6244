"""``autograde grade SUBMISSIONS --out DIR --slurm --shards N``: the batch as one Slurm array job.

The command writes two batch scripts into ``DIR/slurm/`` and submits them with ``sbatch``:

* ``grade.sbatch``, an array of N tasks: task K runs ``autograde grade --shard K/N``, with
  ``--workers`` CPUs and memory for that many sandboxed kernels; each kernel keeps the
  grader's own sandbox and limits (bubblewrap, memory, time, output), whatever the node;
* ``merge.sbatch``, after every task ended (``--dependency=afterany``): ``autograde grade
  --merge N`` writes ``grades.csv``, ``scores.json``, the summary and the report once. When a
  shard died (node lost, time limit, cancelled) the merge resubmits that shard alone, with a
  merge after it, up to ``RETRIES`` times (default 2); the shard resumes: every submission it
  graded before it died is in the gradebook and ``DIR/.state/`` and is not graded again.

``DIR`` must be on a filesystem every node sees, and with shards on several nodes the gradebook
must be a server (``--db postgresql+psycopg://...``); SQLite in ``DIR`` serves one node. Site
options (partition, account, time limit) go to sbatch through ``--sbatch-option``. Logs:
``DIR/slurm/shard-K.log`` (every run of shard K, appended) and ``DIR/slurm/merge.log``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from autograde.course import GraderError

RETRIES = 2          # times the merge resubmits shards that did not finish
KERNEL_OVERHEAD_MB = 1024   # per worker: the worker itself and nbgrader, besides the kernel


def _grade_options(args) -> list[str]:
    """The options every shard and the merge share (the same limits, policy and gradebook:
    the merge recomputes the content hashes that the shards stored)."""
    options = ["--out", str(Path(args.out).resolve()),
               "--cell-timeout", str(args.cell_timeout),
               "--notebook-timeout", str(args.notebook_timeout),
               "--memory-mb", str(args.memory_mb), "--max-output", str(args.max_output),
               "--copied", args.copied, "--solutions", str(Path(args.solutions).resolve())]
    if args.db:
        options += ["--db", args.db]
    if args.lessons:
        options += ["--lessons", *args.lessons]
    if getattr(args, "course", None):
        options += ["--course", str(Path(args.course).resolve())]
    if getattr(args, "lms", None):
        options += ["--lms", args.lms]
    if args.show_hidden_tests:
        options.append("--show-hidden-tests")
    if args.unsafe_no_isolation:
        options.append("--unsafe-no-isolation")
    return options


def _script(header: list[str], command: list[str]) -> str:
    python_bin = str(Path(sys.executable).parent)
    lines = ["#!/bin/bash", *(f"#SBATCH {option}" for option in header),
             "# written by `autograde grade --slurm`; submitted with sbatch",
             "set -euo pipefail",
             # nbgrader runs alembic and the kernels from the project's environment
             f"export PATH={shlex.quote(python_bin)}:\"$PATH\" NANOLM_PROGRESS=0",
             "exec " + " ".join(command)]
    return "\n".join(lines) + "\n"


def write_scripts(args) -> tuple[Path, Path]:
    """``DIR/slurm/grade.sbatch`` and ``merge.sbatch`` for ``args`` (the grade command's)."""
    if args.shards < 1:
        raise GraderError(f"--shards {args.shards}: at least 1")
    folder = Path(args.out).resolve() / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    autograde = [shlex.quote(sys.executable), "-m", "autograde", "grade",
                 shlex.quote(str(Path(args.submissions).resolve()))]
    options = [shlex.quote(option) for option in _grade_options(args)]
    workers = max(1, args.workers)
    grade = _script(
        ["--job-name=autograde-shard", f"--array=1-{args.shards}",
         f"--cpus-per-task={workers}", f"--mem={workers * (args.memory_mb + KERNEL_OVERHEAD_MB)}M",
         f"--output={folder}/shard-%a.log", "--open-mode=append", *args.sbatch_option],
        [*autograde, *options, "--workers", str(workers),
         "--shard", f"\"$SLURM_ARRAY_TASK_ID/{args.shards}\""])
    merge = _script(
        ["--job-name=autograde-merge", "--cpus-per-task=1", f"--mem={2 * KERNEL_OVERHEAD_MB}M",
         f"--output={folder}/merge.log", "--open-mode=append", *args.sbatch_option],
        # $1: how many more times unfinished shards are resubmitted
        [*autograde, *options, "--merge", str(args.shards),
         "--resubmit-unfinished", "\"${1:-0}\""])
    (folder / "grade.sbatch").write_text(grade)
    (folder / "merge.sbatch").write_text(merge)
    return folder / "grade.sbatch", folder / "merge.sbatch"


def sbatch(*arguments: str) -> str:
    """Submit with ``sbatch --parsable``; the job id."""
    if shutil.which("sbatch") is None:
        raise GraderError("--slurm: sbatch is not on PATH (Slurm's client commands)")
    done = subprocess.run(["sbatch", "--parsable", *arguments], capture_output=True, text=True)
    if done.returncode:
        raise GraderError(f"sbatch {' '.join(arguments)} failed: "
                          f"{(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout.strip().split(";")[0]


def _submit(grade_script: Path, merge_script: Path, retries: int,
            tasks: list[int] | None = None) -> tuple[str, str]:
    array = ["--array=" + ",".join(map(str, tasks))] if tasks else []
    shards = sbatch(*array, str(grade_script))
    merge = sbatch(f"--dependency=afterany:{shards}", str(merge_script), str(retries))
    return shards, merge


def submit_batch(args, limits) -> int:
    """``grade --slurm``: write the scripts, submit the array and the merge after it."""
    if args.shard or args.merge:
        raise GraderError("--slurm submits every shard and the merge itself: leave out "
                          "--shard and --merge")
    if not Path(args.submissions).exists():
        raise GraderError(f"no such folder of submissions: {args.submissions}")
    grade_script, merge_script = write_scripts(args)
    shards, merge = _submit(grade_script, merge_script, RETRIES)
    print(f"submitted {args.shards} shards as Slurm array job {shards} and the merge as job "
          f"{merge} (after the array); scripts and logs in {grade_script.parent}")
    return 0


def resubmit_unfinished(args, result) -> int:
    """The merge found shards that did not finish: submit those alone, and a merge after."""
    folder = Path(args.out).resolve() / "slurm"
    tasks = result.unfinished_shards
    shards, merge = _submit(folder / "grade.sbatch", folder / "merge.sbatch",
                            args.resubmit_unfinished - 1, tasks)
    print(f"shard(s) {', '.join(map(str, tasks))} of {args.merge} did not finish: resubmitted "
          f"alone as job {shards}, the merge again as job {merge} "
          f"({args.resubmit_unfinished - 1} more resubmission(s) allowed)")
    return 0
