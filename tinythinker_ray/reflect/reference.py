"""Reference log-probs for RPO, computed ONCE per round in a Ray Data pass: the trainer holds no second model.

pairs {"prompt", "chosen", "rejected", "stage"} --tokenize (Ray Data tasks)--> chosen/rejected token columns
      --PairScorer (Ray Data workers holding the reference model)--> + ref_chosen_logp, ref_rejected_logp
Both stages go through one pass, then split into one dataset per stage for the trainer. The scores come from
`train.losses.pair_logps` on `train.batches.collate_pairs`, the very code that scores the policy in training,
so at step 0 the policy's rewards are exactly 0. The same scorer scores the round's best checkpoint afterwards
(prefix "best"): the chosen-minus-rejected log-prob margin on the pairs before and after the round.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial

import numpy as np

from ..config import Config
from ..raylib import folder_stamp, map_replicas
from ..train.batches import PAIR_COLUMNS, collate_pairs, count_true, encode_pair_rows, shuffled_dataset
from ..train.losses import pair_logps

REF = ("ref_chosen_logp", "ref_rejected_logp")


class PairScorer:
    """A student held by one replica, scoring pair batches: adds `<prefix>_chosen_logp` / `<prefix>_rejected_logp`."""

    def __init__(self, model_path: str, use_gpu: bool, bf16: bool):
        import torch

        from ..models import load_student

        self.device = "cuda" if use_gpu else "cpu"
        # the policy trains in bf16 exactly when DeepSpeed's bf16 is on: score in the same precision
        self.model, self.tok = load_student(model_path, dtype=torch.bfloat16 if bf16 else torch.float32,
                                            device=self.device)
        self.model.eval()

    def score(self, batch: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
        import torch

        tensors = {k: v.to(self.device) for k, v in collate_pairs(batch, self.tok.pad_token_id).items()}
        with torch.no_grad():
            chosen, rejected, _ = pair_logps(self.model, tensors)
        batch[f"{prefix}_chosen_logp"] = chosen.float().cpu().numpy()
        batch[f"{prefix}_rejected_logp"] = rejected.float().cpu().numpy()
        return batch


def _score(scorer: PairScorer, batch: dict[str, np.ndarray], *, prefix: str) -> dict[str, np.ndarray]:
    return scorer.score(batch, prefix)


def score_pairs(ds, model_path: str, cfg: Config, prefix: str):
    """Lazily add one model's summed chosen/rejected log-probs to a tokenized pair dataset (a scorer is light on
    CPU: kept in the task worker process, like the samplers; on GPUs an actor per worker)."""
    tc = cfg.train
    bf16 = tc.use_gpu if tc.bf16 is None else tc.bf16
    return map_replicas(ds, build=partial(PairScorer, model_path, use_gpu=tc.use_gpu, bf16=bf16),
                        call=partial(_score, prefix=prefix), key=("pair scorer", folder_stamp(model_path), bf16),
                        light=True, replicas=tc.num_workers, num_cpus=tc.cpus_per_worker,
                        num_gpus=tc.gpus_per_worker if tc.use_gpu else 0, batch_size=cfg.reflect.batch_size)


def with_reference_logps(pairs: list[dict], model_path: str, cfg: Config):
    """Pairs of every stage -> one materialized dataset: "stage", token and reference columns."""
    ds = shuffled_dataset([{k: p[k] for k in ("prompt", "chosen", "rejected", "stage")} for p in pairs],
                          cfg.reflect.seed)  # pairs come grouped by question
    ds = ds.map_batches(_encode, fn_kwargs={"model_path": model_path, "max_length": cfg.student.max_length},
                        batch_format="numpy", batch_size=256)
    return score_pairs(ds, model_path, cfg, "ref").materialize()


def _encode(batch: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:  # keeps "stage" beside the tokens
    return {"stage": batch["stage"], **encode_pair_rows(batch, **kwargs)}


def stage_datasets(scored, stages, cfg: Config) -> tuple[dict, dict[str, int], dict[str, tuple[int, int]]]:
    """One training dataset per stage (token + reference columns), its batches per worker, and (pairs cut by
    student.max_length, pairs)."""
    datasets, sizes, cut = {}, {}, {}
    for stage in stages:
        ds = scored.filter(expr=f"stage == {stage!r}").materialize()
        cut[stage] = (count_true(ds, "truncated"), ds.count())
        datasets[stage] = ds.select_columns([*PAIR_COLUMNS, *REF]).materialize()
        sizes[stage] = cut[stage][1] // cfg.train.num_workers // cfg.reflect.batch_size
    return datasets, sizes, cut


def logp_margins(scored, model_path: str, cfg: Config) -> dict[str, dict[str, float]]:
    """Per stage: mean chosen-minus-rejected summed log-prob under the reference and under `model_path`."""
    cols = ["ref_chosen_logp", "ref_rejected_logp", "best_chosen_logp", "best_rejected_logp"]
    again = score_pairs(scored.select_columns(["stage", *PAIR_COLUMNS, *REF]), model_path, cfg, "best")
    sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))
    for b in again.select_columns(["stage", *cols]).iter_batches(batch_format="numpy"):
        for stage in set(b["stage"].tolist()):
            m = b["stage"] == stage
            sums[stage] += [m.sum(), *(b[c][m].astype(np.float64).sum() for c in cols)]
    return {s: {"reference": float((v[1] - v[2]) / v[0]), "best": float((v[3] - v[4]) / v[0])}
            for s, v in sums.items()}
