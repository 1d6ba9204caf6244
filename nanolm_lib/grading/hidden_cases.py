"""The grader's run of one lesson's hidden cases, on the student's solution cells alone.

``python -m nanolm_lib.grading.hidden_cases PROGRAM.json`` runs in a sandbox the grader starts after
the notebook itself has run (``autograde/sandbox/verdict.py`` writes the program and reads what this
leaves). The program names the lesson, the cases folder, the records folder and the cells, in
the released lesson's order: its set-up cells as released, then each solution cell as the
student wrote it. They run in one IPython shell, as a kernel would run them (imports, magics,
a solution cell that uses an earlier one, module-level constants), but nothing else of the
notebook does: a cell the student added never runs here, and the notebook's kernel never sees
the cases or the records.

For each question of the lesson this saves the outputs of every case, question by question, so
a question that hangs or crashes the run costs itself and the questions after it, never the
ones before. Why a cell raised goes into ``_cells.json`` beside the records, for the grader's
message (it changes no score). A question with a memory budget (``data_budget_mb``) gets it
here: ``RLIMIT_DATA`` is set, hard and soft, to the memory in use after the set-up cells plus
the budget, before the first solution cell runs, and stays for the rest of the run.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path

import torch

from nanolm_lib.grading.question_base import ERROR_KEY, QUESTIONS
from nanolm_lib.grading.record import load_cases, save_record

CELL_ERRORS = "_cells.json"


class QuestionTimeout(BaseException):
    """A question ran past its time (BaseException: ``except Exception`` does not stop it)."""


def data_in_use() -> int:
    """Bytes of private writable memory this process has mapped (what RLIMIT_DATA counts)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmData in /proc/self/status")


def limit_data(budget_mb: int) -> None:
    """From now on, at most ``budget_mb`` more private memory for this process, for good."""
    torch.ones(64, 64) @ torch.ones(64, 64)  # torch's thread pool exists before the baseline
    limit = data_in_use() + (budget_mb << 20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def run_cells(shell, cells: list[dict]) -> dict[str, str]:
    """Run each cell in ``shell``; grade_id -> the error of each cell that raised."""
    errors = {}
    for cell in cells:
        result = shell.run_cell(cell["source"], store_history=False)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            errors[cell["grade_id"]] = f"{type(error).__name__}: {error}"[:600]
    return errors


def run_question(namespace: dict, spec, cases: list[dict], seconds: int) -> list:
    """The outputs of every case, or the cases not reached marked as timed out."""
    def stop(*_):
        raise QuestionTimeout

    outputs: list = []
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        for case in cases:
            with torch.random.fork_rng(devices=[]):
                outputs.append(spec.run_case(namespace, case))
    except QuestionTimeout:
        message = f"the question's cases ran longer than {seconds} s together"
        outputs += [{ERROR_KEY: message}] * (len(cases) - len(outputs))
    finally:
        signal.alarm(0)
    return outputs


def make_shell():
    """An IPython shell without a kernel; ``%matplotlib inline`` (every set-up cell's first
    line) selects the backend without a GUI event loop, which a shell without one would
    refuse."""
    from IPython.core.interactiveshell import InteractiveShell

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):
            pass

    return Shell.instance(colors="nocolor")


def main(argv: list[str]) -> int:
    program = json.loads(Path(argv[0]).read_text())
    lesson, records = program["lesson"], Path(program["records_dir"])
    questions = QUESTIONS.get(lesson, {})
    shell = make_shell()
    setup = [c for c in program["cells"] if c["kind"] == "setup"]
    errors = run_cells(shell, setup)
    budget = max((spec.data_budget_mb for spec in questions.values()), default=0)
    if budget:
        limit_data(budget)
    errors.update(run_cells(shell, [c for c in program["cells"] if c["kind"] == "solution"]))
    (records / lesson).mkdir(parents=True, exist_ok=True)
    (records / lesson / CELL_ERRORS).write_text(json.dumps(errors))
    for name in program.get("questions") or sorted(questions):
        spec = questions[name]
        cases = load_cases(program["cases_dir"], lesson, name)
        outputs = run_question(shell.user_ns, spec, cases, int(program["question_timeout_s"]))
        save_record(records, lesson, name, outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
