"""Stories in, batches out (lesson 02).

* :func:`load_stories` reads TinyStories from the hub, from a local copy (``.txt`` in the
  dataset's own format, ``.json``/``.jsonl``/``.parquet``, or a folder of split files), or,
  with neither at hand, from :func:`make_stories`, the project's own story generator.
* :func:`pack_stories` turns stories into one ``uint16`` token array: story, EOT, story, ...
* :func:`get_batch` cuts random training windows from that array.
* :func:`prepare_corpus` does the above once per (data, tokenizer) and keeps the result as
  memory-mapped files, which training, ``nanolm prepare`` and the demo reuse.

Every story is normalised the same way, whatever file it came from: stripped, with its
paragraphs joined by exactly one newline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from nanolm_lib import utils
from nanolm_lib.course.stories import GENERATOR_VERSION, make_stories
from nanolm_lib.course.tokenizer import EOT, MAX_VOCAB_SIZE, load_tokenizer, train_fast_tokenizer
from nanolm_lib.errors import UsageError

SPLITS = ("train", "validation")
HUB_DATASET = "roneneldan/TinyStories"
EXTENSIONS = (".txt", ".json", ".jsonl", ".parquet")
FALLBACK_STORIES = 20_000  # stories generated (both splits) when no data can be reached
VALIDATION_EVERY = 20  # in a single file, story i is a validation story when i % 20 == 19
HUB_PROBE_S = 3.0  # one connection attempt to the hub before `datasets` tries
CORPUS_FORMAT = 1  # bump when the prepared-corpus layout changes: old caches are not reused


def normalize_story(text: str) -> str:
    """Strip a story and join its non-empty paragraphs with one newline.

    The dataset separates paragraphs by one newline in some files and by a blank line in
    others; after this, both give the same story.
    """
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def split_of(index: int) -> str:
    """The split of the story at ``index`` in a single file: every 20th is validation."""
    return "validation" if index % VALIDATION_EVERY == VALIDATION_EVERY - 1 else "train"


# --------------------------------------------------------------------------------------
# Reading local files


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 file, numbered from 1, with a progress bar over its bytes.

    Bytes that are not UTF-8 stop the reading with an error giving their offset and line.
    """
    offset = 0
    with open(path, "rb") as file, utils.progress(
        total=path.stat().st_size, desc=f"reading {path.name}", unit="B", unit_scale=True,
        leave=False,
    ) as bar:
        try:
            for line_number, raw in enumerate(file, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise UsageError(
                        f"{path}: bytes that are not UTF-8 at byte offset {offset + err.start} "
                        f"(line {line_number}); expected a UTF-8 text file"
                    ) from None
                offset += len(raw)
                if line_number % 10_000 == 0:  # updating every line would slow big files down
                    bar.update(offset - bar.n)
                yield line_number, line.removeprefix("\ufeff") if line_number == 1 else line
        except GeneratorExit:
            # The caller had enough lines (a story limit): a success, not the red bar that a
            # notebook's tqdm shows for a total never reached.
            bar.total = bar.n = offset
            raise
        bar.update(offset - bar.n)


def _read_txt(path: Path) -> Iterator[str]:
    """Stories of a text file whose stories are separated by lines holding only EOT."""
    lines: list[str] = []
    for _, line in _read_lines(path):
        if line.strip() == EOT:
            yield "".join(lines)
            lines = []
        else:
            lines.append(line)
    yield "".join(lines)


def _text_of(record, where: str) -> str:
    if not isinstance(record, dict) or "text" not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise UsageError(f"{where}: expected a record with a 'text' field, got {keys}")
    if not isinstance(record["text"], str):
        raise UsageError(f"{where}: 'text' is {type(record['text']).__name__}, expected a string")
    return record["text"]


def _read_json(path: Path) -> Iterator[str]:
    """Stories of a JSON array of records, or of JSON lines (one record a line)."""
    with open(path, "rb") as file:
        is_array = file.read(64).lstrip().startswith(b"[")
    if is_array:
        try:
            records = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UsageError(f"{path}: not valid UTF-8 JSON ({err})") from None
        for i, record in enumerate(records):
            yield _text_of(record, f"{path}, record {i}")
        return
    for line_number, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path}, line {line_number}: not valid JSON ({err})") from None
        yield _text_of(record, f"{path}, line {line_number}")


def _read_parquet(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if "text" not in parquet.schema_arrow.names:
        raise UsageError(
            f"{path}: expected a 'text' column, found {parquet.schema_arrow.names}"
        )
    row = 0
    for batch in parquet.iter_batches(columns=["text"]):
        for text in batch.column(0).to_pylist():
            if not isinstance(text, str):
                raise UsageError(f"{path}, row {row}: 'text' is {text!r}, expected a string")
            yield text
            row += 1


READERS = {".txt": _read_txt, ".json": _read_json, ".jsonl": _read_json,
           ".parquet": _read_parquet}


def _read_file(path: Path) -> Iterator[str]:
    """Normalised, non-empty stories of one local file."""
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UsageError(
            f"{path}: unknown file type {path.suffix!r}; expected one of {', '.join(EXTENSIONS)}"
        )
    for text in reader(path):
        story = normalize_story(text)
        if story:
            yield story


def _split_files(folder: Path) -> dict[str, list[Path]]:
    """The train and validation files in a folder: names containing "train" / "valid"."""
    found: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in EXTENSIONS:
            continue
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        name = path.name.lower()
        if "train" in name:
            found["train"].append(path)
        elif "valid" in name:
            found["validation"].append(path)
    for split, paths in found.items():
        if not paths:
            raise FileNotFoundError(
                f"{folder}: no {split} file; expected a .txt/.json/.jsonl/.parquet file "
                f"whose name contains {'train' if split == 'train' else 'valid'!r}"
            )
        if len({p.suffix.lower() for p in paths}) > 1:
            raise UsageError(
                f"{folder}: {split} files of different types ({', '.join(p.name for p in paths)});"
                " keep one copy of the data or pass a single file"
            )
    return found


# --------------------------------------------------------------------------------------
# Where stories come from


@dataclass(frozen=True)
class _Source:
    """A resolved data source: a local file, a local folder, a hub dataset, or generated."""

    kind: str  # "file", "folder", "hub" or "generated"
    location: str = ""

    def describe(self) -> str:
        if self.kind == "generated":
            return "generated stories (nanolm_lib.course.stories.make_stories)"
        return f"{self.kind}:{self.location}"

    def identity(self) -> list:
        """What the cache key depends on; local files by path, size and modification time."""
        if self.kind == "file":
            files = [Path(self.location)]
        elif self.kind == "folder":
            files = [p for paths in _split_files(Path(self.location)).values() for p in paths]
        elif self.kind == "generated":
            return [self.kind, GENERATOR_VERSION]
        else:
            return [self.kind, self.location]
        return [self.kind] + [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns]
                              for p in files]


def _resolve_source(source) -> _Source:
    if source is None:
        source = os.environ.get("NANOLM_DATA") or None
        if source is not None and not Path(source).exists():
            raise FileNotFoundError(f"NANOLM_DATA={source}: no such file or folder")
        if source is None:
            return _Source("hub", HUB_DATASET)
    path = Path(source)
    if path.is_dir():
        return _Source("folder", str(path))
    if path.is_file():
        return _Source("file", str(path))
    if isinstance(source, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        return _Source("hub", source)
    raise FileNotFoundError(
        f"data source not found: {source} (expected a .txt, .json, .jsonl or .parquet file, a "
        f"folder holding train and validation files, or a hub dataset id such as {HUB_DATASET})"
    )


def _hub_unreachable_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "no network / offline mode", not "bad dataset name"."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        errors += [LocalEntryNotFoundError, OfflineModeIsEnabled]
    except ImportError:
        pass
    try:
        import requests

        errors += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    except ImportError:
        pass
    try:
        import httpx

        errors += [httpx.TransportError]
    except ImportError:
        pass
    return tuple(errors)


def _probe_hub() -> None:
    """Raise ConnectionError at once when the hub cannot be reached.

    Unreachable, ``datasets`` retries for about a minute (five attempts) before it gives up;
    one short connection to the hub's endpoint tells the same in at most :data:`HUB_PROBE_S`.
    In offline mode (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``) ``datasets`` raises at once
    by itself, so nothing is probed.
    """
    if any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")
           for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(endpoint)
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        socket.create_connection((parts.hostname, port), timeout=HUB_PROBE_S).close()
    except OSError as error:
        raise ConnectionError(f"the hub ({endpoint}) is unreachable: {error}") from error


def _read_hub(name: str, split: str, limit: int | None) -> Iterator[str]:
    """Stories of a dataset that ``datasets.load_dataset`` knows by ``name`` (a hub id)."""
    import datasets

    _probe_hub()
    if utils.progress_disabled():
        datasets.disable_progress_bars()
    if limit is None:
        dataset = datasets.load_dataset(name, split=split)
        total = -(-len(dataset) // 1000)
    else:  # streaming: a few stories without downloading the whole dataset
        dataset = datasets.load_dataset(name, split=split, streaming=True)
        total = None
    for batch in utils.progress(dataset.iter(batch_size=1000), total=total,
                                desc=f"reading {split}", unit="k stories"):
        if "text" not in batch:
            raise UsageError(f"{name} ({split}): expected a 'text' column, found {list(batch)}")
        yield from batch["text"]


def _stories_from(source: _Source, split: str, limit: int | None) -> list[str]:
    """Up to ``limit`` normalised, non-empty stories of ``split`` from a resolved source."""
    if source.kind == "folder":
        paths = _split_files(Path(source.location))[split]
        stories: Iterable[str] = (s for path in paths for s in _read_file(path))
    elif source.kind == "file":
        every = _read_file(Path(source.location))
        stories = (s for i, s in enumerate(every) if split_of(i) == split)
    elif source.kind == "hub":
        stories = filter(None, map(normalize_story, _read_hub(source.location, split, limit)))
    else:  # generated: as many as the split needs, cut from one seeded stream
        wanted = limit if limit is not None else FALLBACK_STORIES // VALIDATION_EVERY
        if split == "train" and limit is None:
            wanted = FALLBACK_STORIES - wanted
        if split == "validation":
            total = wanted * VALIDATION_EVERY
        else:  # the smallest total holding `wanted` train stories
            total = -(-wanted * VALIDATION_EVERY // (VALIDATION_EVERY - 1))
        stories = (s for i, s in enumerate(make_stories(total)) if split_of(i) == split)

    loaded = []
    for story in stories:
        if limit is not None and len(loaded) >= limit:
            break
        loaded.append(story)
    if not loaded:
        raise UsageError(f"{source.describe()}: no stories in the {split!r} split")
    return loaded


def _load(source: _Source, split: str, limit: int | None, fallback: bool
          ) -> tuple[list[str], _Source]:
    """Load a split; when the hub is unreachable and ``fallback`` is allowed, generate stories
    instead (saying so in one line). Returns the stories and the source they came from."""
    if source.kind == "hub" and fallback:
        try:
            return _stories_from(source, split, limit), source
        except _hub_unreachable_errors():
            generated = _Source("generated")
            print(f"nanolm: the hub ({source.location}) is unreachable and NANOLM_DATA is not "
                  "set; using stories generated by nanolm_lib.course.stories.make_stories instead")
            return _stories_from(generated, split, limit), generated
    return _stories_from(source, split, limit), source


def _check_split_and_limit(split: str, limit: int | None) -> None:
    if split not in SPLITS:
        raise UsageError(f"split={split!r}: expected one of {', '.join(map(repr, SPLITS))}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit={limit!r}: expected a positive number of stories, or None")


def load_stories(source=None, split: str = "train", limit: int | None = None) -> list[str]:
    """Load the stories of one split (``"train"`` or ``"validation"``) of TinyStories.

    ``source``: a local file (``.txt`` in the dataset's format, stories separated by lines
    holding only ``<|endoftext|>``; ``.json``/``.jsonl``/``.parquet`` records with a ``text``
    field), a folder holding a train and a validation file (names containing "train" and
    "valid"), or a hub dataset id. ``None`` means ``NANOLM_DATA`` when set, else the hub's
    ``roneneldan/TinyStories``, else (hub unreachable) stories from :func:`make_stories`.
    In a single file, story ``i`` belongs to ``validation`` when ``i % 20 == 19``.
    ``limit`` caps the number of stories (the hub then streams instead of downloading).
    """
    _check_split_and_limit(split, limit)
    stories, _ = _load(_resolve_source(source), split, limit, fallback=source is None)
    return stories


# --------------------------------------------------------------------------------------
# Tokens: packing stories, drawing batches


def pack_stories(tokenizer, stories: Sequence[str]) -> np.ndarray:
    """Encode ``stories`` into one ``uint16`` array: story, EOT, story, EOT, ...

    Uses ``tokenizer.encode_batch`` (parallel) when the tokenizer has it.
    """
    if tokenizer.eot_id is None:
        raise ValueError(f"{tokenizer!r} has no {EOT} token; stories need it as separator")
    if tokenizer.vocab_size > MAX_VOCAB_SIZE:
        raise ValueError(f"vocab_size={tokenizer.vocab_size} does not fit in uint16 tokens")
    if isinstance(stories, str):
        raise TypeError("pack_stories expects a list of stories, not one string")
    if hasattr(tokenizer, "encode_batch"):
        encoded = tokenizer.encode_batch(list(stories))
    else:
        encoded = [tokenizer.encode(story) for story in stories]
    total = sum(len(ids) + 1 for ids in encoded)
    tokens = np.empty(total, dtype=np.uint16)
    position = 0
    for ids in encoded:
        tokens[position:position + len(ids)] = ids
        tokens[position + len(ids)] = tokenizer.eot_id
        position += len(ids) + 1
    return tokens


def get_batch(tokens, batch_size: int, context_length: int,
              generator: torch.Generator | None = None, device="cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows: ``x`` (batch_size, context_length) and ``y``, the same
    windows shifted one token ahead, both int64 on ``device``.

    ``tokens`` is a 1-D numpy array (a memmap is fine) or a torch tensor, which may already
    live on the GPU: then the windows are gathered there. The starts are drawn as
    ``torch.randint(len(tokens) - context_length, (batch_size,), generator=generator)``.
    """
    if getattr(tokens, "ndim", 1) != 1:
        raise ValueError(f"tokens: expected a 1-D array of token ids, got shape {tokens.shape}")
    if batch_size < 1 or context_length < 1:
        raise ValueError(f"batch_size={batch_size}, context_length={context_length}: "
                         "both must be at least 1")
    if len(tokens) < context_length + 1:
        raise ValueError(f"tokens: {len(tokens)} tokens are too few for context_length="
                         f"{context_length} (need at least {context_length + 1})")
    starts = torch.randint(len(tokens) - context_length, (batch_size,), generator=generator,
                           device=generator.device if generator is not None else "cpu")
    return gather_windows(tokens, starts, context_length, device)


def gather_windows(tokens, starts: torch.Tensor, context_length: int, device="cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of the windows starting at ``starts`` (B,): two (B, T) int64
    tensors on ``device``, the targets one token ahead of the inputs.

    ``tokens`` is a 1-D tensor (possibly on the GPU: the windows are then gathered there) or
    numpy array (a memmap reads only the windows it is asked for). Copies from the CPU to a
    GPU go through pinned memory without blocking, so the host never waits for the GPU here.
    """
    device = torch.device(device)
    if isinstance(tokens, torch.Tensor):
        offsets = torch.arange(context_length + 1, device=tokens.device)
        chunk = tokens[_to(starts, tokens.device)[:, None] + offsets]  # (B, T + 1)
    else:
        index = starts.cpu().numpy()[:, None] + np.arange(context_length + 1)
        chunk = torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))  # (B, T + 1)
    chunk = _to(chunk, device).long()
    return chunk[:, :-1], chunk[:, 1:]


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor.to(device)``; from the CPU to a GPU through pinned memory, non-blocking (a
    pageable copy would make the host wait for the GPU)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


# --------------------------------------------------------------------------------------
# Prepared corpora: tokenize once, reuse


@dataclass
class PreparedCorpus:
    """A tokenized corpus on disk: ``train`` and ``validation`` are read-only ``uint16``
    memmaps (story, EOT, story, EOT, ...), ``meta`` is ``meta.json``."""

    path: Path
    tokenizer: object
    train: np.memmap
    validation: np.memmap
    meta: dict = field(default_factory=dict)

    def bytes_per_token(self, split: str = "validation") -> float:
        """UTF-8 bytes of story text per token in ``split`` (EOT counts as a token, not a
        byte): multiply a loss in bits per token by 1 / this to get bits per byte."""
        if split not in SPLITS:
            raise UsageError(f"split={split!r}: expected one of {', '.join(map(repr, SPLITS))}")
        return self.meta[split]["bytes"] / self.meta[split]["tokens"]


def load_prepared(path: str | Path) -> PreparedCorpus:
    """Open a folder written by :func:`prepare_corpus`."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: not a prepared corpus (no meta.json)")
    meta = json.loads(meta_path.read_text())
    arrays = {}
    for split in SPLITS:
        bin_path = path / f"{split}.bin"
        expected = meta[split]["tokens"]
        if not bin_path.is_file() or bin_path.stat().st_size != 2 * expected:
            raise UsageError(f"{bin_path}: missing or not {expected} uint16 tokens as meta.json "
                             "says; delete the folder and prepare again")
        arrays[split] = np.memmap(bin_path, dtype=np.uint16, mode="r")
    tokenizer = load_tokenizer(path / "tokenizer.json")
    return PreparedCorpus(path=path, tokenizer=tokenizer, meta=meta, **arrays)


def _pack_to_file(tokenizer, stories: list[str], path: Path, desc: str,
                  chunk: int = 2048) -> dict:
    """Pack ``stories`` into ``path`` chunk by chunk (bounded memory), with a progress bar."""
    n_tokens = n_bytes = 0
    with open(path, "wb") as file, utils.progress(total=len(stories), desc=desc,
                                                 unit="story") as bar:
        for start in range(0, len(stories), chunk):
            part = stories[start:start + chunk]
            tokens = pack_stories(tokenizer, part)
            file.write(tokens.tobytes())
            n_tokens += len(tokens)
            n_bytes += sum(len(story.encode("utf-8")) for story in part)
            bar.update(len(part))
    return {"stories": len(stories), "bytes": n_bytes, "tokens": n_tokens}


def _corpus_folder(root: Path, source: _Source, limit, vocab_size, tokenizer) -> Path:
    key = {"format": CORPUS_FORMAT, "source": source.identity(), "limit": limit,
           "tokenizer": tokenizer.fingerprint if tokenizer is not None else vocab_size}
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    slug = re.sub(r"[^\w.-]+", "-", Path(source.location).stem if source.location else "generated")
    return root / f"{slug}-{digest}"


def prepare_corpus(source=None, vocab_size: int = 10_000, *, limit: int | None = None,
                   tokenizer=None, cache_dir: str | Path | None = None,
                   force: bool = False) -> PreparedCorpus:
    """Tokenize both splits once and keep them on disk; later calls reuse them.

    Loads ``train`` and ``validation`` (see :func:`load_stories`; ``limit`` caps each split),
    trains a :func:`~nanolm_lib.course.tokenizer.train_fast_tokenizer` of ``vocab_size`` on the
    train split unless ``tokenizer`` is given, and writes ``train.bin``, ``validation.bin``
    (``uint16``), ``tokenizer.json`` and ``meta.json`` into a folder under ``cache_dir``
    (default :func:`nanolm_lib.utils.cache_dir`) named after the source (its path, size and
    modification time), ``limit`` and the tokenizer. The folder is built under a temporary
    name and renamed when complete, so an interrupted run leaves nothing that looks ready.
    ``force`` rebuilds it.
    """
    _check_split_and_limit("train", limit)
    root = Path(cache_dir) if cache_dir is not None else utils.cache_dir()
    source_used = _resolve_source(source)
    folder = _corpus_folder(root, source_used, limit, vocab_size, tokenizer)
    if not force and (folder / "meta.json").is_file():
        return load_prepared(folder)

    train, source_used = _load(source_used, "train", limit, fallback=source is None)
    new_folder = _corpus_folder(root, source_used, limit, vocab_size, tokenizer)
    if new_folder != folder:  # fell back to generated stories: maybe prepared before
        folder = new_folder
        if not force and (folder / "meta.json").is_file():
            return load_prepared(folder)
    validation, _ = _load(source_used, "validation", limit, fallback=False)
    if tokenizer is None:
        tokenizer = train_fast_tokenizer(train, vocab_size)

    tmp = root / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        meta = {"format": CORPUS_FORMAT, "source": source_used.describe(), "limit": limit,
                "tokenizer_kind": tokenizer.kind, "fingerprint": tokenizer.fingerprint,
                "vocab_size": tokenizer.vocab_size, "eot_id": tokenizer.eot_id}
        for split, stories in (("train", train), ("validation", validation)):
            meta[split] = _pack_to_file(tokenizer, stories, tmp / f"{split}.bin",
                                        desc=f"tokenizing {split}")
        tokenizer.save(tmp / "tokenizer.json")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():  # force, or a folder left without meta.json: replace it
            old = root / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            folder.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same corpus first: use theirs
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_prepared(folder)
