"""The Ray Data actor pool that teacher sampling, evaluation and self-generation all share.

`map_with_sampler(ds, cfg, task)` runs `task(sampler, rows) -> rows` over a Ray Data dataset on `cfg.replicas`
actors, each holding one engine for its whole life (one vLLM / HF model per replica, reused across batches and
across the three chain stages). `make_sampler` is the one place that knows the engines.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import SamplerConfig
from .base import Sampler

Task = Callable[[Sampler, list[dict]], list[dict]]


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


def map_with_sampler(ds, cfg: SamplerConfig, task: Task, *, model: str | None = None, batch_size: int | None = None):
    """Lazily map `task` over `ds` on an actor pool of `cfg.replicas` engines; returns a Ray Dataset."""
    return ds.map_batches(
        SamplerActor,
        fn_constructor_kwargs={"cfg": cfg, "task": task, "model": model},
        batch_size=batch_size or cfg.batch_size,
        batch_format="numpy",
        concurrency=cfg.replicas,
        num_cpus=cfg.cpus_per_replica,
        num_gpus=cfg.gpus_per_replica,
    )
