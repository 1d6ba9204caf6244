"""Finding the submissions: a folder per student, or a folder of LMS downloads.

Two layouts are accepted for ``python -m autograde grade SUBMISSIONS``:

* folders: ``SUBMISSIONS/<student>/<NN_slug>/<NN_slug>.ipynb`` (plus any helper files the
  lesson folder holds);
* LMS downloads: ``SUBMISSIONS/*.zip`` (for Moodle also ``SUBMISSIONS/<folder>/*.zip``, its
  "download as folders" layout), each file named as the LMS names it (:data:`LMS_PATTERNS`,
  nbgrader ``zip_collect`` style: a regex with named groups):

  - ``native``, what ``python -m autograde submit`` writes: ``<student>_<anything>.zip``;
  - ``canvas``: ``<lastfirst>[_LATE]_<user id>_<attachment id>_<file>[-N].zip``;
  - ``moodle``: ``<Full Name>_<participant id>_assignsubmission_file_<file>.zip``;
  - ``blackboard``: ``<assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<file>].zip``.

  The ``key`` group (the LMS id) names the student; ``course.toml``'s roster maps other ids
  (``aliases``) onto it. Inside a zip, every ``NN_slug/NN_slug.ipynb`` at any depth is that
  lesson's submission. Nothing is merged or dropped without a word:

  - when several files of one student hold a lesson, the LMS's own order decides (Canvas's
    attachment id, then its ``-N`` suffix; Blackboard's attempt time; for ``native`` names
    the one that sorts last); the others are listed as superseded;
  - two files that the LMS's order cannot tell apart leave that lesson ungraded and say so;
  - every file that is skipped (no match, not a valid id, unreadable, no lesson inside) is
    listed with its reason in :attr:`Collected.not_graded`, which makes ``grade`` exit 1.

  The submission time is the LMS's record where the file name carries one (Blackboard's
  attempt time, or a ``time`` group of a custom pattern), else the newest modification time
  of the lesson's files inside the zip (written by the student's machine: the report says
  which). Never the zip file's own time, which a copy changes. Extracted files carry it.

Zips are extracted safely: no absolute paths or ``..``, no symlinks or special files, at most
:data:`MAX_MEMBERS` members and :data:`MAX_ZIP_BYTES` uncompressed per zip (a zip over
either is refused whole, before anything is extracted), each lesson root extracted once (the
shallowest, when a zip nests lesson folders inside each other). Student ids are plain names:
letters, digits, ``_``, ``.`` and ``-``, not ``.`` or ``..``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path, PurePosixPath

from autograde.course import LESSON_NAME, GraderError, SpecialFileError, walk_plain
from autograde.student.submit import EXTENDED_TIMESTAMP

# lms: (file-name regex, strptime format of its time group). Named groups: key (the LMS id,
# required), name, late, attempt and suffix (numbers: a higher one is later), time, file.
LMS_PATTERNS = {
    "native": (r"^(?P<key>[A-Za-z0-9][A-Za-z0-9.\-]*)_(?P<rest>.*)\.zip$", None),
    "canvas": (r"^(?P<name>[^_]+?)(?:_(?P<late>LATE))?_(?P<key>\d+)_(?P<attempt>\d+)_"
               r"(?P<file>.+?)(?:-(?P<suffix>\d+))?\.zip$", None),
    "moodle": (r"^(?P<name>.+)_(?P<key>\d+)_assignsubmission_file_(?P<file>.+)\.zip$", None),
    "blackboard": (r"^(?P<assignment>.+?)_(?P<key>[^_]+)_attempt_"
                   r"(?P<time>\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)(?:_(?P<file>.+))?\.zip$",
                   "%Y-%m-%d-%H-%M-%S"),
}
ZIP_NAME_PATTERN = re.compile(LMS_PATTERNS["native"][0])
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


@dataclass
class Record:
    """Where one graded (student, lesson) came from and when it was handed in."""

    file: str                          # the download's file (or folder) name
    submitted: datetime | None         # aware
    time_source: str                   # "LMS record (file name)", "zip members", ...
    lms_late: bool = False             # the LMS marked the file late (Canvas's _LATE)
    name: str = ""                     # the student's name as the file name spells it


@dataclass
class Collected:
    """What collection found: ``found[student][lesson]`` is the folder to grade."""

    found: dict[str, dict[str, Path]] = field(default_factory=dict)
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)        # superseded attempts, ...
    not_graded: list[str] = field(default_factory=list)   # "file: why" for every skipped file
    blocked: dict[tuple[str, str], str] = field(default_factory=dict)  # lesson left ungraded
    lms: str = "native"                                   # how the file names were read


@dataclass
class _Candidate:
    archive: Path
    shown: str                 # the name matched (Moodle's folder joined with "_")
    key: str
    order: tuple
    match: dict
    roots: dict[str, tuple[str, ...]]


def collect(submissions: Path, extract_to: Path) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """``({student: {lesson: folder}}, notes)`` with native zip names; see :func:`gather`."""
    collected = gather(submissions, extract_to)
    return collected.found, collected.notes + collected.not_graded


def gather(submissions: Path, extract_to: Path, lms: str | None = "native",
           pattern: str | None = None, time_format: str | None = None, zone: tzinfo = UTC,
           canonical=lambda key: key) -> Collected:
    """Collect either layout. ``lms`` picks the file-name pattern (None: the LMS whose pattern
    every zip's name fits, else native; ``pattern`` replaces it), ``zone`` reads times that
    carry none, ``canonical`` maps an id to the roster's."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise GraderError(f"SUBMISSIONS {submissions}: not a folder")
    if lms is not None and lms not in LMS_PATTERNS:
        raise GraderError(f"--lms {lms!r}: use one of {', '.join(LMS_PATTERNS)}")
    recognised = None
    if lms is None:
        lms = recognised = "native" if pattern else _recognise(submissions)
    regex = re.compile(pattern or LMS_PATTERNS[lms][0])
    time_format = time_format or LMS_PATTERNS[lms][1]
    downloads = _downloads(submissions, lms)
    if not downloads:
        return _collect_folders(submissions, zone)
    collected = _collect_zips(downloads, Path(extract_to), lms, regex, time_format, zone,
                              canonical)
    collected.lms = lms
    if recognised and recognised != "native":
        collected.notes.insert(0, f"the file names are those of a {recognised} download: read "
                                  f"as --lms {recognised} (--lms native reads them as "
                                  "<student>_<anything>.zip)")
    return collected


def _recognise(submissions: Path) -> str:
    """The LMS whose file-name pattern every zip of the download fits, else ``native``: a
    Canvas download read as native would key two students by one name."""
    for lms in ("canvas", "moodle", "blackboard"):
        names = [name for _, name in _downloads(submissions, lms)
                 if name.endswith(".zip") and not name.startswith(".")]
        if names and all(re.match(LMS_PATTERNS[lms][0], name) for name in names):
            return lms
    return "native"


def _downloads(submissions: Path, lms: str) -> list[tuple[Path, str]]:
    """``(path, name to match)`` of every entry of an LMS download (a folder's name ends with
    ``/``); empty when the folder holds no zip (the folder layout)."""
    files = []
    for entry in sorted(submissions.iterdir()):
        if entry.is_dir() and lms == "moodle" and not entry.name.startswith("."):
            files += [(inner, f"{entry.name}_{inner.name}" + ("/" if inner.is_dir() else ""))
                      for inner in sorted(entry.iterdir())]
        else:
            files.append((entry, entry.name + ("/" if entry.is_dir() else "")))
    if not any(name.endswith(".zip") for _, name in files):
        return []
    return files


def _collect_folders(submissions: Path, zone: tzinfo) -> Collected:
    collected = Collected()
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir()):
        if student_dir.name.startswith("."):
            continue
        if not plain_id(student_dir.name):
            collected.not_graded.append(f"skipped folder {student_dir.name!r}: not a valid "
                                        "student id (letters, digits, '_', '.', '-')")
            continue
        lessons = {p.name: p for p in sorted(student_dir.iterdir())
                   if p.is_dir() and LESSON_NAME.match(p.name)}
        collected.found[student_dir.name] = lessons
        for lesson, folder in lessons.items():
            notebook = folder / f"{lesson}.ipynb"
            when = (datetime.fromtimestamp(notebook.stat().st_mtime, tz=zone)
                    if notebook.is_file() else None)
            collected.records[(student_dir.name, lesson)] = Record(
                f"{student_dir.name}/{lesson}", when, "the notebook file's modification time")
    return collected


def _collect_zips(downloads: list[tuple[Path, str]], extract_to: Path, lms: str, regex,
                  time_format: str | None, zone: tzinfo, canonical) -> Collected:
    collected = Collected()
    if extract_to.exists():
        shutil.rmtree(extract_to)
    candidates: dict[tuple[str, str], list[_Candidate]] = {}
    for archive, shown in downloads:
        candidate = _candidate(archive, shown, lms, regex, time_format, zone, canonical,
                               collected)
        if candidate is None:
            continue
        for lesson in candidate.roots:
            candidates.setdefault((candidate.key, lesson), []).append(candidate)
    for (key, lesson), options in sorted(candidates.items()):
        options.sort(key=lambda c: c.order, reverse=True)
        chosen = options[0]
        ties = [c.shown for c in options if c.order == chosen.order]
        if len(ties) > 1:
            why = (f"{len(ties)} files hold {lesson} for {key} and the LMS's order cannot "
                   f"tell which is the latest: {', '.join(ties)}; keep one and grade again")
            collected.blocked[(key, lesson)] = why
            continue
        for other in options[1:]:
            collected.notes.append(f"{other.shown}: {lesson} superseded by the later "
                                   f"attempt {chosen.shown}")
        try:
            folder, when = _extract(chosen.archive, extract_to / key / chosen.archive.stem,
                                    lesson, chosen.roots, zone)
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            collected.not_graded.append(f"{chosen.shown}: {lesson} could not be extracted "
                                        f"({error})")
            continue
        collected.found[key][lesson] = folder
        record = Record(chosen.shown, when, "zip members, the student's clock",
                        lms_late=bool(chosen.match.get("late")),
                        name=chosen.match.get("name") or "")
        if chosen.match.get("time"):
            record.submitted = _parse_time(chosen.match["time"], time_format, zone)
            record.time_source = "LMS record (file name)"
            _set_times(folder, record.submitted)
        collected.records[(key, lesson)] = record
    return collected


def _candidate(archive: Path, shown: str, lms: str, regex, time_format, zone, canonical,
               collected: Collected) -> _Candidate | None:
    """One download file read: its key, LMS order and lesson roots, or None (and why)."""
    if lms == "blackboard" and shown.endswith(".txt"):
        collected.notes.append(f"{shown}: Blackboard's record of an attempt, not a submission")
        return None
    if shown.endswith("/"):
        if not shown.startswith("."):
            collected.not_graded.append(f"skipped folder {shown}: an LMS download holds the "
                                        "students' files, not folders (Moodle's folders: "
                                        "--lms moodle)")
        return None
    if not shown.endswith(".zip"):
        if not shown.startswith("."):
            collected.not_graded.append(f"skipped {shown}: not a zip (students upload the zip "
                                        "that `python -m autograde submit` writes)")
        return None
    match = regex.match(shown)
    if not match:
        collected.not_graded.append(f"skipped {shown}: does not match the {lms} file name "
                                    f"pattern {regex.pattern}")
        return None
    groups = {name: value for name, value in match.groupdict().items() if value is not None}
    key = canonical(groups["key"])
    if not plain_id(key):
        collected.not_graded.append(f"skipped {shown}: {key!r} is not a valid student id")
        return None
    collected.found.setdefault(key, {})
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            _check_members(members)
            roots = _lesson_roots(members)
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        collected.not_graded.append(f"{shown}: could not be read ({error}); {key}'s lessons "
                                    "in it count as missing")
        return None
    if not roots:
        collected.not_graded.append(f"{shown}: holds no NN_slug/NN_slug.ipynb notebook")
        return None
    try:
        when = _parse_time(groups["time"], time_format, zone) if "time" in groups else None
    except ValueError as error:
        collected.not_graded.append(f"skipped {shown}: {error}")
        return None
    order = (int(groups.get("attempt", 0)), int(groups.get("suffix", 0)),
             when or datetime.min.replace(tzinfo=UTC),
             groups.get("rest", "") if lms == "native" else "")
    return _Candidate(archive, shown, key, order, groups, roots)


def _parse_time(text: str, time_format: str | None, zone: tzinfo) -> datetime:
    try:
        when = (datetime.strptime(text, time_format) if time_format
                else datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"time {text!r} does not fit the format "
                         f"{time_format or 'ISO 8601'}") from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def _set_times(folder: Path, when: datetime | None) -> None:
    """Every extracted file carries the submission time (the worker's timestamp reads it)."""
    if when is None:
        return
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (when.timestamp(), when.timestamp()))

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


def _lesson_roots(members: list[zipfile.ZipInfo]) -> dict[str, tuple[str, ...]]:
    """``{lesson: path parts of its folder}`` of the zip's lesson notebooks (the shallowest
    copy of each lesson, when a zip nests them)."""
    roots: dict[str, tuple[str, ...]] = {}
    for member in members:
        parts = _safe_parts(member)
        if (parts and len(parts) >= 2 and LESSON_NAME.match(parts[-2])
                and parts[-1] == f"{parts[-2]}.ipynb"):
            root = parts[:-1]
            if parts[-2] not in roots or len(root) < len(roots[parts[-2]]):
                roots[parts[-2]] = root   # nested copies: the shallowest wins, once
    return roots


def _extract(archive: Path, destination: Path, lesson: str, roots: dict[str, tuple[str, ...]],
             zone: tzinfo) -> tuple[Path, datetime | None]:
    """Extract one lesson folder of a zip; ``(folder, newest member time)``. Files carry
    their member's time."""
    root = roots[lesson]
    target = destination / lesson
    newest = None
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        _check_members(members)
        written = 0
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
            when = _member_time(member, zone)
            if when is not None:
                os.utime(out, (when.timestamp(), when.timestamp()))
                newest = max(newest, when) if newest else when
    target.mkdir(parents=True, exist_ok=True)
    return target, newest


def _member_time(member: zipfile.ZipInfo, zone: tzinfo) -> datetime | None:
    """A zip member's modification time: the Unix time of its extended-timestamp field
    (0x5455, written by Info-ZIP's zip and by ``submit``) when it has one, else the zip
    format's wall-clock time without a zone, read in the course's zone."""
    extra = member.extra
    while len(extra) >= 4:
        header, size = struct.unpack("<HH", extra[:4])
        body = extra[4:4 + size]
        if header == EXTENDED_TIMESTAMP and len(body) >= 5 and body[0] & 1:
            return datetime.fromtimestamp(struct.unpack("<i", body[1:5])[0], tz=UTC)
        extra = extra[4 + size:]
    try:
        return datetime(*member.date_time, tzinfo=zone)
    except ValueError:  # a zip tool that wrote no valid date
        return None
