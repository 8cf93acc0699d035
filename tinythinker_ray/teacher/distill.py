"""`tinythinker teach`: a benchmark's training questions -> the Recall / Analyze / Summarize training sets.

    1. load the splits (data.*; data.max_train caps the training questions), write teach/questions/*.jsonl;
       teacher.max_questions: only the first N of them are asked (the rest stay in the split, labelled only)
    2. round 0 asks the teacher for `teacher.samples` replies per question; each following round (at most
       `teacher.retry_rounds`) asks again for as many samples as a question's last round could not use
       (`teacher.reask`; twice the tokens where replies were cut by length)
    3. filter every question's replies (teacher/filters.py), build and deduplicate the stage rows
       (teacher/stages.py), write teach/{recall,recall_single,analyze,summarize}.jsonl and teach/stats.json

Sampling runs on a Ray Data actor pool (`map_with_sampler`: vllm | hf | openai | replay | rules), one pass per
round (its replicas start once per round; the later rounds are small). The driver appends
every finished block of replies to teach/replies.jsonl, one line per (question, round):

    {"prompt": [{"role": "system", "content": ...}, {"role": "user", "content": ...}],  # the messages sent
     "completions": [{"text": str, "finish_reason": "stop" | "length" | "error"}, ...],
     "qid": str, "round": int,
     "regex": str | null,  # the constraint used (vllm with teacher.constrained), else null
     "n": int, "max_tokens": int}  # what was asked

That file is the unit of resume: a rerun on the same run_dir reads it, replans every round from it, and asks
only for the (question, round) pairs it lacks, so no question is sampled twice and none is lost (a torn last
line from a killed run is cut off first); a rerun whose teacher prompt differs is refused. It is also a replay
source: the replay backend answers a prompt, keyed by `sampling.replay.prompt_key(prompt)` (its canonical
JSON), with the completions stored for it (the lines are written with `sampling.replay.recording`).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

from .. import console
from ..backends import engine
from ..config import Config, TeacherConfig, dump_config
from ..core.format import question_block
from ..core.records import Question
from ..data.loaders import load_dataset_cfg
from ..errors import ConfigError, DataError, TinyThinkerError
from ..rundir import RunDir, TeachDir, workspace
from ..storage import atomic_write_json, atomic_write_text, write_jsonl
from . import fewshot, filters, prompt
from .asking import Replies, sample_round
from .stages import Taught, write_stages

log = logging.getLogger(__name__)

# ----- the driver ------------------------------------------------------------------------------------------

def _check_backend(t: TeacherConfig) -> str | None:
    """Fail before any work on what the driver can check (the engine's own `check`); returns the model path the
    replicas load (built-ins are materialised once here, not raced by every replica)."""
    return engine(t.backend).check(t, "teacher")


def _train_questions(cfg: Config, out: TeachDir) -> list[Question]:
    d = cfg.data
    splits = load_dataset_cfg(d)
    train = splits.train[: d.max_train] if d.max_train else splits.train
    ids = Counter(q.id for q in train)
    if dup := [qid for qid, n in ids.items() if n > 1]:
        raise DataError(f"question ids must be unique (replies are keyed by them): {dup[:5]} repeat",
                        file=d.path or d.name, field="id")
    for name, qs in (("train", train), ("valid", splits.valid), ("test", splits.test)):
        write_jsonl(out.questions(name), [q.to_dict() for q in qs])
    return train[: cfg.teacher.max_questions] if cfg.teacher.max_questions else train  # the split keeps them all


def _judge(q: Question, lines: list[dict], t: TeacherConfig, seed: int):
    """Filter one question's replies (all rounds): the verdict, and per round (samples, parsed, drops)."""
    parsed, per_round = [], []
    for ln in lines:
        pairs = ((c["text"], c["finish_reason"]) for c in ln["completions"])
        ok, drops = filters.filter_samples(pairs, q.labels)
        parsed += ok
        per_round.append((ln["round"], len(ln["completions"]), len(ok), drops))
    rng = random.Random(f"{seed}:{q.id}")  # per question: the fill does not depend on processing order
    verdict = filters.judge(q.answer, parsed, augment=t.augment, threshold=t.diversity_threshold, rng=rng)
    return verdict, per_round


def _plan_next(cfg: Config, questions: dict[str, Question], asks: dict[str, filters.Ask], round: int,
               replies: Replies) -> dict[str, filters.Ask]:
    t = cfg.teacher
    outcomes = []
    for qid, ask in asks.items():
        lines = replies.lines(qid)
        verdict, per_round = _judge(questions[qid], lines, t, cfg.seed)
        unusable = sum(n - ok for rnd, n, ok, _ in per_round if rnd == round)
        cut = any(c["finish_reason"] == "length"
                  for ln in lines if ln["round"] == round for c in ln["completions"])
        outcomes.append(filters.Outcome(qid, unusable, verdict.consistent, cut, ask.max_tokens))
    return filters.plan_retries(outcomes, reask=t.reask, augment=t.augment,
                                max_tokens_cap=max(t.max_tokens, t.max_model_len))


def _build(cfg: Config, train: list[Question], replies: Replies, out: TeachDir) -> dict:
    """Filter every question's replies and stream the stage files; returns the stats."""
    t = cfg.teacher
    stats: dict = {"questions": len(train), "samples": 0, "parsed": 0, "consistent": 0, "kept": 0,
                   "relabelled": 0, "retries": 0, "questions_with_rationales": 0,
                   "questions_full": 0, "dropped": Counter(), "rounds": {}}
    groups: dict[str, list[Question]] = defaultdict(list)  # questions sharing a block share dedup state
    for q in train:
        groups[question_block(q)].append(q)

    def taught(group: list[Question]) -> Iterator[Taught]:
        for q in group:
            verdict, per_round = _judge(q, replies.lines(q.id), t, cfg.seed)
            for rnd, n, ok, drops in per_round:
                r = stats["rounds"].setdefault(rnd, {"questions": 0, "samples": 0, "parsed": 0})
                r["questions"] += 1
                r["samples"] += n
                r["parsed"] += ok
                stats["samples"] += n
                stats["dropped"].update(drops)
                stats["retries"] += rnd > 0
            stats["parsed"] += verdict.parsed
            stats["consistent"] += verdict.consistent
            stats["kept"] += len(verdict.kept)
            stats["relabelled"] += verdict.relabelled
            stats["questions_with_rationales"] += bool(verdict.kept)
            stats["questions_full"] += len(verdict.kept) >= t.augment
            yield q, verdict.label, verdict.kept

    stats["rows"] = write_stages((taught(g) for g in groups.values()), out)
    stats["inconsistent"] = stats["parsed"] - stats["consistent"]
    stats["dropped"] = dict(sorted(stats["dropped"].items()))
    stats["rounds"] = [{"round": r, **v} for r, v in sorted(stats["rounds"].items())]
    return stats


def teach(cfg: Config) -> dict:
    """Run (or resume) teacher distillation into the run's teach/; returns the stats (as in stats.json)."""
    t0 = time.time()
    t = cfg.teacher
    out = RunDir(cfg.run_dir).teach
    model = _check_backend(t)
    train = _train_questions(cfg, out)
    shots = fewshot.choose(cfg, model, train, out)
    log.info("teach: few-shot examples: %s", shots.describe())
    system = prompt.system_message(shots.examples, t.shots, seed=cfg.seed)
    questions = {q.id: q for q in train}
    replies = Replies(out.replies)
    first = replies.first()
    if first and first["prompt"][0]["content"] != system:  # resuming must not mix two prompts in one dataset
        raise ConfigError(f"{replies.path} was made with another teacher prompt (teacher.shots, "
                          "teacher.fewshot_path or seed changed): resume with the same settings or use a new "
                          "run_dir")
    asks = {q.id: filters.Ask(t.samples, t.max_tokens) for q in train}
    for rnd in range(t.retry_rounds + 1):
        todo = {qid: a for qid, a in asks.items() if not replies.has(qid, rnd)}
        if len(todo) < len(asks):
            log.info("teach round %d: %d of %d questions already answered in %s", rnd, len(asks) - len(todo),
                     len(asks), replies.path.name)
        if todo:
            sample_round(cfg, model, system, questions, todo, rnd, replies)
        if rnd == t.retry_rounds:
            break
        asks = _plan_next(cfg, questions, asks, rnd, replies)
        if not asks:
            break
    stats = _build(cfg, train, replies, out)
    stats.update(backend=t.backend, seconds=round(time.time() - t0, 1),
                 fewshot={"source": shots.source, "examples": len(shots.examples), "origin": shots.origin})
    atomic_write_json(out.stats, stats)
    refuse_empty(stats, t, out)
    return stats


def refuse_empty(stats: dict, t: TeacherConfig, out) -> None:
    """A teach whose replies made no stage rows has nothing to train on: it fails (and is not recorded done) with
    what to look at, instead of handing phase 1 empty datasets. stats.json stays for the diagnosis."""
    if sum(c["written"] for c in stats["rows"].values()):
        return
    dropped = ", ".join(f"{reason} {n}" for reason, n in Counter(stats["dropped"]).most_common(3))
    hint = (" and try --teacher.constrained true" if t.backend == "vllm" and not t.constrained else
            " (is the teacher following the few-shot format? more --teacher.max_tokens?)")
    raise TinyThinkerError(f"teach: 0 of {stats['samples']} replies parsed into stage rows ({stats['parsed']} parsed, "
                           f"{stats['kept']} kept{'; dropped: ' + dropped if dropped else ''}); see "
                           f"{console.current_log() or out.stats} and the replies in {out.replies}{hint}")


def format_stats(stats: dict) -> str:
    """stats.json as an aligned two-column table."""
    rows = [(k, stats[k]) for k in ("questions", "samples", "parsed", "consistent", "inconsistent", "kept",
                                    "relabelled", "retries", "questions_with_rationales", "questions_full")]
    if "fewshot" in stats:  # stats.json of runs before few-shot sources were recorded lack it
        rows.append(("few-shot", f"{stats['fewshot']['examples']} examples, {stats['fewshot']['source']}"))
    rows += [(f"dropped: {reason}", n) for reason, n in stats["dropped"].items()]
    rows += [(f"round {r['round']}", f"{r['questions']} questions, {r['samples']} samples, "
                                     f"{r['parsed']} parsed") for r in stats["rounds"]]
    rows += [(f"rows: {s}", f"{c['written']} (of {c['rows']} before dedup)")
             for s, c in stats["rows"].items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def main(cfg: Config, words: list[str]) -> int:
    if words:
        raise ConfigError(f"teach takes no positional arguments (got {' '.join(words)})")
    _check_backend(cfg.teacher)  # a missing key or model fails before the run directory is touched
    with workspace(cfg.run_dir) as run:  # s3:// or gs:// run_dir: work on a local mirror, pushed at the end
        if run.manifest.done("teach"):
            log.info("teach: done already in %s (stats: %s)", run.uri, run.manifest.get("teach")["stats"])
            return 0
        atomic_write_text(run.config, dump_config(cfg))
        stats = teach(cfg)
        run.manifest.mark("teach", stats=str(run.teach.stats), **{s: str(run.teach.stage(s)) for s in stats["rows"]},
                          seconds=stats["seconds"])
    print(f"teach: {cfg.data.name}, teacher {cfg.teacher.backend}, {stats['seconds']} s -> {run.uri}")
    print(format_stats(stats))
    return 0
