"""Artifacts get the permissions the user's umask gives any file (0644 under 022), not mkstemp's private 0600: the
writers a run uses (config, manifest, stage JSONL, report and plot) and an export (model files, model card)."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from tinythinker_ray import cli
from tinythinker_ray.config import dump_config, load_config
from tinythinker_ray.models import build_tiny, load_student
from tinythinker_ray.report import write_report
from tinythinker_ray.rundir import RunDir
from tinythinker_ray.storage import append_jsonl, atomic_write_text, write_jsonl
from tinythinker_ray.train.loop import export_hf


@pytest.fixture
def umask():
    """Set the process umask for one test (the writers read it from the kernel at each create)."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _written(root, skip: str = "//") -> dict[str, tuple[int, bool]]:
    """Every file and folder under root (and root): relative name -> (permission bits, is a folder)."""
    return {f"{root.name}/{p.relative_to(root)}": (stat.S_IMODE(p.stat().st_mode), p.is_dir())
            for p in [root, *root.rglob("*")] if not str(p.relative_to(root)).startswith(skip)}


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_run_and_export_artifacts_follow_the_umask(mask, file_mode, dir_mode, umask, tmp_path, tiny_t5):
    umask(mask)
    run = tmp_path / "run"
    shutil.copytree(tiny_t5, run / "sft" / "best")  # the phase-1 student (copied: its modes are the cache's)
    atomic_write_text(run / "config.yaml", dump_config(load_config(overrides=[f"run_dir={run}"])))
    RunDir(run).manifest.mark("run/teach", seconds=1.0)
    write_jsonl(run / "teach" / "recall.jsonl", [{"input": "q", "target": "r"}])
    append_jsonl(run / "teach" / "replies.jsonl", [{"id": "q1"}])
    atomic_write_text(run / "eval" / "valid-sft" / "summary.json", json.dumps({"accuracy": 0.5, "n": 2}))
    write_report(run)
    assert cli.main(["export", f"--run_dir={run}", str(tmp_path / "export")]) == 0
    build_tiny("llama", tmp_path / "built")  # a built-in student, as `models build` makes it
    export_hf(*load_student(tiny_t5), run / "reflect" / "iter_1" / "best")  # a round's best, as training saves it

    written = {**_written(run, skip="sft"), **_written(tmp_path / "export"), **_written(tmp_path / "built")}
    for name in ("config.yaml", "manifest.json", "report.md", "accuracy.png", "teach/recall.jsonl",
                 "teach/replies.jsonl"):
        assert f"run/{name}" in written, name
    for name in ("export/README.md", "export/model.safetensors", "export/tokenizer.json", "built/model.safetensors",
                 "run/reflect/iter_1/best/model.safetensors"):
        assert name in written, name
    wrong = {k: oct(mode) for k, (mode, folder) in written.items() if mode != (dir_mode if folder else file_mode)}
    assert not wrong, wrong
