"""Any multiple-choice or yes/no dataset -> Questions, mapped by a `data.adapter` block or a preset.

Sources: JSONL, a JSON list, CSV, Parquet, a `datasets` folder (`save_to_disk`), or a dataset name for
`datasets.load_dataset` (the hub where a network exists; a local folder of data files works offline too).
Splits come from, in order: a split column; the dataset's own splits (hf_disk / hub); the `files` per split (or
train/valid|validation|dev/test.<ext> in a folder); a single file is train. Splits still missing are carved out
of train by `split_rule` (seeded). Options get labels A, B, C... by position; an answer given as an original
label ("1"-"4" in ARC), a 0/1-based index or the option's text maps onto them; yes/no datasets become
(A) yes (B) no. A bad row stops loading with a DataError naming file, row and column, or is skipped and counted
with skip_bad_rows.
"""

from __future__ import annotations

import copy
import csv
import json
import random
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import AdapterConfig
from ..core.records import Question
from ..errors import DataError
from .presets import GENERIC, PRESETS
from .rows import RowReader, Splits

SPLITS = ("train", "valid", "test")
SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "val": "valid",
               "test": "test"}
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
YES, NO = ("yes", "true", "1"), ("no", "false", "0")

Rows = Iterable[tuple[int, object]]  # (line or 1-based row number, row)


@dataclass
class Source:
    name: str  # file (or dataset[split]) named in errors
    rows: Rows
    labels: Path | None = None  # answers file: its line k answers data line k (JSONL) or the k-th row
    by_line: bool = False  # JSONL: pair answers by line number (blank and skipped lines keep their numbers)


# ----- the mapping: preset + the user's block --------------------------------------------------------------------

def _merge(base: dict, top: dict) -> dict:
    """`top` over `base`, recursively; None in `top` means "not set" and keeps `base`."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("files", "label_files"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _layer(base: dict, top: dict) -> dict:
    # One way of giving options per layer: a layer that names `options` or `option_columns` drops the other.
    cols = top.get("columns") or {}
    if cols.get("options") is not None or cols.get("option_columns") is not None:
        base = copy.deepcopy(base)
        for key in ("options", "option_columns"):
            base.get("columns", {}).pop(key, None)
    return _merge(base, top)


def resolve(name: str, adapter: AdapterConfig | None) -> AdapterConfig:
    """The complete mapping for `data.name` (a preset or "generic") with `data.adapter`'s fields on top."""
    tree = _layer(GENERIC, PRESETS.get(name, {}))
    if adapter is not None:
        tree = _layer(tree, adapter.model_dump())
    if tree["answer_type"] == "yes_no" and not (adapter and adapter.fewshot) and "fewshot" not in PRESETS.get(
            name, {}):
        tree["fewshot"] = "strategyqa"
    return AdapterConfig.model_validate(tree)


# ----- reading rows ------------------------------------------------------------------------------------------------

def _format_of(path: Path, fmt: str | None) -> str:
    if fmt in ("jsonl", "json", "csv", "parquet"):
        return fmt
    if path.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[path.suffix.lower()]
    raise DataError(f"cannot tell the format from the suffix '{path.suffix}' (set data.adapter.format: "
                    "jsonl | json | csv | parquet)", file=str(path), field="data.adapter.format")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, row  # the physical line the record ends on, as an editor shows it
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=str(path)) from None
    except csv.Error as e:
        raise DataError(f"bad CSV: {e}", file=str(path)) from None


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file: {e}", file=str(path)) from None
    return enumerate(rows, 1)


def file_rows(path: Path, fmt: str | None, reader: RowReader) -> Rows:
    fmt = _format_of(path, fmt)
    if fmt == "jsonl":
        return reader.jsonl_rows(path)
    if fmt == "json":
        return enumerate(reader.json_list(path), 1)
    return _csv_rows(path) if fmt == "csv" else _parquet_rows(path)


def _dataset_splits(path: str, a: AdapterConfig) -> dict[str | None, Source]:
    """A `datasets` Dataset / DatasetDict (from disk or the hub) -> {split: (name for errors, rows)}."""
    import datasets

    try:
        if a.format == "hf_disk":
            if not Path(path).is_dir():
                raise FileNotFoundError("no such folder")
            ds = datasets.load_from_disk(path)
        else:
            ds = datasets.load_dataset(path, a.subset)
    except Exception as e:  # datasets raises many types (offline, not found, bad folder): report them as data
        how = "load_from_disk" if a.format == "hf_disk" else "load_dataset"
        raise DataError(f"datasets.{how} failed: {type(e).__name__}: {e}", file=path, field="data.path") from None
    if isinstance(ds, datasets.Dataset):
        return {None if a.columns.split else "train": Source(path, enumerate(ds, 1))}
    out: dict[str | None, Source] = {}
    for split_name, part in ds.items():
        split = SPLIT_NAMES.get(split_name.lower())
        if split is not None and split not in out:
            out[split] = Source(f"{path}[{split_name}]", enumerate(part, 1))
    if "train" not in out:
        raise DataError(f"no train split (the dataset has {', '.join(ds)})", file=path, field="data.path")
    return out


def _find(root: Path, pattern: str, what: str) -> Path:
    hits = sorted(root.glob(pattern))
    if len(hits) != 1:
        found = "nothing" if not hits else ", ".join(h.name for h in hits)
        raise DataError(f"{what} '{pattern}' must match one file, matched {found}", file=str(root),
                        field="data.adapter.files" if what.startswith("file") else "data.adapter.label_files")
    return hits[0]


def _default_files(root: Path, fmt: str | None) -> dict[str, Path]:
    """train / valid|validation|dev / test files in a folder, with the format's suffix (or any known one)."""
    suffixes = [s for s, f in SUFFIX_FORMATS.items() if fmt in (None, f)]
    out = {}
    for stem, split in SPLIT_NAMES.items():
        for suffix in suffixes:
            if split not in out and (root / f"{stem}{suffix}").is_file():
                out[split] = root / f"{stem}{suffix}"
    return out


def _sources(path: str, a: AdapterConfig, reader: RowReader) -> dict[str | None, Source]:
    """{split (None = each row's split column): Source}."""
    if a.format in ("hf_disk", "hub"):
        return _dataset_splits(path, a)
    root = Path(path)
    if not root.exists():
        raise DataError("no such file or folder", file=str(root), field="data.path")
    if root.is_file():
        files = {None if a.columns.split else "train": root}
    elif a.files:
        files = {}
        for split, pattern in a.files.items():
            if split == "train" or any(root.glob(pattern)):  # valid/test files are optional: carved if absent
                files[split] = _find(root, pattern, f"file for {split}")
    else:
        files = _default_files(root, a.format)
    if not files.get("train") and None not in files:
        raise DataError("no training file (name one in data.adapter.files, or hold train.jsonl|csv|parquet)",
                        file=str(root), field="data.path")
    folder = root if root.is_dir() else root.parent
    out = {}
    for split, f in files.items():
        # An absent answers file is fine: the rows then need the answer column (hub exports carry one).
        pattern = (a.label_files or {}).get(split) if split else None
        labels = _find(folder, pattern, "labels file") if pattern and any(folder.glob(pattern)) else None
        out[split] = Source(str(f), file_rows(f, a.format, reader), labels, _format_of(f, a.format) == "jsonl")
    return out


def _labels(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=str(path)) from None


# ----- one row -> one Question -------------------------------------------------------------------------------------

def _get(row: object, column: str, *, file: str, line: int, required: bool = True):
    """The value at a dotted column name; empty strings count as missing."""
    node = row
    for part in column.split("."):
        if not isinstance(node, dict):
            raise DataError(f"expected an object, got {type(node).__name__}", file=file, line=line, field=column)
        if part not in node or node[part] is None or node[part] == "":
            if not required:
                return None
            have = ", ".join(list(node)[:12]) or "nothing"
            raise DataError(f"missing or empty (the row has: {have})", file=file, line=line, field=column)
        node = node[part]
    return node


def _text(value, *, file: str, line: int, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"expected text, got {type(value).__name__}", file=file, line=line, field=field)
    text = str(value).strip()
    if not text:
        raise DataError("empty", file=file, line=line, field=field)
    return text


def _options(row, a: AdapterConfig, *, file: str, line: int) -> tuple[list[str], list[str] | None]:
    """(option texts in order, their original labels or None)."""
    cols = a.columns
    if a.answer_type == "yes_no":
        return ["yes", "no"], None
    if cols.option_columns:
        return [_text(_get(row, c, file=file, line=line), file=file, line=line, field=c)
                for c in cols.option_columns], None
    if not cols.options:
        raise DataError("no options column: set data.adapter.columns.options or option_columns", file=file,
                        field="data.adapter.columns")
    col = cols.options
    value = _get(row, col, file=file, line=line)
    if isinstance(value, str) and value.lstrip().startswith("["):  # a JSON list in a CSV cell
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"bad JSON list: {e.msg}", file=file, line=line, field=col) from None
    if isinstance(value, dict) and isinstance(value.get("text"), list):  # hub style {label: [...], text: [...]}
        texts = value["text"]
        labels = value.get("label") or [None] * len(texts)
        if not isinstance(labels, list) or len(labels) != len(texts):
            raise DataError(f"{len(texts)} option texts but labels {labels!r}", file=file, line=line,
                            field=f"{col}.label")
        value = [{"label": lab, "text": t} for lab, t in zip(labels, texts, strict=True)]
    if not isinstance(value, list):
        raise DataError(f"expected a list of options, got {type(value).__name__}", file=file, line=line, field=col)
    texts, labels = [], []
    for j, item in enumerate(value):
        where = f"{col}[{j}]"
        if isinstance(item, dict):
            texts.append(_text(item.get("text"), file=file, line=line, field=f"{where}.text"))
            labels.append(None if item.get("label") is None else str(item["label"]).strip())
        else:
            texts.append(_text(item, file=file, line=line, field=where))
            labels.append(None)
    if any(lab is not None for lab in labels):
        if None in labels or len(set(labels)) != len(labels):
            raise DataError(f"option labels must be given for all options and differ, got {labels}", file=file,
                            line=line, field=col)
        return texts, labels
    return texts, None


def _index(value, base: int, n: int, *, where: dict) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"answer {value!r} is not an index", **where)
    if not base <= value < n + base:
        raise DataError(f"answer index {value} is out of range for {n} options ({base}-based)", **where)
    return value - base


def _answer(value, a: AdapterConfig, texts: list[str], originals: list[str] | None, *, where: dict) -> int:
    """The answer's position among the options."""
    n = len(texts)
    if a.answer_type == "index":
        return _index(value, a.index_base, n, where=where)
    if a.answer_type == "yes_no":
        s = str(value).strip().lower()
        if s in YES or s in NO:
            return 0 if s in YES else 1
        raise DataError(f"answer {value!r} is not yes/no (yes, no, true, false, 1, 0)", **where)
    s = str(value).strip()
    if a.answer_type == "text":
        hits = [i for i, t in enumerate(texts) if t == s]
        hits = hits or [i for i, t in enumerate(texts) if " ".join(t.lower().split()) == " ".join(s.lower().split())]
        if len(hits) != 1:
            why = "is not the text of any option" if not hits else "matches several options"
            raise DataError(f"answer {s!r} {why}", **where)
        return hits[0]
    labels = originals or list(string.ascii_uppercase[:n])
    if s in labels:
        return labels.index(s)
    upper = [lab.upper() for lab in labels]
    if s.upper() in upper:
        return upper.index(s.upper())
    raise DataError(f"answer {s!r} is not among the option labels {labels}", **where)


def to_question(row, a: AdapterConfig, *, file: str, line: int, answer=None, answer_where: dict | None = None,
                id_prefix: str = "") -> Question:
    """One row -> Question. `answer` (with where it came from) replaces the answer column (a labels file)."""
    cols = a.columns
    if not isinstance(row, dict):
        raise DataError(f"row is not an object (got {type(row).__name__})", file=file, line=line)
    stem = _text(_get(row, cols.question, file=file, line=line), file=file, line=line, field=cols.question)
    if cols.context and (context := _get(row, cols.context, file=file, line=line, required=False)) is not None:
        stem = f"{_text(context, file=file, line=line, field=cols.context)} {stem}"
    texts, originals = _options(row, a, file=file, line=line)
    if not 2 <= len(texts) <= 26:  # the format's parsers read one capital letter per option
        raise DataError(f"needs 2 to 26 options, got {len(texts)}", file=file, line=line,
                        field=cols.options if not cols.option_columns else None)
    if answer is None:
        answer = _get(row, cols.answer, file=file, line=line)
        answer_where = {"file": file, "line": line, "field": cols.answer}
    pos = _answer(answer, a, texts, originals, where=answer_where)
    qid = _get(row, cols.id, file=file, line=line, required=False) if cols.id else None
    labels = string.ascii_uppercase
    return Question(id=str(qid) if qid is not None else f"{id_prefix}{line}", stem=stem,
                    options=tuple(zip(labels, texts, strict=False)), answer=labels[pos])


# ----- the whole dataset -------------------------------------------------------------------------------------------

def load_adapted(name: str, path: str | None, adapter: AdapterConfig | None = None, *, seed: int = 42,
                 skip_bad_rows: bool = False) -> Splits:
    """Load `path` with the preset `name` (or "generic") and `adapter` on top; returns the usual Splits."""
    a = resolve(name, adapter)
    if path is None:
        raise DataError(f"dataset '{name}' has no embedded sample: give data.path (a file or folder"
                        + (", or a dataset name with data.adapter.format hub)" if name == "generic" else ")"),
                        field="data.path")
    reader = RowReader(skip_bad_rows)
    got: dict[str, list[Question]] = {s: [] for s in SPLITS}
    given: set[str] = set()
    seen: dict[str, str] = {}  # question id -> where it first appeared
    for split, src in _sources(path, a, reader).items():
        given.update(SPLITS if split is None else [split])
        labels = _labels(src.labels) if src.labels else None
        prefix = f"{Path(src.name).stem if split is None else split}-"
        before, count, last = sum(reader.skipped.values()), 0, 0
        for k, (line, row) in enumerate(src.rows, 1):
            last = line if src.by_line else k
            try:
                where = {"file": src.name, "line": line}
                answer, answer_where = None, None
                if labels is not None:
                    if last > len(labels) or not labels[last - 1]:
                        raise DataError(f"no answer for row {line} of {src.name}", file=str(src.labels), line=last)
                    answer, answer_where = labels[last - 1], {"file": str(src.labels), "line": last}
                q = to_question(row, a, **where, answer=answer, answer_where=answer_where, id_prefix=prefix)
                target = split or _row_split(row, a, **where)
                if q.id in seen:
                    raise DataError(f"duplicate id {q.id!r} (first at {seen[q.id]})", **where, field=a.columns.id)
                seen[q.id] = f"{src.name}:{line}"
                got[target].append(q)
                count += 1
            except DataError as e:
                reader.fail(e)
        if labels is not None and any(labels[last:]):  # a labels file of another split or version
            raise DataError(f"{len([x for x in labels if x])} answers for {last} rows of {src.name}",
                            file=str(src.labels))
        if not count:
            bad = sum(reader.skipped.values()) - before
            raise DataError("no questions" + (f" ({bad} bad rows skipped)" if bad else ""), file=src.name)
    splits = _carve(got, given, a, seed)
    splits.skipped = reader.skipped
    return splits


def _row_split(row, a: AdapterConfig, *, file: str, line: int) -> str:
    value = str(_get(row, a.columns.split, file=file, line=line)).strip().lower()
    if value not in SPLIT_NAMES:
        raise DataError(f"split {value!r} is none of {', '.join(SPLIT_NAMES)}", file=file, line=line,
                        field=a.columns.split)
    return SPLIT_NAMES[value]


def _carve(got: dict[str, list[Question]], given: set[str], a: AdapterConfig, seed: int) -> Splits:
    """Valid / test splits no file or column gave: seeded fractions of train (train keeps its order)."""
    train = got["train"]
    rule = a.split_rule
    want = {s: getattr(rule, s) or 0.0 for s in ("test", "valid") if s not in given}
    if any(want.values()):
        order = list(range(len(train)))
        random.Random(rule.seed if rule.seed is not None else seed).shuffle(order)
        start = 0
        for split, frac in want.items():
            take = sorted(order[start:start + round(len(train) * frac)])
            got[split] = [train[i] for i in take]
            start += len(take)
        keep = set(order[start:])
        got["train"] = [q for i, q in enumerate(train) if i in keep]
    return Splits(got["train"], got["valid"], got["test"])
