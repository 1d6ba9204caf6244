"""``python -m autograde submit`` and ``python -m autograde student-kit OUT``.

``submit`` zips the lesson folders of the student's ``workspace/`` into
``<student>_nanolm_<YYYYmmdd-HHMMSS>.zip`` (the name :mod:`autograde.collect` expects from an
LMS download; the student id is everything before the first underscore, so it may not contain
one). Run outputs, checkpoints, caches and files over :data:`MAX_FILE_BYTES` stay out.

``student-kit`` writes what students get: ``lessons/``, ``nanolm_lib/``, the set-up files (with
the student's Jupyter configuration) and the student half of this package (``check`` and
``submit``); never ``solutions/``, the tests, or the grading pipeline.
"""

from __future__ import annotations

import fnmatch
import getpass
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

from autograde.course import LESSON_NAME, LESSONS_DIR, REPO, GraderError

SUBMIT_STUDENT_ID = re.compile(r"^[A-Za-z0-9.\-]+$")
MAX_FILE_BYTES = 20 << 20
LEFT_OUT = (".ipynb_checkpoints", "__pycache__", "*.pyc", "runs", "*.ckpt", "*.pt", "*.bin",
            ".cache", "*.npy", "*.arrow")

KIT_FILES = ("README.md", "LICENSE", "Makefile", "pyproject.toml", "environment.yml",
             ".gitignore")
KIT_FOLDERS = ("jupyter/student",)  # `make lab`'s Jupyter configuration (Validate only)
# The student half of autograde: the self-check and submit, and what they import.
KIT_AUTOGRADE = ("__init__.py", "__main__.py", "course.py", "kit.py", "nbgrader_config.py",
                 "preprocessors.py", "sandbox.py", "selfcheck.py", "worker.py")


def _left_out(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in LEFT_OUT)


def submit(workspace: Path, student: str | None = None, out_dir: Path = Path("."),
           now: float | None = None) -> Path:
    """Zip the lesson folders of ``workspace``; returns the zip's path."""
    workspace = Path(workspace)
    student = student or os.environ.get("NANOLM_STUDENT") or getpass.getuser()
    if not SUBMIT_STUDENT_ID.match(student):
        raise GraderError(f"student id {student!r}: use letters, digits, '.' and '-' only "
                          "(no '_' or spaces: the LMS file name is <student>_<anything>.zip)")
    if not workspace.is_dir():
        raise GraderError(f"workspace {workspace}: no such folder (run `make lab` first, "
                          "or pass --workspace)")
    lessons = sorted(p for p in workspace.iterdir()
                     if p.is_dir() and LESSON_NAME.match(p.name) and (p / f"{p.name}.ipynb").is_file())
    if not lessons:
        raise GraderError(f"workspace {workspace}: no lesson folders NN_slug/NN_slug.ipynb")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{student}_nanolm_{stamp}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for lesson in lessons:
            for path in sorted(lesson.rglob("*")):
                relative = path.relative_to(workspace)
                if any(_left_out(part) for part in relative.parts) or not path.is_file():
                    continue
                if path.stat().st_size > MAX_FILE_BYTES:
                    continue
                zf.write(path, str(relative))
    return archive


def student_kit(out: Path, repo: Path = REPO, lessons_dir: Path = LESSONS_DIR) -> Path:
    """Write the student kit into ``out`` (which must not exist or be empty)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GraderError(f"student-kit {out}: the folder exists and is not empty")
    if not Path(lessons_dir).is_dir():
        raise GraderError(f"{lessons_dir}: no lessons (run `python -m autograde release`)")
    ignore = shutil.ignore_patterns(*LEFT_OUT, "*.egg-info")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(lessons_dir, out / "lessons", ignore=ignore)
    shutil.copytree(Path(repo) / "nanolm_lib", out / "nanolm_lib", ignore=ignore)
    for name in KIT_FILES:
        if (Path(repo) / name).is_file():
            shutil.copyfile(Path(repo) / name, out / name)
    for name in KIT_FOLDERS:
        shutil.copytree(Path(repo) / name, out / name, ignore=ignore)
    # the kit's README is the students' own: set-up, make lab, check, submit
    shutil.copyfile(Path(__file__).with_name("STUDENT_README.md"), out / "README.md")
    (out / "autograde").mkdir()
    for name in KIT_AUTOGRADE:
        shutil.copyfile(Path(__file__).with_name(name), out / "autograde" / name)
    return out
