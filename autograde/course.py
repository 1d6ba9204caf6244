"""Course directories, lesson discovery and notebook files: what every command shares.

nbgrader works on a *course directory* (``source/<assignment>/``, ``release/``,
``submitted/<student>/<assignment>/``, ``autograded/``, ``feedback/`` and a gradebook). The
autograder never runs nbgrader inside the repository: it builds a temporary course directory
whose ``source/`` holds copies of ``solutions/<lesson>/`` (one nbgrader assignment per lesson)
and loads :file:`nbgrader_config.py` from this package there.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import nbformat
from nbgrader import utils as nbgrader_utils
from traitlets.config import Config, PyFileConfigLoader

from autograde.paths import LESSONS_DIR, REPO, SOLUTIONS_DIR  # noqa: F401 (re-exported)

CONFIG_FILE = Path(__file__).resolve().with_name("nbgrader_config.py")

LESSON_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
# Never copied into a course directory, a release, a kernel's folder or a student kit (and
# ignored by nbgrader: nbgrader_config.py reads this list).
IGNORED = (".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store", "runs", "*.ckpt",
           "*.egg-info")


class GraderError(RuntimeError):
    """The grader itself cannot proceed (as opposed to a submission that fails its tests)."""


def lesson_names(solutions_dir: Path = SOLUTIONS_DIR) -> list[str]:
    """The lessons under ``solutions_dir``: folders ``NN_slug`` holding ``NN_slug.ipynb``."""
    solutions_dir = Path(solutions_dir)
    if not solutions_dir.is_dir():
        raise GraderError(f"solutions folder {solutions_dir} does not exist")
    return sorted(
        p.name for p in solutions_dir.iterdir()
        if p.is_dir() and LESSON_NAME.match(p.name) and (p / f"{p.name}.ipynb").is_file()
    )


def ensure_tools_on_path() -> None:
    """Put this interpreter's bin folder first on PATH.

    nbgrader runs the ``alembic`` command to create a gradebook and Jupyter starts kernels
    with ``python``: both must come from the same environment as the grader.
    """
    bin_dir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if not parts or parts[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in parts if p != bin_dir])


def load_config(overrides: dict | None = None) -> Config:
    """This package's nbgrader_config.py, with ``overrides`` ({"Class": {"trait": value}})."""
    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    if overrides:
        config.merge(Config(overrides))
    return config


class SpecialFileError(GraderError):
    """A folder holds a symlink, FIFO, device or socket: never followed or opened."""


def read_plain_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, a file the kernel could have touched: only a regular file of at
    most ``limit`` bytes is read, without following a link or opening a FIFO or device.
    Raises FileNotFoundError when it is missing, SpecialFileError when it is not a plain file
    or is too large, OSError when it cannot be read."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise SpecialFileError(f"{Path(path).name} is {_kind(info.st_mode)}, not a plain file")
    if info.st_size > limit:
        raise SpecialFileError(f"{Path(path).name} is {info.st_size >> 20} MB, over the "
                               f"{limit >> 20} MB limit")
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        # what was opened, not what lstat saw: the kernel may have swapped the file in between
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SpecialFileError(f"{Path(path).name} was replaced while it was opened")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SpecialFileError(f"{Path(path).name} grew over the {limit >> 20} MB limit")
    return data



def read_json_file(path: Path, default, limit: int = 1 << 20):
    """A JSON file the grader wrote; ``default`` when it is missing, not a plain file, too
    large or unreadable (never opens a FIFO or follows a link)."""
    try:
        return json.loads(read_plain_file(path, limit))
    except (OSError, ValueError, GraderError):
        return default

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def walk_plain(folder: Path, skip: tuple[str, ...] = IGNORED):
    """``(relative path, lstat)`` of every regular file under ``folder``, sorted, nothing
    followed; raises :class:`SpecialFileError` naming the first symlink or special file.
    Names matching ``skip`` are left out (a skipped folder is not entered)."""
    folder = Path(folder)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if any(fnmatch.fnmatch(entry.name, pattern) for pattern in skip):
            continue
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            for relative, inner in walk_plain(Path(entry.path), skip):
                yield Path(entry.name) / relative, inner
        elif stat.S_ISREG(info.st_mode):
            yield Path(entry.name), info
        else:
            raise SpecialFileError(f"{entry.path} is {_kind(info.st_mode)}")


def copy_plain_file(source: Path, destination: Path) -> None:
    """Copy one regular file without following a link or opening a FIFO or device."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise SpecialFileError(f"{source} is not a regular file")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open(destination, "wb") as writer:
            shutil.copyfileobj(reader, writer)


def safe_copy_tree(source: Path, destination: Path, skip: tuple[str, ...] = ()) -> None:
    """The one copy of a folder in this package: regular files only (see :func:`walk_plain`),
    without :data:`IGNORED` and ``skip``; a symlink or special file raises before anything is
    copied."""
    files = list(walk_plain(Path(source), IGNORED + tuple(skip)))
    Path(destination).mkdir(parents=True, exist_ok=True)
    for relative, _info in files:
        copy_plain_file(Path(source) / relative, Path(destination) / relative)


def copy_tree(source: Path, destination: Path) -> None:
    """Copy a folder without checkpoints, caches and run outputs."""
    safe_copy_tree(source, destination)


def make_course(root: Path, lessons: list[str], solutions_dir: Path = SOLUTIONS_DIR) -> Path:
    """Create a course directory at ``root`` with ``source/<lesson>`` copied from solutions."""
    root = Path(root)
    for lesson in lessons:
        copy_tree(Path(solutions_dir) / lesson, root / "source" / lesson)
    return root


def create_gradebook(db_url: str) -> None:
    """Create nbgrader's gradebook tables at ``db_url`` unless they exist.

    nbgrader would create them itself, but it asks a subprocess (``alembic heads``) for the
    schema version, which costs seconds on every new gradebook; the same answer is read here
    from nbgrader's migration scripts in-process.
    """
    import nbgrader
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(db_url)
    try:
        if inspect(engine).get_table_names():
            return
        Base.metadata.create_all(bind=engine)
        head = ScriptDirectory(str(Path(nbgrader.__file__).parent / "alembic")).get_current_head()
        with engine.begin() as connection:
            connection.execute(text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                               {"head": head})
    finally:
        engine.dispose()


def course_config(root: Path, db_url: str | None = None, overrides: dict | None = None) -> Config:
    """The nbgrader config for the course directory at ``root`` (gradebook there by default)."""
    root = Path(root).resolve()
    settings = {"CourseDirectory": {"root": str(root),
                                    "db_url": db_url or f"sqlite:///{root / 'gradebook.db'}"}}
    for section, values in (overrides or {}).items():
        settings.setdefault(section, {}).update(values)
    return load_config(settings)


def run_nbgrader(converter_class, config: Config, **coursedir_attrs) -> str:
    """Run one nbgrader converter (GenerateAssignment, Autograde, ...) in this process.

    ``coursedir_attrs`` select the work (``assignment_id``, ``student_id``). Returns nbgrader's
    log; raises :class:`GraderError` with that log when the converter fails.
    """

    from nbgrader.coursedir import CourseDirectory

    ensure_tools_on_path()
    coursedir = CourseDirectory(config=config)
    for name, value in coursedir_attrs.items():
        setattr(coursedir, name, value)
    app = converter_class(coursedir=coursedir, config=config)
    app.force = True
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    app.log.addHandler(handler)
    app.log.propagate = False
    try:
        app.start()
    except BaseException as error:  # nbgrader raises NbGraderException, sometimes SystemExit
        if isinstance(error, KeyboardInterrupt):
            raise
        raise GraderError(f"nbgrader {converter_class.__name__} failed: {error}\n"
                          f"{buffer.getvalue()[-4000:]}") from error
    finally:
        app.log.removeHandler(handler)
    return buffer.getvalue()


# --------------------------------------------------------------------------- notebooks
def normalize_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and execution counts (in place): a committed notebook carries neither."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    """Stable JSON for a notebook: nbformat's own layout (sorted keys, one-space indent,
    sources split into lines), UTF-8, one final newline."""
    return (nbformat.writes(nb, version=4).rstrip("\n") + "\n").encode()


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook file as nbformat 4 (raises ``GraderError`` naming the file)."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as error:  # malformed JSON, wrong format, unreadable file
        raise GraderError(f"{path}: not a readable Jupyter notebook ({error})") from error


def nbgrader_meta(cell) -> dict:
    """A cell's nbgrader metadata when it is well formed enough to read (a dict whose grade_id,
    if any, is a string), else ``{}``: a submission may hold any JSON there."""
    meta = cell.get("metadata", {}).get("nbgrader") if isinstance(
        cell.get("metadata"), dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("grade_id", ""), str):
        return {}
    return meta


def grade_cells(nb: nbformat.NotebookNode) -> list[dict]:
    """The nbgrader cells of a notebook: ``{"grade_id", "kind", "points", "source", "index"}``.

    ``kind`` is ``"solution"``, ``"test"`` (graded code cell), ``"manual"`` (an answer graded
    by hand: a graded solution cell, Markdown or code) or ``"other"``.
    """
    cells = []
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if not meta.get("grade_id"):
            continue  # from here on the metadata is a dict: nbgrader's own helpers read it
        if nbgrader_utils.is_solution(cell) and not nbgrader_utils.is_grade(cell):
            kind = "solution"
        elif nbgrader_utils.is_solution(cell):
            kind = "manual"
        elif nbgrader_utils.is_grade(cell) and cell.cell_type == "code":
            kind = "test"
        else:
            kind = "other"
        try:
            points = float(meta.get("points", 0) or 0)
        except (TypeError, ValueError):
            points = 0.0
        cells.append({"grade_id": meta["grade_id"], "kind": kind, "points": points,
                      "source": cell.source, "index": index})
    return cells
