"""Finding the submissions: a folder per student, or a folder of LMS zip downloads.

Two layouts are accepted for ``python -m autograde grade SUBMISSIONS``:

* folders: ``SUBMISSIONS/<student>/<NN_slug>/<NN_slug>.ipynb`` (plus any helper files the
  lesson folder holds);
* LMS downloads: ``SUBMISSIONS/*.zip``, each file named by :data:`ZIP_NAME_PATTERN`, i.e.
  ``<student>_<anything>.zip`` where the student id is everything before the first underscore
  (``python -m autograde submit`` names its zip ``<student>_nanolm_<YYYYmmdd-HHMMSS>.zip``;
  LMS downloads such as ``jdoe_12345_678_nanolm.zip`` fit too). Inside a zip, every
  ``NN_slug/NN_slug.ipynb`` at any depth is that lesson's submission. When one student has
  several zips, the one whose name sorts last (the latest timestamp) wins for each lesson.

Zips are extracted safely: no absolute paths or ``..``, and at most :data:`MAX_ZIP_BYTES`
uncompressed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autograde.course import LESSON_NAME, GraderError

ZIP_NAME_PATTERN = re.compile(r"^(?P<student>[A-Za-z0-9.\-]+)_(?P<rest>.*)\.zip$")
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MAX_ZIP_BYTES = 200 << 20


@dataclass
class Submission:
    """One student's folder for one lesson (``folder`` None when the lesson is missing)."""

    student: str
    lesson: str
    folder: Path | None

    def content_hash(self, salt: bytes = b"") -> str:
        """sha256 of every file in the folder (names and bytes), plus ``salt``."""
        digest = hashlib.sha256(salt)
        if self.folder is None or not self.folder.is_dir():
            digest.update(b"<missing>")
        else:
            for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(self.folder)).encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def collect(submissions: Path, extract_to: Path) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """``({student: {lesson: folder}}, notes)`` from either layout; notes list what was skipped."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise GraderError(f"SUBMISSIONS {submissions}: not a folder")
    zips = sorted(submissions.glob("*.zip"))
    if zips:
        return _collect_zips(zips, Path(extract_to))
    found: dict[str, dict[str, Path]] = {}
    notes = []
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        if student_dir.name.startswith("."):
            continue
        if not STUDENT_ID.match(student_dir.name):
            notes.append(f"skipped folder {student_dir.name!r}: not a valid student id "
                         "(letters, digits, '_', '.', '-')")
            continue
        lessons = {p.name: p for p in sorted(student_dir.iterdir())
                   if p.is_dir() and LESSON_NAME.match(p.name)}
        found[student_dir.name] = lessons
    return found, notes


def _collect_zips(zips: list[Path], extract_to: Path) -> tuple[dict, list[str]]:
    found: dict[str, dict[str, Path]] = {}
    notes = []
    if extract_to.exists():
        shutil.rmtree(extract_to)
    for archive in zips:
        match = ZIP_NAME_PATTERN.match(archive.name)
        if not match:
            notes.append(f"skipped {archive.name}: does not match <student>_<anything>.zip")
            continue
        student = match["student"]
        try:
            lessons = _extract(archive, extract_to / student / archive.stem)
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            notes.append(f"{archive.name}: could not be read ({error}); its lessons count as "
                         "missing")
            found.setdefault(student, {})
            continue
        found.setdefault(student, {}).update(lessons)
    return found, notes


def _extract(archive: Path, destination: Path) -> dict[str, Path]:
    """Extract the lesson folders of one zip; ``{lesson: folder}``."""
    lessons: dict[str, Path] = {}
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise ValueError(f"more than {MAX_ZIP_BYTES >> 20} MB uncompressed")
        roots = {}
        for member in members:
            path = PurePosixPath(member.filename)
            if path.is_absolute() or ".." in path.parts:
                continue
            if (len(path.parts) >= 2 and LESSON_NAME.match(path.parts[-2])
                    and path.name == f"{path.parts[-2]}.ipynb"):
                roots[path.parts[-2]] = PurePosixPath(*path.parts[:-1])
        for lesson, root in roots.items():
            target = destination / lesson
            for member in members:
                path = PurePosixPath(member.filename)
                if ".." in path.parts or path.is_absolute():
                    continue
                try:
                    relative = path.relative_to(root)
                except ValueError:
                    continue
                out = target / Path(*relative.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            lessons[lesson] = target
    return lessons
