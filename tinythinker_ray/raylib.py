"""Starting Ray the one way every driver shares, and running a model over a Ray Data dataset on replicas."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from .config import Config
from .rundir import RunDir


def ensure_ray(cfg: Config):
    """Join `cluster.address` ("auto", ray://...) or start a local Ray; a no-op when Ray is already up.

    "local" rather than a bare `ray.init()`: the bare form attaches to any `ray start` cluster on the machine
    and can hang when that one died.
    """
    import ray

    from . import console

    if not ray.is_initialized():
        console.adopt("ray")  # Ray gives its logger a terminal handler when imported
        # Inside `ray job submit` RAY_ADDRESS names the cluster: join it rather than start a private Ray.
        address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=console.verbose())  # a cluster declares its own CPUs
        else:
            start_local_ray(cfg.cluster.num_cpus)
            if not (run := RunDir(cfg.run_dir)).remote:  # a link in a mirror would upload the session's logs
                _link_worker_logs(run.logs)
        console.adopt("ray")
        _quiet_ray_data()
    return ray


def start_local_ray(num_cpus: int | None) -> None:
    """A private Ray on this machine. Its one node is never drained, so Ray Train's preemption watcher (an actor
    per training run, ~1.5 CPU-s to start on 2 cores) is turned off for the drivers of this process tree. The
    workers' output stays in their log files unless --verbose (console.py)."""
    import ray

    from . import console

    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # read by every later TorchTrainer
    ray.init(address="local", num_cpus=num_cpus, log_to_driver=console.verbose())


def _quiet_ray_data() -> None:
    """Our own bars count questions and steps; Ray Data's per-operator bars and plans would repeat them."""
    from ray.data import DataContext

    from . import console

    console.adopt("ray.data")  # Ray Data gives its logger a terminal handler when imported
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _link_worker_logs(logs: Path) -> None:
    """<run_dir>/logs/ray -> this Ray session's log folder, where every worker process (vLLM, Ray Train,
    DeepSpeed) writes its output."""
    import ray

    try:
        session = Path(ray._private.worker._global_node.get_logs_dir_path())  # no public accessor in Ray 2.60
        logs.mkdir(parents=True, exist_ok=True)
        link = logs / "ray"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(session, target_is_directory=True)
    except (AttributeError, OSError):  # a private API that moved, or a folder that refuses links: not needed
        pass


_KEPT: dict[Hashable, Any] = {}


def kept_in_process(key: Hashable, build: Callable[[], Any]) -> Any:
    """`build()` once per process for `key`; a new key replaces the old object (one model at a time).

    Ray reuses a job's task worker processes, so an engine kept here serves every later Ray Data task that
    lands in the same process (the next eval, self-generation pass or reflect round), where an actor pool
    starts a new process and loads torch, transformers and the model again each time (~5 s on 2 cores).
    """
    if key not in _KEPT:
        for old in _KEPT.values():
            getattr(old, "close", lambda: None)()
        _KEPT.clear()
        _KEPT[key] = build()
    return _KEPT[key]


def folder_stamp(path: str | None) -> tuple:
    """Tells a model folder's (or file's) current content apart from an earlier one under the same path:
    trainers swap each new best in as a new folder, and save_pretrained may rewrite files in place."""
    from .storage import is_remote, remote_stamp

    if path and is_remote(path):  # a remote run's model: its files' sizes and times
        return path, remote_stamp(path)
    try:
        st = os.stat(path)
        files = [e.stat().st_mtime_ns for e in os.scandir(path) if e.is_file()] if os.path.isdir(path) else []
    except (OSError, TypeError):
        return (path,)  # a hub name, an endpoint's model name, or nothing
    return path, st.st_ino, st.st_mtime_ns, max(files, default=0)


class Replica:
    """An actor replica: builds its object once, then serves every batch Ray Data hands it."""

    def __init__(self, build: Callable[[], Any], call: Callable[[Any, dict], dict]):
        self.obj, self.call = build(), call

    def __call__(self, batch: dict) -> dict:
        return self.call(self.obj, batch)


def _in_task(batch: dict, *, key: Hashable, build: Callable[[], Any], call: Callable[[Any, dict], dict]) -> dict:
    return call(kept_in_process(key, build), batch)


def map_replicas(ds, *, build: Callable[[], Any], call: Callable[[Any, dict], dict], key: Hashable, light: bool,
                 replicas: int, num_cpus: float, num_gpus: float, batch_size: int):
    """Lazily `call(obj, batch) -> batch` over `ds`, `obj = build()` held by `replicas` workers.

      light, no GPUs   Ray Data tasks, the object kept in the task's worker process under `key`: Ray reuses
                       those processes, so the next pass over the same model starts no process and loads nothing
                       (an actor pool's start, a new process importing torch and transformers, costs ~5 s on 2
                       cores, more than a small pass)
      otherwise        an actor pool whose actors hold the object for the pass (a GPU is released after it)
    `build` and `call` must be picklable (module-level functions or functools.partial).
    """
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    common = {"batch_size": batch_size, "batch_format": "numpy", "num_cpus": num_cpus}
    if light and not num_gpus:
        return ds.map_batches(_in_task, fn_kwargs={"key": key, "build": build, "call": call},
                              compute=TaskPoolStrategy(size=replicas), **common)
    return ds.map_batches(Replica, fn_constructor_kwargs={"build": build, "call": call},
                          compute=ActorPoolStrategy(size=replicas), num_gpus=num_gpus, **common)
