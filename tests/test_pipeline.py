"""`tinythinker run`: the whole method as one resumable pipeline, killed midway and rerun.

Fast enough for CI because the teacher is the rules teacher over the synthetic world (real replies in the
teacher format, no LLM) and the student a tiny T5; everything else is the real path: Ray Data pools,
Ray Train + DeepSpeed for both phases, chain evaluation, the report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tinythinker_ray.config import SynthConfig
from tinythinker_ray.errors import TinyThinkerError
from tinythinker_ray.rundir import RunDir, RunLock
from tinythinker_ray.storage import atomic_write_text, copy_tree, read_jsonl
from tinythinker_ray.world import synth

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, tiny_t5: str) -> Path:
    data = tmp_path / "synth"
    synth.write(SynthConfig(train=24, valid=8, test=8, entities=12, properties=8, fewshot=4), data)
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "data": {"name": "custom", "path": str(data), "max_train": 12, "max_eval": 4},
        "teacher": {"backend": "rules", "model": str(data / "world.json"), "fewshot_path": str(data),
                    "shots": 2, "samples": 2, "augment": 2, "block_size": 4, "retry_rounds": 0},
        "student": {"model": tiny_t5, "max_new_tokens": 24},
        "sampler": {"backend": "hf", "batch_size": 8},
        "train": {"num_workers": 1, "zero_stage": 0, "eval_limit": 4, "log_every": 10},
        "sft": {"interval": 2, "lr": 3e-3, "batch_size": 4, "max_steps": 40, "eval_every": 20},
        "reflect": {"iterations": 1, "samples": 2, "analyze_samples": 2, "max_questions": 6, "cycles": 1,
                    "batch_size": 2, "lr": 1e-4},
        "cluster": {"num_cpus": 4},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _manifest(run: Path) -> dict:
    p = run / "manifest.json"
    return json.loads(p.read_text())["steps"] if p.exists() else {}


@pytest.mark.slow
def test_run_killed_midway_resumes_then_reruns_what_went_missing(tiny_t5, tmp_path):
    config = _config(tmp_path, tiny_t5)
    run = tmp_path / "run"
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tinythinker_ray.cli", "run", "--config", str(config)]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    while "run/sft" not in _manifest(run) and first.poll() is None and time.time() < deadline:
        time.sleep(1)
    assert "run/sft" in _manifest(run), (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)  # the driver and everything it started, mid-pipeline
    first.wait()
    done_before = _manifest(run)
    replies_before = (run / "teach" / "replies.jsonl").read_text()
    sft_metrics_before = (run / "sft" / "metrics.jsonl").read_text()

    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "teach: done already" in second.stdout and "sft: done already" in second.stdout
    # a quiet console: the method's own lines only; the engines' logs are in the run's logs/ (console.py)
    printed = (second.stdout + second.stderr).splitlines()
    assert len(printed) <= 40 and not [ln for ln in printed if "WARNING" in ln or "Traceback" in ln], printed
    logs = run / "logs"
    assert {"run.log", "eval-test-final.log", "reflect.log"} <= {p.name for p in logs.glob("*.log")}
    assert (logs / "ray").is_symlink() and any((logs / "ray").glob("raylet*"))  # the workers' own logs
    steps = _manifest(run)
    for step in ("run/teach", "run/sft"):
        assert steps[step] == done_before[step]  # recorded once, not redone
    assert (run / "teach" / "replies.jsonl").read_text() == replies_before  # no teacher request twice
    assert (run / "sft" / "metrics.jsonl").read_text() == sft_metrics_before  # no phase-1 step twice
    for step in ("run/eval/valid-sft", "run/eval/test-sft", "run/reflect", "run/eval/test-final"):
        assert step in steps
    final = json.loads((run / "eval" / "test-final" / "summary.json").read_text())
    assert final["n"] == 4 and 0.0 <= final["accuracy"] <= 1.0
    assert len(list(read_jsonl(run / "eval" / "test-final" / "results.jsonl"))) == 4
    report = (run / "report.md").read_text()
    assert "## Teacher" in report and "## Reflection rounds" in report and "accuracy.png" in report
    assert "few-shot examples: 4, file" in report  # the source the teacher used, in words
    assert (run / "accuracy.png").stat().st_size > 1000

    # Done means done (issue #24), on the same finished run: a step recorded done whose output is gone runs again
    shutil.rmtree(run / "sft" / "best")
    third = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert third.returncode == 0, third.stderr[-3000:]
    said = third.stdout + third.stderr
    assert f"sft: recorded done but {run / 'sft' / 'best' / 'config.json'} is missing; running it again" in said
    assert (run / "sft" / "best" / "config.json").exists() and (run / "sft.incomplete-1" / "ray").exists()
    assert "teach: done already" in said

    # the newest Ray checkpoint folder gone: sft resumes from the one before, then with none left starts over
    ray_run = run / "sft" / "ray" / "sft"
    checkpoints = sorted(p for p in ray_run.glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2  # train.checkpoints_to_keep
    shutil.rmtree(checkpoints[-1])
    sft = [sys.executable, "-m", "tinythinker_ray.cli", "sft", "--config", str(config)]
    fourth = subprocess.run(sft, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert f"resuming from the newest intact checkpoint, {checkpoints[0].name} (step 20)" in fourth.stdout + fourth.stderr
    for c in ray_run.glob("checkpoint_*"):
        if c.is_dir():  # not checkpoint_manager_snapshot.json
            shutil.rmtree(c)
    fifth = subprocess.run(sft, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert fifth.returncode == 0, fifth.stderr[-3000:]
    assert "this step starts over from step 0" in fifth.stdout + fifth.stderr
    assert (run / "sft" / "ray" / "sft.incomplete-1").is_dir() and (run / "sft" / "best" / "config.json").exists()


def test_a_second_run_on_the_same_directory_refuses(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(TinyThinkerError, match="in use"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released on exit (and by the kernel if the holder dies)
        pass


def test_remote_run_dir_round_trips_through_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "cache"))
    uri = f"file://{tmp_path / 'bucket' / 'run'}"
    run = RunDir(uri)
    assert run.remote == uri and run.root != tmp_path / "bucket" / "run" and RunDir(uri).root == run.root
    run.pull()
    atomic_write_text(run.teach.stats, "{}")
    run.push()
    assert (tmp_path / "bucket" / "run" / "teach" / "stats.json").exists()
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "fresh"))  # another machine: nothing local yet
    again = RunDir(uri)
    again.pull()
    assert again.root != run.root and again.teach.stats.read_text() == "{}"
    assert RunDir(str(tmp_path / "plain")).remote is None


def test_a_folder_of_a_remote_run_knows_its_uri_and_trees_copy_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "cache"))
    uri = f"file://{tmp_path / 'bucket' / 'run'}"
    run = RunDir(uri)
    local = run.pull()
    assert run.remote_of(local) == uri and run.remote_of(run.reflect(1).root) == f"{uri}/reflect/iter_1"
    assert RunDir(tmp_path / "plain").remote_of(tmp_path / "plain" / "sft") is None
    atomic_write_text(local / "sft" / "metrics.jsonl", "{}\n")
    atomic_write_text(local / "sft" / "ray" / "big", "x")
    copy_tree(str(local / "sft"), f"{uri}/sft", skip=("ray",))
    assert (tmp_path / "bucket" / "run" / "sft" / "metrics.jsonl").exists()
    assert not (tmp_path / "bucket" / "run" / "sft" / "ray").exists()
    copy_tree(f"{uri}/sft", str(tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere" / "metrics.jsonl").read_text() == "{}\n"


def test_a_remote_runs_models_go_to_workers_as_uris_that_each_node_fetches(tmp_path, monkeypatch):
    """Workers on other nodes cannot read the driver's mirror: a remote run names its models by URI, and
    resolve_model gives each node its own copy, fetched again only when the folder changed."""
    from tinythinker_ray.errors import ConfigError
    from tinythinker_ray.models import for_workers, resolve_model

    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "driver"))
    uri = f"file://{tmp_path / 'bucket' / 'run'}"
    run = RunDir(uri)
    assert run.for_workers(run.sft.best) == f"{uri}/sft/best"
    assert RunDir(tmp_path / "plain").for_workers(tmp_path / "plain" / "sft" / "best") == str(tmp_path / "plain" / "sft" / "best")
    assert for_workers("tiny-t5") == "tiny-t5"  # a built-in: each node builds its own
    remote = tmp_path / "bucket" / "run" / "sft" / "best"
    atomic_write_text(remote / "config.json", '{"model_type": "t5"}')
    atomic_write_text(remote / "model.safetensors", "v1")

    monkeypatch.setenv("TINYTHINKER_CACHE", str(tmp_path / "node-a"))  # a worker's node
    first = Path(resolve_model(f"{uri}/sft/best"))
    assert first.is_relative_to(tmp_path / "node-a") and (first / "model.safetensors").read_text() == "v1"
    assert Path(resolve_model(f"{uri}/sft/best")) == first  # unchanged: not fetched again
    atomic_write_text(remote / "model.safetensors", "v2, retrained")  # a new best swapped in
    second = Path(resolve_model(f"{uri}/sft/best"))
    assert second != first and (second / "model.safetensors").read_text() == "v2, retrained"
    assert first.exists()  # the old copy stays a while: a worker may be loading it right now
    with pytest.raises(ConfigError, match="holds no config.json"):
        resolve_model(f"{uri}/teach")

