"""A failing test cell as a student sees it: in a real Jupyter kernel."""

from __future__ import annotations

import re

import pytest


@pytest.mark.slow
def test_a_failure_in_a_real_kernel_shows_the_message_first_and_no_checker_frames(tmp_path):
    """What a student sees under a failing test cell: IPython's traceback of a real kernel."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    cell = ("from nanolm_lib.grading.checks import check_equal\n"
            "def _compare():\n"
            "    check_equal([1, 2], [1, 3], 'f()', hint='add one')\n"
            "_compare()\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources={
        "metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError):
        client.execute()
    (error,) = [out for out in notebook.cells[0].outputs if out.output_type == "error"]
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error.traceback))
    assert error.ename == "CheckFailed"
    assert text.startswith("CheckFailed: f(): first difference at position 1"), text
    assert "Look at: add one" in text.splitlines()[1]
    assert "checks.py" not in text, text
    assert "_compare()" in text  # the test cell's own lines follow the message
