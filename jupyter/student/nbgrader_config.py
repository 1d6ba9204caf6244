"""nbgrader settings for a student's Validate button (found on JUPYTER_CONFIG_PATH).

Validate runs the whole notebook as the grader will, in smoke size (nbgrader sets
NBGRADER_EXECUTION in the kernel). A busy laptop may need more than nbgrader's 30 s for a
training cell.
"""

c = get_config()  # noqa: F821  (nbgrader's config loader provides get_config)

c.CourseDirectory.course_id = "nanolm"
c.Execute.timeout = 300  # seconds per cell
