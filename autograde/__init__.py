"""Instructor tooling around nbgrader for the NanoLM course.

``python -m autograde COMMAND``:

* ``release [--check]``     regenerate ``lessons/`` from ``solutions/`` (nbgrader generate_assignment)
* ``grade SUBMISSIONS --out DIR [--workers N] [--db URL]``   grade a class, in parallel, resumable
* ``check NOTEBOOK``        a student's self-check: visible tests only, question by question
* ``submit``                zip ``workspace/`` for upload, named as the LMS collector expects
* ``student-kit OUT [--released NN]``  what students get: lessons, nanolm_lib (later
  references staged), set-up files; no solutions
* ``bench``                 seconds per notebook and the speed-up of parallel workers

Modules: :mod:`autograde.course` (course directories, notebooks, nbgrader config),
:mod:`autograde.release`, :mod:`autograde.grade` (the batch), :mod:`autograde.worker` (one
worker's course directory), :mod:`autograde.sandbox` (kernel limits and isolation),
:mod:`autograde.scan` (static checks of solution cells), :mod:`autograde.copycheck`
(copies of the reference), :mod:`autograde.fixtures` (the visible tests' expected outputs), :mod:`autograde.report`,
:mod:`autograde.selfcheck`, :mod:`autograde.kit` (submit, student-kit), :mod:`autograde.paths`
(the course's folders, importable without nbgrader).
"""
