"""The package's own progress lines: every module logs to `logging.getLogger(__name__)`, and the
`tinythinker_ray` logger writes INFO and above to stdout as plain lines. One place to quiet or raise them:

    logging.getLogger("tinythinker_ray").setLevel(logging.WARNING)   # errors and warnings only
"""

from __future__ import annotations

import logging
import sys

LOGGER = "tinythinker_ray"


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
    """Attach the stdout handler to the package logger once per process."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, StdoutHandler) for h in logger.handlers):
        handler = StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
