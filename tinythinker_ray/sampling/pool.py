"""The Ray Data pool of samplers that teacher sampling, evaluation and self-generation all share.

`map_with_sampler(ds, cfg, task)` runs `task(sampler, rows) -> rows` over a Ray Data dataset on `cfg.replicas`
workers, each holding one engine (one vLLM / HF model per replica, reused across batches and across the three
chain stages). Engines that load in a second on CPU (`Sampler.light`) run as Ray Data tasks that keep the
engine in their worker process, the others as actors (raylib.map_replicas). Which class is `cfg.backend`,
backends.py says; `choose_backend` resolves `auto`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from ..backends import AUTO, engine
from ..config import SamplerConfig
from ..raylib import folder_stamp, map_replicas
from .base import Sampler

log = logging.getLogger(__name__)
Task = Callable[[Sampler, list[dict]], list[dict]]


def choose_backend(cfg: SamplerConfig, model_path: str | None) -> str:
    """`auto`: the first engine of backends.AUTO that runs the model (vLLM for causal students, HF for T5);
    an explicit engine that cannot run an encoder-decoder model falls back the same way, saying so."""
    if cfg.backend != "auto" and not engine(cfg.backend).causal_only:
        return cfg.backend
    from transformers import AutoConfig

    from ..models import is_seq2seq, resolve_model

    seq2seq = bool(model_path) and is_seq2seq(AutoConfig.from_pretrained(resolve_model(model_path)))
    if not seq2seq:
        return AUTO[0] if cfg.backend == "auto" else cfg.backend
    fits = next(name for name in AUTO if not engine(name).causal_only)
    if cfg.backend != "auto":
        log.info("%s is encoder-decoder (T5), which the %s backend cannot run: using %s", model_path, cfg.backend,
                 fits)
    return fits


def make_sampler(cfg: SamplerConfig, model: str | None = None) -> Sampler:
    """Build the engine named by `cfg.backend` (imported lazily: vLLM is heavy)."""
    if cfg.backend == "auto":
        cfg = cfg.model_copy(update={"backend": choose_backend(cfg, model or cfg.model)})
    return engine(cfg.backend).build(cfg, model)


def _to_rows(batch: dict) -> list[dict]:
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    return [{k: _py(batch[k][i]) for k in keys} for i in range(n)]


def _py(v):
    return v.tolist() if hasattr(v, "tolist") else v


def _to_batch(rows: list[dict]) -> dict:
    keys = list(rows[0]) if rows else []
    return {k: [r[k] for r in rows] for k in keys}


def _run_task(sampler: Sampler, batch: dict, *, task: Task) -> dict:
    return _to_batch(task(sampler, _to_rows(batch)))


def map_with_sampler(ds, cfg: SamplerConfig, task: Task, *, model: str | None = None, batch_size: int | None = None):
    """Lazily map `task` over `ds` on `cfg.replicas` engines."""
    if cfg.backend == "auto":
        cfg = cfg.model_copy(update={"backend": choose_backend(cfg, model or cfg.model)})
    # the key tells a swapped-in best model (same path, new files) from the one a worker holds
    key = ("sampler", cfg.model_dump_json(), folder_stamp(model or cfg.model))
    return map_replicas(ds, build=partial(make_sampler, cfg, model), call=partial(_run_task, task=task), key=key,
                        light=engine(cfg.backend).light, replicas=cfg.replicas, num_cpus=cfg.cpus_per_replica,
                        num_gpus=cfg.gpus_per_replica, batch_size=batch_size or cfg.batch_size)
