"""`tinythinker tune`: search-space parsing (pure) and a real 2-trial sweep, each trial a Ray Train run."""

from __future__ import annotations

import csv

import pytest
import yaml
from test_sft import _write_run

from tinythinker_ray.config import build_config, load_config
from tinythinker_ray.errors import ConfigError
from tinythinker_ray.tune import load_space, tune_run


def test_space_keys_and_kinds_are_checked(tmp_path):
    good = tmp_path / "space.yaml"
    good.write_text(yaml.safe_dump({"sft.lr": {"loguniform": [1e-4, 1e-3]}, "sft.interval": {"grid": [1, 2]},
                                    "sft.mode": {"choice": ["summarize", "recall_summarize"]}}))
    space = load_space(str(good), "sft")
    assert set(space) == {"sft.lr", "sft.interval", "sft.mode"}
    assert space["sft.interval"] == {"grid_search": [1, 2]}
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text(yaml.safe_dump({"sft.learning_rate": {"choice": [1e-4]}}))
    with pytest.raises(ConfigError, match="sft.learning_rate"):
        load_space(str(bad_key), "sft")
    bad_kind = tmp_path / "kind.yaml"
    bad_kind.write_text(yaml.safe_dump({"sft.lr": {"normal": [0, 1]}}))
    with pytest.raises(ConfigError, match="sft.lr"):
        load_space(str(bad_kind), "sft")


def test_tune_refuses_a_run_without_teacher_data(tmp_path):
    with pytest.raises(ConfigError, match="teach"):
        tune_run(build_config({"run_dir": str(tmp_path)}))


@pytest.mark.slow
def test_two_trial_sweep_runs_real_trials_and_writes_a_reusable_best_config(ray_local, tiny_t5, csqa_questions,
                                                                           tmp_path):
    _write_run(tmp_path, csqa_questions[:4])
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"sft.lr": {"grid": [1e-3, 3e-3]}}))
    cfg = build_config({
        "run_dir": str(tmp_path), "student": {"model": tiny_t5, "max_new_tokens": 16},
        "train": {"num_workers": 1, "zero_stage": 0, "eval_limit": 4, "log_every": 5},
        "sft": {"batch_size": 4, "interval": 1, "max_steps": 6, "eval_every": 3},
        "tune": {"space": str(space), "num_samples": 1, "max_concurrent": 1, "asha_grace": 1},
    })
    table, best = tune_run(cfg)
    assert len(table) == 2 and set(table["sft.lr"]) == {1e-3, 3e-3}
    assert table["val_accuracy"].between(0, 1).all()
    rows = list(csv.DictReader(open(tmp_path / "tune" / "results.csv")))
    assert len(rows) == 2
    # each trial trained for real in its own directory, linked to the shared teacher data
    trials = sorted((tmp_path / "tune" / "trials").iterdir())
    assert len(trials) == 2
    for t in trials:
        assert (t / "teach").is_symlink() and (t / "sft" / "metrics.jsonl").exists()
    reused = load_config(str(tmp_path / "tune" / "best.yaml"))
    assert reused.sft.lr == best.sft.lr and reused.sft.lr in (1e-3, 3e-3)


def test_counting_a_flag_column_works_inside_a_trials_placement_group(ray_local, tmp_path):
    """Phase 1 and reflection count truncated rows inside `tinythinker tune` trials; Ray Data's `ds.sum` asks for
    memory in a shuffle that a trial's CPU-only placement group cannot place (the learning check's reflect trials
    failed on it). `count_true` must give the count there."""
    import ray
    from ray import tune

    from tinythinker_ray.train.batches import count_true

    def trial(config):
        rows = [{"stage": "recall" if i % 2 else "analyze", "truncated": i % 3 == 0, "text": "x" * 200}
                for i in range(60)]
        ds = ray.data.from_items(rows, override_num_blocks=6).materialize()
        ds = ds.filter(expr="stage == 'recall'").materialize()  # as reflection cuts its pairs by stage
        tune.report({"count": count_true(ds, "truncated")})

    results = tune.Tuner(tune.with_resources(trial, {"CPU": 1}), run_config=tune.RunConfig(
        storage_path=str(tmp_path), verbose=0)).fit()
    assert not results.errors
    assert results[0].metrics["count"] == 10  # odd i < 60 divisible by 3
