"""benchmarks/learning.py: its report (pure), and one tiny end-to-end run of the script as a user starts it (slow: real teach, Ray Train + DeepSpeed sft, chain eval, report files)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"


def _learning():
    spec = importlib.util.spec_from_file_location("learning_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_lines_list_seeds_in_order_whatever_order_the_runs_finished():
    rows = [{"family": "t5", "seed": s, "stage": "summarize", "test": t, "steps": 10}
            for s, t in ((2, 0.2), (0, 0.4), (1, 0.3))]
    [line] = _learning().aggregate(rows, ["t5"], [0, 1, 2], rounds=0)
    assert line["seeds"] == [0, 1, 2] and line["test_per_seed"] == [0.4, 0.3, 0.2]


@pytest.mark.slow
def test_learning_check_runs_end_to_end_and_writes_its_report(tmp_path):
    """Two seeds: each runs in a child process, both drivers of the parent's one local Ray."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--work", str(tmp_path / "work"), "--out", str(out), "--families", "t5",
           "--seeds", "0,1", "--modes", "summarize", "--rounds", "0", "--steps", "10", "--train", "80",
           "--valid", "6", "--test", "12", "--train-sample", "6", "--teacher-samples", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "starting the t5 seed 1 runs in a child process" in done.stdout
    log = done.stdout + done.stderr
    assert log.count("Started a local Ray instance") == 1  # the parent's; each child joins it
    assert log.count("Connecting to existing Ray cluster") == 2
    report = json.loads((out / "learning.json").read_text())
    [line] = report["table"]
    assert (line["family"], line["stage"], line["seeds"]) == ("t5", "summarize", [0, 1])
    assert 0.0 <= line["test"] <= 1.0 and line["steps"] == 10
    t5 = json.loads((tmp_path / "work" / "models" / "t5-0" / "config.json").read_text())
    assert (t5["num_layers"], t5["num_decoder_layers"]) == (2, 2)  # the Llama's 4 blocks, split
    assert report["meta"]["oracle"] > 0.9  # the rule teacher as the student answers its own world
    md = (out / "learning.md").read_text()
    assert "| t5 | S | 10 |" in md and "chance **33.3%**" in md
    assert (out / "learning.png").stat().st_size > 1000
    # a rerun finds every unit in the cache and trains nothing
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "sft:" not in again.stdout and "(6 units reused" in (out / "learning.md").read_text()
    # the cache is keyed by unit only: other training settings are refused, not mixed in
    other = subprocess.run([*cmd, "--lr", "5e-3"], capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "lr: 0.003 -> 0.005" in other.stderr and "--fresh" in other.stderr
