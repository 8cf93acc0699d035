"""Learning check: on a controlled task, does a configuration learn, and does each component pull its weight?

The task (tinythinker_ray/world/synth.py): a seeded world of made-up entities, categories and properties and
multiple-choice questions over it; test questions ask about (entity, property) combinations no training question
asks, over facts training did teach, so only knowledge the student internalized scores. The teacher is the rule
teacher (world/rules.py) with an error rate, standing in for GPT-4o. Everything else is the real pipeline, per
seed and student family (tiny T5 / tiny Llama, built from scratch); the units are world/check.py's:

    teach (Ray Data)                  once per seed, shared by the modes
    sft (Ray Train + DeepSpeed)       once per phase-1 mode, equal optimizer steps each
    eval                              held-out test + a sample of training questions, and the diagnostics
    reflect rounds 1..R               on the full mode's best, each from and against the previous best

Each (family, seed) is one Ray Tune trial (a grid over families and seeds, --jobs at a time) on one local Ray;
finished units go to <work>/results.jsonl as they end, so a rerun resumes and --fresh starts over. The report
(world/check_report.py): benchmarks/results/learning.{md,json,png}; text under "## Interpretation" in an existing
learning.md is kept.

    .venv/bin/python benchmarks/learning.py                 # the default check (2 families x 3 seeds)
    .venv/bin/python benchmarks/learning.py --quick         # one seed, fewer steps and rounds: for iterating
    .venv/bin/python benchmarks/learning.py --families llama --seeds 0 --steps 200 --rounds 1   # any subset
    .venv/bin/python benchmarks/learning.py --phase1-from runs/learning --work runs/learning-beta2 --reflect-beta 2
                                          # other reflect settings on the same phase-1 models (same other flags)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
import time
import typing
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_CPUS = 4  # logical CPUs per trial: its driver, the Ray Train worker and the sampler tasks fit
QUICK = {"seeds": "0", "steps": 600, "rounds": 1, "reflect_questions": 200, "train": 300}
OPTIONAL = {"t5_lr": float, "reflect_questions": int, "taught": int, "self_taught_from": str}  # settings whose default is None
log = logging.getLogger("learning")


def optional(kind: type):
    """A flag's parser for a setting that may be None ("none" on the command line)."""
    return lambda v: None if v.lower() == "none" else kind(v)


def trial(params: dict, *, work: str, settings: dict, modes: list[str]) -> None:
    """One Tune trial: every phase-1 mode of one (family, seed), then the reflect rounds on --reflect-from's."""
    from ray import tune

    from tinythinker_ray.world.check import Check, Settings, run_mode, run_reflect

    check = Check(Path(work), Settings(**settings))
    family, seed = params["family"], params["seed"]
    for mode in modes:
        run_mode(check, family, seed, mode)
    if check.settings.rounds and check.settings.reflect_from in modes:
        run_reflect(check, family, seed)
    tune.report({"units": len([k for k in check.cache.rows if k[:2] == (family, seed)])})


def unit_line(r: dict) -> str:
    """A finished unit's progress line; a round that stopped (e.g. too few pairs) says so, as it kept the model
    before it and its scores would otherwise read as a round that changed nothing."""
    train = f" train {r['train']:.3f}" if r.get("train") is not None else ""
    return f"{r['family']} seed {r['seed']} {r['stage']}: test {r['test']:.3f}{train}" + (
        f" (stopped: {r['stopped']})" if r.get("stopped") else "")


def follow(cache_path: Path, done: threading.Event) -> None:
    """The driver's progress: a line per unit the trials finish (they run in their own processes)."""
    seen = 0
    while True:
        stopping = done.wait(5)  # one more pass after the grid ends: the last units' lines
        lines = cache_path.read_text().splitlines() if cache_path.exists() else []
        for line in lines[seen:]:
            r = json.loads(line)
            if "test" in r and r["family"] not in ("oracle",):
                log.info("%s", unit_line(r))
        seen = len(lines)
        if stopping:
            return


def run_grid(check, families: list[str], seeds: list[int], modes: list[str], jobs: int) -> None:
    """The (family, seed) runs as a Ray Tune grid, `jobs` trials at a time (a Ray Train worker trains on one
    thread and much of a run is start-up, so two side by side use 2 cores better than one after the other)."""
    from ray import tune

    done = threading.Event()
    watcher = threading.Thread(target=follow, args=(check.work / "results.jsonl", done), daemon=True)
    watcher.start()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, work=str(check.work), settings=dataclasses.asdict(
            check.settings), modes=modes), {"CPU": 1}),
        param_space={"family": tune.grid_search(families), "seed": tune.grid_search(seeds)},
        tune_config=tune.TuneConfig(max_concurrent_trials=jobs),
        run_config=tune.RunConfig(name=f"grid-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(check.work / "tune"),
                                  verbose=0))
    results = tuner.fit()
    done.set()
    watcher.join()
    if failed := [r for r in results if r.error]:
        raise SystemExit(f"learning check: {len(failed)} trial(s) failed ({failed[0].error}); rerun to resume them")


# The calibration sweep (--calibrate): reflection's settings on one seed's Llama phase-1 model, one round each
CALIBRATION_SPACE = {"reflect.lr": {"grid": [3e-5, 1e-4, 3e-4]}, "reflect.beta": {"grid": [0.1, 0.5]}}


def calibrate(check, seed: int, out: Path, questions: int | None = None) -> None:
    """Reflection's lr and beta swept with the project's own `tinythinker tune --tune.target reflect` (Ray Tune,
    one trial per setting, each one round from the seed's Llama R+A+S best); the table lands in
    results/reflect-sweep.{csv,md}. `questions`: self-generate on that many training questions per trial (default
    the check's reflect_questions) -- at the method's scale a trial is a 7-minute round on 2 cores."""
    import yaml

    from tinythinker_ray.config import with_overrides
    from tinythinker_ray.core.modes import FULL
    from tinythinker_ray.tune import tune_run
    from tinythinker_ray.world.check import run_mode, student

    run_mode(check, "llama", seed, FULL)
    space = check.work / "reflect-space.yaml"
    space.write_text(yaml.safe_dump(CALIBRATION_SPACE))
    cfg = with_overrides(check.config(seed, check.mode_dir("llama", seed, FULL), model=student(check, "llama", seed)),
                         {"tune.target": "reflect", "tune.space": str(space), "tune.num_samples": 1,
                          "tune.max_concurrent": 2, "reflect.iterations": 1}
                         | ({"reflect.max_questions": questions} if questions else {}))
    table, best = tune_run(cfg)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "reflect-sweep.csv", index=False)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    (out / "reflect-sweep.md").write_text(
        f"# Reflection calibration (`benchmarks/learning.py --calibrate`)\n\nOne reflect round from seed {seed}'s "
        f"tiny-Llama R+A+S best, each setting a Ray Tune trial of `tinythinker tune --tune.target reflect`, "
        f"self-generating on {questions or 'all'} training questions x {cfg.reflect.samples} samples; "
        f"val_accuracy = the chain on the {check.settings.valid} validation questions.\n\n" + "\n".join(lines)
        + f"\n\nBest: lr {best.reflect.lr}, beta {best.reflect.beta}.\n")
    log.info("calibration -> %s", out / "reflect-sweep.md")


def main() -> None:
    from tinythinker_ray.config import ReflectConfig, SynthConfig, TeacherConfig
    from tinythinker_ray.core.modes import MODES
    from tinythinker_ray.errors import ConfigError
    from tinythinker_ray.world.check import (
        FAMILIES,
        SETTINGS_FILE,
        Check,
        Settings,
        check_world,
        oracle,
        prepare_seed,
        recorded_settings,
        reuse_phase1,
        self_taught_source,
        settings_diff,
        student,
    )
    from tinythinker_ray.world.check_report import write_report
    from tinythinker_ray.world.synth import TEMPLATES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="llama,t5", help="students, comma-separated: llama, t5")
    ap.add_argument("--seeds", default="0,1,2", help="each seed: its own world, teacher samples and student init")
    ap.add_argument("--modes", default=",".join(MODES), help="phase-1 modes, comma-separated")
    ap.add_argument("--work", default="runs/learning", help="run folders and the results cache")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for learning.{md,json,png}")
    ap.add_argument("--fresh", action="store_true", help="delete --work first")
    ap.add_argument("--report", action="store_true", help="only write the report from the units cached so far")
    ap.add_argument("--jobs", type=int, default=2, help="(family, seed) trials side by side")
    ap.add_argument("--quick", action="store_true", help=f"a fast look: {QUICK}")
    ap.add_argument("--phase1-from", metavar="WORK", help="start --work (new) as a copy of that work folder's world, "
                    "teacher and phase-1 units without its reflect rounds, to run the rounds with other --reflect-* / "
                    "--rounds settings on the same phase-1 models")
    ap.add_argument("--calibrate", action="store_true", help="only the reflection sweep (Ray Tune) on the first "
                    "seed's Llama, into results/reflect-sweep.{csv,md}")
    ap.add_argument("--calibrate-questions", type=int, default=None,
                    help="--calibrate: training questions each trial self-generates on (default: reflect_questions)")
    defaults = Settings()
    for f in dataclasses.fields(Settings):  # every setting of world/check.Settings is a flag
        value = getattr(defaults, f.name)
        kind = optional(OPTIONAL[f.name]) if f.name in OPTIONAL else type(value)
        flag, doc = f"--{f.name.replace('_', '-')}", f.metadata.get("help")
        if isinstance(value, bool):
            ap.add_argument(flag, action="store_true", default=value, help=doc)
        elif f.name != "student":
            shown = "" if value is None else " (default: %(default)s)"  # a None default is said in the help itself
            ap.add_argument(flag, type=kind, default=value, help=doc + shown)
    if "--quick" in sys.argv:
        ap.set_defaults(**QUICK)  # flags given beside --quick still win
    args = ap.parse_args()
    settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if f.name != "student"})
    if settings.key not in TEMPLATES:
        ap.error(f"--key {settings.key}: the world's general facts are one of {sorted(TEMPLATES)}")
    refers = typing.get_args(SynthConfig.model_fields["refer"].annotation)
    if settings.refer not in refers:
        ap.error(f"--refer {settings.refer}: rationales refer to an entity as one of {list(refers)}")
    scopes = typing.get_args(TeacherConfig.model_fields["error_scope"].annotation)
    if settings.error_scope not in scopes:
        ap.error(f"--error-scope {settings.error_scope}: the teacher errs per {' or per '.join(map(repr, scopes))}")
    overs = typing.get_args(ReflectConfig.model_fields["questions"].annotation)
    if settings.reflect_over not in overs:
        ap.error(f"--reflect-over {settings.reflect_over}: reflection self-generates on {' or '.join(map(repr, overs))}"
                 " training questions")
    stages = typing.get_args(ReflectConfig.model_fields["mode"].annotation)
    if settings.reflect_mode not in stages:
        ap.error(f"--reflect-mode {settings.reflect_mode}: the stages that get pairs are one of {list(stages)}")
    if settings.taught is not None and not 1 <= settings.taught <= settings.train:
        ap.error(f"--taught {settings.taught}: the teacher covers 1..{settings.train} (--train) training questions")
    if settings.reflect_from not in MODES or not MODES[settings.reflect_from].recall:
        ap.error(f"--reflect-from {settings.reflect_from}: reflection needs a phase-1 mode with a recall "
                 f"({', '.join(m for m in MODES if MODES[m].recall)})")

    if settings.self_taught_filter not in ("label", "truth"):
        ap.error(f"--self-taught-filter {settings.self_taught_filter}: chains are kept by their 'label' or by the "
                 "world's 'truth'")
    if settings.pretrain and "t5" in args.families.split(","):
        ap.error(f"--pretrain {settings.pretrain}: only causal students are pretrained here (--families llama)")
    try:  # a world these settings cannot make is one line, before the work folder is touched
        for seed in map(int, args.seeds.split(",")):
            check_world(settings, seed)
        if settings.self_taught_from:
            self_taught_source(settings)
    except ConfigError as e:
        ap.error(str(e))

    for k, v in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}.items():
        os.environ.setdefault(k, v)
    logging.basicConfig(level=logging.INFO, format="[learning %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    work = Path(args.work).resolve()
    if args.fresh and work.exists():
        shutil.rmtree(work)
    now, before = dataclasses.asdict(settings), recorded_settings(work)
    # a round never depends on how many follow it, so more --rounds continue the folder's; fewer would mix the report
    more_rounds = ("rounds",) if before is not None and now["rounds"] > before.get("rounds", 0) else ()
    diff = settings_diff(before, now, ignore=more_rounds) if before is not None else []
    if args.phase1_from and (before is None or diff):  # else a rerun of the same command: it resumes
        try:  # the copy holds the source's settings.json; ours is written below
            reuse_phase1(Path(args.phase1_from), work, settings)
        except ConfigError as e:
            ap.error(str(e))
    elif diff:
        ap.error(f"{work} holds units made with other settings ({', '.join(diff)}): rerun with those settings "
                 "(a larger --rounds continues the rounds there), or with --fresh (deletes it) or another --work")
    work.mkdir(parents=True, exist_ok=True)
    (work / SETTINGS_FILE).write_text(json.dumps(now, indent=2) + "\n")
    check = Check(work, settings)
    families, seeds, modes = args.families.split(","), [int(s) for s in args.seeds.split(",")], args.modes.split(",")
    if bad := [f for f in families if f not in FAMILIES] + [m for m in modes if m not in MODES]:
        ap.error(f"unknown families/modes {bad} (allowed: {FAMILIES}, {tuple(MODES)})")
    cached = len(check.cache.rows)
    if args.report and (missing := [s for s in seeds if not check.cache.get("teacher", s, "teach")]):
        ap.error(f"--report: {work} has no units of seed(s) {missing} yet: run the check without --report first")

    t0 = time.time()
    if not args.report:
        from tinythinker_ray.raylib import start_local_ray

        start_local_ray(RUN_CPUS * max(args.jobs, 1))  # one local Ray; Tune's trials run on it
        if args.calibrate:
            prepare_seed(check, seeds[0])
            return calibrate(check, seeds[0], Path(args.out), args.calibrate_questions)
        for seed in seeds:  # the shared inputs first: the trials then only read them
            prepare_seed(check, seed)
            oracle(check, seed)
            for family in families:
                student(check, family, seed)
        run_grid(check, families, seeds, modes, args.jobs)
    seconds = None if args.report else time.time() - t0  # None: the report says no unit ran now
    print(write_report(check, list(check.cache.rows.values()), families, seeds, seconds, cached, Path(args.out)))
    log.info("done in %.1f min -> %s/learning.{md,json,png}", (time.time() - t0) / 60, args.out)


if __name__ == "__main__":
    main()
