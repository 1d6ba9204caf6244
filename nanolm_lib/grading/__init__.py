"""What grading runs: the course's contract (curriculum), the visible tests' comparisons
(checks), a hidden test's line (record), the hidden cases of every question (question_base,
questions), the grader's run of them (hidden_cases) and a staged kit's stand-ins (staging).

Test cells import from here (``from nanolm_lib.grading.checks import ...``); the grader
(``autograde``) reads the cases and records. The grading may import the course and the lab.
"""
