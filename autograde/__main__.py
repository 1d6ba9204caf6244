"""Command line: ``python -m autograde {release,exchange-release,grade,override,review,check,
submit,workspace,update-lesson,student-kit,bench}``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from autograde.course import LESSONS_DIR, SOLUTIONS_DIR, GraderError
from autograde.paths import AUTOGRADE_DIR

# Each command imports what it runs when it runs: the student kit has no batch/ or authoring/
# (an instructor's command there says so, :func:`_require`, instead of failing to import), and
# `check` and `submit` load neither the batch nor nbgrader's converters they never use.


def _release(args) -> int:
    _require("authoring")
    from autograde.authoring.release import release, stale_lessons

    if args.check:
        stale = stale_lessons(args.lessons, args.solutions)
        if stale:
            print(f"lessons/ is stale: {', '.join(stale)} differ from what "
                  "`python -m autograde release` generates from solutions/", file=sys.stderr)
            for lesson, found in stale.items():
                print(f"  {lesson}: {'; '.join(found)}", file=sys.stderr)
            return 1
        print("lessons/ is up to date with solutions/")
        return 0
    generated = release(args.lessons, args.solutions)
    print(f"released {len(generated)} lessons into {args.lessons}: {', '.join(generated)}")
    return 0


def _grade(args) -> int:
    _require("batch")
    from autograde.batch.course_file import find_course_file, load_course_file
    from autograde.batch.grade import Shard, grade_batch
    from autograde.sandbox.kernel import Limits

    limits = Limits(cell_timeout_s=args.cell_timeout, notebook_timeout_s=args.notebook_timeout,
                    memory_mb=args.memory_mb, output_bytes=args.max_output,
                    use_bwrap=not args.unsafe_no_isolation)
    course_path = args.course or find_course_file(args.solutions)
    course = load_course_file(course_path)
    if course_path:
        print(f"course file: {course_path}")
    shard = Shard.parse(args.shard) if args.shard else None
    submissions, exchange = _submissions_to_grade(args)
    if args.slurm:
        from autograde.batch.slurm import submit_batch

        return submit_batch(args, limits)
    try:
        result = grade_batch(submissions, args.out, workers=args.workers, db_url=args.db,
                             limits=limits, lessons=args.lessons or None,
                             solutions_dir=args.solutions, copied=args.copied,
                             show_hidden_tests=args.show_hidden_tests, course=course,
                             lms=args.lms, shard=shard, merge=args.merge)
    except KeyboardInterrupt:
        print(f"\ninterrupted: what was graded is kept in {args.out}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    if args.merge:
        print(f"merged {result.skipped} graded notebooks of {args.merge} shards into "
              f"{result.out}: grades.csv, scores.json, summary.md, report.md, feedback/, lms/, "
              "similarity.csv")
    elif shard:
        print(f"shard {shard}: graded {result.graded} notebooks ({result.skipped} unchanged "
              f"since the last run) into {result.out}; the merge (--merge {shard.count}) "
              "writes grades.csv and the reports")
    else:
        print(f"graded {result.graded} notebooks ({result.skipped} unchanged since the last "
              f"run) into {result.out}: grades.csv, scores.json, summary.md, report.md, "
              "feedback/, lms/, similarity.csv")
    if exchange:
        from autograde.batch.exchange import return_feedback

        returned = return_feedback(result.answers, args.from_exchange, exchange, args.out)
        print(f"feedback returned through the exchange {exchange} for {len(returned)} "
              f"submissions: {', '.join(returned) or 'none'}")
    if args.merge and result.unfinished_shards and args.resubmit_unfinished:
        from autograde.batch.slurm import resubmit_unfinished

        return resubmit_unfinished(args, result)
    print(f"isolation: {result.isolation}")
    for note in result.notes:
        print(f"note: {note}")
    for failure in result.failures:
        print(f"NOT GRADED {failure.splitlines()[0]}", file=sys.stderr)
    for skipped in result.not_graded:
        print(f"NOT GRADED {skipped}", file=sys.stderr)
    if result.not_graded:
        print(f"NOT GRADED: {len(result.not_graded)} file(s) of the download were not graded; "
              "report.md lists each with its reason", file=sys.stderr)
    return 0 if result.ok else 1


def _submissions_to_grade(args) -> tuple[Path, Path | None]:
    """SUBMISSIONS, or with --from-exchange the folder the exchange's latest submissions are
    collected into; and the exchange (None without --from-exchange)."""
    if not args.from_exchange:
        if args.submissions is None:
            raise GraderError("give SUBMISSIONS (a folder or an LMS download), or "
                              "--from-exchange COURSE")
        return args.submissions, None
    if args.submissions is not None or args.shard or args.merge or args.slurm or args.lms:
        raise GraderError("--from-exchange grades the exchange's submissions here, in one "
                          "batch: no SUBMISSIONS, --lms, --shard, --merge or --slurm with it")
    from autograde.batch.exchange import collect, exchange_root

    exchange = exchange_root(args.exchange)
    submissions, warnings = collect(args.from_exchange, exchange, args.out, args.lessons)
    print(f"collected the latest submission of each student from {exchange} "
          f"(course {args.from_exchange}) into {submissions}")
    for warning in warnings:
        print(f"note: nbgrader: {warning}")
    return submissions, exchange


def _exchange_release(args) -> int:
    _require("batch")
    from autograde.batch.exchange import exchange_root, release

    exchange = exchange_root(args.exchange)
    with tempfile.TemporaryDirectory(prefix="autograde-exchange-") as scratch:
        released = release(args.lesson, args.course, exchange, Path(scratch),
                           lessons_dir=args.lessons, force=args.force)
    print(f"released {released.name} into {released}: students of course {args.course} "
          "fetch it from the Assignments panel")
    return 0


def _override(args) -> int:
    _require("batch")
    from autograde.batch.overrides import override

    if args.remove == (args.points is not None):
        raise GraderError("give POINTS, or --remove to take the override back")
    print(override(args.out, args.student, args.lesson, args.question, args.points, args.why,
                   by=args.by, db_url=args.db, remove=args.remove))
    return 0


def _review(args) -> int:
    _require("batch")
    from autograde.batch.review import serve

    serve(args.out, port=args.port, db_url=args.db, by=args.by,
          open_browser=not args.no_browser)
    return 0


def _check(args) -> int:
    from autograde.sandbox.kernel import Limits
    from autograde.student.selfcheck import check_notebook, format_results
    from autograde.student.submit import read_stage, stage_lessons, workspace_lessons

    limits = Limits(cell_timeout_s=args.cell_timeout, notebook_timeout_s=args.notebook_timeout,
                    memory_mb=args.memory_mb, use_bwrap=not args.unsafe_no_isolation)
    notebooks = [args.notebook]
    if args.notebook.is_dir():  # a workspace: the lessons of the kit's week
        stage = read_stage()
        checked, later = stage_lessons(workspace_lessons(args.notebook), stage)
        if later:
            print(f"not checked: {', '.join(later)} (not released yet at this kit's week "
                  f"{stage['week']})")
        if not checked:
            raise GraderError(f"{args.notebook}: no lesson notebooks NN_slug/NN_slug.ipynb of "
                              "this kit's week to check (run `make lab` first)")
        notebooks = [args.notebook / lesson / f"{lesson}.ipynb" for lesson in checked]
    else:
        stage = read_stage()
        _, later = stage_lessons([args.notebook.stem], stage)
        if later:
            print(f"note: {later[0]} is not released yet at this kit's week {stage['week']}: "
                  "checked as you opened it early (make test and submit leave it out)")
    status = 0
    for notebook in notebooks:
        lesson, results, hits, errors = check_notebook(notebook, args.lessons, limits)
        print(format_results(lesson, notebook, results, hits, errors))
        status |= 0 if all(r.passed for r in results) and not errors else 1
    if len(notebooks) > 1:
        print(f"checked {len(notebooks)} lessons: "
              f"{'all passed' if status == 0 else 'some FAILED (above)'}")
    return status


def _submit(args) -> int:
    from autograde.student.submit import read_stage, stage_lessons, submit, workspace_lessons

    included, left_out = None, []
    if not args.all and args.workspace.is_dir():
        stage = read_stage()
        included, left_out = stage_lessons(workspace_lessons(args.workspace), stage)
        if left_out and not included:
            raise GraderError(f"workspace {args.workspace}: none of its lessons is of this "
                              f"kit's week {stage['week']}; --all submits them anyway")
    archive = submit(args.workspace, args.student, args.out, lessons=included)
    with zipfile.ZipFile(archive) as zf:
        lessons = sorted({name.split("/")[0] for name in zf.namelist()})
    print(f"wrote {archive} with {', '.join(lessons)}: upload this file (the LMS name "
          "pattern is <student>_<anything>.zip)")
    if left_out:
        print(f"left out: {', '.join(left_out)} (not released yet at this kit's week; --all "
              "submits every lesson)")
    return 0


def _workspace(args) -> int:
    from autograde.student.submit import read_stage
    from autograde.student.workspace import prepare_workspace

    for line in prepare_workspace(args.lessons, args.workspace, read_stage()):
        print(line)
    return 0


def _update_lesson(args) -> int:
    from autograde.student.workspace import update_lesson

    lesson = args.lesson.rstrip("/").split("/")[-1]
    backup, kept, own_cells = update_lesson(args.lessons, args.workspace, lesson)
    print(f"{lesson}: the kit's corrected lesson is now {args.workspace / lesson}, with your "
          f"{len(kept)} solution cell(s) kept ({', '.join(kept) or 'none'}); your notebook as "
          f"it was is saved as {backup}"
          + (f" (it holds {own_cells} cell(s) of your own that the lesson has not: copy "
             "back what you need)" if own_cells else ""))
    print("restart the lesson's kernel (Kernel > Restart Kernel) and run it again")
    return 0


def _student_kit(args) -> int:
    from autograde.authoring.kit import student_kit
    from nanolm_lib.grading.curriculum import week_of_released

    week = args.week
    if args.released is not None:
        if week is not None:
            raise GraderError("give --week NN (or the old --released NN), not both")
        try:
            week = week_of_released(args.released)
        except ValueError as error:
            raise GraderError(str(error)) from error
        print(f"note: --released {args.released} ships lesson {args.released}'s own answers "
              f"too; it is kept as the old spelling of --week {week}, the week students write "
              f"lesson {week} (the references of the lessons before it ship)"
              if week != "all" else
              f"note: --released {args.released} is the old spelling of --week all",
              file=sys.stderr)
    if week is None:
        week = _calendar_week(args.lessons)
    out = student_kit(args.out, lessons_dir=args.lessons, week=week or "all")
    stage = ("every reference released" if week in (None, "all") else
             f"week {week}: references of the lessons before {week} only; lessons up to "
             f"{week} for the students")
    print(f"student kit written to {out}: lessons/, nanolm_lib/ ({stage}), autograde (check, "
          "submit), set-up files; no solutions/")
    return 0


def _calendar_week(lessons_dir: Path) -> str | None:
    """Without --week: the week course.toml's calendar gives now (said), else None."""
    from autograde.batch.course_file import find_course_file, load_course_file

    path = find_course_file(lessons_dir)
    week = load_course_file(path).week(datetime.now(UTC)) if path else None
    if week is not None:
        print(f"note: week {week} from the calendar of {path} (the first lesson not due yet; "
              "--week NN overrides it)", file=sys.stderr)
    return week


def _bench(args) -> int:
    from autograde.batch.bench import run, run_shards

    if args.shards:
        run_shards(students=args.students, lessons=args.lessons or None,
                   shard_counts=args.shards)
    else:
        run(students=args.students, lessons=args.lessons or None, workers=args.workers)
    return 0


def _require(folder: str):
    """Student kits ship autograde without the instructor's folders (``batch``, ``authoring``);
    say so instead of a traceback."""
    if not (AUTOGRADE_DIR / folder).is_dir():
        raise GraderError("this is an instructor command; the student kit has only "
                          "`check` and `submit`")


def _unsafe_option(parser) -> None:
    parser.add_argument("--unsafe-no-isolation", action="store_true",
                        help="run kernels without bubblewrap, with the grader's rights (the "
                             "report says so on top); without bwrap nothing runs otherwise")


def _add_release_parser(commands) -> None:
    p = commands.add_parser("release", help="regenerate lessons/ from solutions/")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 naming the lessons that are stale")
    p.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_release)


def _add_exchange_release_parser(commands) -> None:
    p = commands.add_parser(
        "exchange-release", help="publish lesson NN in nbgrader's exchange (JupyterHub)",
        description="Put lesson NN, as the student kit ships it, into nbgrader's exchange "
                    "(COURSE/outbound/NN_slug) with nbgrader's release_assignment: students "
                    "on the course's JupyterHub fetch it from the Assignments panel.")
    p.add_argument("lesson", help="NN or NN_slug, e.g. 01")
    p.add_argument("--course", default=os.environ.get("NANOLM_COURSE", "nanolm"),
                   help="nbgrader course id (default: $NANOLM_COURSE, else nanolm)")
    p.add_argument("--exchange", type=Path, default=None,
                   help="the exchange folder (default: $NANOLM_EXCHANGE)")
    p.add_argument("--force", action="store_true",
                   help="replace a release of this lesson already in the exchange")
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_exchange_release)


def _add_grade_parser(commands) -> None:
    p = commands.add_parser(
        "grade", help="grade a folder of submissions",
        description="Grade SUBMISSIONS (<student>/<NN_slug>/<NN_slug>.ipynb folders, or an "
                    "LMS download of zips: --lms) into OUT: grades.csv, scores.json, "
                    "feedback/, summary.md, summary.png, report.md, and lms/ (the LMS's "
                    "import CSVs with the late policy applied, feedback archives). "
                    "Re-running skips submissions graded before and unchanged. "
                    "--from-exchange COURSE grades the latest submissions in nbgrader's "
                    "exchange instead and returns the feedback through it.")
    p.add_argument("submissions", type=Path, nargs="?")
    p.add_argument("--from-exchange", metavar="COURSE",
                   help="collect the latest submission of each student of COURSE from "
                        "nbgrader's exchange (into OUT/collected), grade them, and return each "
                        "one's feedback through the exchange (Fetch Feedback)")
    p.add_argument("--exchange", type=Path, default=None,
                   help="--from-exchange: the exchange folder (default: $NANOLM_EXCHANGE)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="parallel workers (default 1)")
    p.add_argument("--db", default=None,
                   help="SQLAlchemy URL of the gradebook (default sqlite in OUT); for shards on "
                        "several hosts PostgreSQL: postgresql+psycopg://USER@HOST/DB")
    p.add_argument("--lessons", nargs="*",
                   help="lessons to grade (default: all submitted; with a course file, those "
                        "already due)")
    p.add_argument("--course", type=Path, default=None,
                   help="course file with due dates, late policy and roster (default: "
                        "course.toml beside lessons/, when there is one)")
    p.add_argument("--lms", choices=("native", "canvas", "moodle", "blackboard"), default=None,
                   help="how the download's files are named (default: the course file's "
                        "[lms] kind, else the LMS whose names every zip fits, else native: "
                        "<student>_<anything>.zip from submit)")
    p.add_argument("--shard", metavar="K/N",
                   help="grade only the K-th of N deterministic shares (OUT and --db shared by "
                        "all shards); writes no report: --merge N does, once")
    p.add_argument("--merge", type=int, metavar="N",
                   help="grade nothing: write grades.csv, scores.json, the summary and report "
                        "from what the N shards graded, naming any shard not finished")
    p.add_argument("--slurm", action="store_true",
                   help="submit the batch to Slurm: one array job of --shards tasks, then the "
                        "merge; a shard that dies is resubmitted alone")
    p.add_argument("--shards", type=int, default=4, help="--slurm: array tasks (default 4)")
    p.add_argument("--sbatch-option", action="append", default=[], metavar="OPTION",
                   help="--slurm: an option for sbatch, e.g. --sbatch-option=--partition=cpu "
                        "(repeatable)")
    p.add_argument("--resubmit-unfinished", type=int, default=0, metavar="TRIES",
                   help=argparse.SUPPRESS)  # the Slurm merge step: rerun unfinished shards
    p.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (120)")
    p.add_argument("--notebook-timeout", type=float, default=900,
                   help="wall-clock seconds per notebook (900)")
    p.add_argument("--memory-mb", type=int, default=4096, help="kernel memory limit (4096)")
    p.add_argument("--max-output", type=int, default=1_000_000,
                   help="bytes of output per cell (1000000)")
    _unsafe_option(p)
    p.add_argument("--copied", choices=("zero", "flag"), default="zero",
                   help="a question whose solution uses or copies the reference: zero (default) "
                        "scores it 0; flag only reports it")
    p.add_argument("--show-hidden-tests", action="store_true",
                   help="the feedback shows the hidden tests' source (default: results only)")
    p.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_grade)


def _add_override_parser(commands) -> None:
    p = commands.add_parser(
        "override", help="set one question's score by hand (an override, or a hand grade)",
        description="Set the score of QUESTION (its name, e.g. merge_pair or test_merge_pair) "
                    "of STUDENT's LESSON in the batch graded into --out, with the reason; "
                    "grades.csv, scores.json, report.md, summary.md, lms/ and the feedback are "
                    "written again. The override stands through later regrades until "
                    "--remove; history.jsonl and report.md keep every change.")
    p.add_argument("student")
    p.add_argument("lesson")
    p.add_argument("question")
    p.add_argument("points", type=float, nargs="?", default=None)
    p.add_argument("--why", required=True, help="the reason (the history and report.md keep "
                                                "it; the feedback shows it)")
    p.add_argument("--by", default=None, help="who (default: your user name)")
    p.add_argument("--remove", action="store_true",
                   help="take the override back: the grader's score again")
    p.add_argument("--out", type=Path, default=Path("grades"),
                   help="the folder grade wrote (default grades)")
    p.add_argument("--db", default=None, help="the gradebook's URL (default: the one grade "
                                              "used)")
    p.set_defaults(func=_override)


def _add_review_parser(commands) -> None:
    p = commands.add_parser(
        "review", help="review the graded batch in a browser, and override scores there",
        description="Serve the batch graded into --out on 127.0.0.1: every submission with "
                    "its score, the questions waiting for a hand grade, each submission's "
                    "questions (score, the grader's message, overrides) beside its feedback, "
                    "and a form per question that does what `override` does.")
    p.add_argument("--out", type=Path, default=Path("grades"),
                   help="the folder grade wrote (default grades)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--db", default=None, help="the gradebook's URL (default: the one grade "
                                              "used)")
    p.add_argument("--by", default=None, help="who sets the scores (default: your user "
                                              "name)")
    p.add_argument("--no-browser", action="store_true", help="print the address only")
    p.set_defaults(func=_review)


def _add_check_parser(commands) -> None:
    p = commands.add_parser(
        "check", help="self-check a lesson notebook, or a workspace's lessons",
        description="Run a lesson notebook the way grading runs it, with its visible tests and "
                    "the grader's verdict on practice cases. Given a folder (workspace/), "
                    "every lesson of the kit's week in it, naming those it skips.")
    p.add_argument("notebook", type=Path,
                   help="e.g. workspace/03_attention/03_attention.ipynb, or workspace")
    p.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (120)")
    p.add_argument("--notebook-timeout", type=float, default=900,
                   help="wall-clock seconds for the notebook (900)")
    p.add_argument("--memory-mb", type=int, default=4096, help="kernel memory limit (4096)")
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help=argparse.SUPPRESS)
    _unsafe_option(p)
    p.set_defaults(func=_check)


def _add_submit_parser(commands) -> None:
    p = commands.add_parser("submit", help="zip workspace/ for upload")
    p.add_argument("--workspace", type=Path, default=Path("workspace"))
    p.add_argument("--student", default=os.environ.get("NANOLM_STUDENT"),
                   help="your student id (required; default: $NANOLM_STUDENT): letters, "
                        "digits, '.' and '-'")
    p.add_argument("--all", action="store_true",
                   help="every lesson in the workspace (default: in a staged kit, the lessons "
                        "of its week)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for the zip (.)")
    p.set_defaults(func=_submit)


def _add_workspace_parser(commands) -> None:
    p = commands.add_parser(
        "workspace", help="copy the kit's lessons into workspace/ (make lab)",
        description="Copy the lessons of the kit's week into WORKSPACE, never overwriting a "
                    "notebook; say which lessons the kit corrected since they were copied, "
                    "which are not released yet, and when to restart kernels.")
    p.add_argument("workspace", type=Path, nargs="?", default=Path("workspace"))
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_workspace)


def _add_update_lesson_parser(commands) -> None:
    p = commands.add_parser(
        "update-lesson", help="take a corrected lesson, keeping your answers",
        description="Replace workspace/NN_slug/NN_slug.ipynb by the kit's lesson with your "
                    "solution cells kept (by nbgrader grade_id); your notebook as it was is "
                    "saved in workspace/before-update/.")
    p.add_argument("lesson", help="NN_slug, e.g. 03_attention")
    p.add_argument("--workspace", type=Path, default=Path("workspace"))
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_update_lesson)


def _add_student_kit_parser(commands) -> None:
    p = commands.add_parser("student-kit", help="write the student kit (no solutions)")
    p.add_argument("out", type=Path)
    p.add_argument("--week", default=None,
                   help="NN: the kit for the week students write lesson NN: lessons up to NN, "
                        "the graded references of the lessons before NN only (NN's and later "
                        "ones raise NotReleasedError); all (default): every reference")
    p.add_argument("--released", default=None, help="the old spelling: --released NN is "
                                                    "--week NN+1 (it ships lesson NN's answers)")
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_student_kit)


def _add_bench_parser(commands) -> None:
    p = commands.add_parser("bench", help="seconds per notebook, speed-up of 2 workers")
    p.add_argument("--students", type=int, default=10)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lessons", nargs="*", help="lessons (default: all in solutions/; "
                                                "with --shards 01_tokenizer)")
    p.add_argument("--shards", type=int, nargs="+",
                   help="instead of workers: N concurrent `grade --shard K/N` processes and "
                        "the merge, for each N given (e.g. 1 2 4)")
    p.set_defaults(func=_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograde", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    # one function per command, in the order --help lists them
    for add in (
            _add_release_parser, _add_exchange_release_parser, _add_grade_parser,
            _add_override_parser, _add_review_parser, _add_check_parser, _add_submit_parser,
            _add_workspace_parser, _add_update_lesson_parser, _add_student_kit_parser,
            _add_bench_parser):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a :class:`GraderError` becomes a one-line message and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GraderError as error:
        print(f"autograde {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
