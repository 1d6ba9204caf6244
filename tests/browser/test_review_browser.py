"""The instructor's review in a real browser: `python -m autograde review` over a graded batch,
one submission reviewed and two of its scores set through the page (an override and a hand
grade), then grades.csv and report.md agree.

Headless Chromium (Debian's ``chromium``, no Playwright download) against the review server
started as the instructor starts it. Every wait is on what the page shows or the server
prints; timeouts are upper bounds. Screenshots go to ``test-artifacts/browser-review/``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from autograde_toy import write_submission
from graded_outputs import assert_outputs_agree, grades_csv, report_scores, review_course
from lab_server import browser_or_skip

from autograde.batch.grade import grade_batch
from autograde.sandbox.kernel import Limits

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser-review"
BOUND_S = 120




@pytest.fixture
def graded(tmp_path):
    """Ann (the solutions) and Bob (only add) graded: Bob has scale wrong and the written
    answer waiting for a hand grade."""
    solutions, lessons = review_course(tmp_path)
    subs = tmp_path / "submissions"
    write_submission(lessons, subs, "ann", "01_toy", solutions_dir=solutions)
    write_submission(lessons, subs, "bob", "01_toy", {"add": "def add(a, b):\n    return a + b"})
    out = tmp_path / "out"
    result = grade_batch(subs, out, limits=Limits(cell_timeout_s=30, notebook_timeout_s=120),
                         solutions_dir=solutions, show_progress=False)
    assert result.ok, result.failures
    return out


@pytest.fixture
def review(graded):
    """The review server as the instructor starts it (``.venv/bin/python -m autograde``, the
    venv not activated: its bin folder is not on PATH); yields its address."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p != venv_bin)
    process = subprocess.Popen(
        [sys.executable, "-m", "autograde", "review", "--out", str(graded), "--no-browser",
         "--by", "ta-lee"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PATH": path})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=BOUND_S)  # the address line is the signal
            if line.startswith("reviewing "):
                yield line.split(" at ", 1)[1].strip()
                break
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_review_one_submission_and_override_in_the_browser(graded, review):
    playwright_api, executable = browser_or_skip("browser test")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    out = graded
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(BOUND_S * 1000)
        try:
            page.goto(review)
            bob = page.locator("#class tr:has(th:text-is('bob'))")
            assert "1 / 5" in bob.inner_text() and "1 to grade" in bob.inner_text()
            bob.locator("a").first.click()

            # the submission: its questions beside the feedback the student gets
            page.locator("h1:text-is('bob / 01_toy')").wait_for()
            scale = page.locator("#q-test_scale")
            assert scale.locator(".score").inner_text() == "0 / 2"
            assert "NotImplementedError" in scale.locator(".message").inner_text()
            assert "needs grading" in page.locator("#q-explain .score").inner_text()
            contents = page.frame_locator("#feedback").locator("#toc")
            assert "scale: test" in contents.inner_text()
            page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

            # an override and a hand grade, as the instructor types them
            scale.locator("input[name=points]").first.fill("1.5")
            scale.locator("input[name=why]").first.fill("right idea, off by one")
            scale.locator("button:text-is('Set score')").click()
            page.locator("#notice:has-text('test_scale: 0 -> 1.5 / 2')").wait_for()
            assert page.locator("#q-test_scale .score").inner_text() == "1.5 / 2"
            explain = page.locator("#q-explain")
            explain.locator("input[name=points]").first.fill("2")
            explain.locator("input[name=why]").first.fill("clear and right")
            explain.locator("button:text-is('Set score')").click()
            page.locator("#notice:has-text('explain: needs grading -> 2 / 2')").wait_for()
            assert page.locator("#total").inner_text() == "Score: 4.5 / 5"
            assert "right idea, off by one" in page.locator("#history").inner_text()
            assert "right idea, off by one" in page.frame_locator("#feedback").locator(
                "body").inner_text()
            page.screenshot(path=str(ARTIFACTS / "overridden.png"), full_page=True)
        finally:
            browser.close()

    assert float(grades_csv(out)[("bob", "01_toy")]["score"]) == 4.5
    assert report_scores(out)[("bob", "01_toy")] == (4.5, 5.0)
    assert grades_csv(out)[("bob", "01_toy")]["needs_grading"] == ""
    assert_outputs_agree(out)
    report = (out / "report.md").read_text()
    assert "test_scale: 0 -> 1.5 (override by ta-lee: right idea, off by one)" in report
    assert "explain: (needs grading) -> 2 (hand grade by ta-lee: clear and right)" in report
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [(e["question"], e["old"], e["new"], e["by"]) for e in history] == [
        ("test_scale", 0.0, 1.5, "ta-lee"), ("explain", None, 2.0, "ta-lee")]
