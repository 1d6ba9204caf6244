"""nbgrader's exchange for a student's server on the course's JupyterHub (found on
JUPYTER_CONFIG_PATH before jupyter/student/nbgrader_config.py, which keeps the Validate
settings). The hub passes the exchange folder and the course id in the environment."""

import os

from autograde.course import IGNORED
from autograde.student.submit import MAX_FILE_BYTES

c = get_config()  # noqa: F821  (nbgrader's config loader provides get_config)

c.Exchange.root = os.environ.get("NANOLM_EXCHANGE", "/srv/nbgrader/exchange")
c.CourseDirectory.course_id = os.environ.get("NANOLM_COURSE", "nanolm")
# The student id in the exchange is the hub user, whatever system user runs the server:
# nbgrader would take the system user's name (root, or the containers' jovyan).
if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
# Fetch and Submit copy what `autograde submit` would: no checkpoints, caches or training
# runs, no file over its size cap (nbgrader counts kilobytes); the lesson's fixtures travel.
c.CourseDirectory.ignore = [*IGNORED, "feedback"]
c.CourseDirectory.max_file_size = MAX_FILE_BYTES // 1000
