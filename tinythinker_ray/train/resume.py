"""Resuming a Ray Train run whose checkpoint folders are not all there (a disk clean-up, a half-copied run dir).

Ray Train refuses such a run outright (CheckpointManagerInitializationError: "a reference to a checkpoint that
does not exist anymore"). Its snapshot, `<storage>/<name>/checkpoint_manager_snapshot.json`, lists the
checkpoints it reported, oldest first; we drop the missing ones so the run resumes at the newest intact one, or,
when none is left, set the run's folder aside so the step starts over. Either way the user is told which.

The other way round, a killed driver's workers outlive it for a moment (train/loop.py ends them within 0.2 s of
their raylet; Ray's own check took seconds) and can write a checkpoint folder the controller never registered: Ray resumes from the registered
one and would leave the stray folder on disk for good, so it is removed here, saying so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..storage import atomic_write_json, set_aside

SNAPSHOT = "checkpoint_manager_snapshot.json"


def _step(result: dict) -> object:
    return (result.get("metrics") or {}).get("step", "?")


def repair(experiment: Path) -> str | None:
    """Make a local Ray Train run folder resumable; returns what was done, in words (None: nothing to do)."""
    path = experiment / SNAPSHOT
    if not experiment.is_dir():
        return None
    try:
        snap = json.loads(path.read_text()) if path.exists() else {}
        results, indices = snap.get("checkpoint_results", []), snap.get("checkpoint_report_indices", [])
        registered = {r["checkpoint_dir_name"] for r in results}
    except (ValueError, KeyError, TypeError, AttributeError):
        return _restart(experiment, f"its checkpoint list {path.name} is unreadable")
    said = _remove_unregistered(experiment, registered)
    intact = [i for i, r in enumerate(results) if (experiment / r["checkpoint_dir_name"]).is_dir()]
    if len(intact) == len(results):
        return said
    gone = [r["checkpoint_dir_name"] for i, r in enumerate(results) if i not in intact]
    if not intact:
        return "; ".join(filter(None, (said, _restart(experiment, f"every checkpoint is gone ({', '.join(gone)})"))))
    kept = [results[i] for i in intact]
    names = {r["checkpoint_dir_name"] for r in kept}
    snap |= {"checkpoint_results": kept, "checkpoint_report_indices": [indices[i] for i in intact],
             "latest_checkpoint_result": kept[-1]}
    for key in ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
                "failed_validation_checkpoint_dir_names"):
        snap[key] = [n for n in snap.get(key, []) if n in names]
    atomic_write_json(path, snap)
    fallback = (f"checkpoint folder(s) {', '.join(gone)} missing from {experiment}; resuming from the newest intact "
                f"checkpoint, {kept[-1]['checkpoint_dir_name']} (step {_step(kept[-1])})")
    return "; ".join(filter(None, (said, fallback)))


def _remove_unregistered(experiment: Path, registered: set[str]) -> str | None:
    stray = sorted(p for p in experiment.glob("checkpoint_*") if p.is_dir() and p.name not in registered)
    for p in stray:
        shutil.rmtree(p)
    if not stray:
        return None
    return (f"removed {len(stray)} checkpoint folder(s) in {experiment} that Ray Train never registered (written by "
            f"a killed run's workers): {', '.join(p.name for p in stray)}")


def _restart(experiment: Path, why: str) -> str:
    aside = set_aside(experiment)
    return f"{experiment}: {why}; this step starts over from step 0 (the old folder is kept as {aside.name})"
