"""`tinythinker sft`: stage files in, a trained student out. Data errors (no Ray) and one real run from the CLI.

The real run trains a tiny T5 on 2 Ray Train workers under DeepSpeed ZeRO-2 on an overfit set (8 CSQA
questions with templated rationales) until the full recall -> analyze -> summarize chain answers all 8, and
logs to MLflow (a local file store) and W&B (offline) through Ray's integrations on the way.
"""

from __future__ import annotations

import json

import pytest
from test_train_loop import overfit_rows

from tinythinker_ray.config import build_config
from tinythinker_ray.errors import ConfigError, DataError
from tinythinker_ray.rundir import RunDir
from tinythinker_ray.storage import read_jsonl, write_jsonl
from tinythinker_ray.train import sft as sft_mod


def _write_run(run_dir, questions, rows=None):
    for stage, stage_rows in (rows or overfit_rows(questions)).items():
        write_jsonl(run_dir / "teach" / f"{stage}.jsonl", stage_rows)
    write_jsonl(run_dir / "teach" / "questions" / "valid.jsonl", [q.to_dict() for q in questions])


def test_bad_stage_data_names_file_line_and_field(tmp_path, csqa_questions):
    cfg = build_config({"run_dir": str(tmp_path)})
    with pytest.raises(DataError, match="recall.jsonl"):
        sft_mod.sft(cfg)  # no teach/ yet
    rows = overfit_rows(csqa_questions[:2])
    rows["analyze"][3] = {"input": rows["analyze"][3]["input"], "target": ""}
    _write_run(tmp_path, csqa_questions[:2], rows)
    with pytest.raises(DataError) as err:
        sft_mod.sft(cfg)
    assert (err.value.file, err.value.line, err.value.field) == (str(tmp_path / "teach" / "analyze.jsonl"), 4, "target")


def test_options_are_read_from_the_stage_inputs(csqa_questions, tmp_path):
    rows = overfit_rows(csqa_questions[:3])
    assert sft_mod.num_options(rows["summarize"], tmp_path / "s.jsonl") == 5
    with pytest.raises(DataError, match=r"s.jsonl:1, field .input."):
        sft_mod.num_options([{"input": "no stage cue here", "target": "x"}], tmp_path / "s.jsonl")
    with pytest.raises(ConfigError):
        sft_mod.main(build_config({"run_dir": str(tmp_path)}), ["extra"])


def test_wandb_online_without_a_key_is_refused_on_the_driver(monkeypatch):
    from tinythinker_ray.config import TrackingConfig
    from tinythinker_ray.train import tracking

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="WANDB_API_KEY"):
        tracking.check(TrackingConfig(wandb_project="p"))
    tracking.check(TrackingConfig(wandb_project="p", wandb_mode="offline"))  # offline needs no key
    tracking.check(TrackingConfig(mlflow_uri="http://mlflow:5000"))


@pytest.mark.slow
def test_cli_sft_trains_t5_on_two_workers_until_the_chain_is_right(ray_local, tiny_t5, csqa_questions, tmp_path,
                                                                    capsys):
    from tinythinker_ray.cli import main
    from tinythinker_ray.eval.chain import accuracy, run_chain
    from tinythinker_ray.sampling.base import GenParams
    from tinythinker_ray.sampling.hf import HFSampler

    questions = csqa_questions[:8]
    _write_run(tmp_path, questions)
    code = main(["sft", "--model", tiny_t5, f"--run_dir={tmp_path}", "--train.num_workers", "2",
                 "--train.zero_stage", "2", "--train.log_every", "50", "--sft.batch_size", "4", "--sft.interval", "1",
                 "--sft.lr", "3e-3", "--sft.scheduler", "cosine", "--sft.warmup", "0.05", "--sft.max_steps", "300",
                 "--sft.eval_every", "100", "--student.max_new_tokens", "24",
                 "--train.tracking.mlflow_uri", f"file://{tmp_path / 'mlruns'}", "--train.tracking.experiment", "t",
                 "--train.tracking.wandb_project", "tt", "--train.tracking.wandb_mode", "offline"])
    assert code == 0
    out = capsys.readouterr().out
    assert "val_accuracy" in out and "best: 1.0" in out  # the table of eval points
    metrics = list(read_jsonl(tmp_path / "sft" / "metrics.jsonl"))
    evals = [r for r in metrics if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [100, 200, 300]
    assert max(r["val_accuracy"] for r in evals) == 1.0
    train = [r for r in metrics if r["kind"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"] * 0.3
    done = RunDir(tmp_path).manifest.get("sft")
    assert done["val_accuracy"] == 1.0 and done["steps"] == 300
    # the exported best/ is a plain HF folder: reloaded from disk, it answers the whole overfit set
    sampler = HFSampler(done["best_dir"])
    results = run_chain(sampler, questions, recall=GenParams(max_tokens=24), analyze=GenParams(max_tokens=24))
    assert accuracy(results)["accuracy"] == 1.0
    assert json.loads((tmp_path / "sft" / "best" / "config.json").read_text())["is_encoder_decoder"]
    _assert_tracked(tmp_path, train, evals)


def _assert_tracked(tmp_path, train: list[dict], evals: list[dict]) -> None:
    """One MLflow run (rank 0 only, not one per worker) holding the settings and the same numbers as
    metrics.jsonl; one offline W&B run file."""
    import os

    import mlflow

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = mlflow.MlflowClient(tracking_uri=f"file://{tmp_path / 'mlruns'}")
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.run_name == f"{tmp_path.name}/sft" and run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2" and run.data.params["lr"] == "0.003"
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in losses] == [(r["step"], r["loss"]) for r in train]
    assert len(client.get_metric_history(run.info.run_id, "loss.recall")) == len(train)
    val = client.get_metric_history(run.info.run_id, "val.val_accuracy")
    assert [(m.step, m.value) for m in val] == [(r["step"], r["val_accuracy"]) for r in evals]
    (wandb_run,) = (tmp_path / "sft" / "wandb").glob("offline-run-*/run-*.wandb")
    assert b"val/val_accuracy" in wandb_run.read_bytes()
