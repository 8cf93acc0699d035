"""The Ray Data pool of samplers that teacher sampling, evaluation and self-generation all share.

`map_with_sampler(ds, cfg, task)` runs `task(sampler, rows) -> rows` over a Ray Data dataset on `cfg.replicas`
workers, each holding one engine (one vLLM / HF model per replica, reused across batches and across the three
chain stages):
  actors   vLLM, OpenAI-compatible endpoints, and any engine on a GPU: the engine lives as long as the pass;
  tasks    HF `generate`, rules and replay on CPU (TASK_BACKENDS): the engine is kept in the task worker
           process (raylib.kept_in_process) and Ray reuses those processes, so the next pass over the same
           model (the next eval, self-generation pass, reflect round) starts no process and loads nothing.
`make_sampler` is the one place that knows the engines.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import SamplerConfig
from ..raylib import folder_stamp, kept_in_process
from .base import Sampler

Task = Callable[[Sampler, list[dict]], list[dict]]
# Engines that load in a second on CPU, where an actor pool's start (a new process importing torch and
# transformers, ~5 s on 2 cores) costs more than the pass; GPU engines keep actors, so that no idle process
# holds GPU memory a trainer needs.
TASK_BACKENDS = ("hf", "rules", "replay")


def make_sampler(cfg: SamplerConfig, model: str | None = None) -> Sampler:
    """Build the engine named by `cfg.backend` (imports it lazily: vLLM is heavy)."""
    path = model or cfg.model
    if cfg.backend == "auto":
        from ..eval.evaluate import pick_backend

        cfg = cfg.model_copy(update={"backend": pick_backend(cfg, path)})
    if cfg.backend == "hf":
        from .hf import HFSampler

        return HFSampler(path, batch_size=cfg.batch_size)
    if cfg.backend == "vllm":
        from .vllm import VLLMSampler

        return VLLMSampler(path, cfg)
    if cfg.backend == "openai":
        from .openai import OpenAISampler

        return OpenAISampler(cfg)
    if cfg.backend == "replay":
        from .replay import ReplaySampler

        return ReplaySampler(path)
    if cfg.backend == "rules":
        from .rules import RulesSampler

        return RulesSampler(cfg)
    raise ValueError(f"unknown sampler backend {cfg.backend!r}")


def _to_rows(batch: dict) -> list[dict]:
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    return [{k: _py(batch[k][i]) for k in keys} for i in range(n)]


def _py(v):
    return v.tolist() if hasattr(v, "tolist") else v


def _to_batch(rows: list[dict]) -> dict:
    keys = list(rows[0]) if rows else []
    return {k: [r[k] for r in rows] for k in keys}


class SamplerActor:
    """One replica: builds its engine once, then serves every batch Ray Data hands it."""

    def __init__(self, cfg: SamplerConfig, task: Task, model: str | None = None):
        self.sampler = make_sampler(cfg, model)
        self.task = task

    def __call__(self, batch: dict) -> dict:
        return _to_batch(self.task(self.sampler, _to_rows(batch)))


def run_in_task(batch: dict, *, cfg: SamplerConfig, task: Task, model: str | None) -> dict:
    """One Ray Data task: the batch on this process's kept engine for (cfg, model), built on first use."""
    sampler = kept_in_process(("sampler", cfg.model_dump_json(), folder_stamp(model or cfg.model)),
                              lambda: make_sampler(cfg, model))
    return _to_batch(task(sampler, _to_rows(batch)))


def map_with_sampler(ds, cfg: SamplerConfig, task: Task, *, model: str | None = None, batch_size: int | None = None):
    """Lazily map `task` over `ds` on `cfg.replicas` engines (actors, or tasks: see the module doc)."""
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    common = {"batch_size": batch_size or cfg.batch_size, "batch_format": "numpy",
              "num_cpus": cfg.cpus_per_replica}
    if cfg.backend in TASK_BACKENDS and not cfg.gpus_per_replica:
        return ds.map_batches(run_in_task, fn_kwargs={"cfg": cfg, "task": task, "model": model},
                              compute=TaskPoolStrategy(size=cfg.replicas), **common)
    return ds.map_batches(SamplerActor, fn_constructor_kwargs={"cfg": cfg, "task": task, "model": model},
                          compute=ActorPoolStrategy(size=cfg.replicas), num_gpus=cfg.gpus_per_replica, **common)
