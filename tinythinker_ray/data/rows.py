"""Rows of benchmark files -> Questions, one row at a time: the readers every loader shares (loaders.py for the
benchmarks' own formats, adapter.py for any other dataset). A malformed row is a DataError naming file, line and
field, or is skipped and counted (skip_bad_rows).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..core.records import Question
from ..errors import DataError


@dataclass
class Splits:
    train: list[Question]
    valid: list[Question]
    test: list[Question]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (with skip_bad_rows)

    def get(self, name: str) -> list[Question]:
        return {"train": self.train, "valid": self.valid, "validation": self.valid, "test": self.test}[name]


class RowReader:
    """Turns rows into Questions; raises or counts errors depending on `skip_bad_rows`."""

    def __init__(self, skip_bad_rows: bool):
        self.skip = skip_bad_rows
        self.skipped: dict[str, int] = {}

    def fail(self, err: DataError) -> None:
        if not self.skip:
            raise err
        reason = f"{err.field or 'row'}: {err.message}"
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def jsonl_rows(self, path: Path) -> Iterator[tuple[int, object]]:
        """(line number, parsed JSON) per non-blank line; undecodable lines go through `fail`."""
        # Split the bytes on newlines ourselves: str.splitlines also splits inside JSON strings holding U+2028,
        # and decoding line by line lets a bad byte name its line (and be skipped like any bad row).
        for i, raw in enumerate(path.read_bytes().split(b"\n"), 1):
            try:
                line = raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as e:
                self.fail(DataError(f"not UTF-8 text ({e.reason} at byte {e.start} of the line)",
                                    file=str(path), line=i))
                continue
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                self.fail(DataError(f"bad JSON: {e.msg} at column {e.colno}", file=str(path), line=i))

    def jsonl(self, path: Path) -> list[Question]:
        out, bad = [], sum(self.skipped.values())
        for i, row in self.jsonl_rows(path):
            try:
                out.append(csqa_row(row, file=str(path), line=i))
            except DataError as e:
                self.fail(e)
        if not out:
            bad = sum(self.skipped.values()) - bad
            raise DataError("no questions in file" + (f" ({bad} bad rows skipped)" if bad else ""), file=str(path))
        return out

    @staticmethod
    def json_list(path: Path) -> list:
        """A file holding one JSON list (StrategyQA's format); its "lines" are 1-based list indices."""
        try:
            rows = json.loads(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=str(path)) from None
        except json.JSONDecodeError as e:
            raise DataError(f"bad JSON: {e.msg} at column {e.colno}", file=str(path), line=e.lineno) from None
        if not isinstance(rows, list):
            raise DataError("expected a JSON list of questions", file=str(path))
        return rows

    def strategyqa(self, path: Path) -> list[Question]:
        rows = self.json_list(path)
        out = []
        for i, row in enumerate(rows, 1):  # "line" here is the 1-based index in the list
            try:
                out.append(strategyqa_row(row, file=str(path), line=i))
            except DataError as e:
                self.fail(e)
        return out


def need(row, key, typ, *, file, line, where=""):
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}", file=file, line=line,
                        field=where.rstrip(".") or None)
    if key not in row:
        raise DataError("missing", file=file, line=line, field=where + key)
    if not isinstance(row[key], typ):
        raise DataError(f"expected {getattr(typ, '__name__', typ)}, got {type(row[key]).__name__}",
                        file=file, line=line, field=where + key)
    return row[key]


def csqa_row(row: dict, *, file: str = "<row>", line: int = 0) -> Question:
    """A CSQA/OBQA-shaped row -> Question. Any number of options; labels must be unique."""
    if not isinstance(row, dict):
        raise DataError("row is not a JSON object", file=file, line=line)
    qid = str(row.get("id", f"{Path(file).stem}-{line}"))
    question = need(row, "question", dict, file=file, line=line)
    stem = need(question, "stem", str, file=file, line=line, where="question.")
    if not stem.strip():
        raise DataError("empty question", file=file, line=line, field="question.stem")
    choices = need(question, "choices", list, file=file, line=line, where="question.")
    if len(choices) < 2:
        raise DataError("needs at least 2 options", file=file, line=line, field="question.choices")
    options = []
    for j, c in enumerate(choices):
        label = need(c, "label", str, file=file, line=line, where=f"question.choices[{j}].")
        text = need(c, "text", str, file=file, line=line, where=f"question.choices[{j}].")
        if len(label) != 1 or label not in string.ascii_uppercase:  # the format's parsers read [A-Z]
            raise DataError(f"option label must be one capital letter, got {label!r}", file=file, line=line,
                            field=f"question.choices[{j}].label")
        options.append((label, text.strip()))
    labels = [label for label, _ in options]
    if len(set(labels)) != len(labels):
        raise DataError(f"duplicate option labels {labels}", file=file, line=line, field="question.choices")
    answer = need(row, "answerKey", str, file=file, line=line)
    if answer not in labels:
        raise DataError(f"answer {answer!r} is not among the options {labels}", file=file, line=line,
                        field="answerKey")
    return Question(id=qid, stem=stem.strip(), options=tuple(options), answer=answer)


def strategyqa_row(row: dict, *, file: str = "<row>", line: int = 0) -> Question:
    if not isinstance(row, dict):
        raise DataError("row is not a JSON object", file=file, line=line)
    stem = need(row, "question", str, file=file, line=line)
    answer = need(row, "answer", bool, file=file, line=line)
    qid = str(row.get("qid", f"strategyqa-{line}"))
    return Question(id=qid, stem=stem.strip(), options=(("A", "yes"), ("B", "no")), answer="A" if answer else "B")
