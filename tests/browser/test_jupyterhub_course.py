"""The course on JupyterHub with nbgrader's exchange, driven as a class meets it.

The instructor releases lesson 01 into a real exchange folder (``autograde exchange-release``);
JupyterHub starts with the course's configuration (``deploy/jupyterhub``) under a site file of
the test's own, as a site adds its login; two students log in through headless Chromium,
fetch the lesson from the Assignments panel, answer one question (one right, one wrong), save
and submit from the panel; the instructor runs ``autograde grade --from-exchange`` as a user
runs it; each student fetches feedback from the panel and reads their own, not the other's.
On the way: the students' Nbgrader menu offers the Assignment List only, their notebook has
the grader's Validate, the exchange keys each submission by hub user and holds that student's
answer, and a training run left beside the notebook does not travel.

The site file: JupyterHub's SharedPasswordAuthenticator (one password, two allowed users) and
SimpleLocalProcessSpawner (a home per student under the test's folder). This machine runs the
tests as root, so the students' servers run as root with ``--ServerApp.allow_root``: the homes
keep their files apart, nothing else does (a real hub runs each student as their own user:
deploy/jupyterhub/README.md). The student id in the exchange is the hub user all the same: the
spawner sets USER, which nbgrader reads, and the course's settings set nbgrader's student id
from JUPYTERHUB_USER. Needs ``configurable-http-proxy`` (npm) and Chromium; skips
without them. Every wait is on what the page shows or an HTTP answer. Screenshots, the hub's
log and the grader's output go to ``test-artifacts/jupyterhub/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from lab_server import REPO, _descendants, _exited, _free_port, chromium_path

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts" / "jupyterhub"
COURSE = "nanolm"
LESSON = "01_tokenizer"
PASSWORD = secrets.token_hex(8)
BOUND_MS = 180_000  # the longest one step may take on a busy 2-core machine

SITE_CONFIG = """\
c = get_config()  # noqa: F821
load_subconfig({deploy!r})  # noqa: F821  (the course's part)
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {password!r}
c.Authenticator.allowed_users = {{"ada", "ben"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.args = {spawner_args!r}
c.Spawner.start_timeout = c.Spawner.http_timeout = 180  # a busy 2-core machine
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {state!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {state!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {state!r} + "/cookie_secret"
"""


def _right_answer() -> str:
    """get_pair_counts as the reference solves it, without nbgrader's markers."""
    solution = nbformat.read(str(REPO / "solutions" / LESSON / f"{LESSON}.ipynb"), as_version=4)
    source = next(cell.source for cell in solution.cells
                  if cell.metadata.get("nbgrader", {}).get("solution")
                  and "def get_pair_counts(ids)" in cell.source)
    return "\n".join(line for line in source.splitlines() if "### " not in line)


ANSWERS = {"ada": _right_answer() + "\n# ada's own answer",
           "ben": "def get_pair_counts(ids):\n    return {}  # ben's own answer"}


def _run(command: list[str], log: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, f"{command[3]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


class Hub:
    """`jupyterhub -f SITE` in its own session; ``stop`` ends it and checks that every
    process it started (proxy, servers, kernels) ended too."""

    def __init__(self, root: Path, env: dict):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        state = root / "hub"
        state.mkdir()
        args = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
        site = state / "jupyterhub_config.py"
        site.write_text(SITE_CONFIG.format(
            deploy=str(REPO / "deploy" / "jupyterhub" / "jupyterhub_config.py"),
            password=PASSWORD, homes=str(root / "homes"), spawner_args=args, port=self.port,
            hub_port=_free_port(), proxy_api_port=_free_port(), state=str(state)))
        self.log = open(ARTIFACTS / "hub.log", "w")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(site)], cwd=state,
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        """The hub answers through the proxy (its API's version reply)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "hub/api/", timeout=10) as reply:
                    json.load(reply)
                return
            except (OSError, ValueError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyterhub did not start; its log: "
                                       f"{(ARTIFACTS / 'hub.log').read_text()[-3000:]}") from None
                time.sleep(0.2)

    def stop(self, timeout: float = 60) -> list[int]:
        started = _descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the hub stops its servers and proxy
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
        survivors = [pid for pid in started if not _exited(pid, timeout)]
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        return survivors


class Student:
    """One student's browser session (a context of its own: its own cookies)."""

    def __init__(self, browser, name: str, hub: Hub, home: Path):
        self.name, self.hub, self.home = name, hub, home
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(BOUND_MS)
        self.page_errors: list[str] = []
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{name}.png"))

    def log_in(self) -> None:
        self.page.goto(self.hub.url + "hub/login")
        self.page.locator("input[name=username]").fill(self.name)
        self.page.locator("input[name=password]").fill(PASSWORD)
        if self.name == "ada":
            self.page.screenshot(path=str(ARTIFACTS / "login.png"))
        self.page.locator("#login_submit").click()

    def wait_lab(self) -> None:
        """Their server started and JupyterLab shows the course's Nbgrader menu."""
        self.page.wait_for_url(re.compile(rf"/user/{self.name}/lab"))
        self.page.locator(".lm-MenuBar-itemLabel:text-is('Nbgrader')").wait_for()

    def assignments(self):
        """The Assignments panel (Nbgrader > Assignment List); keeps what the menu offered."""
        self.page.locator(".lm-MenuBar-itemLabel:text-is('Nbgrader')").click()
        item = self.page.locator(".lm-Menu-item[data-command='nbgrader:open-assignment-list']")
        item.wait_for()
        self.menu = self.page.locator(".lm-Menu .lm-Menu-item:visible").all_inner_texts()
        item.click()
        return self.page.locator("#nbgrader-assignment-list")

    def row(self, panel, listing: str):
        return panel.locator(f"#{listing}_assignments_list > .list_item").filter(has_text=LESSON)

    @staticmethod
    def button(row, label: str):
        """A row's button (nbgrader's versions write its label in different cases)."""
        return row.locator("button", has_text=re.compile(rf"^\s*{label}\s*$", re.I))

    def fetch_answer_submit(self) -> None:
        panel = self.assignments()
        released = self.row(panel, "released")
        released.wait_for()
        self.shot("assignments-released")
        self.button(released, "fetch").click()
        fetched = self.row(panel, "fetched")
        fetched.locator("a.assignment-notebooks-link").click()  # shows the lesson's notebooks
        fetched.locator(f".assignment-notebooks a:text-is('{LESSON}')").click()
        # what a training run in the student's kernel leaves beside the notebook
        (self.home / LESSON / "runs").mkdir()
        (self.home / LESSON / "runs" / "model.ckpt").write_bytes(b"\0" * 1024)
        notebook = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        notebook.locator(".validate-button").wait_for()  # the grader's Validate is there
        stub = notebook.locator(".jp-Cell").filter(has_text="def get_pair_counts(ids)").filter(
            has_text="YOUR CODE HERE")
        stub.locator(".cm-content").click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(ANSWERS[self.name])
        self.page.keyboard.press("Escape")
        dirty = self.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
        dirty.wait_for()  # the typing reached the notebook's model
        self.page.keyboard.press("Control+s")
        dirty.wait_for(state="detached")  # and the server saved it
        self.assignments()
        self.button(self.row(panel, "fetched"), "submit").click()
        self.row(panel, "submitted").wait_for()
        self.shot("assignments-submitted")

    def fetch_feedback(self) -> str:
        """Fetch Feedback in the panel, open the feedback it fetched; returns the page's text."""
        panel = self.assignments()
        panel.locator("#refresh_assignments_list").click()
        submitted = self.row(panel, "submitted")
        submitted.filter(has_text="feedback available to fetch").wait_for()
        self.button(submitted, "fetch feedback").click()
        view = self.row(panel, "submitted").locator("a", has_text="view feedback")
        view.click()  # the file browser goes to the feedback's folder
        listing = self.page.locator(".jp-DirListing-item").filter(has_text=f"{LESSON}.html")
        listing.dblclick()
        frame = self.page.frame_locator(".jp-HTMLViewer:not(.lm-mod-hidden) iframe")
        body = frame.locator("body")
        body.filter(has_text="Score:").wait_for()
        self.shot("feedback")
        return body.inner_text()


@pytest.fixture
def course(tmp_path):
    """The released lesson, the hub, and two students' browsers; everything stops after."""
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="JupyterHub test: playwright is not installed (dev extra)")
    chromium = chromium_path()
    proxy = shutil.which("configurable-http-proxy")
    if not (chromium and proxy and shutil.which("node")):
        pytest.skip("JupyterHub test: needs node, configurable-http-proxy (npm install -g "
                    f"configurable-http-proxy) and Chromium; missing: {'' if chromium else 'chromium '}"
                    f"{'' if proxy else 'configurable-http-proxy '}{'' if shutil.which('node') else 'node'}")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    exchange = tmp_path / "exchange"
    env = dict(os.environ, NANOLM_EXCHANGE=str(exchange), NANOLM_COURSE=COURSE,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    _run([sys.executable, "-m", "autograde", "exchange-release", "01", "--course", COURSE,
          "--exchange", str(exchange)], ARTIFACTS / "release.log", env)
    hub = Hub(tmp_path, env)
    try:
        hub.wait_ready()
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            try:
                homes = tmp_path / "homes"
                yield hub, exchange, env, [Student(browser, name, hub, homes / name)
                                           for name in ANSWERS]
            finally:
                browser.close()
    finally:
        survivors = hub.stop()
        assert not survivors, f"processes outlived the hub (killed): {survivors}"


def test_two_students_submit_through_the_exchange_and_each_reads_only_their_own_feedback(
        course, tmp_path):
    hub, exchange, env, students = course
    for student in students:  # both servers start at once
        student.log_in()
    for student in students:
        student.wait_lab()
        student.fetch_answer_submit()
        # the students' tools only: no Formgrader, Create Assignment or course list
        assert [item.strip() for item in student.menu] == ["Assignment List"], student.menu
    inbound = {p.name.split("+")[0]: p for p in (exchange / COURSE / "inbound").iterdir()}
    assert sorted(inbound) == ["ada", "ben"], inbound  # keyed by hub user, all run as root
    for name, submission in inbound.items():  # what each handed in is their own answer
        assert f"{name}'s own answer" in (submission / f"{LESSON}.ipynb").read_text(), name
        assert not (submission / "runs").exists(), f"{name}'s runs/ reached the exchange"

    out = tmp_path / "graded"
    grade = [sys.executable, "-m", "autograde", "grade", "--from-exchange", COURSE,
             "--exchange", str(exchange), "--out", str(out), "--workers", "2"]
    if shutil.which("bwrap") is None:
        grade.append("--unsafe-no-isolation")
    done = _run(grade, ARTIFACTS / "grade.log", env)
    assert "feedback returned through the exchange" in done.stdout
    rows = {row.split(",")[3]: row.split(",") for row in
            (out / "grades.csv").read_text().splitlines()[1:]}
    scores = {name: float(rows[name][9]) for name in ANSWERS}
    assert scores["ada"] > scores["ben"], scores  # the right answer scored, the wrong did not

    for student in students:
        text = student.fetch_feedback()
        other = next(name for name in ANSWERS if name != student.name)
        total = re.search(r"Score: ([\d.]+) / ([\d.]+)", text)
        assert total and float(total.group(1)) == scores[student.name], (student.name, text[:500])
        assert f"{student.name}'s own answer" in text, f"{student.name} sees not their own work"
        assert f"{other}'s own answer" not in text, f"{student.name} sees {other}'s feedback"
        feedback = tmp_path / "homes" / student.name / LESSON / "feedback"
        fetched = [p for p in feedback.glob("*/*.html")]  # feedback/<time of submission>/
        assert len(fetched) == 1, fetched
        assert not student.page_errors, student.page_errors
