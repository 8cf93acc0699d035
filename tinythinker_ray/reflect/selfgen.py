"""Self-generation for phase 2: the current student's own chains, on the shared chain-inference actor pool.

Two passes per round, both through `map_with_sampler` (one engine per replica: vLLM for causal students, HF
`generate` for T5, the rule eval uses):
  recalls    every training question: `samples` chains with the recall SAMPLED (temperature, top-k off), the
             analyses and the summary greedy; one JSON row per question -> generations.jsonl
  analyses   every (question, chosen recall) of the recall pairs: `analyze_samples` analysis sets SAMPLED,
             summary greedy -> analyze_generations.jsonl
The chains are those of the phase-1 mode the student was trained in (`sft.mode`): a recall_summarize student is
asked for no analyses it never learned to write.
With `temperature_decay` > 0 the samples come one pass at a time, the temperature lowered by it per pass (as
the reference allows). Rows are appended as Ray Data blocks finish; a rerun skips the rows already there.
Sampling is seeded per block from `seed` (the round's, from reflect.seed) and the block's first row, so a fresh
rerun on the same machine draws the same chains and another reflect.seed draws others (a replicate).
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from pathlib import Path

from .. import console
from ..config import Config
from ..core.modes import Mode, get_mode
from ..core.records import Question
from ..eval.chain import run_chain
from ..sampling.base import GenParams, Sampler
from ..sampling.pool import choose_backend, map_with_sampler
from ..storage import append_jsonl, read_jsonl

SUMMARY_TOKENS = 16  # "So the answer is option X." and a margin


def _passes(samples: int, temperature: float, decay: float) -> list[tuple[int, float]]:
    """(n, temperature) per pass: one pass of n samples, or one sample per pass at a falling temperature."""
    if decay <= 0:
        return [(samples, temperature)]
    return [(1, max(temperature - k * decay, 0.0)) for k in range(samples)]


def block_seed(seed: int | None, first_key: str) -> int | None:
    """A Ray Data block's sampling seed: the round's seed and the block's first row. Per block, not per question,
    because one `generate` call samples the whole batch from one generator."""
    return None if seed is None else (seed * 1_000_003 + zlib.crc32(first_key.encode())) % 2**31


def _chains(sampler: Sampler, questions: list[Question], passes, max_tokens: int, stage: str, mode: Mode,
            recalls: list[str] | None = None, seed: int | None = None) -> list[list[dict]]:
    """Per question, the chains of every pass; `stage` is the one sampled (the other stages are greedy), pass k
    with seed `seed + k` (None: the process's random state)."""
    out: list[list[dict]] = [[] for _ in questions]
    greedy = GenParams(max_tokens=max_tokens)
    for k, (n, temperature) in enumerate(passes):
        sampled = GenParams(n=n, temperature=temperature, max_tokens=max_tokens,
                            seed=None if seed is None else seed + k)
        results = run_chain(sampler, questions, mode, recall=sampled if stage == "recall" else greedy,
                            analyze=sampled if stage == "analyze" else greedy,
                            summarize=GenParams(max_tokens=SUMMARY_TOKENS), fixed_recalls=recalls)
        for i, rs in enumerate(results):
            out[i] += [{"recall": r.recall, "analyses": [list(a) for a in r.analyses or []],
                        "summary": r.summary, "prediction": r.prediction} for r in rs]
    return out


def recall_task(sampler: Sampler, rows: list[dict], *, passes, max_tokens: int, mode: str,
                seed: int | None = None) -> list[dict]:
    """Ray Data task: rows {"key", "question" (JSON)} -> rows {"key", "row" (a generations.jsonl line)}."""
    questions = [Question.from_dict(json.loads(r["question"])) for r in rows]
    chains = _chains(sampler, questions, passes, max_tokens, "recall", get_mode(mode),
                     seed=block_seed(seed, rows[0]["key"]))
    return [{"key": r["key"], "row": json.dumps({"qid": q.id, "question": q.to_dict(), "chains": cs})}
            for r, q, cs in zip(rows, questions, chains, strict=True)]


def analyze_task(sampler: Sampler, rows: list[dict], *, passes, max_tokens: int, mode: str,
                 seed: int | None = None) -> list[dict]:
    """Ray Data task: rows {"key", "question", "recall", "backup" (JSON)} -> analyze_generations lines."""
    questions = [Question.from_dict(json.loads(r["question"])) for r in rows]
    recalls = [r["recall"] for r in rows]
    chains = _chains(sampler, questions, passes, max_tokens, "analyze", get_mode(mode), recalls=recalls,
                     seed=block_seed(seed, rows[0]["key"]))
    keep = ("analyses", "summary", "prediction")
    return [{"key": r["key"], "row": json.dumps({"qid": q.id, "question": q.to_dict(), "recall": rec,
                                                 "backup": json.loads(r["backup"]),
                                                 "chains": [{k: c[k] for k in keep} for c in cs]})}
            for r, q, rec, cs in zip(rows, questions, recalls, chains, strict=True)]


def _key(row: dict) -> str:
    """The unit of resume: a question (recall pass) or a question and recall (analyze pass)."""
    return json.dumps([row["qid"], row.get("recall")])


def _trim_torn_tail(path: Path) -> None:
    """Cut a last line a killed writer left without its newline, so appending goes on after a whole row."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _generate(cfg: Config, model: str, requests: list[dict], out: Path, task, desc: str) -> Path:
    """Run `task` over the requests not yet in `out` on the sampler pool, appending rows as blocks finish."""
    import ray
    _trim_torn_tail(out)
    done = {_key(r) for r in read_jsonl(out)}
    todo = [{k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()} | {"key": _key(r)}
            for r in requests if _key(r) not in done]
    if not todo:
        return out
    sampler_cfg = cfg.sampler.model_copy(update={"backend": choose_backend(cfg.sampler, model), "model": model})
    ds = map_with_sampler(ray.data.from_items(todo), sampler_cfg, task, model=model)
    with console.progress(total=len(requests), initial=len(requests) - len(todo), desc=desc, unit="row") as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows = [json.loads(s) for s in batch["row"]]
            append_jsonl(out, rows)
            bar.update(len(rows))
    return out


def generate_recalls(cfg: Config, model: str, questions: list[Question], out: Path, seed: int | None = None) -> Path:
    r = cfg.reflect
    task = functools.partial(recall_task, passes=_passes(r.samples, r.temperature, r.temperature_decay),
                             max_tokens=cfg.student.max_new_tokens, mode=cfg.sft.mode, seed=seed)
    requests = [{"qid": q.id, "question": q.to_dict()} for q in questions]
    return _generate(cfg, model, requests, out, task, "self-generation: recalls")


def generate_analyses(cfg: Config, model: str, requests: list[dict], out: Path, seed: int | None = None) -> Path:
    """`requests` from pairs.analyze_requests: {"qid", "question", "recall", "backup"}."""
    r = cfg.reflect
    passes = _passes(r.analyze_samples, r.temperature, r.temperature_decay)
    task = functools.partial(analyze_task, passes=passes, max_tokens=cfg.student.max_new_tokens, mode=cfg.sft.mode,
                             seed=seed)
    return _generate(cfg, model, requests, out, task, "self-generation: analyses")
