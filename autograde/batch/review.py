"""``python -m autograde review``: the graded batch in a browser, where the instructor reviews
each submission and sets a question's score (what ``python -m autograde override`` does).

A small HTTP server on 127.0.0.1 (the standard library's), with a secret token in its address
as Jupyter has, needed by every request, the form's included (so no other page can post to
it). Pages:

* ``/``: every submission's score (from the same source as every output,
  :func:`autograde.batch.results.class_view`), and the questions waiting for a hand grade;
* ``/submission/STUDENT/LESSON``: its questions (score, the grader's own score and message,
  the override standing on it), a form per question to set or remove the score, the
  submission's history, and its feedback as the student gets it;
* ``/feedback/STUDENT/LESSON.html``: that feedback, served with a policy that lets no
  script run (it is sanitised when made, :mod:`autograde.batch.markup`; this is a second line).

Every value shown is escaped. Setting a score calls :func:`autograde.batch.overrides.override`,
which writes every output again.
"""

from __future__ import annotations

import getpass
import hmac
import html
import re
import secrets
import sys
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from autograde.batch.overrides import override
from autograde.batch.results import class_view
from autograde.batch.state import Run
from autograde.course import GraderError

STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }
.waiting { color: #a60; font-weight: bold; } .message { max-width: 40em; font-size: 90%; }
.notice { background: #efe; padding: 0.5em; } .error { background: #fee; padding: 0.5em; }
iframe { width: 100%; height: 70vh; border: 1px solid #ccc; }
"""
FEEDBACK_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
NAME = re.compile(r"^[^/\\]+$")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _points(value) -> str:
    return "needs grading" if value is None else f"{value:g}"


class Review:
    """What the pages show and do, for the batch graded into ``out``."""

    def __init__(self, out: Path, db_url: str | None = None, by: str | None = None):
        self.out = Path(out).resolve()
        self.db_url = db_url or Run.load(self.out).gradebook(self.out)
        self.by = by or getpass.getuser()
        self.token = secrets.token_urlsafe(24)

    def link(self, path: str) -> str:
        return f"{path}?token={self.token}"

    def page(self, title: str, body: str, notice: str = "", error: str = "") -> str:
        notes = (f'<p class="notice" id="notice">{_e(notice)}</p>' if notice else "") + (
            f'<p class="error" id="error">{_e(error)}</p>' if error else "")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
                f"<style>{STYLE}</style></head><body><p><a href='{self.link('/')}'>All "
                f"submissions</a></p><h1>{_e(title)}</h1>{notes}{body}</body></html>")

    def index(self) -> str:
        view = class_view(self.out, self.db_url)
        head = "".join(f"<th>{_e(lesson)}</th>" for lesson in view.lessons)
        rows = []
        for student in view.students:
            cells = []
            for lesson in view.lessons:
                answer = view.answers.get((student, lesson))
                if answer is None:
                    cells.append("<td>-</td>")
                    continue
                score = sum(e["score"] for e in answer.scores.values())
                maximum = sum(e["max_score"] for e in answer.scores.values())
                waiting = view.needs_grading(student, lesson)
                mark = (f' <span class="waiting">{len(waiting)} to grade</span>'
                        if waiting else "")
                href = self.link(f"/submission/{quote(student)}/{quote(lesson)}")
                cells.append(f"<td><a href='{href}'>{score:g} / {maximum:g}</a>{mark}</td>")
            rows.append(f"<tr><th>{_e(student)}</th>{''.join(cells)}</tr>")
        body = (f"<table id='class'><tr><th>student</th>{head}</tr>{''.join(rows)}</table>"
                "<p>Scores as in grades.csv and report.md (the same gradebook).</p>")
        return self.page(f"Review: {self.out.name}", body)

    def submission(self, student: str, lesson: str, notice: str = "", error: str = "") -> str:
        view = class_view(self.out, self.db_url)
        answer = view.answers.get((student, lesson))
        if answer is None:
            raise LookupError(f"no graded submission {student}/{lesson}")
        rows = [self._question_row(student, lesson, grade_id, entry)
                for grade_id, entry in answer.scores.items()]
        history = [f"<li>{_e(ev['when'])} {_e(ev['question'])}: {_points(ev['old'])} -> "
                   f"{_points(ev['new'])} ({_e(ev['kind'])} by {_e(ev['by'])}: "
                   f"{_e(ev['why'])})</li>" for ev in view.history
                   if ev["student"] == student and ev["lesson"] == lesson]
        notes = [f"<li>limit: {_e(hit.get('message', ''))}</li>" for hit in answer.limits] + [
            f"<li>problem: {_e(problem)}</li>" for problem in answer.problems]
        score = sum(e["score"] for e in answer.scores.values())
        maximum = sum(e["max_score"] for e in answer.scores.values())
        feedback = self.out / "feedback" / student / f"{lesson}.html"
        source = self.link(f"/feedback/{quote(student)}/{quote(lesson)}.html")
        frame = (f"<iframe id='feedback' sandbox src='{source}'></iframe>"
                 if feedback.is_file() else "<p>No feedback (nothing was graded).</p>")
        body = (f"<p id='total'>Score: {score:g} / {maximum:g}</p>"
                "<table id='questions'><tr><th>question</th><th>score</th><th>grader</th>"
                "<th>the grader's message</th><th>override</th><th>set the score</th></tr>"
                + "".join(rows) + "</table>"
                + (f"<h2>Notes</h2><ul>{''.join(notes)}</ul>" if notes else "")
                + f"<h2>History</h2><ul id='history'>{''.join(history) or '<li>none</li>'}</ul>"
                + f"<h2>Feedback</h2>{frame}")
        return self.page(f"{student} / {lesson}", body, notice, error)

    def _question_row(self, student: str, lesson: str, grade_id: str, entry: dict) -> str:
        hidden = "".join(f"<input type='hidden' name='{name}' value='{_e(value)}'>"
                         for name, value in (("token", self.token), ("student", student),
                                             ("lesson", lesson), ("question", grade_id)))
        score = ("<span class='waiting'>needs grading</span>" if entry.get("needs_grading")
                 else f"{entry['score']:g}") + f" / {entry['max_score']:g}"
        grader = "by hand" if entry.get("manual") else _points(entry.get("autograded"))
        standing = entry.get("override")
        override_text = (f"{standing['points']:g} by {_e(standing['by'])}, "
                         f"{_e(standing['when'])}: {_e(standing['why'])}" if standing else "")
        remove = (f"<form method='post' action='/override'>{hidden}"
                  "<input type='hidden' name='remove' value='1'>"
                  "<input name='why' placeholder='why remove' required>"
                  "<button>Remove override</button></form>" if standing else "")
        form = (f"<form method='post' action='/override'>{hidden}"
                f"<input name='points' type='number' step='any' min='0' "
                f"max='{entry['max_score']:g}' required size='4' aria-label='points'> "
                "<input name='why' placeholder='why' required aria-label='why'> "
                "<button>Set score</button></form>" + remove)
        return (f"<tr id='q-{_e(grade_id)}'><th>{_e(grade_id)}</th><td class='score'>{score}</td>"
                f"<td>{grader}</td><td class='message'>{_e(entry.get('error') or '')}</td>"
                f"<td class='override'>{override_text}</td><td>{form}</td></tr>")

    def set_score(self, form: dict[str, str]) -> tuple[str, str]:
        """The override a form asks for; returns (student, lesson) and what changed."""
        student, lesson = form.get("student", ""), form.get("lesson", "")
        remove = form.get("remove") == "1"
        points = None
        if not remove:
            try:
                points = float(form.get("points", ""))
            except ValueError:
                raise GraderError(f"points {form.get('points', '')!r}: a number") from None
        return override(self.out, student, lesson, form.get("question", ""), points,
                        form.get("why", ""), by=self.by, db_url=self.db_url, remove=remove)


def _handler(review: Review):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # one line per request, on stderr
            sys.stderr.write(f"review: {self.command} {urlsplit(self.path).path}\n")

        def _authorised(self, token: str) -> bool:
            return hmac.compare_digest(token.encode(), review.token.encode())

        def _send(self, status: int, body: str, policy: str | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy",
                             policy or "default-src 'none'; style-src 'unsafe-inline'; "
                                       "frame-src 'self'; form-action 'self'")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            if not self._authorised(query.get("token", "")):
                return self._send(403, "<p>Forbidden: open the address review printed.</p>")
            parts = [part for part in url.path.split("/") if part]
            try:
                if not parts:
                    return self._send(200, review.index())
                if len(parts) == 3 and parts[0] == "submission":
                    return self._send(200, review.submission(
                        *_names(parts[1:]), notice=query.get("notice", ""),
                        error=query.get("error", "")))
                if len(parts) == 3 and parts[0] == "feedback" and parts[2].endswith(".html"):
                    student, lesson = _names([parts[1], parts[2].removesuffix(".html")])
                    path = review.out / "feedback" / student / f"{lesson}.html"
                    return self._send(200, path.read_text(), policy=FEEDBACK_POLICY)
            except (LookupError, OSError) as error:
                return self._send(404, review.page("Not found", f"<p>{_e(error)}</p>"))
            return self._send(404, review.page("Not found", ""))

        def do_POST(self):
            length = min(int(self.headers.get("Content-Length") or 0), 100_000)
            form = {key: values[0] for key, values
                    in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
            if urlsplit(self.path).path != "/override" or not self._authorised(
                    form.get("token", "")):
                return self._send(403, "<p>Forbidden.</p>")
            student, lesson = form.get("student", ""), form.get("lesson", "")
            try:
                message, key = review.set_score(form), "notice"
            except GraderError as error:
                message, key = str(error), "error"
            self.send_response(303)
            self.send_header("Location", review.link(
                f"/submission/{quote(student)}/{quote(lesson)}") + f"&{key}={quote(message)}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def _names(parts: list[str]) -> tuple[str, str]:

    names = [unquote(part) for part in parts]
    if not all(NAME.match(name) and name not in (".", "..") for name in names):
        raise LookupError("not a student or lesson name")
    return names[0], names[1]


def serve(out: Path, port: int = 0, db_url: str | None = None, by: str | None = None,
          open_browser: bool = True) -> None:
    """Serve the review of ``out`` on 127.0.0.1 until interrupted; prints the address."""
    review = Review(out, db_url, by)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(review))
    address = f"http://127.0.0.1:{server.server_port}{review.link('/')}"
    print(f"reviewing {review.out} at {address}", flush=True)
    print("(Ctrl-C stops it; every score set here is in history.jsonl and report.md)",
          flush=True)
    if open_browser:
        webbrowser.open(address)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
