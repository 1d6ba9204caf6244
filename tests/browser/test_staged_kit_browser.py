"""A staged student kit at three stages, in a real browser, as a student lives it.

The instructor builds the kit for week 01 (``student-kit --week 01``), then rebuilds it in
place for week 02 and, with a corrected lesson 02, for week 03. Between builds the student
runs the kit's own ``make lab`` (its venv, made by its ``make setup``) and works in JupyterLab
in headless Chromium (Debian's ``chromium``). Each stage shows only its week's lessons; the
answer typed at week 01 is still there at weeks 02 and 03; the rebuild and the correction are
said where the student starts the lab. Every wait is on what the page shows or the server
prints; timeouts are upper bounds. Screenshots and logs go to ``test-artifacts/kit-stages/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from kit_env import kit_env, kit_python
from lab_server import REPO, LabServer, browser_or_skip

from autograde.authoring.kit import student_kit

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts" / "kit-stages"
VISIBLE = ".jp-NotebookPanel:not(.lm-mod-hidden)"
MARK = "# my own answer, typed at week 01"


def _listing(page) -> list[str]:
    """The folder names JupyterLab's file browser shows at the workspace's root."""
    items = page.locator(".jp-DirListing-item .jp-DirListing-itemText")
    items.first.wait_for()
    return sorted(text.strip() for text in items.all_inner_texts())


def _open(page, server: LabServer, notebook: str):
    page.goto(server.page(f"lab/tree/{notebook}?reset"))
    name = notebook.rsplit("/", 1)[-1]
    page.locator(f".lm-TabBar-tab.jp-mod-current:has-text('{name}')").wait_for()
    page.locator(f"{VISIBLE} .jp-CodeCell").first.wait_for()
    return page.locator(f"{VISIBLE} .jp-Notebook .jp-Cell")


def _stage(kit: Path, scratch: Path, number: int, browser, work):
    """``make lab`` in the kit, a page on it, ``work(page, server)``, then the server stopped;
    returns the server's log lines."""
    log = ARTIFACTS / f"week-{number:02d}-server.log"
    server = LabServer(kit / "workspace", scratch, log, root=kit, venv=kit / ".venv")
    try:
        server.wait_ready(timeout=180)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(120_000)
        try:
            page.goto(server.page("lab?reset"))
            work(page, server)
        finally:
            page.screenshot(path=str(ARTIFACTS / f"week-{number:02d}.png"))
            page.close()
    finally:
        survivors = server.stop()
    assert not survivors, f"processes outlived the server (killed): {survivors}"
    return server.lines


def test_three_stages_of_the_kit_in_the_browser(tmp_path, monkeypatch):
    playwright_api, executable = browser_or_skip("staged kit browser test")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    kit, scratch = tmp_path / "kit", tmp_path / "scratch"
    student_kit(kit, week="01")
    kit_python(kit)
    for name, value in kit_env(kit, scratch).items():  # make lab as the kit's README runs it
        monkeypatch.setenv(name, value)
    notebook = kit / "workspace" / "01_tokenizer" / "01_tokenizer.ipynb"

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)

        def week_01(page, server):
            assert _listing(page) == ["00_setup", "01_tokenizer"]
            cells = _open(page, server, "01_tokenizer/01_tokenizer.ipynb")
            stub = cells.filter(has_text="def get_pair_counts(ids)").filter(
                has_text="YOUR CODE HERE")
            stub.locator(".cm-content").click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(f"{MARK}\ndef get_pair_counts(ids):\n"
                                      "    return Counter(zip(ids, ids[1:]))")
            page.keyboard.press("Escape")
            page.keyboard.press("Control+s")
            page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").wait_for(
                state="detached")

        said = "".join(_stage(kit, scratch, 1, browser, week_01))
        assert "not released yet at this kit's week 01: 02_data" in said, said
        assert MARK in notebook.read_text()

        student_kit(kit, week="02")  # the next stage, built over the kit in place

        def week_02(page, server):
            assert _listing(page) == ["00_setup", "01_tokenizer", "02_data"]
            cells = _open(page, server, "01_tokenizer/01_tokenizer.ipynb")
            cells.filter(has_text=MARK).wait_for()  # the answer typed at week 01
            _open(page, server, "02_data/02_data.ipynb")

        said = "".join(_stage(kit, scratch, 2, browser, week_02))
        assert "02_data: copied into" in said and "the kit was rebuilt" in said, said

        corrected = tmp_path / "lessons"
        shutil.copytree(REPO / "lessons", corrected)
        path = corrected / "02_data" / "02_data.ipynb"
        lesson = nbformat.read(str(path), as_version=4)
        lesson.cells[0].source += "\n\nA corrected sentence."
        nbformat.write(lesson, str(path))
        student_kit(kit, week="03", lessons_dir=corrected)

        def week_03(page, server):
            assert _listing(page) == ["00_setup", "01_tokenizer", "02_data", "03_attention"]
            cells = _open(page, server, "01_tokenizer/01_tokenizer.ipynb")
            cells.filter(has_text=MARK).wait_for()
            _open(page, server, "03_attention/03_attention.ipynb")

        said = "".join(_stage(kit, scratch, 3, browser, week_03))
        assert "02_data: the kit's lesson was corrected since you started it" in said, said
        assert "autograde update-lesson 02_data" in said, said
        browser.close()
    assert MARK in notebook.read_text()
