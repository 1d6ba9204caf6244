"""The instructor's Jupyter server (`make lab-instructor`): every nbgrader part, whatever a
user- or system-level configuration disabled."""

c = get_config()  # noqa: F821  (the config loader provides get_config)

c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.course_list": True,
    "nbgrader.server_extensions.formgrader": True,
    "nbgrader.server_extensions.validate_assignment": True,
}
