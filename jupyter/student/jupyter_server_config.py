"""The student's Jupyter server (`make lab` puts this folder first on JUPYTER_CONFIG_PATH).

Students keep nbgrader's Validate button and nothing of the instructor's: the course hands in
zips (`python -m autograde submit`), not through an nbgrader exchange, so the assignment and
course lists would only report a missing exchange folder. labconfig/page_config.json hides the
matching JupyterLab parts (the Nbgrader menu, the lists, Formgrader, Create Assignment).
"""

c = get_config()  # noqa: F821  (the config loader provides get_config)

c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.assignment_list": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.validate_assignment": True,
}
