"""`tinythinker eval --model <folder> --split test [--samples K]`: the whole chain on an actor pool, scored.

One Ray Data row per question (the Question as JSON); each replica of the sampler pool runs recall -> analyze
per option -> summarize over its batch of questions with one engine, so the engine's prefix cache serves all
three stages. Greedy with samples=1; with samples=K the recall (and analyses) are sampled at eval.temperature,
K chains per question, and the summaries vote (self-consistency). Causal students run on vLLM, T5 students on
HF `generate` (vLLM has no encoder-decoder support), unless sampler.backend is set explicitly.

Writes eval/<split>/results.jsonl (one row per question with every chain, appended as batches finish: an
interrupted eval resumes where it stopped) and summary.json.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

from .. import console
from ..config import Config
from ..core.modes import Mode, get_mode
from ..core.records import Question
from ..data.loaders import load_dataset_cfg, read_questions
from ..errors import ConfigError, DataError
from ..models import for_workers
from ..raylib import ensure_ray
from ..rundir import EvalDir, RunDir, workspace
from ..sampling.base import GenParams, Sampler
from ..sampling.pool import choose_backend, map_with_sampler
from ..storage import append_jsonl, atomic_write_json, read_jsonl
from .chain import ChainResult, accuracy, run_chain, vote


def chain_params(cfg: Config) -> dict[str, GenParams]:
    """Greedy chains, or K sampled chains: K recalls with one sampled analysis each (the reference's sampled
    generation); without a recall stage the K samples move to the analyses. Summaries stay greedy."""
    k, max_new = cfg.eval.samples, cfg.student.max_new_tokens
    temp = cfg.eval.temperature if k > 1 else 0.0
    use_recall = get_mode(cfg.sft.mode).recall
    return {"recall": GenParams(n=k if use_recall else 1, temperature=temp, max_tokens=max_new, seed=cfg.seed),
            "analyze": GenParams(n=1 if use_recall else k, temperature=temp, max_tokens=max_new, seed=cfg.seed),
            "summarize": GenParams(max_tokens=16)}


def chain_task(sampler: Sampler, rows: list[dict], *, mode: Mode, params: dict[str, GenParams]) -> list[dict]:
    """Runs inside a pool replica: the full chain over one batch of questions."""
    questions = [Question.from_dict(json.loads(r["question"])) for r in rows]
    results = run_chain(sampler, questions, mode, **params)
    return [{"id": q.id, "chains": json.dumps([c.to_dict() for c in rs])} for q, rs in zip(questions, results, strict=True)]


def _record(chains: list[dict], model: str, samples: int) -> dict:
    first = chains[0]
    sc = vote([c["prediction"] for c in chains])
    return {"id": first["question_id"], "label": first["label"], "prediction": first["prediction"],
            "correct": first["correct"], "vote": sc, "sc_correct": sc == first["label"], "model": model,
            "samples": samples, "chains": chains}


def _resumable(results_path: Path, summary_path: Path, model: str, samples: int, ids: set[str]) -> dict:
    """Rows of an interrupted eval of the same model and sample count; a finished one is redone from scratch."""
    if summary_path.exists():
        summary_path.unlink()
        results_path.unlink(missing_ok=True)
    rows = {r["id"]: r for r in read_jsonl(results_path)}
    if any(r.get("model") != model or r.get("samples") != samples for r in rows.values()):
        results_path.unlink()
        return {}
    return {i: r for i, r in rows.items() if i in ids}


def evaluate(cfg: Config, model_path: str, questions: list[Question], split_name: str,
             out_dir: str | Path) -> dict:
    """Score `model_path` on `questions` with the chain; writes results.jsonl + summary.json into `out_dir`
    (RunDir.eval(tag).root in a run); returns the summary."""
    if not questions:
        raise DataError(f"split '{split_name}' has no questions to evaluate", field="eval.split")
    out = EvalDir(Path(out_dir))
    results_path, summary_path = out.results, out.summary
    samples = cfg.eval.samples
    done = _resumable(results_path, summary_path, model_path, samples, {q.id for q in questions})
    todo = [q for q in questions if q.id not in done]

    backend = choose_backend(cfg.sampler, model_path)
    sampler_cfg = cfg.sampler.model_copy(update={"backend": backend, "model": model_path})
    task = functools.partial(chain_task, mode=get_mode(cfg.sft.mode), params=chain_params(cfg))
    start = time.perf_counter()
    if todo:
        ray = ensure_ray(cfg)
        ds = ray.data.from_items([{"question": json.dumps(q.to_dict())} for q in todo])
        out = map_with_sampler(ds, sampler_cfg, task, model=model_path, batch_size=cfg.eval.batch_size)
        pending: list[dict] = []
        for row in console.progress(iterable=out.iter_rows(), total=len(todo), desc=f"eval {split_name}", unit="q"):
            rec = _record(json.loads(row["chains"]), model_path, samples)
            done[rec["id"]] = rec
            pending.append(rec)
            if len(pending) >= cfg.eval.batch_size:
                append_jsonl(results_path, pending)
                pending = []
        append_jsonl(results_path, pending)
    seconds = time.perf_counter() - start

    chains = [[ChainResult.from_dict(c) for c in done[q.id]["chains"]] for q in questions]
    scores = accuracy(chains)
    summary = {"accuracy": scores["accuracy"], "lenient_accuracy": scores["lenient_accuracy"],
               "sc_accuracy": scores["sc_accuracy"], "n": len(questions),
               "model": model_path, "split": split_name, "samples": samples, "mode": cfg.sft.mode,
               "backend": backend, "replicas": cfg.sampler.replicas, "seconds": round(seconds, 3),
               "questions_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None}
    atomic_write_json(summary_path, summary)
    return summary


def load_split(cfg: Config, split: str) -> list[Question]:
    """The teacher's saved split if this run has one, else the benchmark's; capped by eval.limit."""
    saved = RunDir(cfg.run_dir).teach.questions(split)
    questions = read_questions(saved) if saved.exists() else load_dataset_cfg(cfg.data).get(split)
    limit = cfg.eval.limit if cfg.eval.limit is not None else (cfg.data.max_eval if split != "train" else None)
    return questions[:limit] if limit is not None else questions


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"eval {summary['split']}: {summary['model']}")
    for col in ("accuracy", "lenient", "self-consistency", "questions", "q/s", "samples", "backend"):
        table.add_column(col, justify="right")
    qps = summary["questions_per_s"]
    table.add_row(f"{summary['accuracy']:.2%}", f"{summary['lenient_accuracy']:.2%}", f"{summary['sc_accuracy']:.2%}",
                  str(summary["n"]),
                  "-" if qps is None else f"{qps:.2f}", str(summary["samples"]), summary["backend"])
    Console().print(table)


def main(cfg: Config, words: list[str]) -> int:
    if words:
        raise ConfigError(f"eval takes no positional arguments (got {' '.join(words)}); "
                          "use --model, --split, --samples or --section.key value")
    split = cfg.eval.split
    with workspace(cfg.run_dir) as run:  # the lock refuses a second driver; a remote run_dir is mirrored
        model_path = for_workers(cfg.student.model)
        summary = evaluate(cfg, model_path, load_split(cfg, split), split, run.eval(split).root)
    print_summary(summary)
    return 0
