"""nbgrader settings for the instructor's JupyterLab (`make lab-instructor`).

The repository is the course directory: `solutions/` holds the source notebooks, so Create
Assignment edits them in place and Formgrader lists the lessons. The course's own settings
(stubs, limits) come from autograde/nbgrader_config.py. What nbgrader writes (gradebook,
release, submissions, the exchange) stays in `.nbgrader/`, which git ignores; the lessons
students get are still made by `python -m autograde release`.
"""

import os

c = get_config()  # noqa: F821  (nbgrader's config loader provides get_config)
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
load_subconfig(os.path.join(repo, "autograde", "nbgrader_config.py"))  # noqa: F821

work = os.path.join(repo, ".nbgrader")
c.CourseDirectory.root = repo
c.CourseDirectory.source_directory = "solutions"
for folder in ("release", "submitted", "autograded", "feedback"):
    setattr(c.CourseDirectory, f"{folder}_directory", os.path.join(".nbgrader", folder))
c.CourseDirectory.db_url = f"sqlite:///{os.path.join(work, 'gradebook.db')}"
c.Exchange.root = os.path.join(work, "exchange")
