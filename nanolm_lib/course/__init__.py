"""What the lessons teach: the reference of every piece a lesson builds, one module per chapter
(the table is in ``nanolm_lib``'s docstring), and the lessons' figures and widgets.

A course module imports only other course modules and the shared ``nanolm_lib.utils`` and
``nanolm_lib.errors``: a lesson's reference reads alone, and the grader can load a private copy
of it (``nanolm_lib.grading.checks.reference``) without the lab or the grading.
"""
