"""``python -m autograde workspace`` (what ``make lab`` runs) and ``update-lesson NN_slug``.

``workspace`` copies the kit's lessons into the student's ``workspace/``: in a staged kit only
the lessons of its week (:func:`autograde.student.submit.read_stage`; the later ones say they are
not released yet). A notebook the student has is never overwritten. Instead, when the kit's copy of
a lesson changed since the student's was taken (a corrected lesson in a rebuilt kit), it says
so and how to take the correction: ``update-lesson NN_slug`` writes the kit's notebook with the
student's solution cells kept (matched by nbgrader ``grade_id``), after saving the student's
notebook under ``workspace/before-update/``. It also says to restart running kernels when the
kit was rebuilt since the last ``make lab``.

What the student's copies came from is kept in ``workspace/.lessons.json``: the SHA-256 of each
kit notebook when it was copied or updated, and the kit's build stamp.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import nbformat

from autograde.course import (
    LESSON_NAME,
    GraderError,
    copy_plain_file,
    nbgrader_meta,
    read_notebook,
    walk_plain,
)
from autograde.student.submit import stage_lessons

RECORD = ".lessons.json"
BACKUPS = "before-update"


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_record(workspace: Path) -> dict:
    try:
        record = json.loads((workspace / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"lessons": {}}
    return record if isinstance(record.get("lessons"), dict) else {"lessons": {}}


def _write_record(workspace: Path, record: dict) -> None:
    (workspace / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _fixed_cells(nb) -> dict[str, str]:
    """grade_id -> source of the cells a student does not write (set-up, tests, text)."""
    return {meta["grade_id"]: cell.source for cell in nb.cells
            if (meta := nbgrader_meta(cell)).get("grade_id") and not meta.get("solution")}


def _copy_missing(kit_lesson: Path, mine: Path) -> bool:
    """Copy the kit's files of one lesson that ``mine`` lacks; the kit's fixtures (test data,
    not the student's) are replaced when they differ. True when the notebook was copied."""
    notebook_copied = False
    for relative, _ in walk_plain(kit_lesson):
        source, target = kit_lesson / relative, mine / relative
        fixture = relative.parts[0] == "fixtures"
        if target.exists() and not (fixture and _digest(target) != _digest(source)):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        copy_plain_file(source, target)
        notebook_copied |= relative == Path(f"{kit_lesson.name}.ipynb")
    return notebook_copied


def prepare_workspace(lessons_dir: Path, workspace: Path, stage: dict | None) -> list[str]:
    """Copy the stage's lessons from ``lessons_dir`` into ``workspace`` without overwriting a
    student's notebook; returns the lines to show (corrections, later lessons, restarts)."""

    lessons_dir, workspace = Path(lessons_dir), Path(workspace)
    kit_lessons = sorted(p.name for p in lessons_dir.iterdir()
                         if p.is_dir() and LESSON_NAME.match(p.name)
                         and (p / f"{p.name}.ipynb").is_file())
    present, later = stage_lessons(kit_lessons, stage)
    workspace.mkdir(parents=True, exist_ok=True)
    record = _read_record(workspace)
    lines, corrected = [], []
    for lesson in present:
        kit_notebook = lessons_dir / lesson / f"{lesson}.ipynb"
        digest = _digest(kit_notebook)
        if _copy_missing(lessons_dir / lesson, workspace / lesson):
            record["lessons"][lesson] = digest
            lines.append(f"{lesson}: copied into {workspace / lesson}")
            continue
        known = record["lessons"].get(lesson)
        if known == digest:
            continue
        mine = workspace / lesson / f"{lesson}.ipynb"
        if known is None and _fixed_cells(read_notebook(mine)) == \
                _fixed_cells(read_notebook(kit_notebook)):
            record["lessons"][lesson] = digest  # a workspace from before this record
            continue
        corrected.append(lesson)
    for lesson in corrected:
        lines.append(f"{lesson}: the kit's lesson was corrected since you started it; your "
                     f"notebook is kept as it is. To take the correction with your answers "
                     f"kept: .venv/bin/python -m autograde update-lesson {lesson}")
    if later:
        lines.append(f"not released yet at this kit's week {stage['week']}: "
                     f"{', '.join(later)} (they come with a later stage of the kit, with their "
                     "tests; you can read them in lessons/)")
    built = stage.get("built_ns") if stage else None
    if built is not None and record.get("kit_built") not in (None, built):
        lines.append("the kit was rebuilt since your last `make lab`: restart every kernel "
                     "still running from before (Kernel > Restart Kernel), or it keeps the "
                     "old nanolm_lib")
    record["kit_built"] = built
    _write_record(workspace, record)
    return lines


def update_lesson(lessons_dir: Path, workspace: Path, lesson: str,
                  now: float | None = None) -> tuple[Path, list[str], int]:
    """Replace the student's notebook of ``lesson`` by the kit's, with the student's solution
    cells (by grade_id) in place of the kit's; returns (the saved copy of the student's
    notebook, the grade_ids kept, how many cells of the student's own were left out: they
    stay in the saved copy)."""
    lessons_dir, workspace = Path(lessons_dir), Path(workspace)
    kit_notebook = lessons_dir / lesson / f"{lesson}.ipynb"
    mine = workspace / lesson / f"{lesson}.ipynb"
    for path in (kit_notebook, mine):
        if not path.is_file():
            raise GraderError(f"update-lesson {lesson}: {path} does not exist")
    student = read_notebook(mine)
    answers = {meta["grade_id"]: cell for cell in student.cells
               if (meta := nbgrader_meta(cell)).get("solution") and meta.get("grade_id")}
    merged = read_notebook(kit_notebook)
    kit_ids = {nbgrader_meta(cell).get("grade_id") for cell in merged.cells} - {None}
    kit_sources = {cell.source for cell in merged.cells}
    kept = []
    for cell in merged.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution") and grade_id in answers:
            cell.source = answers[grade_id].source
            if cell.cell_type == "code":
                cell.outputs = copy.deepcopy(answers[grade_id].get("outputs", []))
            kept.append(grade_id)
    # the student's own cells: no grade_id the lesson has, text the lesson has not
    own_cells = sum(1 for cell in student.cells
                    if nbgrader_meta(cell).get("grade_id") not in kit_ids
                    and cell.source not in kit_sources)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    backup = workspace / BACKUPS / f"{lesson}-{stamp}.ipynb"
    backup.parent.mkdir(parents=True, exist_ok=True)
    copy_plain_file(mine, backup)
    nbformat.write(merged, str(mine))
    _copy_missing(lessons_dir / lesson, workspace / lesson)
    record = _read_record(workspace)
    record["lessons"][lesson] = _digest(kit_notebook)
    _write_record(workspace, record)
    return backup, kept, own_cells
