"""One run directory: its layout, its manifest of finished steps, its lock, and its remote.

    run_dir/ manifest.json  config.yaml  report.md  accuracy.png  .lock  logs/
      teach/    replies.jsonl  stats.json  {recall,recall_single,analyze,summarize}.jsonl  questions/<split>.jsonl
                fewshot_rationales.json  bootstrap/replies.jsonl
      sft/      ray/ (Ray Train checkpoints)  best/ (HF folder)  metrics.jsonl  tb/  data.json
      eval/<tag>/     results.jsonl  summary.json
      reflect/iter_<i>/  generations.jsonl  analyze_generations.jsonl  {recall,analyze}_pairs.jsonl  record.json
                         + what sft/ holds

`RunDir(cfg.run_dir)` is the only place these names are spelled. A remote run directory (s3://, gs://,
file://) is worked on through a local mirror under the cache, the same folder for the same URI: `pull()`
brings down what an earlier (possibly killed) run left, `push()` uploads after every finished step. Ray Train
workers, which may sit on other nodes, write to the remote directly (`remote_of`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import TinyThinkerError
from .storage import atomic_write_json, cache_root, check_remote, copy_tree, is_remote, sweep_leftovers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeachDir:
    root: Path

    @property
    def replies(self) -> Path:
        return self.root / "replies.jsonl"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    @property
    def fewshot(self) -> Path:
        return self.root / "fewshot_rationales.json"

    @property
    def bootstrap_replies(self) -> Path:
        return self.root / "bootstrap" / "replies.jsonl"

    def stage(self, name: str) -> Path:
        return self.root / f"{name}.jsonl"

    def questions(self, split: str) -> Path:
        return self.root / "questions" / f"{split}.jsonl"


@dataclass(frozen=True)
class TrainDir:
    """What one training run writes (phase 1, or one reflect round)."""

    root: Path

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tb(self) -> Path:
        return self.root / "tb"

    @property
    def data(self) -> Path:  # the rows phase 1 trained on, per stage
        return self.root / "data.json"

    def has_best(self) -> bool:
        return (self.best / "config.json").exists()


ROUND_STEP = "reflect/"  # a reflect round's manifest step is "reflect/iter_<i>"


@dataclass(frozen=True)
class RoundDir(TrainDir):
    """One reflect round: its self-generation and pairs beside its training output."""

    number: int = 0

    @property
    def generations(self) -> Path:
        return self.root / "generations.jsonl"

    @property
    def analyze_generations(self) -> Path:
        return self.root / "analyze_generations.jsonl"

    def pairs(self, stage: str) -> Path:
        return self.root / f"{stage}_pairs.jsonl"

    @property
    def record(self) -> Path:
        return self.root / "record.json"

    @property
    def step(self) -> str:  # the round's name in the manifest
        return f"{ROUND_STEP}iter_{self.number}"


@dataclass(frozen=True)
class EvalDir:
    root: Path

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"


class RunDir:
    def __init__(self, run_dir: str | os.PathLike):
        self.uri = str(run_dir)
        self.remote = self.uri.rstrip("/") if is_remote(self.uri) else None
        if self.remote:  # the same mirror folder for the same URI, so every driver of a run finds it
            self.root = cache_root() / "runs" / hashlib.sha1(self.uri.encode()).hexdigest()[:16]
        else:
            self.root = Path(self.uri).resolve()

    def __repr__(self) -> str:
        return f"RunDir({self.uri!r})"

    @property
    def name(self) -> str:  # the run's own name (the last part of its path or URI)
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    # ----- the layout -----
    @property
    def manifest(self) -> Manifest:
        return Manifest(self.root / "manifest.json")

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plot(self) -> Path:
        return self.root / "accuracy.png"

    @property
    def logs(self) -> Path:  # one log file per command or pipeline step; ray/ links to Ray's worker logs
        return self.root / "logs"

    @property
    def prepared(self) -> Path:  # `data prepare`: the splits as loaded
        return self.root / "data"

    @property
    def synth(self) -> Path:  # `data synth` without synth.out
        return self.root / "synth"

    @property
    def export(self) -> Path:  # `export` without a folder named
        return self.root / "export"

    @property
    def tune(self) -> Path:  # `tune`: the sweep's results; trials/<id> are run directories of their own
        return self.root / "tune"

    def trial(self, trial_id: str) -> RunDir:
        return RunDir(self.tune / "trials" / trial_id)

    @property
    def teach(self) -> TeachDir:
        return TeachDir(self.root / "teach")

    @property
    def sft(self) -> TrainDir:
        return TrainDir(self.root / "sft")

    def reflect(self, i: int) -> RoundDir:
        return RoundDir(self.root / "reflect" / f"iter_{i}", number=i)

    def rounds(self) -> list[RoundDir]:
        """The reflect rounds on disk, in round order."""
        found = [int(p.name.removeprefix("iter_")) for p in (self.root / "reflect").glob("iter_*")
                 if p.name.removeprefix("iter_").isdigit()]
        return [self.reflect(i) for i in sorted(found)]

    def eval(self, tag: str) -> EvalDir:
        return EvalDir(self.root / "eval" / tag)

    def evals(self) -> list[EvalDir]:
        return [EvalDir(p) for p in sorted((self.root / "eval").glob("*")) if p.is_dir()]

    def best_student(self) -> Path | None:
        """The newest trained student: the last reflect round's best, else phase 1's."""
        for d in [*reversed(self.rounds()), self.sft]:
            if d.has_best():
                return d.best
        return None

    # ----- the remote -----
    def remote_of(self, path: str | os.PathLike) -> str | None:
        """The remote URI a folder of this run stands for (None for a local run directory)."""
        if not self.remote:
            return None
        rest = Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        return self.remote + ("" if rest == "." else "/" + rest)

    def for_workers(self, path: str | os.PathLike) -> str:
        """How Ray workers on any node reach a folder of this run (a model): its URI when the run is remote (each
        node fetches its own copy; the driver's mirror is on the driver's disk only), else its path."""
        if self.remote and Path(path).resolve().is_relative_to(self.root.resolve()):
            return self.remote_of(path)
        return str(path)

    def pull(self) -> Path:
        """Bring down what a remote run directory holds, so a rerun resumes."""
        if self.remote:
            check_remote(self.remote)  # one line before any work: unreachable, refused, no such bucket
            self.root.mkdir(parents=True, exist_ok=True)
            copy_tree(self.remote, str(self.root), skip=("ray",))  # Ray Train resumes from the remote itself
        return self.root

    def push(self) -> None:
        """Upload the mirror to the remote run directory (a failure names the URI; the mirror keeps everything
        and the next push, a rerun's, uploads it)."""
        if self.remote:
            copy_tree(str(self.root), self.remote, skip=("ray",))


class Manifest:
    """`manifest.json`: which steps finished, with their outputs. Re-read before every change: several drivers
    of one run (the pipeline, sft, reflect) each hold one."""

    def __init__(self, path: Path):
        self.path = path
        self.data = self._read() if path.exists() else {"steps": {}}

    def _read(self) -> dict:
        """The manifest on disk; a truncated or hand-broken one is a user error naming the file and the way out
        (every step resumes from its own outputs, so a run without a manifest redoes nothing it finished)."""
        try:
            data = json.loads(self.path.read_text())
            why = None if isinstance(data, dict) and isinstance(data.get("steps"), dict) else "has no 'steps' table"
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            why = f"is not valid JSON ({getattr(e, 'msg', None) or e.reason}), truncated?"
        if why:
            raise TinyThinkerError(f"{self.path} {why}: move it aside (mv {self.path} {self.path}.bad) and rerun, "
                                   f"each step then resumes from its outputs on disk; or start over in a new --run_dir")
        return data

    def done(self, step: str) -> bool:
        return step in self.data["steps"]

    def get(self, step: str) -> dict | None:
        return self.data["steps"].get(step)

    def mark(self, step: str, **outputs) -> None:
        if self.path.exists():
            self.data = self._read()
        self.data["steps"][step] = outputs
        atomic_write_json(self.path, self.data)


class RunLock:
    """An exclusive lock on a run directory: a second run on the same directory refuses instead of interleaving.

    flock is released by the kernel when the holder dies, so a SIGKILLed run never leaves a stale lock.
    """

    def __init__(self, root: str | os.PathLike):
        self.path = Path(root) / ".lock"
        self._f = None

    def __enter__(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a+")
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.seek(0)
            holder = self._f.read().strip() or "another process"
            self._f.close()
            raise TinyThinkerError(f"run directory {self.path.parent} is in use by {holder}; "
                                   "wait for it to finish or choose another --run_dir") from None
        self._f.seek(0)
        self._f.truncate()
        self._f.write(f"pid {os.getpid()}")
        self._f.flush()
        return self

    @classmethod
    def refuse_if_held(cls, root: str | os.PathLike) -> None:
        """Refuse now, before anything (a log file) is written into a run directory another driver holds."""
        if (Path(root) / ".lock").exists():
            with cls(root):
                pass

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._f:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()


@contextmanager
def workspace(run_dir: str | os.PathLike) -> Iterator[RunDir]:
    """A driver's hold on a run directory: a remote one is pulled into its local mirror and pushed back when the
    driver ends, finished or not; the lock keeps a second driver on this machine out."""
    run = RunDir(run_dir)
    run.pull()
    with RunLock(run.root):
        for line in sweep_leftovers(run.root):  # held: no writer of ours is left to race with
            log.warning("%s", line)
        try:
            yield run
        except BaseException:
            try:
                run.push()  # what was done reaches a remote run_dir even when a step failed
            except TinyThinkerError as e:  # ...unless the store is down too: the step's own error is the news
                log.warning("%s", e)
            raise
        run.push()
