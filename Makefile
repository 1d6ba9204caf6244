# Two commands, each doing its own set-up, idempotently:
#   make test   create .venv, install the project with its dev extra, run the whole test suite
#   make demo   the same set-up, then the main job: data, tokenizer, training, stories
# and the inner loop while changing code: make check (ruff and the fast tests, about a minute).
#
# torch: on a machine without an NVIDIA GPU the pinned CPU build (torch==2.13.0+cpu) is
# installed first, so the project's plain `torch>=2.3` is already satisfied and no CUDA build
# is downloaded. PyPI holds only the CUDA build of Linux torch (gigabytes of libraries that a
# CPU never uses); the CPU build comes from PyTorch's CPU index, added when it answers, or from
# the sources of your pip configuration (a mirror, a wheel folder) otherwise. With a GPU
# (nvidia-smi works) pip's default torch, a CUDA build, is installed instead. Override with
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#
# Everything else is pinned by constraints.txt: the exact versions the tests passed with (a
# `pip freeze` of a `make setup` venv, less the project and torch, which TORCH_SPEC picks), so
# a fresh clone gets the same packages next month. uv installs them when it is on PATH (many
# times faster than pip); pip does otherwise (INSTALLER=pip forces it). After changing
# pyproject.toml's dependencies, regenerate the file: make constraints. (A copy without the
# file, such as a student kit, installs the newest versions pyproject.toml allows.)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
ifeq ($(HAS_GPU),1)
TORCH_SPEC ?= torch>=2.3
else
# expanded only when torch is installed: one short probe of the CPU index
TORCH_SPEC ?= torch==2.13.0+cpu $(shell $(PYTHON) -c "import urllib.request as u; \
  u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" >/dev/null 2>&1 \
  && echo --extra-index-url $(TORCH_CPU_INDEX))
endif
STAMP := $(VENV)/.installed
CONSTRAINTS := $(wildcard constraints.txt)
INSTALLER ?= $(if $(shell command -v uv 2>/dev/null),uv,pip)
ifeq ($(INSTALLER),uv)
INSTALL := uv pip install --quiet --python $(BIN)/python
else
INSTALL := $(BIN)/python -m pip install --quiet
endif

.PHONY: setup test check test-clean-room test-grader-and-notebooks test-rest demo lab lab-instructor lint clean bench gpu-check constraints

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstall when the project's metadata or the pins change; otherwise this is a no-op. torch
# goes through pip, which reads the user's pip configuration and TORCH_SPEC's index options.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(INSTALL) $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS)) -e ".[dev]"
	touch $(STAMP)

# The pins, from the venv the tests passed in: everything installed but the project and torch.
constraints: setup
	{ echo "# make constraints: the versions the tests passed with (torch: see TORCH_SPEC)"; \
	  $(BIN)/python -m pip freeze --exclude-editable | \
	    grep -v -i -E '^(torch|nanolm|nvidia-|cuda-|triton)\b'; \
	} > constraints.txt

# The venv's bin goes first on PATH: nbgrader runs `alembic` and Jupyter kernels from there.
# Three runs: the test suite in two halves, and every solution notebook executed top to
# bottom in smoke mode (nbval, after the first half), with runs and prepared data in a
# temporary folder.
RUN_ENV := PATH="$(abspath $(BIN)):$$PATH" HF_HUB_OFFLINE=1 MPLBACKEND=Agg
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 -p no:cacheprovider
# The halves run side by side, each printing its report when it ends: most tests use one
# core (the models are tiny; tests/conftest.py sets one torch thread), so on a 2-core machine
# one pytest alone leaves a core idle. The first half is the grader's end-to-end batches and
# then the notebooks, the second everything else (a new test file lands there): a split
# that gives the two halves about the same running time.
# The user's Jupyter, IPython, matplotlib and hub settings never reach a test: empty folders
# in their place (tests/conftest.py does the same for the pytest runs).
settings_in = JUPYTER_CONFIG_DIR=$(1)/jupyter-config JUPYTER_DATA_DIR=$(1)/jupyter-data \
  IPYTHONDIR=$(1)/ipython MPLCONFIGDIR=$(1)/matplotlib HF_HOME=$(1)/huggingface
# the staged kit's browser walk (a kit built, set up and served three times, ~4 min) rides with
# the grader's batches: measured in a clean room, the halves then take about 16 and 17 minutes
GRADER_BATCHES := tests/integration/test_lessons.py tests/hostile \
  $(addprefix tests/integration/,test_autograde_batch.py test_one_bug_grading.py) \
  tests/browser/test_staged_kit_browser.py
TEST_HALVES := test-grader-and-notebooks test-rest

ifneq ($(wildcard tests),)
test: setup
	@echo "make test: $(TEST_HALVES) run side by side; each prints its report when it ends"
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(TEST_HALVES)

test-grader-and-notebooks: setup
	$(RUN_ENV) $(BIN)/python -m pytest -q -p no:cacheprovider $(GRADER_BATCHES)
	scratch=$$(mktemp -d) && $(RUN_ENV) NANOLM_SMOKE=1 NANOLM_PROGRESS=0 \
	  NANOLM_RUNS=$$scratch/runs NANOLM_CACHE=$$scratch/cache $(call settings_in,$$scratch) \
	  $(BIN)/python -m pytest -q $(NBVAL) solutions; status=$$?; rm -rf $$scratch; exit $$status

test-rest: setup
	$(RUN_ENV) $(BIN)/python -m pytest -q -p no:cacheprovider tests \
	  $(addprefix --ignore=,$(GRADER_BATCHES))

# The inner loop: ruff, then the fast layer, tests/unit: the library's and the grader's pieces
# in-process, no notebooks, nbgrader batches, student kits, services or training runs (those
# are tests/integration, tests/hostile and tests/browser). About a minute on 2 cores; make
# test runs every layer, this one included.
check: lint
	$(RUN_ENV) $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit
else
# A student kit has no tests/: `make test` self-checks the lessons of the kit's week in
# workspace/ (STAGE.json; it names the later ones it skips).
test: setup
	@test -d workspace || { echo "no workspace/ yet: run make lab first"; exit 1; }
	@# your own code on your own machine: without bubblewrap, the check runs unisolated
	@isolation=$$(command -v bwrap >/dev/null || echo --unsafe-no-isolation); \
	$(RUN_ENV) $(BIN)/python -m autograde check $$isolation workspace
endif

# The README's test command as a new user's machine runs it: a fresh clone of HEAD (commit
# first), a base interpreter that holds no packages (a venv made --without-pip from $(PYTHON)
# sees only the standard library), an empty HOME, and no environment but PATH, the data and
# the package sources.
# Run it before changing how the set-up works. NANOLM_DATA passes through, as CI sets it.
# The package sources pass through (a mirror, a wheel folder): they are where packages come
# from, not packages this machine has.
PIP_CONFIG_FILE ?= $(firstword $(wildcard $(HOME)/.config/pip/pip.conf $(HOME)/.pip/pip.conf))
pip_settings = $(foreach v,$(filter PIP_%,$(.VARIABLES)),$(if $(filter environment,$(origin $(v))),$(v)=$($(v))))
CLEAN_ROOM_PIP = $(pip_settings) $(if $(PIP_CONFIG_FILE),PIP_CONFIG_FILE=$(PIP_CONFIG_FILE))
CLEAN_ROOM_DATA ?= $(or $(NANOLM_DATA),$(wildcard $(abspath ../shared/data/tinystories/train-sample.txt)))
test-clean-room:
	room=$$(mktemp -d) && git clone -q . $$room/nanolm && $(PYTHON) -m venv --without-pip $$room/base \
	  && mkdir $$room/home && cd $$room/nanolm && start=$$(date +%s) \
	  && env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$$room/home LANG=C.UTF-8 \
	     $(if $(CLEAN_ROOM_DATA),NANOLM_DATA=$(CLEAN_ROOM_DATA)) $(CLEAN_ROOM_PIP) \
	     make test PYTHON=$$room/base/bin/python; status=$$?; \
	  echo "make test-clean-room: exit $$status after $$(( $$(date +%s) - start )) s in $$room"; \
	  rm -rf $$room; exit $$status

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m nanolm_lib.lab.demo

# A student's working copy: lessons/ (in a staged kit, those of its week) copied into
# $(WORKSPACE); never overwrites their work, but says which lessons the kit corrected since
# (`autograde update-lesson NN_slug` takes a correction, keeping the answers) and when to
# restart kernels after the kit was rebuilt.
# jupyter/student comes first on JUPYTER_CONFIG_PATH: nbgrader's Validate button, not the
# instructor's tools. `python -m jupyterlab` runs the venv's own server, whose kernels are the
# venv's Python, whatever `jupyter-lab` comes first on PATH. LAB_ARGS passes more options (the
# browser test sets port and token).
WORKSPACE ?= workspace
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_ENV = PATH="$(abspath $(BIN)):$$PATH"
lab_config = JUPYTER_CONFIG_PATH="$(abspath $(1))"
lab: setup
	$(BIN)/python -m autograde workspace "$(WORKSPACE)"
	$(LAB_ENV) $(call lab_config,jupyter/student) \
	  $(BIN)/python -m jupyterlab --ServerApp.root_dir="$(WORKSPACE)" $(ALLOW_ROOT) $(LAB_ARGS)

# The instructor's JupyterLab on the repository: Create Assignment, Formgrader (jupyter/instructor);
# nbgrader's gradebook, exchange and outputs stay in .nbgrader/.
lab-instructor: setup
	mkdir -p .nbgrader/exchange
	$(LAB_ENV) $(call lab_config,jupyter/instructor) \
	  $(BIN)/python -m jupyterlab --ServerApp.root_dir=. $(ALLOW_ROOT) $(LAB_ARGS)

# The notebooks too: ruff reads .ipynb (each code cell, IPython magics understood).
lint: setup
	$(BIN)/ruff check nanolm_lib autograde tests solutions lessons deploy

# BENCH_ARGS passes options on, e.g. make bench BENCH_ARGS=--quick (the smallest sizes)
bench: setup
	$(BIN)/nanolm bench all $(BENCH_ARGS)

# Proves the GPU path in at most 8 minutes on one GPU; everything lands in gpu-check/.
# Without a GPU: make gpu-check GPU_CHECK_ARGS=--dry-run (the plumbing, on the CPU).
gpu-check: setup
	$(RUN_ENV) $(BIN)/nanolm gpu-check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
