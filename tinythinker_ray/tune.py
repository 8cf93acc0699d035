"""`tinythinker tune`: Ray Tune over phase-1 or phase-2 hyperparameters, each trial a Ray Train run.

The search space is YAML keyed by dotted config paths:

    sft.lr: {loguniform: [1.0e-4, 1.0e-3]}
    sft.mode: {choice: [recall_summarize, recall_analyze_summarize]}
    sft.interval: {grid: [50, 100]}

Each trial works in its own run directory under <run_dir>/tune/trials/<id>, which links the shared teacher
data (and, for reflect sweeps, the phase-1 student) so trials never write over each other. ASHA stops weak
trials early on validation accuracy (reported at every evaluation point through Ray Train's Tune callback).
The results table and the best trial's full config (reusable by `tinythinker run --config`) land in
<run_dir>/tune/.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from .config import Config, build_config, dump_config, with_overrides
from .errors import ConfigError
from .rundir import RunDir
from .storage import atomic_write_text

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
DEFAULT_SPACE = {
    "sft": {"sft.lr": {"loguniform": [1e-4, 1e-3]}, "sft.interval": {"choice": [50, 100]},
            "sft.mode": {"choice": ["recall_summarize", "recall_analyze_summarize"]}},
    "reflect": {"reflect.beta": {"choice": [0.1, 0.3, 0.5]}, "reflect.alpha": {"choice": [0.5, 1.0]},
                "reflect.lr": {"loguniform": [1e-6, 1e-5]}},
}


log = logging.getLogger(__name__)


def load_space(path: str | None, target: str) -> dict:
    """YAML search space -> Ray Tune param_space (flat dotted keys); validates keys against the config."""
    from ray import tune

    raw = yaml.safe_load(Path(path).read_text()) if path else DEFAULT_SPACE[target]
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"tune space {path}: expected a mapping of config keys to distributions")
    space = {}
    for key, dist in raw.items():
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise ConfigError(f"tune space key '{key}': expected one of {DISTRIBUTIONS} as {{kind: values}}")
        kind, values = next(iter(dist.items()))
        with_overrides(Config(), {key: values[0] if isinstance(values, list) else values})  # key + type check
        if kind == "grid":
            space[key] = tune.grid_search(values)
        elif kind == "choice":
            space[key] = tune.choice(values)
        else:  # uniform / loguniform / randint take [low, high]
            space[key] = getattr(tune, kind)(*values)
    return space


def _trial_dir(base: RunDir, trial: str, target: str) -> RunDir:
    """A private run directory whose inputs are links to the shared ones (teach/, and sft/ for reflect)."""
    d = base.trial(trial)
    d.root.mkdir(parents=True, exist_ok=True)
    shared = [(base.teach.root, d.teach.root)] + ([(base.sft.root, d.sft.root)] if target == "reflect" else [])
    for source, link in shared:
        if not link.exists():
            os.symlink(source, link, target_is_directory=True)
    return d


def trial(params: dict, *, base_cfg: dict, target: str) -> None:
    """One Tune trial: the base config with this trial's overrides, trained by the real drivers."""
    from ray import tune

    cfg = with_overrides(build_config(base_cfg), params)
    run = _trial_dir(RunDir(cfg.run_dir), tune.get_context().get_trial_id(), target)
    cfg = with_overrides(cfg, {"run_dir": str(run.root)})
    if target == "sft":
        from .train.sft import sft

        result = sft(cfg)
        best = result.best_accuracy
    else:
        from .reflect.iterate import reflect

        records = reflect(cfg, model=str(run.sft.best))
        best = max((r.get("val_accuracy") or 0.0 for r in records), default=None)
    tune.report({"val_accuracy": best if best is not None else 0.0, "final": 1})


def tune_run(cfg: Config):
    from functools import partial

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from .raylib import ensure_ray

    t = cfg.tune
    base = RunDir(cfg.run_dir)
    needed = base.teach.stage("summarize") if t.target == "sft" else base.sft.best / "config.json"
    if not needed.exists():
        raise ConfigError(f"tune target '{t.target}' needs {needed} (run `tinythinker "
                          f"{'teach' if t.target == 'sft' else 'sft'}` on this run_dir first)")
    ensure_ray(cfg)
    space = load_space(t.space, t.target)
    base_cfg = cfg.model_dump() | {"run_dir": str(base.root)}
    tuner = tune.Tuner(
        # Each trial's driver holds 1 CPU; its Ray Train workers ask for their own.
        tune.with_resources(partial(trial, base_cfg=base_cfg, target=t.target), {"CPU": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=t.metric, mode="max", num_samples=t.num_samples, max_concurrent_trials=t.max_concurrent,
            scheduler=ASHAScheduler(grace_period=t.asha_grace, max_t=10_000)),
        run_config=tune.RunConfig(name=f"tune-{t.target}", storage_path=str(base.tune / "ray")),
    )
    results = tuner.fit()
    df = results.get_dataframe()
    cols = [c for c in df.columns if c.startswith("config/")] + [t.metric, "training_iteration"]
    table = df[[c for c in cols if c in df.columns]].rename(columns=lambda c: c.removeprefix("config/"))
    out = base.tune
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    best = results.get_best_result(metric=t.metric, mode="max")
    best_cfg = with_overrides(cfg, {k: v for k, v in best.config.items()})
    atomic_write_text(out / "best.yaml", dump_config(best_cfg))
    log.info("best %s %s with %s; best config: %s", t.metric, best.metrics.get(t.metric), best.config,
             out / "best.yaml")
    return table, best_cfg


def main(cfg: Config, words: list[str]) -> int:
    if words:
        raise ConfigError(f"tune takes no positional arguments (got {' '.join(words)})")
    table, _ = tune_run(cfg)
    print(table.to_string(index=False))
    return 0
