"""Where a training run's numbers go: rank 0's console lines, metrics.jsonl, TensorBoard, and MLflow / W&B.

    Window   per-stage sums of the objective's metrics between two log lines (all-reduced across ranks)
    Log      rank 0's sinks: metrics.jsonl rows as they happen, TensorBoard scalars, console lines, Trackers
    Trackers MLflow and Weights & Biases through Ray's integrations

MLflow and W&B are off unless configured (`train.tracking.mlflow_uri`, `train.tracking.wandb_project`). Rank 0 of every training
run (phase 1, each reflect round) opens one tracker run with `ray.air.integrations.{mlflow,wandb}.setup_*`,
logs the run's settings as parameters and every metrics.jsonl row as metrics at its step, and closes it.

Credentials come only from the environment the Ray workers inherit (MLFLOW_TRACKING_TOKEN or the tracking
server's own variables, WANDB_API_KEY); they are never put in the config, the Ray runtime env (visible in job
metadata) or the logged parameters. `wandb_mode: offline` keeps W&B runs on disk for a later `wandb sync`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

from ..config import TrackingConfig
from ..errors import ConfigError
from ..storage import StorageError, append_jsonl, read_from

log = logging.getLogger(__name__)


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


class Window:
    """Per-stage sums of the objective's metrics since the last log line (averaged across ranks on reduce)."""

    def __init__(self):
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counts: Counter = Counter()
        self.seconds, self.wait, self.samples = 0.0, 0.0, 0

    def add(self, stage: str, metrics: dict[str, float], seconds: float, wait: float, rows: int) -> None:
        for k, v in metrics.items():
            self.sums[stage][k] += float(v)
        self.counts[stage] += 1
        self.seconds += seconds
        self.wait += wait
        self.samples += rows

    def reduce(self, dist, step: int, epoch: int, lr: float, world: int, total: int) -> dict:
        # every rank logs at the same steps with the same stages (one schedule), so one all-reduce lines up
        keys = sorted((s, k) for s in self.sums for k in self.sums[s])
        t = torch.tensor([self.sums[s][k] for s, k in keys] + [self.wait, self.seconds], dtype=torch.float64)
        dist.all_reduce(t)
        wait = t[-2].item()
        row = {"kind": "train", "step": step, "total_steps": total, "epoch": epoch, "lr": lr}
        for (s, k), v in zip(keys, t[:-2].tolist(), strict=True):
            row[f"{k}/{s}"] = v / (self.counts[s] * world)
        if all(f"loss/{s}" in row for s in self.counts):  # the overall loss: a step-weighted mean of the stages'
            row["loss"] = sum(row[f"loss/{s}"] * c for s, c in self.counts.items()) / sum(self.counts.values())
        row["samples_per_s"] = self.samples * world / max(t[-1].item() / world, 1e-9)
        row["data_wait"] = wait / max(t[-1].item(), 1e-9)  # share of step time spent waiting for batches
        return row


class Log:
    """Rank 0's sinks for one training run (`enabled` False on the other ranks: every call is a no-op)."""

    def __init__(self, metrics: Path, tb: Path, phase: str, enabled: bool, *, tracking: TrackingConfig | None = None,
                 run_name: str = "", params: dict | None = None):
        self.enabled, self.phase, self.path = enabled, phase, metrics
        self.tb = self.trackers = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(tb))
            if tracking is not None:
                self.trackers = Trackers(tracking, name=f"{run_name}/{phase}", params=params or {},
                                         out_dir=metrics.parent)

    def event(self, row: dict) -> None:
        if self.enabled:
            append_jsonl(self.path, [{**row, "time": time.time()}])

    def train(self, row: dict) -> None:
        if not self.enabled:
            return
        self.event(row)
        for k, v in row.items():
            if isinstance(v, float) and k != "epoch":
                self.tb.add_scalar(f"train/{k}", v, row["step"])
        if self.trackers is not None:
            self.trackers.log(row, row["step"])
        stages = " ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in row.items() if k.startswith("loss/"))
        log.info("[%s] step %d/%d loss %.4f (%s) lr %.2e %.1f samples/s, data wait %.0f%%", self.phase, row["step"],
                 row["total_steps"], row.get("loss", float("nan")), stages, row["lr"], row["samples_per_s"],
                 100 * row["data_wait"])

    def eval(self, step: int, metrics: dict) -> None:
        self.event({"kind": "eval", "step": step, **metrics})
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.tb.add_scalar(f"val/{k}", v, step)
        if self.trackers is not None:
            self.trackers.log({f"val/{k}": v for k, v in metrics.items()}, step)
        log.info("[%s] step %d eval %s", self.phase, step, metrics)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.trackers is not None:
            self.trackers.close()


class Follow:
    """The driver's view of a training run while fit() blocks: it follows rank 0's metrics.jsonl (the workers'
    own lines stay in their logs) into a progress bar with the loss and the learning rate, and one line per
    evaluation point. A remote run's rank 0 writes on its own node and uploads at each evaluation: the driver
    then follows the uploaded file (`remote`), every few seconds."""

    def __init__(self, metrics: Path, phase: str, total: int, remote: str | None = None):
        self.path, self.phase, self.total, self.remote = metrics, phase, total, remote
        self.offset = metrics.stat().st_size if metrics.exists() else 0  # a resumed run: only the new rows
        self.every = 5.0 if remote else 0.5  # an object store is asked, not a local file
        self.done = threading.Event()
        self.bar = None

    def __enter__(self) -> Follow:
        from .. import console

        self.bar = console.progress(total=self.total, desc=f"{self.phase} steps", unit="step")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self._poll()
        self.bar.close()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            self._poll()

    def _new_bytes(self) -> bytes:
        try:
            return read_from(self.remote or self.path, self.offset)
        except (OSError, StorageError):  # not written (uploaded) yet, or the store hiccupped: the next poll asks again
            return b""

    def _poll(self) -> None:
        chunk = self._new_bytes()
        whole = chunk[: chunk.rfind(b"\n") + 1]  # a row still being written waits for the next poll
        self.offset += len(whole)
        for line in whole.splitlines():
            try:
                self._show(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue

    def _show(self, row: dict) -> None:
        if row.get("kind") == "train":
            self.bar.n = row["step"]
            self.bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}", lr=f"{row['lr']:.1e}", refresh=True)
        elif row.get("kind") == "eval" and "val_accuracy" in row:
            log.info("[%s] step %d/%d: val accuracy %.3f%s", self.phase, row["step"], self.total,
                     row["val_accuracy"], " (best so far)" if row.get("best") else "")
