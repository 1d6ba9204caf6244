"""Every command the README shows runs in a test, so that a command that changes shape breaks
a test and not a user. :data:`WHERE` names the test that runs each one (at smoke size where it
is long); the commands no other test runs are run here."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = r"(?:\S+=\S+ )*(make|nanolm|\.venv/bin/nanolm|\.venv/bin/python -m autograde|python -m autograde|torchrun|conda|pip|\.venv/bin/jupyterhub|jupyterhub)\b"

# README command -> the tests that run it ("file::test"), or why none can
WHERE: dict[str, list[str]] = {
    "make demo": ["integration/test_cli.py::test_make_demo_runs_with_neither_the_hub_nor_a_local_copy",
                  "integration/test_cli.py::test_demo_trains_then_reuses_the_finished_run"],
    "make test": ["CI: .ci/run runs it on every change"],
    "make check": ["integration/test_make_check.py::test_make_check_runs_ruff_then_the_unit_layer_which_holds_no_slow_test"],
    "make test-grader-and-notebooks": ["CI: make test runs it"],
    "make test-clean-room": ["by hand before changing the set-up: it is make test itself, run "
                             "from a fresh clone (make test in a test would run the suite twice)"],
    "make test-rest": ["CI: make test runs it"],
    "make lab": ["browser/test_jupyterlab_student.py::test_lesson00_shows_only_the_students_tools_and_runs_all_without_error"],
    "make lab LAB_ARGS": ["browser/test_jupyterlab_student.py::test_lesson00_shows_only_the_students_tools_and_runs_all_without_error"],
    "make lab-instructor": ["integration/test_readme_commands.py::test_make_lab_instructor_serves_the_formgrader"],
    "make setup": ["unit/test_project.py::test_make_setup_installs_the_pinned_cpu_torch_first_without_a_gpu",
                   "integration/test_staged_kit.py::test_kit_holds_no_body_of_a_later_graded_function"],
    "make setup TORCH_SPEC": ["unit/test_project.py::test_make_setup_installs_the_pinned_cpu_torch_first_without_a_gpu"],
    "make constraints": ["integration/test_readme_commands.py::test_make_constraints_pins_what_the_venv_holds"],
    "make gpu-check": ["integration/test_gpu_check_dry_run.py::test_dry_run_writes_the_folder_the_table_and_the_json"],
    "make gpu-check GPU_CHECK_ARGS": ["integration/test_gpu_check_dry_run.py::test_dry_run_writes_the_folder_the_table_and_the_json"],
    "nanolm prepare --data": ["integration/test_cli.py::test_prepare_train_sample_info_end_to_end"],
    "nanolm train --preset --out": ["integration/test_cli.py::test_prepare_train_sample_info_end_to_end"],
    "nanolm train --preset --data": ["integration/test_gpu_check_dry_run.py::test_dry_run_writes_the_folder_the_table_and_the_json"],
    "nanolm ablate": ["integration/test_modern_lab.py::test_nanolm_ablate_writes_its_table"],
    "nanolm sample --checkpoint --prompt --top-k --num": ["integration/test_cli.py::test_prepare_train_sample_info_end_to_end"],
    "nanolm sample --seed": ["integration/test_cli.py::test_prepare_train_sample_info_end_to_end"],
    "nanolm info": ["integration/test_cli.py::test_prepare_train_sample_info_end_to_end"],
    "nanolm eval --data": ["unit/test_evaluate.py::test_bits_per_byte_of_a_text_file_predicts_every_token_once"],
    "nanolm bench all": ["integration/test_readme_commands.py::test_make_bench_runs_every_benchmark"],
    "nanolm bench tokenizer": ["integration/test_tokenizer_benchmark.py::test_quick_tokenizer_benchmark"],
    "nanolm bench attention": ["integration/test_attention_benchmark.py::test_attention_benchmark_quick"],
    "nanolm bench train": ["integration/test_cli.py::test_bench_train_quick_writes_results"],
    "nanolm bench train --baseline": ["unit/test_baseline_benchmark.py::test_bench_train_baseline_and_profile_write_their_tables"],
    "nanolm bench train --profile": ["unit/test_baseline_benchmark.py::test_bench_train_baseline_and_profile_write_their_tables"],
    "nanolm bench train --compile": ["unit/test_compiling.py::test_without_a_compiler_the_demo_trains_eagerly_and_quietly"],
    "nanolm bench generate": ["integration/test_attention_benchmark.py::test_generate_benchmark_quick"],
    "nanolm gpu-check": ["integration/test_gpu_check_dry_run.py::test_dry_run_writes_the_folder_the_table_and_the_json"],
    "nanolm gpu-check --dry-run": ["integration/test_gpu_check_dry_run.py::test_dry_run_writes_the_folder_the_table_and_the_json"],
    "torchrun --nproc_per_node": ["integration/test_ddp.py::test_two_gloo_processes_train_in_step_and_only_rank_0_writes"],
    "autograde check": ["integration/test_student_kit_and_self_check.py::test_check_runs_visible_tests_only"],
    "autograde submit --student": ["unit/test_autograde_pieces.py::test_submit_zip_round_trips_through_collect"],
    "autograde release": ["integration/test_release.py::test_a_release_with_other_rounding_leaves_the_committed_lessons_unchanged"],
    "autograde release --check": ["integration/test_release.py::test_committed_lessons_are_up_to_date"],
    "autograde grade --out --workers": ["integration/test_autograde_batch.py::test_batch_finishes_and_well_behaved_students_are_unaffected"],
    "autograde grade --out --lms": ["integration/test_lms.py::test_grade_command_grades_a_canvas_download_end_to_end"],
    "autograde grade --out --db --shard": ["integration/test_classroom.py::test_two_shards_write_one_postgresql_gradebook_at_once"],
    "autograde grade --out --db --merge": ["integration/test_classroom.py::test_two_shards_write_one_postgresql_gradebook_at_once"],
    "autograde grade --out --db --slurm --shards": ["integration/test_classroom.py::test_slurm_array_grades_in_shards_and_reruns_a_shard_that_died",
                                                    "integration/test_classroom.py::test_two_shards_write_one_postgresql_gradebook_at_once"],
    "jupyterhub -f": ["browser/test_jupyterhub_course.py::test_two_students_submit_through_the_exchange_and_each_reads_only_their_own_feedback"],
    "autograde exchange-release --course --exchange": ["browser/test_jupyterhub_course.py::test_two_students_submit_through_the_exchange_and_each_reads_only_their_own_feedback"],
    "autograde grade --from-exchange --exchange --out": ["browser/test_jupyterhub_course.py::test_two_students_submit_through_the_exchange_and_each_reads_only_their_own_feedback"],
    "autograde bench --shards --students --lessons": ["integration/test_readme_commands.py::test_autograde_bench_shards_grades_in_shards_and_merges"],
    "autograde bench --students --workers": ["integration/test_readme_commands.py::test_autograde_bench_grades_a_class_and_writes_its_table"],
    "autograde student-kit --week": ["integration/test_staged_kit.py::test_kit_holds_no_body_of_a_later_graded_function",
                                     "integration/test_staged_kit.py::test_the_week_never_ships_its_own_lesson"],
    "autograde update-lesson": ["integration/test_staged_kit.py::test_make_lab_copies_the_week_and_announces_corrections_and_rebuilds"],
    "autograde bench": ["integration/test_readme_commands.py::test_autograde_bench_grades_a_class_and_writes_its_table"],
    "autograde review --out": ["browser/test_review_browser.py::test_review_one_submission_and_override_in_the_browser"],
    "autograde override --why --out": ["integration/test_review.py::test_overrides_reach_every_output_and_stand_through_regrades"],
    "conda env": ["unit/test_project.py::test_environment_yml_matches_pyproject (no conda here: "
                  "the file is read and held against pyproject.toml)"],
    "pip install": ["unit/test_project.py::test_make_setup_installs_the_pinned_cpu_torch_first_without_a_gpu"],
}


def command_key(line: str) -> str | None:
    """``make lab LAB_ARGS=...`` -> ``make lab LAB_ARGS``; ``nanolm bench train --profile``
    -> ``nanolm bench train --profile``: the program, its subcommand, and the option names."""
    match = re.match(PROGRAMS, line.strip())
    if not match:
        return None
    program = match.group(1).split("/")[-1].replace("python -m ", "").replace("-m ", "")
    try:
        words = shlex.split(line.strip()[match.end():])
    except ValueError:
        return None
    if not words:
        return None  # the program's bare name, in prose
    key = [program]
    for index, word in enumerate(words):
        if word.startswith("--"):
            key.append(word.split("=")[0])
        elif re.fullmatch(r"[A-Z_]+=.*", word):
            key.append(word.split("=")[0])
        elif index == 0 or (program == "nanolm" and index == 1 and words[0] == "bench"):
            key.append(word)
    return " ".join(key)


def readme_commands() -> set[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line.split("  #")[0] for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.splitlines()]
    lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return {key for key in map(command_key, lines) if key}


def test_every_readme_command_has_a_test_that_runs_it():
    missing = sorted(readme_commands() - set(WHERE))
    assert not missing, f"README commands that no test runs: {missing} (add them to WHERE)"
    for command, places in WHERE.items():
        for place in places:
            if "::" not in place:
                continue
            path, name = place.split(" ")[0].split("::")
            source = (REPO / "tests" / path).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", source, re.M), (command, place)


def test_command_keys():
    assert command_key("NANOLM_DATA=x.txt make demo") == "make demo"
    assert command_key('make lab LAB_ARGS="--port=8890"') == "make lab LAB_ARGS"
    assert command_key(".venv/bin/nanolm bench train --profile") == "nanolm bench train --profile"
    assert command_key(".venv/bin/python -m autograde grade S --out g/ --workers 2") == \
        "autograde grade --out --workers"
    assert command_key("echo make") is None


def _make(*args, cwd=REPO, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_make_bench_runs_every_benchmark(tmp_path):
    done = _make("bench", f"BENCH_ARGS=--quick --out {tmp_path}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert {p.stem for p in tmp_path.glob("*.json")} >= {"tokenizer", "attention", "train",
                                                          "generate"}


def _bench(folder, *options: str) -> subprocess.CompletedProcess:
    """``autograde bench`` on one student's lesson 00, run in ``folder``; it must succeed."""
    done = subprocess.run([sys.executable, "-m", "autograde", "bench", "--students", "1",
                           *options, "--lessons", "00_setup"], cwd=folder,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_autograde_bench_grades_a_class_and_writes_its_table(tmp_path):
    done = _bench(tmp_path, "--workers", "1")
    assert "s_per_notebook" in done.stdout
    results = json.loads((tmp_path / "bench-results" / "autograde.json").read_text())
    steps = results["by_lesson_s"]["00_setup"]
    assert steps["all"] >= steps["kernel and cells (nbgrader autograde)"] > 0, steps


@pytest.mark.slow
def test_autograde_bench_shards_grades_in_shards_and_merges(tmp_path):
    done = _bench(tmp_path, "--shards", "1")
    assert "overhead_per_shard_s" in done.stdout
    results = json.loads((tmp_path / "bench-results" / "autograde-shards.json").read_text())
    assert [row["shards"] for row in results["rows"]] == [1]
    assert results["rows"][0]["notebooks"] == 1 and results["rows"][0]["cpu_s"] > 0
    steps = results["phases_s_per_nb"]["1"]
    assert {"kernel and cells (nbgrader autograde)", "feedback", "gradebook write"} <= set(steps)
    assert all(seconds >= 0 for seconds in steps.values()) and results["rows"][0]["disk_kb_per_nb"]


def test_make_constraints_pins_what_the_venv_holds(tmp_path):
    """`make constraints` in a copy of the project (the Makefile's own set-up is up to date:
    files copied with their times): the same packages as the committed pins."""
    venv = Path(sys.executable).parent.parent
    if not (venv / ".installed").is_file():
        pytest.skip(f"{venv} was not made by `make setup`")
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO / name, tmp_path / name)
    os.utime(venv / ".installed")  # set up already: nothing is reinstalled
    done = _make("constraints", f"VENV={venv}", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def names(path):
        return {line.split("==")[0].lower() for line in path.read_text().splitlines()
                if "==" in line}

    assert names(tmp_path / "constraints.txt") == names(REPO / "constraints.txt")


def test_make_clean_removes_the_venv_and_build_files(tmp_path):
    shutil.copy2(REPO / "Makefile", tmp_path / "Makefile")
    for made in (".venv/bin", "nanolm.egg-info", ".pytest_cache"):
        (tmp_path / made).mkdir(parents=True)
    done = _make("clean", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile"]


@pytest.mark.slow
def test_make_lab_instructor_serves_the_formgrader(tmp_path):
    """`make lab-instructor` starts JupyterLab with every nbgrader part: the formgrader
    answers."""
    import urllib.request

    sys.path.insert(0, str(REPO / "tests" / "browser"))
    from lab_server import LabServer

    lab = LabServer(tmp_path / "unused", tmp_path, tmp_path / "lab.log", target="lab-instructor")
    try:
        lab.wait_ready(120)
        with urllib.request.urlopen(lab.page("formgrader/"), timeout=60) as page:
            assert page.status == 200 and "formgrader" in page.read().decode().lower()
    finally:
        assert lab.stop() == []
