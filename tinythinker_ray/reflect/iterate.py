"""`tinythinker reflect`: phase 2, self-reflection rounds of self-generated preference pairs and RPO.

Round i = 1..reflect.iterations starts from, and uses as its frozen reference, the best checkpoint of round
i-1 (round 1: --model / student.model when given, else run_dir/sft/best). Each round, under
run_dir/reflect/iter_<i>/:
  1. self-generation on the chain pool (selfgen.py)       generations.jsonl, analyze_generations.jsonl
  2. preference pairs (pairs.py)                          recall_pairs.jsonl, analyze_pairs.jsonl
                                                          (+ summarize_pairs.jsonl when reflect.mode pairs them)
  3. reference log-probs, one Ray Data pass (reference.py)
  4. RPO on Ray Train + DeepSpeed (train.loop.fit): the recall / analyze / summarize blocks sized from the pair counts,
     `cycles` times around; chain accuracy on validation + a checkpoint after every cycle; best -> best/
  5. record.json (pairs, losses, reward margins, log-prob margins, accuracy, reference, seconds)
A finished round is a manifest step ("reflect/iter_<i>", and its record.json): a rerun resumes at the first
unfinished one, inside which self-generation skips the rows already written and training resumes from its
last checkpoint.
A round without enough pairs to train is recorded and ends the phase cleanly.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from ..config import Config, with_overrides
from ..core.modes import get_mode
from ..core.records import Question
from ..errors import ConfigError
from ..eval.chain import ChainEval
from ..rundir import RoundDir, RunDir, TeachDir, workspace
from ..storage import atomic_write_json, read_jsonl, write_jsonl
from ..train.batches import check_truncated, collate_pairs
from ..train.loop import FitSpec, Objective, fit
from ..train.losses import rpo_step_loss
from ..train.schedule import pair_plan, schedule, steps_per_epoch
from .pairs import (
    analyze_requests,
    build_analyze_pairs,
    build_recall_pairs,
    build_summarize_pairs,
    paired_stages,
    teacher_chains,
)
from .selfgen import generate_analyses, generate_recalls

log = logging.getLogger(__name__)
STAGES = {"recall": ("recall",), "analyze": ("analyze",), "recall_analyze": ("recall", "analyze"),
          "summarize": ("summarize",), "recall_analyze_summarize": ("recall", "analyze", "summarize")}


def reflected_stages(cfg: Config) -> tuple[str, ...]:
    """The stages that get pairs: reflect.mode's, of those the student's phase-1 mode (sft.mode) has; () for a
    mode without a recall (summarize, analyze_summarize: self-generation samples recalls, so there is no phase 2).
    The paper reflects its full model; a recall_summarize student reflects on its recalls (and its summaries, with
    summary pairs on)."""
    mode = get_mode(cfg.sft.mode)
    if not mode.recall:
        return ()
    stages = tuple(s for s in STAGES[cfg.reflect.mode] if s in mode.stages)
    if not stages:
        raise ConfigError(f"config key 'reflect.mode': {cfg.reflect.mode} reflects no stage that sft.mode "
                          f"{cfg.sft.mode} has (set reflect.mode to recall)")
    return stages


def _split(cfg: Config, split: str, limits: list[int | None]) -> list[Question]:
    """The run's saved split (else the benchmark's), capped by the smallest limit given."""
    from ..eval.evaluate import load_split

    questions = load_split(with_overrides(cfg, {"eval.limit": None}), split)
    caps = [n for n in limits if n]
    return questions[: min(caps)] if caps else questions


def training_questions(cfg: Config) -> list[Question]:
    """One per question the teacher covered (teach/recall_single.jsonl, when present), as the reference, each
    with the label phase 1 trained on: the teacher's majority relabels a question (teacher/filters.judge), and a
    self-generated chain is right when it reaches that label, as the authors' generate.py judges it.
    reflect.questions "all" keeps the questions the teacher did not cover too, with their benchmark label (their
    recall pairs then have no teacher recall to top the chosen side up with)."""
    questions = _split(cfg, "train", [])
    covered = RunDir(cfg.run_dir).teach.stage("recall_single")
    if covered.exists():
        labels = {str(r["qid"]): r.get("label") for r in read_jsonl(covered)}
        keep_untaught = cfg.reflect.questions == "all"
        questions = [replace(q, answer=labels.get(q.id) or q.answer) for q in questions
                     if q.id in labels or keep_untaught]
    caps = [n for n in (cfg.reflect.max_questions, cfg.data.max_train) if n]
    return questions[: min(caps)] if caps else questions


def teacher_index(teach: TeachDir) -> dict[str, list[dict]]:
    summarize, recall = teach.stage("summarize"), teach.stage("recall")
    return teacher_chains(read_jsonl(summarize), read_jsonl(recall), summarize_file=str(summarize),
                          recall_file=str(recall))


def first_model(cfg: Config, model: str | None) -> str:
    """Round 1's policy and reference: an explicit model, else phase 1's best, else student.model."""
    from ..models import for_workers

    if model:
        return for_workers(model)
    run = RunDir(cfg.run_dir)
    if "model" not in cfg.student.model_fields_set and run.sft.has_best():
        return run.for_workers(run.sft.best)
    return for_workers(cfg.student.model)


# ----- one round --------------------------------------------------------------------------------------------

def make_pairs(cfg: Config, policy: str, it: RoundDir, stages: tuple[str, ...]) -> dict[str, list[dict]]:
    """Self-generate with `policy` and build the round's pairs for the reflected `stages` (recall pairs always:
    the analyze requests come from their recalls); each built stage's pair file is written."""
    questions = training_questions(cfg)
    if not questions:
        raise ConfigError("reflect: no training questions (check data.* and reflect.max_questions)")
    teacher = teacher_index(RunDir(cfg.run_dir).teach)
    seed = cfg.reflect.seed * 1000 + it.number  # the round's: its samples, and the pairs drawn from them
    rng = random.Random(seed)  # a rerun rebuilds the same pairs from the files
    gens = generate_recalls(cfg, policy, questions, it.generations, seed=seed)
    recall = list(build_recall_pairs(read_jsonl(gens), teacher, rng))
    analyze: list[dict] = []
    if "analyze" in stages and recall:
        requests = analyze_requests(recall, {q.id: q for q in questions})
        agens = generate_analyses(cfg, policy, requests, it.analyze_generations, seed=seed)
        teacher_analyses = {qid: [c["analyses"] for c in cs if c["analyses"]] for qid, cs in teacher.items()}
        analyze = list(build_analyze_pairs(read_jsonl(agens), teacher_analyses, rng))
    summarize: list[dict] = []
    if "summarize" in stages:  # our addition (pairs.py): from the same recall generations
        summarize = list(build_summarize_pairs(read_jsonl(gens)))
        write_jsonl(it.pairs("summarize"), summarize)
    write_jsonl(it.pairs("recall"), recall)
    write_jsonl(it.pairs("analyze"), analyze)
    return {"recall": recall, "analyze": analyze, "summarize": summarize}


def _margins(metrics_path: Path) -> dict:
    """First and last logged reward margin and loss of the round's training (mean over the stages logged)."""
    rows = [r for r in read_jsonl(metrics_path) if r.get("kind") == "train"]

    def mean(row, name):
        vals = [v for k, v in row.items() if k.startswith(name + "/")]
        return sum(vals) / len(vals) if vals else None

    if not rows:
        return {}
    first, last = rows[0], rows[-1]
    return {"margin_start": mean(first, "margin"), "margin_end": mean(last, "margin"),
            "loss_start": first.get("loss"), "loss_end": last.get("loss"),
            "reward_accuracy_end": mean(last, "reward_accuracy")}


def run_round(cfg: Config, round_: int, policy: str) -> dict:
    from .reference import logp_margins, stage_datasets, with_reference_logps

    r, tc = cfg.reflect, cfg.train
    t0 = time.time()
    run = RunDir(cfg.run_dir)
    it = run.reflect(round_)
    valid = _split(cfg, "valid", [tc.eval_limit, cfg.data.max_eval])
    if not valid:
        raise ConfigError("reflect: no validation questions to pick each round's best checkpoint by")
    log.info("[reflect %d] policy and reference: %s", round_, policy)
    stages = reflected_stages(cfg)
    pairs = make_pairs(cfg, policy, it, stages)
    record = {"round": round_, "reference": policy, "recall_pairs": len(pairs["recall"]),
              "analyze_pairs": len(pairs["analyze"])}
    if "summarize" in stages:
        record["summarize_pairs"] = len(pairs["summarize"])
    per_step = r.batch_size * tc.num_workers
    trainable = {s: pairs[s] for s in stages if len(pairs[s]) >= per_step}
    if not trainable:
        record |= {"stopped": f"too few preference pairs to train (need >= {per_step} = reflect.batch_size x "
                              f"train.num_workers in a stage)", "seconds": round(time.time() - t0, 1)}
        atomic_write_json(it.record, record)
        return record

    scored = with_reference_logps([p for rows in trainable.values() for p in rows], policy, cfg)
    datasets, sizes, cut = stage_datasets(scored, trainable, cfg)
    record["truncated_pairs"] = {s: n for s, (n, _) in cut.items()}
    check_truncated(cut, cfg.student.max_length, cfg.student.max_truncated_share)
    plan, total = pair_plan({s: len(p) for s, p in trainable.items()}, r.batch_size, tc.num_workers, r.cycles)
    steps = schedule(sizes, plan, max_steps=total)
    log.info("[reflect %d] pairs: %s | plan %s | %d steps on %d worker(s)", round_,
             ", ".join(f"{s} {len(p)}" for s, p in pairs.items()), plan, total, tc.num_workers)
    spec = FitSpec(model_path=policy, out=it, remote_out=run.remote_of(it.root), steps=steps,
                   steps_per_epoch=steps_per_epoch(sizes, plan), batch_size=r.batch_size, lr=r.lr, train=tc,
                   scheduler="cosine", warmup=r.warmup, eval_every=sum(n for _, n in plan), name="reflect",
                   seed=r.seed + round_, phase=f"reflect {round_}", run_name=run.name)
    evaluate = ChainEval(questions=[q.to_dict() for q in valid], max_new_tokens=cfg.student.max_new_tokens,
                         batch_size=cfg.eval.batch_size, mode=get_mode(cfg.sft.mode))
    objective = Objective("rpo", collate=collate_pairs,
                          loss=partial(rpo_step_loss, beta=r.beta, alpha=r.alpha, kind=r.loss))
    result = fit(spec, datasets, objective, evaluate)
    best = result.best_dir and run.for_workers(result.best_dir)  # a remote run's rounds go on from its URI
    record |= {"best": best, "val_accuracy": result.best_accuracy, "steps": result.steps,
               "history": [{k: h.get(k) for k in ("step", "val_accuracy")} for h in result.history],
               **_margins(it.metrics)}
    if best:  # the chosen-minus-rejected log-prob margin on the round's pairs, before and after
        record["logp_margin"] = logp_margins(scored, best, cfg)
    record["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(it.record, record)
    return record


# ----- the rounds -------------------------------------------------------------------------------------------

def reflect(cfg: Config, model: str | None = None) -> list[dict]:
    """Run the rounds not finished yet; returns every round's record (finished earlier ones included)."""
    from ..raylib import ensure_ray

    if not reflected_stages(cfg):  # one line before any work
        raise ConfigError(f"config key 'sft.mode': {cfg.sft.mode} has no recall stage, so there is no phase 2 "
                          "(self-generation samples the student's recalls)")
    policy = first_model(cfg, model)
    run = RunDir(cfg.run_dir)
    records: list[dict] = []
    for i in range(1, cfg.reflect.iterations + 1):
        it = run.reflect(i)
        manifest = run.manifest  # re-read: other drivers of the run (the pipeline) write it too
        if manifest.done(it.step) or it.record.exists():  # record.json is written last, atomically
            record = manifest.get(it.step)["record"] if manifest.done(it.step) else json.loads(it.record.read_text())
            log.info("[reflect %d] done already: best %s", i, record.get("best"))
        else:
            ensure_ray(cfg)
            record = run_round(cfg, i, policy)
        if not manifest.done(it.step):
            manifest.mark(it.step, record=record)
        records.append(record)
        if record.get("stopped") or not record.get("best"):
            log.info("[reflect %d] stopping: %s; the last trained model is %s", i,
                     record.get("stopped", "no best checkpoint"), policy)
            break
        policy = record["best"]
    return records


def table(records: list[dict]) -> str:
    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    stages = paired_stages(records)
    heads = [f"{s} pairs" for s in stages]
    lines = ["  ".join([f"{'round':>5}", *(f"{h:>{len(h)}}" for h in heads), f"{'margin start -> end':>21}",
                        f"{'val accuracy':>12}"])]
    lines.append("-" * len(lines[0]))
    for r in records:
        margin = f"{num(r.get('margin_start'), '.3f')} -> {num(r.get('margin_end'), '.3f')}"
        acc = num(r.get("val_accuracy"), ".4f") if not r.get("stopped") else "stopped"
        counts = [f"{r.get(f'{s}_pairs', '-'):>{len(h)}}" for s, h in zip(stages, heads, strict=True)]
        lines.append("  ".join([f"{r['round']:>5}", *counts, f"{margin:>21}", f"{acc:>12}"]))
    return "\n".join(lines)


def main(cfg: Config, words: list[str]) -> int:
    if words:
        raise ConfigError(f"reflect takes no positional arguments (got {' '.join(words)}); use --model, "
                          "--iterations or --reflect.key value")
    with workspace(cfg.run_dir):  # the lock refuses a second driver; a remote run_dir is mirrored
        records = reflect(cfg)
    print(table(records))
    return 0
