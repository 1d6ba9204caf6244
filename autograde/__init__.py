"""Instructor tooling around nbgrader for the NanoLM course.

``python -m autograde COMMAND``:

* ``release [--check]``     regenerate ``lessons/`` from ``solutions/`` (nbgrader generate_assignment)
* ``grade SUBMISSIONS --out DIR [--workers N] [--db URL]``   grade a class, in parallel, resumable
* ``check NOTEBOOK``        a student's self-check: visible tests only, question by question
* ``submit``                zip ``workspace/`` for upload, named as the LMS collector expects
* ``student-kit OUT [--released NN]``  what students get: lessons, nanolm_lib (later
  references staged), set-up files; no solutions
* ``bench``                 seconds per notebook and the speed-up of parallel workers

Folders, by who runs them:

* ``student/``: the student's side, shipped in the kit: ``check`` (selfcheck), ``submit``,
  ``make lab``'s workspace, the kit's practice cases;
* ``sandbox/``: running notebook code where it cannot reach the grader: the launcher
  (bubblewrap, limits), kernels, preprocessors, the verdict, the staged library;
* ``integrity/``: the scans of the source: policies, copies of the reference, similarity;
* ``batch/``: grading a class: collect, grade, workers, results, review, report, LMS, exchange,
  Slurm (the instructor's only);
* ``authoring/``: release, fixtures, student-kit (the instructor's only);

and, shared, :mod:`autograde.course` (course directories, notebooks, nbgrader config) and
:mod:`autograde.paths` (the course's folders, importable without nbgrader). The kit ships this
package without ``batch/`` and ``authoring/``: the student's side, the sandbox and integrity
never import them (``tests/unit/test_import_graph.py``).
"""
