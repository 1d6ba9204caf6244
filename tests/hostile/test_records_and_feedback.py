"""Records are hostile input, and nothing a student writes runs in the feedback or the reports.

* A record (the outputs of a question's hidden cases) lies in a folder the student's code can
  write, and the grader that reads it has no memory limit: a deflated entry is refused before
  anything is inflated (peak memory measured in a child process), lying sizes and data that
  is not plain (meta, sparse, nested, quantized, expanded tensors, other objects, deep or
  huge containers) are refused, and a question whose judging raises scores 0 on its own.
* One real batch on lesson 03: a student whose answer raises an exception carrying
  ``<script>``, ``onerror=`` and ``javascript:``, and whose notebook adds a markdown cell, a
  published output and a bogus grade_id with the same. The feedback HTML is opened in
  Chromium: no script of the student ran, no event handler and no ``javascript:`` link of the
  student is in the DOM, while the message itself is there as text. ``summary.md`` and
  ``report.md`` rendered as Markdown hold no HTML of the student.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers

from autograde_toy import independent_answers, write_submission  # noqa: E402

from autograde.course import LESSONS_DIR  # noqa: E402
from autograde.sandbox.verdict import Verdict, read_record  # noqa: E402
from nanolm_lib.grading.question_base import QUESTIONS, reference_namespace  # noqa: E402
from nanolm_lib.grading.record import RECORD_LIMIT_BYTES  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
LESSON = "03_attention"
REPO = Path(__file__).resolve().parents[2]
BOMB_BYTES = 256 << 20  # what the deflated entry inflates to (about 250 KB on disk)


def _record_bytes(outputs) -> bytes:
    buffer = io.BytesIO()
    torch.save({"outputs": outputs}, buffer)
    return buffer.getvalue()


def _rewrite(data: bytes, entry_suffix: str, write) -> bytes:
    """The zip ``data`` with the entry ending in ``entry_suffix`` written by ``write(zf, info)``
    instead, every other entry copied as it is."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            if info.filename.endswith(entry_suffix):
                write(target, info)
            else:
                target.writestr(info.filename, source.read(info))
    return out.getvalue()


def _declare_size(data: bytes, entry_suffix: str, size: int) -> bytes:
    """``data`` with the central directory's uncompressed size of one entry changed."""
    data = bytearray(data)
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_length = int.from_bytes(data[at + 28:at + 30], "little")
        name = bytes(data[at + 46:at + 46 + name_length]).decode()
        if name.endswith(entry_suffix):
            data[at + 24:at + 28] = size.to_bytes(4, "little")
            return bytes(data)
        at = data.find(b"PK\x01\x02", at + 1)
    raise AssertionError(f"no entry {entry_suffix}")


# --------------------------------------------------------------------------- the archive
BOMB_CHILD = """
import resource, sys, zipfile
from pathlib import Path
import torch
from autograde.sandbox.verdict import read_record

folder = Path(sys.argv[1])
torch.save({"outputs": [torch.ones(4)]}, folder / "honest.pt")
source = zipfile.ZipFile(folder / "honest.pt")
with zipfile.ZipFile(folder / "bomb.pt", "w") as bomb:  # data/0 deflated, BOMB bytes of zeros
    for info in source.infolist():
        if info.filename.endswith("data/0"):
            deflated = zipfile.ZipInfo(info.filename)
            deflated.compress_type = zipfile.ZIP_DEFLATED
            with bomb.open(deflated, "w", force_zip64=True) as entry:
                chunk = bytes(1 << 20)
                for _ in range(int(sys.argv[2]) >> 20):
                    entry.write(chunk)
        else:
            bomb.writestr(info.filename, source.read(info))
outputs, problem = read_record(folder / "honest.pt", 1)
assert problem is None, problem
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outputs, problem = read_record(folder / "bomb.pt", 1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(repr(problem))
print((after - before) >> 10)  # MB
print((folder / "bomb.pt").stat().st_size)
"""


def test_a_deflated_record_is_refused_before_anything_is_inflated(tmp_path):
    """A 256 MB entry deflated to ~250 KB: refused by its compression, and the reading
    process's peak memory (its own high-water mark, around the read only) grows by far less
    than the entry would inflate to."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(BOMB_CHILD), str(tmp_path),
                           str(BOMB_BYTES)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    problem, grown_mb, size = done.stdout.strip().splitlines()[-3:]
    assert "is compressed" in problem and "data/0" in problem, problem
    assert int(size) < BOMB_BYTES // 100, size  # it is a bomb: 1000:1
    assert int(grown_mb) < 32, f"peak memory grew by {grown_mb} MB reading the bomb"


def test_an_entry_whose_size_lies_or_sums_over_the_cap_is_refused(tmp_path):
    honest = _record_bytes([torch.arange(64, dtype=torch.float32)])
    lies = {
        "declares more than it holds": _declare_size(honest, "data/0", 64 * 4 + 8),
        "declares over the cap": _declare_size(honest, "data/0", RECORD_LIMIT_BYTES + 1),
        "not a zip": b"\x80\x02" + honest[2:200],
    }
    for label, data in lies.items():
        path = tmp_path / f"{label}.pt"
        path.write_bytes(data)
        outputs, problem = read_record(path, 1)
        assert outputs is None and "refused" in problem, (label, problem)
    assert "over the 64 MB limit" in read_record(tmp_path / "declares over the cap.pt", 1)[1]
    (tmp_path / "honest.pt").write_bytes(honest)
    outputs, problem = read_record(tmp_path / "honest.pt", 1)
    assert problem is None and torch.equal(outputs[0], torch.arange(64, dtype=torch.float32))


# --------------------------------------------------------------------------- what it holds
def _cyclic():
    loop: list = []
    loop.append(loop)
    return loop


def _deep(levels: int):
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


NOT_PLAIN = {
    "meta": (lambda: torch.empty(3, device="meta"), "meta device"),
    "sparse": (lambda: torch.eye(3).to_sparse(), "sparse_coo tensor"),
    "nested": (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "nested"),
    "quantized": (lambda: torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8),
                  "dtype qint8"),
    "float8": (lambda: torch.ones(2).to(torch.float8_e4m3fn), "dtype float8"),
    "expanded": (lambda: torch.ones(1).expand(10_000), "larger than its storage"),
    "parameter": (lambda: torch.nn.Parameter(torch.ones(2)), "a Parameter"),
    "size": (lambda: torch.Size([2, 3]), "a Size"),
    "dtype": (lambda: torch.float32, "a dtype"),
    "set": (lambda: {1, 2}, "a set"),
    "bytes": (lambda: b"abc", "a bytes"),
    "tuple key": (lambda: {(1, 2): 3}, "a key of type tuple"),
    "cycle": (_cyclic, "nested more than"),
    "deep": (lambda: _deep(100), "nested more than"),
    "huge": (lambda: [None] * 1_500_000, "more than 1,000,000 values"),
}


@pytest.mark.parametrize("label", sorted(NOT_PLAIN))
def test_a_record_that_is_not_plain_data_is_refused_with_a_reason(tmp_path, label):
    make, reason = NOT_PLAIN[label]
    path = tmp_path / "record.pt"
    path.write_bytes(_record_bytes([{"x": [make()]}]))
    outputs, problem = read_record(path, 1)
    assert outputs is None and problem, label
    assert reason in problem, problem


def test_an_honest_record_of_plain_data_is_accepted(tmp_path):
    honest = [torch.randn(2, 3), torch.ones(3, 2).t().clone(), torch.arange(5),
              torch.tensor([True, False]), torch.zeros(2, dtype=torch.bfloat16),
              torch.zeros(2, dtype=torch.complex64), torch.zeros(0),
              {"loss": 1.5, "steps": 3, "name": "ok", "none": None, 0: (1, 2.0), "z": 1j},
              [[1, 2], [3, [4, [5]]]], {"__error__": "ValueError: nope"}]
    path = tmp_path / "record.pt"
    path.write_bytes(_record_bytes(honest))
    outputs, problem = read_record(path, len(honest))
    assert problem is None, problem
    assert torch.equal(outputs[1], honest[1]) and outputs[1].stride() == honest[1].stride()
    assert outputs[7] == honest[7] and outputs[8] == honest[8]


# --------------------------------------------------------------------------- per question
def test_a_question_whose_judging_raises_scores_zero_alone(tmp_path, monkeypatch):
    """Lesson 03 from the reference's outputs but causal_mask's, a record of meta tensors
    (refused when read); lesson 04 from the reference's but the limited case of
    flash_attention, a list where a check that expects a dict reads it (the check raises).
    Each scores 0 with a reason naming the question; the other questions pass."""
    monkeypatch.setattr(QUESTIONS["04_fused_attention"]["flash_attention"], "check",
                        lambda case, got, expected: got.keys() and None)
    def judged(lesson, wrong):
        verdict = Verdict.prepare(lesson, tmp_path / lesson / "cases",
                                  tmp_path / lesson / "records", seed=7)
        reference = reference_namespace()
        for name, drawn in verdict.cases.items():
            outputs = [QUESTIONS[lesson][name].run_case(reference, case) for case in drawn]
            outputs = [output if wrong(name, case) is None else wrong(name, case)
                       for output, case in zip(outputs, drawn)]
            torch.save({"outputs": outputs}, verdict.records_dir / lesson / f"{name}.pt")
        return verdict.judge()

    meta = judged(LESSON, lambda name, case: torch.empty(4, 4, device="meta")
                  if name == "causal_mask" else None)
    raising = judged("04_fused_attention", lambda name, case: [1, 2]
                     if name == "flash_attention" and case.get("limited") else None)
    assert not meta["test_causal_mask"].passed, meta
    assert "meta device" in meta["test_causal_mask"].message
    assert not raising["test_flash_attention"].passed, raising
    assert ("could not judge the record of flash_attention: AttributeError"
            in raising["test_flash_attention"].message), raising
    others = [v for gid, v in {**meta, **raising}.items()
              if gid not in ("test_causal_mask", "test_flash_attention")]
    assert len(others) == 6 and all(v.passed for v in others), others


# --------------------------------------------------------------------------- the batch
PAYLOAD = ('<script>window.pwned = "script"</script>'
           '<img src="nowhere.png" onerror="window.pwned = \'onerror\'">'
           '<a href="javascript:window.pwned = \'link\'">click</a> '
           "[md link](javascript:window.pwned='markdown') <javascript:window.pwned='auto'>")
# right on the visible tests; on the hidden case on the meta device it raises the payload
RAISES = f"""def causal_mask(T, device=None):
    if str(device) == "meta":
        raise ValueError({PAYLOAD!r})
    return torch.ones(T, T, dtype=torch.bool).tril()
"""
PUBLISHES = f"""
from IPython.display import display
display({{"text/markdown": {PAYLOAD!r}, "text/plain": "md"}}, raw=True)
display({{"image/png": "iVBORw0KGgo=", "text/plain": "png"}},
        metadata={{"image/png": {{"width": "1' onerror='window.pwned = 7' x='"}}}}, raw=True)
"""


def _attacker(submissions: Path) -> None:
    answers = independent_answers(LESSON)
    folder = write_submission(LESSONS_DIR, submissions, "mallory", LESSON,
                              {**answers, "causal_mask": RAISES})
    path = folder / f"{LESSON}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    bogus = nbformat.v4.new_code_cell("pass")
    bogus.metadata["nbgrader"] = {"grade_id": PAYLOAD, "grade": False, "solution": False,
                                  "locked": False, "schema_version": 3}
    nb.cells[1:1] = [nbformat.v4.new_markdown_cell(PAYLOAD),
                     nbformat.v4.new_code_cell(PUBLISHES), bogus]
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from autograde.batch.grade import grade_batch
    from autograde.batch.worker import Limits

    root = tmp_path_factory.mktemp("escaping")
    _attacker(root / "submissions")
    result = grade_batch(root / "submissions", root / "out", workers=1, show_progress=False,
                         limits=Limits(cell_timeout_s=120, notebook_timeout_s=300))
    return result, root / "out"


@pytest.mark.slow
def test_the_batch_grades_the_attacker_with_the_message_kept(batch):
    result, out = batch
    assert result.ok, result.failures
    entry = json.loads((out / "scores.json").read_text())["mallory"][LESSON]["test_causal_mask"]
    assert entry["score"] == 0 and "ValueError" in entry["error"], entry
    assert "<script>" in entry["error"]  # scores.json is data: the text as it was


def _chromium() -> str:
    for candidate in (os.environ.get("NANOLM_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("browser test: no Chromium (apt-get install chromium, or NANOLM_CHROMIUM=PATH)")


FIND_ACTIVE = """() => {
    const found = [];
    for (const element of document.querySelectorAll("*")) {
        for (const attribute of element.attributes) {
            if (attribute.name.toLowerCase().startsWith("on")) {
                found.push(`handler ${element.tagName} ${attribute.name}=${attribute.value}`);
            }
        }
        for (const name of ["href", "src", "action", "formaction", "xlink:href"]) {
            const value = element.getAttribute(name);
            if (value === null) continue;
            let protocol = "";
            try { protocol = new URL(value, document.baseURI).protocol; } catch (e) {}
            if (protocol === "javascript:") found.push(`link ${element.tagName} ${value}`);
        }
    }
    for (const script of document.querySelectorAll("script")) {
        if (script.textContent.includes("pwned")) found.push("script " + script.textContent);
    }
    return {found, pwned: window.pwned === undefined ? null : String(window.pwned),
            text: document.body.innerText};
}"""


@pytest.mark.slow
def test_the_feedback_runs_nothing_of_the_student_in_chromium(batch):
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="browser test: playwright is not installed (dev extra)")
    executable = _chromium()
    result, _ = batch
    html = Path(result.answers[("mallory", LESSON)].feedback)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page()
            # the page's own CDN scripts (MathJax) are refused: only the file itself loads
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file:") else route.abort())
            page.on("dialog", lambda dialog: dialog.dismiss())
            page.goto(html.as_uri(), wait_until="load")  # every image has loaded or failed
            seen = page.evaluate(FIND_ACTIVE)
        finally:
            browser.close()
    assert seen["pwned"] is None, seen["pwned"]
    assert not seen["found"], seen["found"]
    # the verdict and the student's markdown are shown, as text
    assert seen["text"].count('<script>window.pwned = "script"</script>') >= 2, seen["text"]
    assert "raised ValueError" in seen["text"]


class _Tags(HTMLParser):
    """The tags and attributes of an HTML text."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, list]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))


def test_escaped_text_renders_as_the_text_and_nothing_else():
    """What the feedback's renderer makes of an escaped message: one paragraph holding
    exactly the message."""
    import html

    from nbconvert.filters.markdown import markdown2html

    from autograde.batch.markup import markdown_text

    text = PAYLOAD + " a_b *c* `d` | e \\ f &amp; ~~g~~ ![i](javascript:j)"
    rendered = markdown2html(markdown_text(text))
    assert [tag for tag, _ in _Tags(rendered).found] == ["p"], rendered
    assert html.unescape(rendered.strip().removeprefix("<p>").removesuffix("</p>")) == text


@pytest.mark.slow
def test_summary_and_report_hold_no_html_of_the_student(batch):
    import mistune

    _, out = batch
    for name in ("summary.md", "report.md"):
        text = (out / name).read_text()
        assert "window.pwned" in text, name  # the student's text is there ...
        tags = _Tags(mistune.html(text)).found  # ... and renders as text only
        active = [(tag, attrs) for tag, attrs in tags
                  if tag not in ("h1", "h2", "p", "ul", "li", "strong", "em", "code", "table",
                                 "thead", "tbody", "tr", "th", "td")
                  or any(key.startswith("on") or "javascript" in (value or "").lower()
                         for key, value in attrs)]
        assert not active, (name, active)
