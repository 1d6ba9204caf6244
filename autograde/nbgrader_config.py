"""nbgrader configuration shared by every course directory the autograder creates.

`python -m autograde` never runs nbgrader in the repository itself: it builds a temporary
course directory (``source/`` = the lessons' solution notebooks, a gradebook of its own), loads
this file there, and layers the per-run settings (course root, gradebook URL, limits) on top.
An instructor who prefers plain ``nbgrader`` commands can copy it into a course directory.
"""

from autograde.course import IGNORED

c = get_config()  # noqa: F821  (nbgrader's config loader provides get_config)

c.CourseDirectory.course_id = "nanolm"
# Lesson folders may carry small helper files; never ship caches or checkpoints.
c.CourseDirectory.ignore = [*IGNORED, "feedback"]

# What a student sees in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True

# Execution while autograding (the grade command overrides the limits from its options).
c.Execute.timeout = 120                     # seconds per cell
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False
c.Execute.execute_retries = 0

# A test cell that writes to stderr scores 0 in nbgrader. Python warnings are no failure:
# drop a stderr output when it consists only of warning lines ("file:line: XWarning: ...",
# each followed by the indented source line). Anything else on stderr still counts.
c.IgnorePattern.pattern = (
    r"\A(?:[^\n]*:\d+: [A-Za-z_.]*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n?)*)+\Z"
)
c.IgnorePattern.enabled = True

# Keep what reaches the gradebook and the feedback small.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
