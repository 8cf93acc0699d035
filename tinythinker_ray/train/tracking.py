"""Experiment tracking beyond TensorBoard: MLflow and Weights & Biases through Ray's integrations.

Off unless configured (`train.tracking.mlflow_uri`, `train.tracking.wandb_project`). Rank 0 of every training
run (phase 1, each reflect round) opens one tracker run with `ray.air.integrations.{mlflow,wandb}.setup_*`,
logs the run's settings as parameters and every metrics.jsonl row as metrics at its step, and closes it.

Credentials come only from the environment the Ray workers inherit (MLFLOW_TRACKING_TOKEN or the tracking
server's own variables, WANDB_API_KEY); they are never put in the config, the Ray runtime env (visible in job
metadata) or the logged parameters. `wandb_mode: offline` keeps W&B runs on disk for a later `wandb sync`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import TrackingConfig
from ..errors import ConfigError


def check(tc: TrackingConfig) -> None:
    """On the driver, before any worker starts: what is known to fail there fails here, with the key to set."""
    if tc.wandb_project and tc.wandb_mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise ConfigError("train.tracking.wandb_project: W&B online needs the WANDB_API_KEY environment variable "
                          "(or train.tracking.wandb_mode: offline)")


class Trackers:
    """The open tracker runs of one training run; `log` and `close` are no-ops when none is configured."""

    def __init__(self, tc: TrackingConfig, *, name: str, params: dict, out_dir: Path):
        self.mlflow = self.wandb = None
        if tc.mlflow_uri:
            from ray.air.integrations.mlflow import setup_mlflow

            if tc.mlflow_uri.startswith("file:"):  # asked for by name: MLflow 3 refuses its file store unless told
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
            self.mlflow = setup_mlflow(params, tracking_uri=tc.mlflow_uri, experiment_name=tc.experiment,
                                       run_name=name, create_experiment_if_not_exists=True, rank_zero_only=False)
        if tc.wandb_project:
            from ray.air.integrations.wandb import setup_wandb

            if tc.wandb_mode == "offline":  # Ray's setup asks for an API key unless the variable says offline
                os.environ["WANDB_MODE"] = "offline"
            # rank_zero_only=False: Ray's rank check reads the Train V1 session; only rank 0 gets here anyway
            self.wandb = setup_wandb(params, rank_zero_only=False, project=tc.wandb_project, group=tc.experiment,
                                     trial_id=None, trial_name=name, dir=str(out_dir),
                                     mode=tc.wandb_mode)

    def log(self, metrics: dict, step: int) -> None:
        numbers = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "time")}
        if self.mlflow is not None:
            # "loss" and "loss/recall" cannot both exist in MLflow's file store (a name is a path there): use "."
            self.mlflow.log_metrics({k.replace("/", "."): v for k, v in numbers.items()}, step=step)
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        if self.mlflow is not None:
            self.mlflow.end_run()
        if self.wandb is not None:
            self.wandb.finish()
