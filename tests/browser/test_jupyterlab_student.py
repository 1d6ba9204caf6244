"""The student's path in a real browser: `make lab`, JupyterLab, the lessons, the playground
and nbgrader's Validate button, driven through the page as a student drives it.

Headless Chromium (Debian's ``chromium``; Playwright's own browser download is not used)
against `make lab` over a scratch copy of ``lessons/`` at smoke size. Every wait is on what
the page shows; the timeouts are only upper bounds for a loaded machine. Screenshots, the
browser console and the server log go to ``test-artifacts/browser/`` (kept by CI).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from lab_server import REPO, LabServer, browser_or_skip

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts" / "browser"
LESSONS = REPO / "lessons"
SOLUTIONS = REPO / "solutions"
CELL_BOUND_MS = 300_000  # the longest a notebook may take on a busy 2-core machine
VISIBLE = ".jp-NotebookPanel:not(.lm-mod-hidden)"




@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    playwright_api, executable = browser_or_skip("browser test")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    scratch = tmp_path_factory.mktemp("lab")
    server = LabServer(scratch / "workspace", scratch, ARTIFACTS / "server.log")
    console: list[str] = []
    page_errors: list[str] = []
    try:
        server.wait_ready(timeout=180)
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            try:
                yield Lab(page, server, scratch / "workspace", console, page_errors,
                          playwright_api.TimeoutError)
            finally:
                browser.close()
    finally:
        (ARTIFACTS / "console.log").write_text("\n".join(console) + "\n")
        survivors = server.stop()
        assert not survivors, f"processes outlived the server (killed): {survivors}"


class Lab:
    """The page, the server and what the browser reported so far."""

    def __init__(self, page, server, workspace, console, page_errors, timeout_error):
        self.page, self.server, self.workspace = page, server, workspace
        self.console, self.page_errors = console, page_errors
        self.timeout_error = timeout_error

    def open(self, notebook: str):
        """Open ``workspace/<notebook>`` (File > Open from Path once JupyterLab is loaded) and
        wait until its kernel is idle."""
        if self.page.url == "about:blank":
            self.page.goto(self.server.page(f"lab/tree/{notebook}?reset"))
        else:
            self.menu("File", "filebrowser:open-path")
            self.page.locator(".jp-Dialog input").fill(notebook)
            self.page.locator(".jp-Dialog button.jp-mod-accept").click()
        name = notebook.rsplit("/", 1)[-1]
        self.page.locator(f".lm-TabBar-tab.jp-mod-current:has-text('{name}')").wait_for()
        self.page.locator(f"{VISIBLE} .jp-CodeCell").first.wait_for()
        self.page.locator(".jp-StatusBar-Widget:has-text('Idle')").first.wait_for()
        return self.page.locator(f"{VISIBLE} .jp-Notebook .jp-Cell")

    def menu(self, menu: str, command: str) -> None:
        self.page.locator(f".lm-MenuBar-itemLabel:text-is('{menu}')").click()
        self.page.locator(f".lm-Menu-item[data-command='{command}']").click()

    def wait_all_ran(self, count: int) -> None:
        """Every code cell of the visible notebook shows an execution count ([n]:); if that
        does not come, the failure says where the run stood (see :meth:`where_the_run_stands`)."""
        prompts = f"{VISIBLE} .jp-CodeCell .jp-InputPrompt"
        try:
            self.page.wait_for_function(
                """([selector, count]) => {
                    const prompts = [...document.querySelectorAll(selector)];
                    return prompts.length === count && prompts.every(
                        p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
                }""",
                arg=[prompts, count], timeout=CELL_BOUND_MS)
        except self.timeout_error:
            raise AssertionError(self.where_the_run_stands(prompts, count)) from None

    def where_the_run_stands(self, prompts: str, count: int) -> str:
        """What a stalled run shows: each code cell's prompt, the kernel status, any dialog and
        error output, and the server log's end; a screenshot goes to the artifacts."""
        self.page.screenshot(path=str(ARTIFACTS / "run-stalled.png"))
        shown = [f"{number}{text.strip() or '[ ]:'}" for number, text
                 in enumerate(self.page.locator(prompts).all_inner_texts(), start=1)]
        status_bar = self.page.locator(".jp-StatusBar-Widget").all_inner_texts()
        status = [line.strip() for text in status_bar for line in text.splitlines() if line.strip()]
        dialogs = self.page.locator(".jp-Dialog").all_inner_texts()
        errors = self.page.locator(f"{VISIBLE} .jp-OutputArea-output[data-mime-type*='stderr'], "
                                   f"{VISIBLE} .jp-OutputArea-output[data-mime-type*='error']")
        return "\n".join([
            f"not every code cell ran within {CELL_BOUND_MS / 1000:.0f} s; the prompts of "
            f"{len(shown)} code cells ({count} expected): {' '.join(shown)}",
            f"status bar: {' | '.join(status)}",
            f"dialogs: {dialogs or 'none'}",
            f"error outputs: {[text[:300] for text in errors.all_inner_texts()] or 'none'}",
            "the server log's end:", *(line.rstrip() for line in self.server.lines[-25:])])

    def set_source(self, cell, text: str) -> None:
        """Replace a cell's code as a student would: select all in its editor, then type."""
        editor = cell.locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(text)
        self.page.keyboard.press("Escape")

    def save(self) -> None:
        self.page.keyboard.press("Control+s")
        self.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").wait_for(state="detached")

    def assert_no_page_errors(self) -> None:
        errors = self.page_errors + [line for line in self.console if line.startswith("error:")]
        assert not errors, "the page reported errors:\n" + "\n".join(errors)


def _shot(locator, name: str) -> None:
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _type_answers(lab, cells, notebook: str, before: int | None = None) -> dict[int, str]:
    """Type the solution of every answer cell (above cell ``before``, when given) into the
    open notebook, as a student would; returns {cell index: source}."""
    solution = nbformat.read(str(SOLUTIONS / notebook), as_version=4)
    answers = {index: cell.source for index, cell in enumerate(solution.cells)
               if cell.metadata.get("nbgrader", {}).get("solution")
               and (before is None or index < before)}
    for index, source in answers.items():
        lab.set_source(cells.nth(index), source)
    return answers


# Each lesson's diagram (nanolm_lib.course.diagrams), by a line of the cell that draws it.
DIAGRAMS = {"01_tokenizer": "display(plot_bytes_per_token(curve))",
            "04_fused_attention": "display(plot_flash_trace(trace))",
            "05_gpt": "display(plot_residual_stream(",
            "07_sampling": "display(plot_kv_cache(profile))"}


def _shot_diagram(cells, lesson: str) -> None:
    """The diagram cell's figure, drawn: a screenshot in the artifacts (diagram-LESSON.png)."""
    cell = cells.filter(has_text=DIAGRAMS[lesson])
    image = cell.locator(".jp-OutputArea-output img")
    image.wait_for(timeout=CELL_BOUND_MS)
    assert image.evaluate("e => e.naturalWidth > 0"), f"{lesson}: the figure did not load"
    assert cell.locator(".jp-OutputArea-output[data-mime-type*='error']").count() == 0
    _shot(cell.locator(".jp-OutputArea"), f"diagram-{lesson}")


def _code_cell_count(notebook: Path) -> int:
    return sum(cell.cell_type == "code" for cell in nbformat.read(str(notebook), as_version=4).cells)


def test_lesson00_shows_only_the_students_tools_and_runs_all_without_error(lab):
    cells = lab.open("00_setup/00_setup.ipynb")
    lab.page.locator(f"{VISIBLE} .validate-button").wait_for()  # nbgrader adds it once loaded
    menus = lab.page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
    assert "Nbgrader" not in menus, menus  # nor its lists, Formgrader or Create Assignment
    assert lab.page.get_by_text("Create Assignment").count() == 0
    assert lab.page.locator(".jp-Dialog, .jp-toast-content").count() == 0  # no pop-ups

    lab.menu("Run", "runmenu:run-all")
    lab.wait_all_ran(_code_cell_count(LESSONS / "00_setup/00_setup.ipynb"))
    code = lab.page.locator(f"{VISIBLE} .jp-CodeCell")
    for index in range(code.count()):
        outputs = code.nth(index).locator(".jp-OutputArea-output")
        assert outputs.count() >= 1, f"lesson 00, code cell {index + 1}: no output"
    stderr = lab.page.locator(f"{VISIBLE} .jp-OutputArea-output[data-mime-type*='stderr']")
    assert stderr.count() == 0, stderr.all_inner_texts()
    assert lab.page.locator(f"{VISIBLE} .progress-bar-danger").count() == 0  # no red bar
    assert cells.locator("img").count() >= 3  # the matmul, lengths and words figures
    lab.assert_no_page_errors()


def test_lesson01_a_failing_visible_test_shows_its_message_on_top(lab):
    cells = lab.open("01_tokenizer/01_tokenizer.ipynb")
    stub = cells.filter(has_text="def get_pair_counts(ids)").filter(has_text="YOUR CODE HERE")
    lab.set_source(stub, "def get_pair_counts(ids):\n    return Counter()  # a wrong answer")
    lab.menu("Run", "runmenu:run-all")
    test_cell = cells.filter(has_text='result = get_pair_counts([1, 2, 1, 2])')
    error = test_cell.locator(".jp-OutputArea-output[data-mime-type*='stderr']")
    error.wait_for(timeout=CELL_BOUND_MS)
    error.scroll_into_view_if_needed()
    lines = error.text_content().strip().splitlines()
    assert lines[0].startswith("CheckFailed: get_pair_counts([1, 2, 1, 2]): keys differ"), lines[:3]
    assert lines[1].startswith("Look at: count the pairs"), lines[:3]
    assert not any("checks.py" in line for line in lines), lines
    _shot(test_cell, "failing-visible-test")
    lab.assert_no_page_errors()


def test_lesson07_answers_run_all_playground_and_validate(lab):
    notebook = "07_sampling/07_sampling.ipynb"
    cells = lab.open(notebook)
    answers = _type_answers(lab, cells, notebook)
    lab.save()
    saved = json.loads((lab.workspace / notebook).read_text())["cells"]
    for index, source in answers.items():
        assert "".join(saved[index]["source"]) == source, f"cell {index} was not typed in whole"

    # Run All on the kernel that opening started (nothing has run in it yet). Not "Restart and
    # Run All": on a loaded CI machine it once stalled past the limit, cause unknown, and the
    # restart adds nothing here that the lesson's own code could get wrong.
    lab.menu("Run", "runmenu:run-all")
    lab.wait_all_ran(_code_cell_count(LESSONS / notebook))
    assert lab.page.locator(f"{VISIBLE} .jp-OutputArea-output[data-mime-type*='stderr']").count() == 0
    _shot_diagram(cells, "07_sampling")

    playground = lab.page.locator(f"{VISIBLE} .widget-vbox").filter(has_text="Tell a story")
    story = playground.locator(".widget-output .jp-OutputArea-output")
    story.filter(has_text="Once upon a time").wait_for()
    for label in playground.locator(".widget-label").all():
        assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), label.inner_text()
    _shot(playground, "playground-before-click")

    prompt = "Tom found a big red ball"
    playground.locator(".widget-text input").fill(prompt)
    temperature = playground.locator(".widget-hslider").filter(has_text="temperature")
    temperature.locator(".noUi-handle").focus()
    lab.page.keyboard.press("ArrowLeft")
    temperature.locator(".widget-readout").filter(has_text="0.75").wait_for()
    playground.locator("button", has_text="Tell a story").click()
    new_story = story.filter(has_text=prompt)
    new_story.wait_for()
    assert new_story.text_content().strip().startswith(prompt)
    _shot(playground, "playground-after-click")

    lab.save()
    lab.page.locator(f"{VISIBLE} .validate-button").click()
    dialog = lab.page.locator(".jp-Dialog")
    dialog.locator(".validation-success, .validation-failed, .nbgrader-ErrorDialog").first.wait_for(
        timeout=CELL_BOUND_MS)
    _shot(dialog.locator(".jp-Dialog-content"), "validate-dialog")
    assert "Success! Your notebook passes all the tests." in dialog.text_content()
    dialog.locator("button.jp-mod-accept").click()
    lab.assert_no_page_errors()


@pytest.mark.parametrize("lesson", ["01_tokenizer", "04_fused_attention", "05_gpt"])
def test_a_lessons_diagram_draws_with_the_answers_typed_in(lab, lesson):
    """The cells up to the diagram only (Run All Above, then the diagram's cell): the lesson's
    later sections, its timings among them, are not this test's business."""
    notebook = f"{lesson}/{lesson}.ipynb"
    cells = lab.open(notebook)
    source = nbformat.read(str(LESSONS / notebook), as_version=4).cells
    index = next(i for i, cell in enumerate(source) if DIAGRAMS[lesson] in cell.source)
    _type_answers(lab, cells, notebook, before=index)
    cells.nth(index).locator(".jp-InputPrompt").click()  # select it, in command mode
    lab.menu("Run", "notebook:run-all-above")
    lab.menu("Run", "notebook:run-cell")
    _shot_diagram(cells, lesson)
    lab.assert_no_page_errors()
