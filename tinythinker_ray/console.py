"""What reaches the terminal: the method's own progress, and nothing of the engines' unless asked for.

Every module logs to `logging.getLogger(__name__)`; the `tinythinker_ray` logger writes INFO and above to stdout
as plain lines (one place to quiet them: `logging.getLogger("tinythinker_ray").setLevel(logging.WARNING)`).
A command that works on a run directory (`setup(..., log=...)`) also writes everything, its own lines and every
library's (Ray, Ray Data, Ray Train, vLLM, DeepSpeed, transformers, Python warnings), to a log file under
<run_dir>/logs/, one per step; Ray's worker processes keep theirs in Ray's session folder, which
<run_dir>/logs/ray links to. `--verbose` shows the libraries' logs on the terminal too. Long work shows a progress
bar when the terminal is one (`progress`), and nothing when output goes to a file or a pipe.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOGGER = "tinythinker_ray"
# libraries whose loggers write to the terminal themselves: in quiet mode their lines go to the log file only
LIBRARIES = ("ray", "ray.data", "ray.train", "ray.tune", "vllm", "deepspeed", "DeepSpeed", "transformers", "torch",
             "datasets", "huggingface_hub", "filelock", "urllib3", "httpx", "py.warnings")
FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")

_state: dict = {"verbose": False, "file": None}


class StdoutHandler(logging.Handler):
    """Writes to whatever sys.stdout is at the time (a StreamHandler keeps the stream it was made with, which
    misses a redirected or captured stdout)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


def install() -> None:
    """Attach the stdout handler to the package logger once per process (also in Ray workers, whose stdout is
    their log file). The package logger does not propagate: a library's root handler would print lines twice."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, StdoutHandler) for h in logger.handlers):
        handler = StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


@contextmanager
def session(*, verbose: bool, log: Path | None) -> Iterator[None]:
    """One command line's console: the engines quiet unless `verbose`, and (with `log`) every line in that file.

    Quiet with a log file, what native code writes to the process's stderr (Ray's C++ core, vLLM's engine, the
    processes Ray starts, which inherit it) goes to the log file too: the file descriptor is redirected, while
    Python's own sys.stderr (our error lines and progress bars) keeps the terminal. Environment variables are
    set before Ray or vLLM start, so the processes they start inherit them. Everything is undone on exit."""
    root = logging.getLogger()
    saved = {"level": root.level, "handlers": list(root.handlers), "stderr": sys.stderr, "env": dict(os.environ)}
    _state["verbose"] = verbose
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger -> the log file
    native = None
    if verbose:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(FORMAT)
        root.addHandler(err)
    else:
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # vLLM's lines go to the root logger (the file)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for name in LIBRARIES:
            adopt(name)
    try:
        if log is not None:
            log_to(log)
            if not verbose:
                native = _native_stderr_to(log)
        yield
    finally:
        if native is not None:
            sys.stderr.flush()
            os.dup2(native, 2)
            os.close(native)
        sys.stderr = saved["stderr"]
        if _state["file"] is not None:
            for logger in (root, logging.getLogger(LOGGER)):
                logger.removeHandler(_state["file"])
            _state["file"].close()
        root.handlers[:] = saved["handlers"]
        root.setLevel(saved["level"])
        logging.captureWarnings(False)
        os.environ.clear()
        os.environ.update(saved["env"])
        _state.update(verbose=False, file=None)


def _native_stderr_to(path: Path) -> int:
    """Point file descriptor 2 at `path`; sys.stderr keeps the terminal (a copy of the old descriptor, returned
    for the restore)."""
    sys.stderr.flush()
    terminal = os.dup(2)
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, encoding="utf-8", errors="replace")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.dup2(fd, 2)
    os.close(fd)
    return terminal


def adopt(name: str) -> None:
    """Route a library logger to the log file only (drop the terminal handlers it gave itself). Called again
    after importing a library that configures its loggers at import time (Ray does)."""
    if _state["verbose"]:
        return
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
    logger.propagate = True


def log_to(path: Path) -> Path:
    """Send everything from now on to `path` (appended): each pipeline step gets its own file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(FORMAT)
    old = _state["file"]
    for logger in (logging.getLogger(), logging.getLogger(LOGGER)):
        if old is not None:
            logger.removeHandler(old)
        logger.addHandler(handler)
    if old is not None:
        old.close()
    _state["file"] = handler
    return path


def current_log() -> str | None:
    """The log file lines go to now (None: no run directory)."""
    return _state["file"].baseFilename if _state["file"] is not None else None


def verbose() -> bool:
    return _state["verbose"]


def progress(**kwargs):
    """A tqdm bar on a terminal; none (disable=None) when output goes to a file or a pipe."""
    from tqdm import tqdm

    return tqdm(disable=None, dynamic_ncols=True, leave=False, **kwargs)
