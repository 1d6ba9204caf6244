"""Run folders and checkpoints: what a training run leaves on disk, and how it is read back.

A run folder (``TrainConfig.out_dir``) holds ``model.ckpt`` (the latest good checkpoint),
``tokenizer.json``, ``config.json``, ``metrics.jsonl`` and ``plot.png``.

    save_checkpoint, load_checkpoint      plain data only, written atomically
    save_model                            a run folder of a trained model alone
    CheckpointWriter                      the same, written by a background thread
    load_model                            (model, tokenizer) from a checkpoint or run folder
    read_metrics                          the records of metrics.jsonl
    RunFolder                             what :func:`nanolm_lib.lab.trainer.train` writes, and when

A checkpoint holds tensors and plain Python data only, so that loading it runs no code from
the file (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import tempfile
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from nanolm_lib.course.modern import build_model, config_from_dict, family_of
from nanolm_lib.course.plotting import plot_history
from nanolm_lib.course.tokenizer import load_tokenizer
from nanolm_lib.errors import CheckpointError
from nanolm_lib.utils import atomic_write

CHECKPOINT_FORMAT = "nanolm-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "model.ckpt"



def tokenizer_to_text(tokenizer) -> str:
    """The tokenizer's own file format, as text (it travels inside the checkpoint)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        tokenizer.save(str(path))
        return path.read_text(encoding="utf-8")


def tokenizer_from_text(text: str):
    """Inverse of :func:`tokenizer_to_text`."""

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        path.write_text(text, encoding="utf-8")
        return load_tokenizer(str(path))


def save_checkpoint(path, *, model, optimizer=None, scaler=None, step: int = 0,
                    tokens: int = 0, model_config=None, train_config=None, tokenizer=None,
                    rng: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temp file + ``os.replace``).

    Everything in it is a tensor or plain Python data (configs as dicts, the tokenizer as
    its JSON text), so :func:`load_checkpoint` can use ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    state = checkpoint_state(model=model, optimizer=optimizer, scaler=scaler, step=step,
                             tokens=tokens, model_config=model_config,
                             train_config=train_config, tokenizer=tokenizer, rng=rng,
                             extra=extra)
    atomic_write(path, lambda temp: torch.save(state, temp))
    return path


def save_model(out_dir, model, tokenizer, *, step: int = 0, tokens: int = 0) -> Path:
    """A run folder holding just a trained model: ``model.ckpt`` (the weights, the model's
    config and the tokenizer), enough for :func:`load_model` and ``nanolm eval``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out_dir / CHECKPOINT_NAME, model=model, step=step, tokens=tokens,
                           tokenizer=tokenizer)


def checkpoint_state(*, model, optimizer=None, scaler=None, step: int = 0, tokens: int = 0,
                     model_config=None, train_config=None, tokenizer=None,
                     rng: dict | None = None, extra: dict | None = None) -> dict:
    """What :func:`save_checkpoint` writes, as a dict (tensors still where they live)."""

    model_config = model_config if model_config is not None else getattr(model, "config", None)
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "family": family_of(model_config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "step": int(step),
        "tokens": int(tokens),
        "model_config": config_dict(model_config),
        "train_config": config_dict(train_config),
        "tokenizer": tokenizer_to_text(tokenizer) if tokenizer is not None else None,
        "rng": rng or {},
        "extra": extra or {},
        "torch": str(torch.__version__),
    }


def cpu_snapshot(state):
    """A copy of ``state`` (nested dicts, lists, tuples, tensors) whose tensors are CPU copies
    that training can no longer change. Views of one tensor stay views of one copy (a tied
    head is stored once, as ``torch.save`` stores the live model)."""
    copies: dict = {}

    def copy(value):
        if isinstance(value, torch.Tensor):
            key = (value.untyped_storage().data_ptr(), value.storage_offset(),
                   tuple(value.shape), value.stride(), value.dtype, value.device)
            if key not in copies:
                copies[key] = value.detach().to("cpu", copy=True)
            return copies[key]
        if isinstance(value, dict):
            return {k: copy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(copy(v) for v in value)
        return value

    return copy(state)


class CheckpointWriter:
    """Writes checkpoints on a background thread, so that a step never waits for the disk.

    :meth:`save` copies the state to the CPU (the training loop may change the live tensors
    right after) and hands the file write to a thread; the write is atomic, as in
    :func:`save_checkpoint`. The previous write is joined before the next one starts and by
    :meth:`join`; a write that failed raises there.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: Path, state: dict) -> None:
        self.join()
        snapshot = cpu_snapshot(state)

        def write():
            try:
                atomic_write(Path(path), lambda temp: torch.save(snapshot, temp))
            except BaseException as error:  # reported by join(), in the training thread
                self._error = error

        self._thread = threading.Thread(target=write, name="nanolm-checkpoint", daemon=False)
        self._thread.start()

    def join(self) -> None:
        """Wait for the write in progress; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def config_dict(config) -> dict | None:
    """A config dataclass (or mapping) as the plain dict a checkpoint and config.json hold."""
    if config is None:
        return None
    return asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def checkpoint_path(path) -> Path:
    """A checkpoint file, or the ``model.ckpt`` of a run folder."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (a file or a run folder).

    Never runs code from the file (``weights_only=True``). Raises :class:`CheckpointError`,
    naming the file, when it is missing, truncated, not a NanoLM checkpoint, or holds pickled
    objects.
    """
    path = checkpoint_path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about legacy files; the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises many types for a file it cannot read
        unsafe = [line.split("Unsupported global:", 1)[1].split(" was not")[0].strip()
                  for line in str(error).splitlines() if "Unsupported global:" in line]
        if isinstance(error, pickle.UnpicklingError) and unsafe:
            raise CheckpointError(
                f"checkpoint {path}: refused, it holds objects other than tensors and plain "
                f"data ({unsafe[0]}), and loading them could run code") from None
        raise CheckpointError(
            f"checkpoint {path}: unreadable, truncated or not a torch file "
            f"({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a NanoLM checkpoint "
                              f"(no '{CHECKPOINT_FORMAT}' marker)")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {state['version']} is newer "
                              f"than this nanolm_lib reads ({CHECKPOINT_VERSION})")
    return state


FAMILY_NAMES = {"gpt": "a classic GPT (lesson 05)", "modern": "a ModernGPT (lesson 08)",
                "bigram": "a bigram model (lesson 02)"}


def checkpoint_family(state: dict, expected: str | None = None, path=None) -> str:
    """The model family a checkpoint holds ("gpt" or "modern"; files older than the field
    hold a GPT). With ``expected``, a different family is a one-line :class:`CheckpointError`."""
    family = state.get("family", "gpt")
    if family not in FAMILY_NAMES:
        raise CheckpointError(f"checkpoint {path or ''}: unknown model family {family!r} "
                              f"(this nanolm_lib reads {', '.join(FAMILY_NAMES)})")
    if expected is not None and family != expected:
        raise CheckpointError(f"checkpoint {path or ''}: holds {FAMILY_NAMES[family]}, not "
                              f"{FAMILY_NAMES.get(expected, expected)} (family={family!r})")
    return family


def model_from_checkpoint(state: dict, device: str = "cpu", family: str | None = None):
    """Build the model that ``state`` (from :func:`load_checkpoint`) describes, with its
    weights: a GPT or a ModernGPT, as the checkpoint's family says (``family``: the one the
    caller expects, refused in one line otherwise)."""

    config = config_from_dict(checkpoint_family(state, family), state["model_config"])
    model = build_model(config)
    model.load_state_dict(state["model"])
    return model.to(device)


def load_model(path, device: str = "cpu", family: str | None = None):
    """``(model, tokenizer)`` from a checkpoint file or a run folder; the model in eval mode.
    ``family`` ("gpt" or "modern"): refuse, in one line, a checkpoint of the other family."""
    path = checkpoint_path(path)
    state = load_checkpoint(path)
    checkpoint_family(state, family, path)
    model = model_from_checkpoint(state, device).eval()
    if state.get("tokenizer"):
        tokenizer = tokenizer_from_text(state["tokenizer"])
    elif (path.parent / "tokenizer.json").exists():

        tokenizer = load_tokenizer(str(path.parent / "tokenizer.json"))
    else:
        raise CheckpointError(f"checkpoint {path}: holds no tokenizer, and there is no "
                              f"tokenizer.json beside it")
    return model, tokenizer


def read_metrics(path) -> list[dict]:
    """The records of a run's ``metrics.jsonl`` (a file or a run folder); [] when absent."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: the rest is redone
                break
    return records


class RunFolder:
    """What a training run writes into its folder, and when (``out_dir`` None: nothing).

    Only the main process of a job writes (``writes=False`` on the others); every process
    reads the checkpoint on resume. ``last_saved`` is the step of the checkpoint on disk
    (None before the first), which the messages on Ctrl-C and divergence report.
    """

    def __init__(self, out_dir, writes: bool = True):
        self.path = Path(out_dir) if out_dir else None
        self.writes = writes and self.path is not None
        self.checkpoint_file = self.path / CHECKPOINT_NAME if self.path is not None else None
        self.last_saved: int | None = None
        self._writer = CheckpointWriter()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_file is not None and self.checkpoint_file.exists()

    def refuse_overwrite(self, resume: bool, overwrite: bool) -> None:
        """A folder that holds a run is resumed or replaced only when asked to."""
        if self.has_checkpoint() and not (resume or overwrite):
            raise FileExistsError(f"{self.path} already holds a run ({CHECKPOINT_NAME}); "
                                  "resume it (resume=True, --resume) or start over "
                                  "(overwrite=True, --fresh)")

    def start(self, history: list[dict], *, model_config, train_config, data_info: dict,
              tokenizer) -> None:
        """Create the folder; metrics.jsonl as ``history`` (on resume, drops the records past
        the checkpoint), config.json, and tokenizer.json."""
        if not self.writes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(entry) + "\n" for entry in history)
        atomic_write(self.path / "metrics.jsonl", lambda temp: temp.write_text(text))
        (self.path / "config.json").write_text(json.dumps(
            {"model": config_dict(model_config), "train": config_dict(train_config), "data": data_info},
            indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(str(self.path / "tokenizer.json"))

    def append(self, entry: dict) -> None:
        """Add one record to metrics.jsonl."""
        if self.writes:
            with open(self.path / "metrics.jsonl", "a") as file:
                file.write(json.dumps(entry) + "\n")

    def plot(self, history: list[dict]) -> None:
        if self.writes:

            plot_history(history, self.path / "plot.png")

    def save(self, state: dict, step: int) -> None:
        """Write the checkpoint of ``step`` in the background (see :class:`CheckpointWriter`)."""
        if self.writes:
            self._writer.save(self.checkpoint_file, state)
            self.last_saved = step

    def join(self) -> None:
        """Wait for the checkpoint being written; raise its error, if it failed."""
        self._writer.join()
