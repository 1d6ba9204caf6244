"""A student's server on the course's JupyterHub (deploy/jupyterhub/jupyterhub_config.py puts
this folder first on JUPYTER_CONFIG_PATH, before jupyter/student).

Here, unlike `make lab`, there is an exchange: the students fetch and submit through
nbgrader's Assignments panel. They keep the grader's Validate button, and nothing of the
instructor's (Formgrader, Create Assignment, the course list). labconfig/page_config.json
turns the panel and the Nbgrader menu back on in JupyterLab.
"""

c = get_config()  # noqa: F821  (the config loader provides get_config)

c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.validate_assignment": True,
}
