"""Benchmark loaders: CommonsenseQA, OpenBookQA, StrategyQA (official formats) and CSQA-shaped custom JSONL.

All load into `Question` and split as the paper does:
  csqa        test = the official dev; validation = a seeded sample of train of dev's size; train = the rest
  obqa        train / dev / test as given
  strategyqa  one file, seeded shuffle, 80/10/10; options (A) yes (B) no
  custom      CSQA-shaped JSONL with any number of options: train.jsonl [+ dev.jsonl] [+ test.jsonl]
Any other dataset goes through the generic adapter (adapter.py): `generic` with a `data.adapter` block, or a
preset (arc, qasc, piqa, siqa: presets.py); `load_dataset_cfg(cfg.data)` is the entry point that passes the block.
A malformed row stops loading with a DataError naming file, line and field, unless skip_bad_rows is set, in
which case it is skipped and counted in `Splits.skipped`.
"""

from __future__ import annotations

import json
import os
import random
from importlib import resources
from pathlib import Path

from ..core.records import Question
from ..errors import DataError
from .adapter import load_adapted, resolve
from .presets import PRESETS
from .rows import RowReader, Splits, need

BENCHMARKS = ("csqa", "obqa", "strategyqa", "custom")
# Official file names per benchmark; `custom` uses the plain names.
FILES = {
    "csqa": {"train": "train_rand_split.jsonl", "dev": "dev_rand_split.jsonl"},
    "obqa": {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
    "strategyqa": {"train": "strategyqa_train.json"},
    "custom": {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
}
HUB_NAMES = {"csqa": "tau/commonsense_qa", "obqa": "allenai/openbookqa", "strategyqa": "wics/strategy-qa"}


def embedded_dir(name: str) -> Path:
    return Path(str(resources.files("tinythinker_ray.data") / "embedded" / name))


def _resolve_dir(name: str, path: str | None) -> Path:
    if path is None:
        return embedded_dir(name)
    p = Path(path)
    if p.exists():
        return p
    files = " + ".join(FILES[name].values())  # hub copies are not downloaded here: say what a local copy holds
    raise DataError(f"no such file or folder (give a folder holding {files}, or one file)", file=str(p),
                    field="data.path")


def _file(root: Path, name: str, split: str) -> Path | None:
    if root.is_file():  # a single file given: it is the training file
        return root if split == "train" else None
    p = root / FILES[name][split] if split in FILES[name] else None
    return p if p is not None and p.exists() else None


def load_dataset_cfg(data) -> Splits:
    """The dataset a `DataConfig` names, with its adapter block: what drivers call."""
    return load_benchmark(data.name, data.path, seed=data.seed, skip_bad_rows=data.skip_bad_rows,
                          adapter=data.adapter)


def local_copy(uri: str) -> str:
    """data.path on object storage (s3://, gs://, any pyarrow filesystem URI) -> a local copy under the model
    cache, fetched again at every load (benchmarks are megabytes), so a cluster's driver reads the data from the
    bucket its runs go to; the loaders themselves read local files only."""
    import hashlib
    import shutil

    from pyarrow import fs

    from ..storage import cache_root

    try:
        filesystem, remote = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(remote)
    except Exception as e:  # pyarrow: unknown scheme, no credentials, unreachable endpoint
        raise DataError(f"cannot be read: {type(e).__name__}: {str(e).splitlines()[0]}", file=uri,
                        field="data.path") from None
    if info.type == fs.FileType.NotFound:
        raise DataError("no such file or folder", file=uri, field="data.path")
    folder = cache_root() / "data" / hashlib.sha1(uri.encode()).hexdigest()[:16]
    local, tmp = folder / info.base_name, folder / f".{info.base_name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    # copy_files makes the folders below a target folder, not the target itself
    (tmp if info.type == fs.FileType.Directory else folder).mkdir(parents=True, exist_ok=True)
    fs.copy_files(remote, str(tmp), source_filesystem=filesystem, destination_filesystem=fs.LocalFileSystem())
    if local.is_dir():
        shutil.rmtree(local)
    os.replace(tmp, local)  # a reader of the previous copy never sees a half-written one
    return str(local)


def load_benchmark(name: str, path: str | None = None, *, seed: int = 42, skip_bad_rows: bool = False,
                   adapter=None) -> Splits:
    """Load and split a benchmark. `path` None = the small sample embedded in the package; a URI is read from
    a local copy. Preset names and `generic` go to the adapter, with `adapter` (a config.AdapterConfig) on top."""
    if path is not None and "://" in path:
        path = local_copy(path)
    if name in PRESETS or name == "generic":

        return load_adapted(name, path, adapter, seed=seed, skip_bad_rows=skip_bad_rows)
    if name not in BENCHMARKS:
        allowed = ", ".join([*BENCHMARKS, *PRESETS, "generic"])
        raise DataError(f"unknown dataset '{name}' (allowed: {allowed})", field="data.name")
    if adapter is not None:
        raise DataError(f"data.adapter maps generic datasets and presets, not '{name}' (use data.name: generic)",
                        field="data.adapter")
    root = _resolve_dir(name, path)
    reader = RowReader(skip_bad_rows)
    train_file = _file(root, name, "train")
    if train_file is None:
        raise DataError(f"training file {FILES[name]['train']} not found", file=str(root))
    rng = random.Random(seed)
    if name == "strategyqa":
        rows = reader.strategyqa(train_file)
        rng.shuffle(rows)
        n_train, n_other = len(rows) * 8 // 10, len(rows) // 10
        splits = Splits(rows[:n_train], rows[n_train:n_train + n_other], rows[n_train + n_other:])
    elif name == "csqa":
        train = reader.jsonl(train_file)
        dev_file = _file(root, name, "dev")
        test = reader.jsonl(dev_file) if dev_file else []
        # The official test split has no labels: test on dev, validate on a seeded sample of train of dev's size.
        valid_idx = set(rng.sample(range(len(train)), k=min(len(test), len(train) // 2)))
        valid = [q for i, q in enumerate(train) if i in valid_idx]
        train = [q for i, q in enumerate(train) if i not in valid_idx]
        splits = Splits(train, valid, test)
    else:  # obqa, custom: the files as given (a missing dev/test file gives an empty split)
        got = {s: (reader.jsonl(f) if (f := _file(root, name, s)) else []) for s in ("train", "dev", "test")}
        splits = Splits(got["train"], got["dev"], got["test"])
    splits.skipped = reader.skipped
    return splits


def load_fewshot(name: str, path: str | None = None, *, adapter=None) -> list[dict]:
    """The paper's few-shot teacher rationales: [{Q, Options, Key Information, Explanations}]. Presets and
    `generic` borrow the embedded set their mapping names (`fewshot`: csqa, obqa or strategyqa)."""
    if name in PRESETS or name == "generic":

        name = resolve(name, adapter).fewshot
    candidates = [Path(path)] if path else []
    if not path:
        candidates.append(embedded_dir(name) / "fewshot_rationales.json")
    for p in candidates:
        f = p / "fewshot_rationales.json" if p.is_dir() else p
        if f.exists():
            try:
                rows = json.loads(f.read_text(encoding="utf-8-sig"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"not a JSON file: {e}", file=str(f)) from None
            if not isinstance(rows, list):
                raise DataError("expected a JSON list of examples", file=str(f))
            for i, r in enumerate(rows, 1):  # "line" = 1-based index in the list
                for key, typ in (("Q", str), ("Options", str), ("Key Information", str), ("Explanations", list)):
                    need(r, key, typ, file=str(f), line=i)
            return rows
    raise DataError("no fewshot_rationales.json", file=str(candidates[0]) if candidates else name)


def embedded_corpus() -> list[str]:
    """All text of the embedded samples (used to train the tiny test tokenizer offline)."""
    texts = []
    for name in ("csqa", "obqa", "strategyqa"):
        s = load_benchmark(name)
        for q in s.train + s.valid + s.test:
            texts.append(q.stem + " " + " ".join(t for _, t in q.options))
        for r in load_fewshot(name):
            texts.append(r["Key Information"] + " " + " ".join(r["Explanations"]))
    return texts


def read_questions(path: str | Path) -> list[Question]:
    """A saved split (`Question.to_dict` rows, as `teach` writes them); a bad row names its file and line."""
    from ..storage import read_jsonl

    questions = []
    for line, row in enumerate(read_jsonl(path), 1):
        try:
            questions.append(Question.from_dict(row))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"not a question row ({type(e).__name__}: {e})", file=str(path), line=line) from None
    return questions
