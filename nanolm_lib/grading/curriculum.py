"""The course's contract: which lesson grades which names, what they take, and where their
reference lives (as CS336's ``tests/adapters.py`` pins what the tests call).

It is read from the question files, one per graded name
(``nanolm_lib/grading/questions/<lesson>/<N>_<name>.py``: :mod:`nanolm_lib.grading.question_base`
says what one holds). Everything else reads it: the README's course table (checked by a test),
``tests/integration/test_lessons.py``, the release (fixtures and ``--check``), the staged student
kit (``python -m autograde student-kit OUT --week NN``), the grader's copy scan, and the lessons'
set-up cells (:func:`nanolm_lib.grading.staging.use_earlier_work`).

``CONTRACT[lesson]`` maps each graded name, in the order the notebook asks for them, to the
``nanolm_lib.course`` module that holds its reference and the signature the student writes: a
function's parameters, or a class's constructor and ``forward``. A test checks that each
solution notebook defines exactly this signature and that the reference accepts it (the
reference may take more, keyword arguments with defaults, for the library's own callers).
A class's second part is ``forward`` or, for an optimiser, ``step``. ``GRADED`` and
``SIGNATURES`` are its two views.
"""

from __future__ import annotations

from nanolm_lib.grading.question_base import QUESTIONS
from nanolm_lib.grading.questions import LESSONS

CONTRACT: dict[str, dict[str, tuple[str, str]]] = {
    lesson: {name: (found.reference, found.signature)
             for name, found in QUESTIONS.get(lesson, {}).items()}
    for lesson in LESSONS
}

# lesson -> {graded name: reference module}, in the notebook's order
GRADED: dict[str, dict[str, str]] = {
    lesson: {name: module for name, (module, _) in names.items()}
    for lesson, names in CONTRACT.items()
}
# graded name -> the signature the student writes
SIGNATURES: dict[str, str] = {
    name: signature for names in CONTRACT.values() for name, (_, signature) in names.items()
}


def lesson_number(lesson: str) -> int:
    """``"05_gpt"`` -> 5."""
    return int(lesson[:2])


def graded_names(lesson: str) -> list[str]:
    """The graded names of ``lesson`` (a folder name such as ``"03_attention"``)."""
    if lesson not in GRADED:
        raise ValueError(f"unknown lesson {lesson!r}; the course has {', '.join(LESSONS)}")
    return list(GRADED[lesson])


def released_lessons(released: str) -> list[str]:
    """The lessons whose references are released at stage ``released`` ("all" or "NN"): up to
    and including NN (the old ``student-kit --released NN``; :func:`week_references` is the
    stage a kit is built at now)."""
    if released == "all":
        return list(LESSONS)
    if not (len(released) == 2 and released.isdigit()):
        raise ValueError(f"--released {released!r}: use a two-digit lesson number such as 02, "
                         "or all")
    return [lesson for lesson in LESSONS if lesson_number(lesson) <= int(released)]


def check_week(week: str) -> str:
    """``week`` as a stage: "all", or the two-digit number of a lesson of the course."""
    if week == "all" or (len(week) == 2 and week.isdigit()
                         and any(lesson_number(lesson) == int(week) for lesson in LESSONS)):
        return week
    raise ValueError(f"--week {week!r}: the two-digit number of the lesson students work on "
                     f"this week ({LESSONS[0][:2]} to {LESSONS[-1][:2]}), or all")


def week_references(week: str) -> list[str]:
    """The lessons whose references a kit of week ``week`` ships: those before lesson
    ``week`` (the lesson of the week is the students' to write), or all."""
    week = check_week(week)
    return list(LESSONS) if week == "all" else [
        lesson for lesson in LESSONS if lesson_number(lesson) < int(week)]


def week_lessons(week: str) -> list[str]:
    """The lessons students have at week ``week``: up to and including lesson ``week``."""
    week = check_week(week)
    return list(LESSONS) if week == "all" else [
        lesson for lesson in LESSONS if lesson_number(lesson) <= int(week)]


def week_of_released(released: str) -> str:
    """The week whose kit ships the references ``--released NN`` shipped: NN + 1, or all."""
    lessons = released_lessons(released)
    later = [lesson for lesson in LESSONS if lesson not in lessons]
    return later[0][:2] if later else "all"
