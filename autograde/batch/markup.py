"""What a student controls, made safe where it enters Markdown or the feedback's HTML.

A student controls far more than the notebook's cells: the messages of the exceptions their
code raises and the values it returns (both quoted by the grader's verdicts), the names of
their functions (quoted by the static scan's flags), the names of the files they hand in, and
every output their kernel publishes, its metadata included. The grader's own texts quote
them, and those texts are Markdown: nbgrader renders a comment in the feedback with
``markdown2html``, which passes raw HTML and ``javascript:`` links straight through, and
``summary.md`` / ``report.md`` are read in Markdown viewers.

* :func:`markdown_text` is the one escape: every piece of text that may hold something a
  student wrote goes through it where it enters a Markdown document or a gradebook comment.
* :class:`SanitizeFeedback` cleans the autograded notebook before the feedback is made:
  nbconvert's ``SanitizeHTML`` (which sees HTML only) plus the outputs' metadata, image data
  and execution counts, which nbconvert's template writes into HTML attributes unescaped.
* :class:`FeedbackExporter` is nbgrader's feedback exporter whose Markdown rendering (the
  student's markdown cells and ``text/markdown`` outputs, the grader's comments) is cleaned
  after it is rendered: a Markdown link ``[x](javascript:...)`` is no HTML until then.
"""

from __future__ import annotations

import re
from pathlib import Path

from bleach import clean
from bleach.css_sanitizer import CSSSanitizer
from jinja2 import pass_context
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors.sanitize import SanitizeHTML
from traitlets import default

# underscores stay: inside a word (a name, a file name) CommonMark reads them as text, and at
# worst they make emphasis, never markup that runs
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|~])")
_HTML_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# what rendered Markdown may keep (links only to the web or mail, nothing that runs)
RENDERED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre",
    "s", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "ul"})
RENDERED_ATTRIBUTES = {"*": ["class", "id", "title"], "a": ["href"],
                       "img": ["src", "alt", "width", "height"], "ol": ["start"],
                       "td": ["style"], "th": ["style"]}
LINK_PROTOCOLS = ("http", "https", "mailto")
IMAGE_MIMES = ("image/png", "image/jpeg")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")


def markdown_text(text, one_line: bool = False) -> str:
    """``text`` as Markdown that renders as that text: no HTML (``& < >`` become entities),
    no link, image, code span, ``*`` emphasis, strike-through or table cell border (their
    characters are backslash-escaped). ``one_line``: newlines become spaces (a list item, a
    table cell)."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
    text = "".join(_HTML_SPECIAL.get(char, char) for char in text)
    return " ".join(text.splitlines()) if one_line else text


def feedback_templates() -> list[str]:
    """Where the feedback's templates are: nbgrader's, extended here to name each question
    (``templates/nanolm_feedback``)."""
    import nbgrader

    return [str(Path(__file__).resolve().parent / "templates"),
            str(Path(nbgrader.__file__).resolve().parent / "server_extensions" / "formgrader"
                / "templates")]


def clean_rendered_html(html: str) -> str:
    """HTML rendered from Markdown, with only :data:`RENDERED_TAGS` and
    :data:`RENDERED_ATTRIBUTES` kept (anything else is shown as text) and only links to
    :data:`LINK_PROTOCOLS` (or within the page)."""
    return clean(html, tags=RENDERED_TAGS, attributes=RENDERED_ATTRIBUTES,
                 protocols=LINK_PROTOCOLS, strip=False, strip_comments=True,
                 css_sanitizer=CSSSanitizer(allowed_css_properties=["text-align"]))


class FeedbackExporter(HTMLExporter):
    """nbgrader's feedback HTML with every Markdown rendering cleaned (module docstring)."""

    @pass_context
    def markdown2html(self, context, source):
        return clean_rendered_html(super().markdown2html(context, source))

    @default("template_paths")
    def _template_paths(self, prune=True, root_dirs=None):
        # the template folders themselves as well, so that our template extends nbgrader's
        # by its name ('feedback/index.html.j2'), not by a copy
        return super()._template_paths(prune, root_dirs) + list(self.extra_template_basedirs)


class SanitizeFeedback(SanitizeHTML):
    """nbconvert's SanitizeHTML, and for each code cell an integer execution count, and for
    each output only the integer ``width``/``height`` of its metadata and base64 image data
    (each lands in an HTML attribute of the feedback)."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type == "code":
            if type(cell.get("execution_count")) is not int:
                cell.execution_count = None
            for output in cell.outputs:
                _clean_output(output)
        return cell, resources


def _clean_output(output) -> None:
    if "execution_count" in output and type(output.execution_count) is not int:
        output.execution_count = None
    if "metadata" in output:
        output.metadata = {
            mime: {key: value for key, value in entry.items()
                   if key in ("width", "height") and type(value) is int}
            for mime, entry in output.metadata.items() if isinstance(entry, dict)}
    for mime in IMAGE_MIMES:
        data = output.get("data", {})
        if mime in data and not (isinstance(data[mime], str) and _BASE64.fullmatch(data[mime])):
            del data[mime]


def feedback_overrides() -> dict:
    """nbgrader config for the feedback: the student's and the grader's Markdown cleaned after
    it is rendered (:class:`autograde.batch.markup.FeedbackExporter`), and the feedback template
    that names each question (``autograde/templates/``)."""
    return {"GenerateFeedback": {"exporter_class": FeedbackExporter},
            "HTMLExporter": {"template_name": "nanolm_feedback",
                             "extra_template_basedirs": feedback_templates()}}
