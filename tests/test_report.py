"""The end-of-run report from a run directory shaped as the stages leave it: every cell holds a value or "-",
and every table's header says what its columns are."""

from __future__ import annotations

import json
import re

from tinythinker_ray.report import write_report
from tinythinker_ray.rundir import RunDir
from tinythinker_ray.storage import append_jsonl, atomic_write_json


def _run(run):
    """What teach, sft, eval, reflect and the pipeline write, in their own shapes (values from a real tiny run)."""
    atomic_write_json(run / "teach" / "stats.json", {
        "questions": 12, "samples": 24, "kept": 24, "backend": "rules", "seconds": 97.9, "dropped": {},
        "rounds": [{"round": 0, "questions": 12, "samples": 24, "parsed": 24}],
        "rows": {"recall": {"rows": 24, "written": 21}, "analyze": {"rows": 96, "written": 84},
                 "summarize": {"rows": 24, "written": 21}},
        "fewshot": {"source": "file", "examples": 4, "origin": "/data/synth"}})
    append_jsonl(run / "sft" / "metrics.jsonl", [
        {"kind": "start", "step": 0, "total_steps": 40},
        {"kind": "train", "step": 10, "loss": 8.05, "loss/recall": 8.9},
        {"kind": "train", "step": 20, "loss": 7.09},
        {"kind": "eval", "step": 20, "val_accuracy": 0.25, "val_questions": 4},
        {"kind": "train", "step": 30, "loss": 6.5},
        {"kind": "eval", "step": 35, "val_accuracy": 0.5, "val_questions": 4}])
    atomic_write_json(run / "eval" / "valid-sft" / "summary.json", {
        "accuracy": 0.25, "lenient_accuracy": 0.5, "sc_accuracy": None, "n": 4, "samples": 1})
    atomic_write_json(run / "reflect" / "iter_1" / "record.json", {
        "round": 1, "recall_pairs": 6, "analyze_pairs": 0, "stopped": "too few preference pairs", "seconds": 3.5})
    manifest = RunDir(run).manifest
    manifest.mark("run/teach", seconds=97.9)
    manifest.mark("sft", best_dir=str(run / "sft" / "best"), steps=40)  # the driver's own mark: no seconds
    manifest.mark("run/sft", best=str(run / "sft" / "best"), seconds=261.6)
    manifest.mark("reflect/iter_1", record={"round": 1, "seconds": 3.5})


def _tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table as rows of cells (the header first, the |---| line left out)."""
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(---\|)+", line):
                cur.append([c.strip() for c in line.strip("|").split("|")])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_report_has_no_empty_cells_and_says_what_columns_are(tmp_path):
    _run(tmp_path)
    text = write_report(tmp_path).read_text()
    tables = _tables(text)
    assert len(tables) >= 6
    for table in tables:
        assert all(cell for row in table for cell in row), table  # nothing empty
        assert len(set(table[0])) == len(table[0]), table[0]  # no header twice ("rows | rows | written")
        assert "None" not in {cell for row in table for cell in row}
    assert "| stage | rows built | rows written (deduplicated) |" in text
    assert "| round | questions asked | samples | parsed |\n|---|---|---|---|\n| 0 | 12 | 24 | 24 |" in text
    # an eval point shows the training loss last logged at or before its step
    assert "| step | val accuracy | train loss (last logged) |" in text
    assert "| 20 | 0.250 | 7.090 |" in text and "| 35 | 0.500 | 6.500 |" in text
    assert "| valid-sft | 0.250 | 0.500 | - | 4 |" in text  # no self-consistency vote with one sample
    assert "| sft | - |" in text and "| run/sft | 261.600 |" in text and "| reflect/iter_1 | 3.500 |" in text
    assert json.loads((tmp_path / "teach" / "stats.json").read_text())["dropped"] == {}  # empty: no table
    assert "dropped:" not in text
