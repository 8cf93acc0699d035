"""One training loop for both phases: Ray Train `TorchTrainer` workers, each driving a DeepSpeed engine.

    fit(spec, datasets, objective, evaluate) -> FitResult

- `datasets`: {stage: tokenized, materialized Ray Dataset} (batches.prepare_stage). fit() wraps each in
  `epoch_stream` (new block order and row shuffle every epoch; length buckets when it has a "length" column
  and train.bucket_by_length), Ray Train splits it equally across the workers, and a worker only ever sees
  `ray.train.get_dataset_shard(stage)`. A stage of at most `train.memory_epoch_rows` rows per worker is cut
  into equal shards by the driver instead (`batches.memory_shards`: block references, no split actors); each
  worker fetches its shard once and reshuffles it in memory every epoch (`memory_epoch`).
- `spec.steps`: the stage of every global step (schedule.py), identical on every worker, so all ranks run
  the same collectives in the same order.
- `objective`: how a Ray batch becomes tensors (`collate`) and tensors become a loss (`loss`). Phase 1 passes
  `Objective("sft", collate_sft, sft_loss)`; phase 2 passes its own unit (see `Objective`).
- `evaluate(model, tokenizer) -> {"val_accuracy": ...}` runs on rank 0 with the live model every
  `spec.eval_every` steps and at the end (`eval.chain.ChainEval` = the real chain inference); each evaluation is
  also a checkpoint: every rank writes its DeepSpeed shard and Ray keeps the best `checkpoints_to_keep` by
  accuracy. A new best is exported as a plain HF folder to `spec.out.best` (with no `evaluate`: the final model).

Rerunning with the same `spec.out` and `name` resumes from the latest checkpoint at its step. Rank 0 writes
`spec.out.metrics` and TensorBoard files in `spec.out.tb` (train/tracking.py). With `spec.remote_out` (a remote
run directory) the workers, which may sit on any node, write on their own node's disk (its cache, never the
driver's mirror), checkpoint to the remote and upload their outputs there; the driver follows the uploaded
metrics and copies the outputs down when the run is over. `spec.model_path` may be a URI (a remote run's model):
each node fetches its own copy.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import ConfigError
from ..rundir import RunDir, TrainDir
from ..storage import atomic_dir, copy_tree, read_jsonl
from . import resume, tracking
from .batches import epoch_stream, memory_epoch, memory_shards, read_blocks

DS_TAG = "ds"  # DeepSpeed checkpoint tag inside every Ray checkpoint folder


@dataclass(frozen=True)
class Objective:
    """A training objective as a small unit that the loop runs without knowing what it is.

    collate(batch: {column: numpy array}, pad_id: int) -> {name: tensor}
        Runs in the Ray Data iterator on the worker; turns one batch of tokenized rows into tensors.
    loss(model, batch: {name: tensor}) -> (loss tensor, {metric: float})
        `model` is the DeepSpeed engine (call it like the HF model; `.module` is the HF model). The loop calls
        `engine.backward(loss)` and logs the floats (averaged over the logging window, per stage).
    Both must be picklable (module-level functions or functools.partial): Ray ships them to the workers.
    Anything an objective needs besides the policy (e.g. reference log-probs for DPO) travels as dataset
    columns, computed before `fit`.
    """

    name: str
    collate: Callable[[dict, int], dict]
    loss: Callable[[Any, dict], tuple[torch.Tensor, dict[str, float]]]


@dataclass(frozen=True)
class FitSpec:
    """Everything a worker needs, besides datasets, objective and evaluation (all picklable)."""

    model_path: str  # HF folder of the starting weights
    out: TrainDir  # ray/ (checkpoints), best/, tb/, metrics.jsonl of this run
    steps: list[str]  # stage of every global step
    steps_per_epoch: int  # where stage iterators restart (and shuffle anew)
    batch_size: int  # per worker, per micro step
    lr: float
    train: TrainConfig
    scheduler: str = "cosine"  # cosine | linear | constant (each with linear warmup)
    warmup: float = 0.0  # fraction of optimizer steps
    eval_every: int | None = None  # None: only at the end
    name: str = "train"  # Ray Train run name: the same name + out resumes
    remote_out: str | None = None  # the remote URI `out` stands for (RunDir.remote_of), None for a local run
    seed: int = 42
    phase: str = "train"  # prefix in console lines and metrics
    run_name: str = ""  # the run directory's name, for tracker run names


@dataclass
class FitResult:
    best_dir: str | None
    best_accuracy: float | None
    history: list[dict]  # eval points: {"step", "val_accuracy", "loss", ...}
    steps: int
    seconds: float  # wall clock of fit(), start-up included
    train_seconds: float  # time inside training steps (no start-up, eval or checkpoints)
    data_seconds: float  # of which waiting for the next batch (rank 0, this attempt; epoch restarts included)
    metrics: dict = field(default_factory=dict)  # the last report


# ----- driver ------------------------------------------------------------------------------------------------------

def fit(spec: FitSpec, datasets: dict, objective: Objective, evaluate: Callable | None = None) -> FitResult:
    """Run the worker loop on `spec.train.num_workers` Ray Train workers; blocks until done."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    missing = sorted(set(spec.steps) - set(datasets))
    if missing:
        raise ConfigError(f"schedule uses stages without a dataset: {missing}")
    tc = spec.train
    tracking.check(tc.tracking)
    t0 = time.time()
    out, remote = spec.out, spec.remote_out
    out.root.mkdir(parents=True, exist_ok=True)
    if not remote and (repaired := resume.repair(out.ray / spec.name)):  # else Ray refuses the whole run
        logging.getLogger(__name__).warning("%s: %s", spec.name, repaired)
    stages = sorted(set(spec.steps))
    memory = tuple(s for s in stages if datasets[s].count() // tc.num_workers <= tc.memory_epoch_rows)
    resources = {"CPU": tc.cpus_per_worker} | ({"GPU": tc.gpus_per_worker} if tc.use_gpu else {})
    score = "val_accuracy" if evaluate is not None else None
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"spec": spec, "objective": objective, "evaluate": evaluate,
                           "memory_shards": {s: memory_shards(datasets[s], tc.num_workers) for s in memory}},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=spec.name, storage_path=f"{remote}/{out.ray.name}" if remote else str(out.ray),
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=tc.checkpoints_to_keep, checkpoint_score_attribute=score,
                                               checkpoint_score_order="max"),
            worker_runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}} if not tc.use_gpu else None,
            callbacks=_tune_callbacks()),
        # memory stages travel as shards in train_loop_config (read once, reshuffled on the worker)
        datasets={s: epoch_stream(datasets[s], batch_size=spec.batch_size,
                                  bucket=tc.bucket_by_length and "length" in datasets[s].columns())
                  for s in stages if s not in memory},
    )
    with tracking.Follow(out.metrics, spec.phase, len(spec.steps), remote=remote and f"{remote}/{out.metrics.name}"):
        result = trainer.fit()
    if remote:
        copy_tree(remote, str(out.root), skip=(out.ray.name,))
    history = eval_history(out.metrics)
    best = max(history, key=lambda r: r.get("val_accuracy", -1.0), default=None)
    last = dict(result.metrics or {})
    return FitResult(best_dir=str(out.best) if out.has_best() else None,
                     best_accuracy=best.get("val_accuracy") if best else None, history=history,
                     steps=int(last.get("step", history[-1]["step"] if history else 0)),
                     seconds=time.time() - t0, train_seconds=float(last.get("train_seconds", 0.0)),
                     data_seconds=float(last.get("data_seconds", 0.0)), metrics=last)


def _tune_callbacks() -> list:
    """Inside a Ray Tune trial, forward every report (val_accuracy at each eval point) to Tune for ASHA."""
    from ray.tune.trainable.trainable_fn_utils import _in_tune_session

    if not _in_tune_session():
        return []
    from ray.tune.integration.ray_train import TuneReportCallback

    return [TuneReportCallback()]


def eval_history(metrics_path: Path) -> list[dict]:
    """Eval points of metrics.jsonl in step order; a resumed run's repeat of a step replaces the first."""
    by_step = {r["step"]: r for r in read_jsonl(metrics_path) if r.get("kind") == "eval"}
    return [by_step[s] for s in sorted(by_step)]


def deepspeed_config(tc: TrainConfig, *, batch_size: int, lr: float, world_size: int) -> dict:
    """The DeepSpeed config dict from `train.*`: ZeRO stage, offload, accumulation, precision, AdamW."""
    if tc.offload_params and tc.zero_stage != 3:
        raise ConfigError("config key 'train.offload_params': parameter offload needs train.zero_stage=3")
    if tc.offload_optimizer and tc.zero_stage == 0:
        raise ConfigError("config key 'train.offload_optimizer': optimizer offload needs train.zero_stage>=1")
    # One rank has nothing to partition: ZeRO-1/2 would only add gradient and optimizer-state copies
    # (ENGINES.md: 0.73x / 0.67x of a plain loop in one process, ZeRO-0 1.0x). Offload still needs ZeRO.
    single = world_size == 1 and not (tc.offload_optimizer or tc.offload_params)
    zero: dict[str, Any] = {"stage": 0 if single else tc.zero_stage}
    if tc.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": tc.use_gpu}
    if tc.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": tc.use_gpu}
    bf16 = tc.use_gpu if tc.bf16 is None else tc.bf16
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": tc.grad_accum,
        "train_batch_size": batch_size * tc.grad_accum * world_size,
        "gradient_clipping": tc.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        # torch's AdamW unless offloaded (then DeepSpeed's CPU Adam): FusedAdam needs a CUDA build
        "optimizer": {"type": "AdamW", "params": {"lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                                                  "torch_adam": not tc.offload_optimizer}},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def optimizer_steps(spec: FitSpec) -> int:
    return math.ceil(len(spec.steps) / spec.train.grad_accum)


def lr_scheduler_factory(spec: FitSpec):
    """optimizer -> LambdaLR: linear warmup, then cosine / linear decay to 0, or constant."""
    from transformers import get_scheduler

    total = optimizer_steps(spec)
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[spec.scheduler]
    return partial(get_scheduler, name, num_warmup_steps=math.ceil(spec.warmup * total), num_training_steps=total)


# ----- worker ------------------------------------------------------------------------------------------------------

def _exit_when_orphaned(interval: float = 0.2) -> None:
    """A Ray worker is its raylet's child. When a local driver is killed its Ray goes with it, but Ray ends an
    orphaned worker only after a second or more, long enough to train on and write checkpoints nobody registers
    (issue #24): this worker leaves as soon as its parent is gone. (On a cluster, a dead driver's actors are
    ended by Ray's GCS; their raylet lives on.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-when-orphaned", daemon=True).start()


def _worker(config: dict) -> None:
    _exit_when_orphaned()
    spec: FitSpec = config["spec"]
    if spec.remote_out:  # a remote run: write on this node's own disk (the driver's mirror is the driver's), upload
        spec = replace(spec, out=TrainDir(RunDir(spec.remote_out).root))
    objective: Objective = config["objective"]
    evaluate = config["evaluate"]
    if not spec.train.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import ray
    import ray.train
    import torch.distributed as dist
    from ray.train import Checkpoint

    from ..models import load_student

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(spec.seed)
    model, tok = load_student(spec.model_path)
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(spec.train, batch_size=spec.batch_size, lr=spec.lr, world_size=world),
        lr_scheduler=lr_scheduler_factory(spec))
    # One rank has no one to average with, yet DeepSpeed still flattens every gradient, all-reduces it over a
    # 1-process group and copies it back each step: +20% step time on tiny-t5 (benchmarks/README.md).
    engine.enable_backward_allreduce = world > 1
    device = engine.device

    start, best, train_seconds, data_seconds, ray_data_startup = 0, -1.0, 0.0, 0.0, 0.0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            _, client = engine.load_checkpoint(d, tag=DS_TAG)
        start, best, train_seconds = client["step"], client["best"], client.get("train_seconds", 0.0)
    out = spec.out
    if spec.remote_out and rank == 0:  # a restarted run may land on another node: continue its metrics there
        shutil.rmtree(out.root, ignore_errors=True)  # the remote is the truth: no rows of an earlier run at this URI
        copy_tree(spec.remote_out, str(out.root), skip=(out.ray.name, out.best.name))
    log = tracking.Log(out.metrics, out.tb, spec.phase, enabled=rank == 0, tracking=spec.train.tracking,
                       run_name=spec.run_name, params=_params(spec, world, objective.name))
    total = len(spec.steps)
    log.event({"kind": "start", "step": start, "total_steps": total, "resumed": checkpoint is not None,
               "world_size": world, "objective": objective.name,
               "node": ray.get_runtime_context().get_node_id()})  # where a (re)started run landed

    stages = sorted(set(spec.steps))
    in_memory = config["memory_shards"]  # stage -> every rank's block references (small stages only)
    shards = {s: ray.train.get_dataset_shard(s) for s in stages if s not in in_memory}
    collate = partial(objective.collate, pad_id=tok.pad_token_id)

    kept: dict = {}  # stage -> this rank's rows of a memory stage (fetched at the first epoch)

    def open_epoch(epoch: int) -> dict:  # each call starts a new epoch of every stage, in a new order
        out = {}
        for s in stages:
            if s in in_memory:
                if s not in kept:
                    kept[s] = read_blocks(in_memory[s][rank])
                # seeded by epoch: a resumed run replays its epoch's order, so skipping the trained batches is exact
                out[s] = (_to_device(b, device) for b in memory_epoch(
                    kept[s], batch_size=spec.batch_size, bucket=spec.train.bucket_by_length, collate=collate,
                    seed=(spec.seed, rank, epoch)))
            else:
                out[s] = iter(shards[s].iter_torch_batches(batch_size=spec.batch_size, drop_last=True,
                                                           collate_fn=collate, device=device))
        return out

    iters: dict = {}
    window = tracking.Window()
    eval_every = spec.eval_every or total
    for step in range(start, total):
        epoch, in_epoch = divmod(step, spec.steps_per_epoch)
        t = time.perf_counter()
        if not iters or in_epoch == 0:
            iters = open_epoch(epoch)
            # a resumed run first skips the batches its epoch already trained: the rest of the epoch lines up
            for stage, n in Counter(spec.steps[step - in_epoch:step]).items():
                for _ in range(n):
                    next(iters[stage])
        stage = spec.steps[step]
        batch = next(iters[stage], None)
        wait = time.perf_counter() - t
        if step == start:  # Ray Data starts its split executors on the first fetch (~10 s): start-up, not a step
            ray_data_startup, wait, t = wait, 0.0, time.perf_counter()
        data_seconds += wait
        if batch is None:  # re-opening one shard alone would stall the others at Ray's epoch barrier: stop
            raise RuntimeError(f"rank {rank}: stage '{stage}' ran out of batches at step {step}, before the "
                               "schedule planned (the schedule must be built from the per-worker batch counts)")
        loss, metrics = objective.loss(engine, batch)
        engine.backward(loss)
        engine.step()
        dt = time.perf_counter() - t
        train_seconds += dt
        window.add(stage, metrics, dt, wait, spec.batch_size)
        done = step + 1
        if done % spec.train.log_every == 0 or done == total:
            log.train(window.reduce(dist, done, epoch, engine.get_lr()[0], world, total))
            window = tracking.Window()
        if done % eval_every == 0 or done == total:
            results = _evaluate(engine, tok, evaluate, spec, rank, best, done, log)
            best = max(best, results.get("val_accuracy", best))
            if spec.remote_out and rank == 0:  # metrics so far, and the model when it is a new best
                new_best = results.get("best") or (evaluate is None and done == total)
                copy_tree(str(out.root), spec.remote_out, skip=(out.ray.name,) if new_best else (out.ray.name, out.best.name))
            with tempfile.TemporaryDirectory() as tmp:
                engine.save_checkpoint(tmp, tag=DS_TAG,
                                       client_state={"step": done, "best": best, "train_seconds": train_seconds})
                dist.barrier()
                ray.train.report({"step": done, "epoch": done / spec.steps_per_epoch, "train_seconds": train_seconds,
                                  "data_seconds": data_seconds, "data_startup_seconds": ray_data_startup, **results},
                                 checkpoint=Checkpoint.from_directory(tmp))
    log.close()
    if spec.remote_out and rank == 0:  # TensorBoard's last events are flushed by close()
        copy_tree(str(out.root), spec.remote_out, skip=(out.ray.name, out.best.name))
    dist.barrier()  # ENGINES.md: ZeRO-3 + offload can abort at exit without this
    dist.destroy_process_group()


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _params(spec: FitSpec, world: int, objective: str) -> dict:
    """The run's settings, logged as parameters to MLflow / W&B."""
    t = spec.train
    return {"phase": spec.phase, "objective": objective, "model": spec.model_path, "steps": len(spec.steps),
            "lr": spec.lr, "batch_size": spec.batch_size, "scheduler": spec.scheduler, "warmup": spec.warmup,
            "seed": spec.seed, "world_size": world, "zero_stage": t.zero_stage, "grad_accum": t.grad_accum,
            "bf16": t.bf16, "out_dir": str(spec.out.root)}


def _evaluate(engine, tok, evaluate, spec: FitSpec, rank: int, best: float, step: int, log: tracking.Log) -> dict:
    """Evaluate on rank 0 and export a new best; returns the same metrics on every rank (for the checkpoint).

    Without an `evaluate`, the final model is the one exported.
    """
    import torch.distributed as dist

    if evaluate is None:
        if step == len(spec.steps):
            model = _full_model(engine, rank)
            if rank == 0:
                export_hf(model, tok, spec.out.best)
        return {}
    model = _full_model(engine, rank)  # collective under ZeRO-3: every rank takes part
    results: list = [None]
    if rank == 0:
        t = time.time()
        metrics = evaluate(model, tok)
        metrics["eval_seconds"] = round(time.time() - t, 2)
        if metrics["val_accuracy"] > best:
            export_hf(model, tok, spec.out.best)
            metrics["best"] = True
        log.eval(step, metrics)
        results = [metrics]
    dist.broadcast_object_list(results, src=0)
    return results[0]


def _full_model(engine, rank: int):
    """The HF model with whole weights: the live module, or under ZeRO-3 a rank-0 copy of the gathered weights."""
    if engine.zero_optimization_stage() < 3:
        return engine.module
    state = engine._zero3_consolidated_16bit_state_dict()
    if rank != 0:
        return None
    copy = type(engine.module)(engine.module.config)
    copy.load_state_dict(state, strict=False)
    copy.tie_weights()
    return copy.to(engine.device)


def export_hf(model, tok, dest: Path) -> None:
    """save_pretrained + tokenizer into a temporary folder, then swapped in: readers never see half a model."""
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
