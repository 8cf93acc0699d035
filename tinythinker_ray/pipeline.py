"""`tinythinker run`: teach -> sft -> eval -> reflect -> eval on test, as one resumable pipeline.

The run directory's manifest records each finished step with its outputs and seconds; a rerun continues at
the first unfinished step and redoes nothing finished (each step also resumes inside itself: teacher blocks,
training checkpoints, reflect rounds). A lock refuses a second run on the same directory.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import Config, dump_config
from .storage import Manifest, atomic_write_text, workspace


def run(cfg: Config) -> Path:
    from .eval.evaluate import evaluate, load_split
    from .reflect.iterate import reflect
    from .report import write_report
    from .teacher.distill import teach
    from .train.sft import sft

    with workspace(cfg) as (cfg, mirror):  # a remote run_dir: steps work on a local mirror, each pushed when done
        run_dir = Path(cfg.run_dir)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))

        def step(name: str, fn):
            # Recorded as "run/<name>": drivers mark their own steps too, and a driver that finished while
            # the pipeline died before recording still reruns here (resuming inside itself, cheaply).
            key = f"run/{name}"
            if Manifest(run_dir).done(key):
                print(f"[run] {name}: done already, skipping")
                return Manifest(run_dir).get(key)
            print(f"[run] {name} ...")
            t0 = time.time()
            outputs = dict(fn() or {})
            outputs["seconds"] = round(time.time() - t0, 1)
            Manifest(run_dir).mark(key, **outputs)  # re-read: the step may have updated the manifest
            mirror.push()
            return outputs

        step("teach", lambda: {"stats": str(run_dir / "teach" / "stats.json"), **_summary(teach(cfg))})
        sft_out = step("sft", lambda: {"best": str(sft(cfg).best_dir)})
        best = sft_out["best"]
        step("eval/valid-sft", lambda: evaluate(cfg, best, load_split(cfg, "valid"), "valid-sft",
                                                run_dir / "eval" / "valid-sft"))
        step("eval/test-sft", lambda: evaluate(cfg, best, load_split(cfg, "test"), "test-sft",
                                               run_dir / "eval" / "test-sft"))
        ref_out = step("reflect", lambda: {"best": str(_last_best(reflect(cfg, model=best), best))})
        step("eval/test-final", lambda: evaluate(cfg, ref_out["best"], load_split(cfg, "test"), "test-final",
                                                 run_dir / "eval" / "test-final"))
        report = write_report(run_dir)
    print(f"[run] report: {mirror.uri.rstrip('/') + '/report.md' if mirror.remote else report}")
    return report


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
