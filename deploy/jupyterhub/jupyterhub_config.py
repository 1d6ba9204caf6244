"""JupyterHub for the NanoLM course: students log in, fetch a lesson from nbgrader's exchange,
work in their own JupyterLab, and submit; the instructor releases and grades from a shell.

This file is the course's part of a hub's configuration. A site's own jupyterhub_config.py
loads it and adds what only the site knows (README.md beside this file):

    c = get_config()
    load_subconfig("/srv/nanolm/deploy/jupyterhub/jupyterhub_config.py")
    c.JupyterHub.authenticator_class = "github"   # the site's login; see below

It reads three settings from the hub's environment:

    NANOLM_EXCHANGE  nbgrader's exchange folder, writable by every student (default
                     /srv/nbgrader/exchange); `autograde exchange-release` and
                     `autograde grade --from-exchange` take the same folder
    NANOLM_COURSE    nbgrader's course id (default nanolm)
    NANOLM_KIT       a staged student kit (`autograde student-kit KIT --released NN`, then
                     `make setup` in KIT) whose environment runs every student's server, so that
                     lessons import the kit's staged library; default: this repository and the
                     hub's own environment
"""

import os
import sys

c = get_config()  # noqa: F821  (the config loader provides get_config)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXCHANGE = os.environ.get("NANOLM_EXCHANGE", "/srv/nbgrader/exchange")
COURSE = os.environ.get("NANOLM_COURSE", "nanolm")
KIT = os.environ.get("NANOLM_KIT")
KIT_BIN = os.path.join(KIT, ".venv", "bin") if KIT else os.path.dirname(sys.executable)
STUDENT_CONFIG = os.path.join(KIT or REPO, "jupyter", "student")

# --- Login: the site's choice. JupyterHub's default is PAMAuthenticator: the accounts of the
# host (a shared teaching server). Others, each a package of its own:
#   OAuthenticator ("github", "google", "generic-oauth" for any OpenID Connect provider:
#     Keycloak, Azure AD, a university's SSO),
#   LTIAuthenticator (ltiauthenticator: students arrive from the LMS, Canvas, Moodle,
#     Blackboard, with their LMS id as user name),
#   LDAPAuthenticator (ldapauthenticator: the campus directory).
# Whichever it is, the hub user name is the student id the grader's reports and grades.csv use.

# --- One server per student. On one machine: LocalProcessSpawner (JupyterHub's default) runs
# each student's JupyterLab as their own system user (PAM users, or users the authenticator
# creates: c.LocalAuthenticator.create_system_users = True), so the exchange's file owners are
# the students. SystemdSpawner (jupyterhub-systemdspawner) does the same with a memory and CPU
# limit per student: c.JupyterHub.spawner_class = "systemd"; c.SystemdSpawner.mem_limit = "4G".
# On Kubernetes: Zero to JupyterHub (the jupyterhub Helm chart) with a single-user image built
# from the staged kit; a shared exchange folder is awkward there (one volume every pod writes),
# so use ngshare (the nbgrader exchange as a hub service, with ngshare_exchange as nbgrader's
# ExchangeFactory in the students' and the instructor's nbgrader_config.py).
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [os.path.join(KIT_BIN, "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.environment = {
    # singleuser/ first: nbgrader's Assignments panel and the exchange, on top of the student
    # settings of `make lab` (jupyter/student: the grader's own Validate, its time limit).
    "JUPYTER_CONFIG_PATH": os.pathsep.join([os.path.join(HERE, "singleuser"), STUDENT_CONFIG]),
    "NANOLM_EXCHANGE": EXCHANGE,
    "NANOLM_COURSE": COURSE,
    # kernels and nbgrader's tools from the students' environment
    "PATH": os.pathsep.join([KIT_BIN, "/usr/local/bin", "/usr/bin", "/bin"]),
}
