"""`tinythinker sft`: phase 1, three-stage supervised fine-tuning on Ray Train + DeepSpeed.

Reads run_dir/teach/{recall,analyze,summarize}.jsonl (the stages `sft.mode` trains) and
run_dir/teach/questions/valid.jsonl, tokenizes in Ray Data, builds the interval schedule (recall block =
`sft.interval` batches, analyze block = interval x options, summarize block = interval) and trains the student
(`student.model`: T5 or a causal LM, told apart by its config). Writes run_dir/sft/: best/ (the HF folder of
the best validation chain accuracy), metrics.jsonl, tb/, ray/ (checkpoints: a rerun resumes).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from ..core.format import parse_stage_input
from ..core.modes import BadStageRow, Mode, get_mode, mode_rows
from ..data.loaders import read_questions
from ..errors import ConfigError, DataError
from ..eval.chain import ChainEval
from ..rundir import RunDir, workspace
from ..storage import atomic_write_json, read_jsonl
from .batches import check_truncated, collate_sft, prepare_stage
from .loop import FitResult, FitSpec, Objective, fit
from .losses import sft_loss
from .schedule import schedule, stage_plan, steps_per_epoch

log = logging.getLogger(__name__)
SFT = Objective("sft", collate=collate_sft, loss=sft_loss)


def read_stage(path: Path, mode: Mode) -> list[dict]:
    """Stage rows {"input", "target", ...} -> [{"input", "target"}] as `mode` trains them (inputs hold only the
    stages its chain runs, equal rows once: core/modes.py); a bad row names its file, line and field."""
    if not path.exists():
        raise DataError("stage dataset not found (run `tinythinker teach` first)", file=str(path))
    rows = []
    for i, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row, dict):
            raise DataError(f"expected an object, got {type(row).__name__}", file=str(path), line=i)
        for key in ("input", "target"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(f"missing or empty '{key}'", file=str(path), line=i, field=key)
        rows.append({"input": row["input"], "target": row["target"]})
    if not rows:
        raise DataError("stage dataset is empty", file=str(path))
    try:
        return mode_rows(rows, mode)
    except BadStageRow as e:
        raise DataError(e.why, file=str(path), line=e.index + 1, field="input") from None


def num_options(rows: list[dict], path: Path) -> int:
    """Options per question, read from the stage inputs themselves (CSQA 5, OBQA 4, StrategyQA 2)."""
    most = 0
    for i, row in enumerate(rows[:100], 1):
        try:
            most = max(most, len(parse_stage_input(row["input"])["options"]))
        except ValueError as e:
            raise DataError(str(e), file=str(path), line=i, field="input") from None
    return most


def sft(cfg: Config, model: str | None = None) -> FitResult:
    """Train `model` (default `student.model`) on the run's stage datasets; returns the fit result."""
    from ..models import for_workers
    from ..raylib import ensure_ray

    model_path = for_workers(model or cfg.student.model)  # a mistyped --model is one line, before any work
    run = RunDir(cfg.run_dir)
    teach, out = run.teach, run.sft
    mode = get_mode(cfg.sft.mode)
    stages = mode.stages
    rows = {s: read_stage(teach.stage(s), mode) for s in stages}
    options = num_options(rows[stages[-1]], teach.stage(stages[-1]))
    limits = [n for n in (cfg.train.eval_limit, cfg.data.max_eval) if n]
    valid = read_questions(teach.questions("valid"))[: min(limits) if limits else None]

    ensure_ray(cfg)
    datasets, sizes, cut = {}, {}, {}
    for s in stages:
        datasets[s], sizes[s], cut[s] = prepare_stage(
            rows[s], model_path=model_path, max_length=cfg.student.max_length,
            batch_size=cfg.sft.batch_size, world_size=cfg.train.num_workers, seed=cfg.sft.seed)
    atomic_write_json(out.data, {  # what phase 1 trains on, per stage: nothing changes the rows unseen
        "mode": mode.name, "max_length": cfg.student.max_length,
        "stages": {s: {"rows": len(rows[s]), "truncated": cut[s], "batches_per_worker": sizes[s]} for s in stages}})
    check_truncated({s: (cut[s], len(rows[s])) for s in stages}, cfg.student.max_length,
                    cfg.student.max_truncated_share)
    plan = stage_plan(mode, cfg.sft.interval, options)
    steps = schedule(sizes, plan, epochs=cfg.sft.epochs, max_steps=cfg.sft.max_steps)
    log.info("sft: %s | %s | stages %s | plan %s | %d steps on %d worker(s), ZeRO-%d", model_path, mode.name,
             ", ".join(f"{s} {len(rows[s])} rows ({cut[s]} cut) / {sizes[s]} batches per worker" for s in stages),
             plan, len(steps), cfg.train.num_workers, cfg.train.zero_stage)
    spec = FitSpec(
        model_path=model_path, out=out, remote_out=run.remote_of(out.root), steps=steps,
        steps_per_epoch=steps_per_epoch(sizes, plan), batch_size=cfg.sft.batch_size, lr=cfg.sft.lr, train=cfg.train,
        scheduler=cfg.sft.scheduler, warmup=cfg.sft.warmup, eval_every=cfg.sft.eval_every or sum(n for _, n in plan),
        name="sft", seed=cfg.sft.seed, phase="sft", run_name=run.name)
    evaluate = ChainEval(questions=[q.to_dict() for q in valid], mode=mode,
                         max_new_tokens=cfg.student.max_new_tokens, batch_size=cfg.eval.batch_size) if valid else None
    result = fit(spec, datasets, SFT, evaluate)
    run.manifest.mark("sft", best_dir=result.best_dir, val_accuracy=result.best_accuracy, steps=result.steps)
    return result


def table(result: FitResult) -> str:
    lines = [f"{'step':>8}  {'val_accuracy':>12}  {'questions':>9}", "-" * 33]
    for r in result.history:
        mark = "  *" if r.get("best") else ""
        lines.append(f"{r['step']:>8}  {r.get('val_accuracy', float('nan')):>12.4f}  {r.get('val_questions', 0):>9}{mark}")
    lines.append(f"best: {result.best_accuracy} -> {result.best_dir}  ({result.steps} steps, {result.seconds:.0f} s)")
    return "\n".join(lines)


def main(cfg: Config, words: list[str]) -> int:
    if words:
        raise ConfigError(f"sft takes no positional arguments (got {' '.join(words)})")
    with workspace(cfg.run_dir):  # the lock refuses a second driver; a remote run_dir is mirrored
        result = sft(cfg)
    print(table(result))
    return 0
