"""`tinythinker run`: teach -> sft -> eval -> reflect -> eval on test, as one resumable pipeline.

The run directory's manifest records each finished step with its outputs and seconds; a rerun continues at
the first unfinished step and redoes nothing finished (each step also resumes inside itself: teacher blocks,
training checkpoints, reflect rounds). A lock refuses a second run on the same directory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import console
from .config import Config, dump_config
from .rundir import RunDir, workspace
from .storage import atomic_write_text, set_aside

log = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    from .eval.evaluate import evaluate, load_split
    from .reflect.iterate import reflect, reflected_stages
    from .report import write_report
    from .teacher.distill import teach
    from .train.sft import sft

    phase2 = bool(reflected_stages(cfg))  # a reflect.mode the phase-1 mode cannot serve fails here, before any work
    with workspace(cfg.run_dir) as run:  # a remote run_dir: steps work on a local mirror, each pushed when done
        atomic_write_text(run.config, dump_config(cfg))

        def step(name: str, fn):
            # Recorded as "run/<name>": drivers mark their own steps too, and a driver that finished while
            # the pipeline died before recording still reruns here (resuming inside itself, cheaply).
            key = f"run/{name}"
            if run.manifest.done(key):
                missing = missing_output(run, name, run.manifest.get(key))
                if missing is None:
                    log.info("[run] %s: done already, skipping", name)
                    return run.manifest.get(key)
                log.warning("[run] %s: recorded done but %s is missing; running it again", name, missing)
                if name == "sft":  # Ray would resume at the finished last step and write no best: start over
                    aside = set_aside(run.sft.root)
                    log.warning("[run] sft: the incomplete phase-1 folder is kept as %s", aside)
            if console.current_log():  # the command line's run: each step's libraries log to a file of its own
                console.log_to(run.logs / f"{name.replace('/', '-')}.log")
            log.info("[run] %s ...", name)
            t0 = time.time()
            outputs = dict(fn() or {})
            outputs["seconds"] = round(time.time() - t0, 1)
            run.manifest.mark(key, **outputs)  # re-read: the step may have updated the manifest
            run.push()
            return outputs

        def scored(tag: str, model: str, split: str):
            return lambda: evaluate(cfg, model, load_split(cfg, split), tag, run.eval(tag).root)

        step("teach", lambda: {"stats": str(run.teach.stats), **_summary(teach(cfg))})
        # models go on as Ray workers on any node reach them: a remote run's URIs, not the driver's mirror
        best = step("sft", lambda: {"best": run.for_workers(sft(cfg).best_dir)})["best"]
        step("eval/valid-sft", scored("valid-sft", best, "valid"))
        step("eval/test-sft", scored("test-sft", best, "test"))
        if phase2:
            final = step("reflect", lambda: {"best": str(_last_best(reflect(cfg, model=best), best))})["best"]
        else:  # the summarize / analyze_summarize ablations: no recall to self-generate, phase 1 is the result
            log.info("[run] reflect: skipped, sft.mode %s has no recall stage to reflect on", cfg.sft.mode)
            final = best
        step("eval/test-final", scored("test-final", final, "test"))
        report = write_report(run)
    log.info("[run] report: %s", run.remote + "/" + report.name if run.remote else report)
    return report


def missing_output(run: RunDir, name: str, outputs: dict) -> Path | None:
    """The first output a step recorded done no longer has on disk (None: all there), so "done" is only
    believed while its outputs exist: teach's stats and stage files, a trained step's best HF folder, an eval's
    summary. A remote run's models are recorded by URI: their copy in the mirror is what is checked."""
    def on_disk(p: str) -> Path | None:
        if run.remote and p.startswith(run.remote + "/"):
            return run.root / p.removeprefix(run.remote + "/")
        return None if "://" in p else Path(p)  # another run's remote model: not ours to check

    wanted = [q / "config.json" for k, p in outputs.items() if k == "best" and (q := on_disk(str(p)))]
    if name == "teach":
        wanted += [run.teach.stats, *(run.teach.stage(s) for s in ("recall", "analyze", "summarize"))]
    if name.startswith("eval/"):
        wanted.append(run.eval(name.removeprefix("eval/")).summary)
    return next((p for p in wanted if not p.exists()), None)


def _summary(stats) -> dict:
    return {k: v for k, v in (stats or {}).items() if isinstance(v, (int, float, str))}


def _last_best(records, fallback: str) -> str:
    """The best checkpoint of the last finished reflect round (phase-1 best if no round made pairs)."""
    for rec in reversed(records or []):
        if rec.get("best"):
            return rec["best"]
    return fallback


def main(cfg: Config, words: list[str]) -> int:
    run(cfg)
    return 0
