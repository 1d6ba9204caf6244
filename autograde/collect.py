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

Zips are extracted safely: no absolute paths or ``..``, no symlinks or special files, at most
:data:`MAX_MEMBERS` members and :data:`MAX_ZIP_BYTES` uncompressed per student (a zip over
either is refused whole, before anything is extracted), each lesson root extracted once (the
shallowest, when a zip nests lesson folders inside each other). Extracted files carry the
zip file's own modification time (when it arrived from the LMS): the submission time,
whatever a ``timestamp.txt`` inside says. Student ids are plain names: letters, digits,
``_``, ``.`` and ``-``, not ``.`` or ``..``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autograde.course import LESSON_NAME, GraderError, SpecialFileError, walk_plain

ZIP_NAME_PATTERN = re.compile(r"^(?P<student>[A-Za-z0-9][A-Za-z0-9.\-]*)_(?P<rest>.*)\.zip$")
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MAX_ZIP_BYTES = 200 << 20
MAX_MEMBERS = 2000


def plain_id(name: str) -> bool:
    """A student id that is a plain file name (never ``.``, ``..``, empty or a path)."""
    return bool(STUDENT_ID.match(name)) and name not in (".", "..")


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
            try:  # regular files only, nothing followed or opened that is not one
                files = list(walk_plain(self.folder, skip=()))
            except SpecialFileError as error:
                digest.update(b"<special>" + str(error).encode())
                files = []
            for relative, _info in files:
                digest.update(str(relative).encode() + b"\0")
                digest.update(hashlib.sha256((self.folder / relative).read_bytes()).digest())
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
        if not plain_id(student_dir.name):
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
        if not plain_id(student):
            notes.append(f"skipped {archive.name}: {student!r} is not a valid student id")
            continue
        try:
            lessons = _extract(archive, extract_to / student / archive.stem)
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            notes.append(f"{archive.name}: could not be read ({error}); its lessons count as "
                         "missing")
            found.setdefault(student, {})
            continue
        found.setdefault(student, {}).update(lessons)
    return found, notes


def _safe_parts(member: zipfile.ZipInfo) -> tuple[str, ...] | None:
    """The member's path parts, or None for an absolute path or one with ``..``."""
    path = PurePosixPath(member.filename)
    if path.is_absolute() or ".." in path.parts or "\\" in member.filename:
        return None
    return path.parts


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    """Refuse the whole zip (ValueError) over the caps, or holding a link or special file."""
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"{len(members)} files, more than the {MAX_MEMBERS} allowed")
    if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
        raise ValueError(f"more than {MAX_ZIP_BYTES >> 20} MB uncompressed")
    for member in members:
        mode = member.external_attr >> 16
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: a zip tool that sets no type
            raise ValueError(f"{member.filename} is a symbolic link or special file; a "
                             "submission holds regular files only")


def _extract(archive: Path, destination: Path) -> dict[str, Path]:
    """Extract the lesson folders of one zip; ``{lesson: folder}``."""
    arrived = archive.stat().st_mtime
    lessons: dict[str, Path] = {}
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        _check_members(members)
        roots: dict[str, tuple[str, ...]] = {}
        for member in members:
            parts = _safe_parts(member)
            if (parts and len(parts) >= 2 and LESSON_NAME.match(parts[-2])
                    and parts[-1] == f"{parts[-2]}.ipynb"):
                root = parts[:-1]
                if parts[-2] not in roots or len(root) < len(roots[parts[-2]]):
                    roots[parts[-2]] = root   # nested copies: the shallowest wins, once
        written = 0
        for lesson, root in roots.items():
            target = destination / lesson
            for member in members:
                parts = _safe_parts(member)
                if not parts or parts[:len(root)] != root or len(parts) == len(root):
                    continue
                relative = parts[len(root):]
                if any(LESSON_NAME.match(p) and p in roots for p in relative[:-1]):
                    continue  # a lesson root nested in this one is extracted on its own
                written += member.file_size
                if written > MAX_ZIP_BYTES:
                    raise ValueError(f"more than {MAX_ZIP_BYTES >> 20} MB extracted")
                out = target / Path(*relative)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                os.utime(out, (arrived, arrived))
            lessons[lesson] = target
    return lessons
