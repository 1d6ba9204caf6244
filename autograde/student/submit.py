"""``python -m autograde submit``, and the kit's stage as the student's commands read it.

``submit`` zips the lesson folders of the student's ``workspace/`` into
``<student>_nanolm_<YYYYmmdd-HHMMSS>.zip`` (the name :mod:`autograde.batch.collect` expects from
an LMS download; the student id is everything before the first underscore, so it may not
contain one). In a staged kit only the lessons of its week go in (``--all`` for every lesson). Run
outputs, checkpoints, caches and files over :data:`MAX_FILE_BYTES` stay out.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import struct
import time
import zipfile
from pathlib import Path

from autograde.course import IGNORED, LESSON_NAME, REPO, GraderError

SUBMIT_STUDENT_ID = re.compile(r"^[A-Za-z0-9.\-]+$")
MAX_FILE_BYTES = 20 << 20
# a submission also leaves out large binaries (a lesson's fixtures are the kit's own)
LEFT_OUT = (*IGNORED, "*.pt", "*.bin", ".cache", "*.npy", "*.arrow")
STAGE_FILE = "STAGE.json"  # a kit's week: {"week", "lessons", "references", "built"}


def _left_out(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in LEFT_OUT)


def read_stage(root: Path = REPO) -> dict | None:
    """The stage of the kit at ``root`` (its STAGE.json), or None outside a staged kit."""
    path = Path(root) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        stage = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        stage = error
    if not isinstance(stage, dict) or not {"week", "lessons"} <= set(stage):
        raise GraderError(f"{path}: not a kit's stage file; build the kit again with "
                          "student-kit")
    return stage


def stage_lessons(found: list[str], stage: dict | None) -> tuple[list[str], list[str]]:
    """``found`` lessons split into (those of the kit's stage, those after it)."""
    if stage is None or stage["week"] == "all":
        return list(found), []
    return ([lesson for lesson in found if lesson in stage["lessons"]],
            [lesson for lesson in found if lesson not in stage["lessons"]])


def workspace_lessons(workspace: Path) -> list[str]:
    """The lesson folders ``NN_slug/NN_slug.ipynb`` of ``workspace``, in order."""
    return sorted(p.name for p in Path(workspace).iterdir()
                  if p.is_dir() and LESSON_NAME.match(p.name)
                  and (p / f"{p.name}.ipynb").is_file())


def submit(workspace: Path, student: str | None = None, out_dir: Path = Path("."),
           now: float | None = None, lessons: list[str] | None = None) -> Path:
    """Zip the lesson folders of ``workspace`` (``lessons`` of them, default all); returns the
    zip's path."""
    workspace = Path(workspace)
    student = student or os.environ.get("NANOLM_STUDENT")
    if not student:
        raise GraderError("give your student id: --student ID (the id your instructor uses "
                          "for you; letters, digits, '.' and '-'), or set NANOLM_STUDENT")
    if not SUBMIT_STUDENT_ID.match(student):
        suggestion = re.sub(r"[^A-Za-z0-9.\-]+", "-", student).strip("-")
        raise GraderError(f"student id {student!r}: use letters, digits, '.' and '-' only "
                          "(no '_' or spaces: the LMS file name is <student>_<anything>.zip)"
                          + (f", e.g. --student {suggestion}" if suggestion else ""))
    if not workspace.is_dir():
        raise GraderError(f"workspace {workspace}: no such folder (run `make lab` first, "
                          "or pass --workspace)")
    found = workspace_lessons(workspace)
    if not found:
        raise GraderError(f"workspace {workspace}: no lesson folders NN_slug/NN_slug.ipynb")
    lessons = found if lessons is None else lessons
    if not lessons:
        raise GraderError(f"workspace {workspace}: no lesson to submit")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{student}_nanolm_{stamp}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for lesson in lessons:
            _add_lesson(zf, workspace, workspace / lesson)
    return archive


def _add_lesson(zf: zipfile.ZipFile, workspace: Path, lesson: Path) -> None:
    for path in sorted(lesson.rglob("*")):
        relative = path.relative_to(workspace)
        if any(_left_out(part) for part in relative.parts) or not path.is_file():
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        info = zipfile.ZipInfo.from_file(path, str(relative))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.extra = _extended_timestamp(path.stat().st_mtime)
        with open(path, "rb") as source, zf.open(info, "w") as sink:
            shutil.copyfileobj(source, sink)


# Info-ZIP's extra field that keeps a member's modification time as Unix time: the grader
# reads when the work was saved without guessing the student's time zone.
EXTENDED_TIMESTAMP = 0x5455


def _extended_timestamp(mtime: float) -> bytes:
    return struct.pack("<HHBi", EXTENDED_TIMESTAMP, 5, 1, int(mtime))
