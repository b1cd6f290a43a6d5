"""Where Tune's, Optuna's and SQLAlchemy's own log records go while a sweep runs: ``results/NAME/sweep.log``.

Below ``-v`` the terminal shows the sweep's own lines (hpsearch.progress) and one line per problem. The
libraries underneath print much more: Tune logs an 80-line ``RayTaskError`` traceback for every trial
that fails, a "Stop signal received" paragraph and ``Tuner.restore(...)`` advice on Ctrl-C (hpsearch's
resume command is ``hpsearch sweep --name NAME --resume``), and a full disk brings SQLAlchemy and
Optuna tracebacks of the study's database. :func:`to_log_file` sends those records to the sweep's
log file for the length of the fit, full tracebacks included, and the lines the terminal prints name
that file. ``-v`` (Tune's own tables) leaves every logger as it is.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

LOG_NAME = "sweep.log"
ROUTED = ("ray.tune", "ray.train", "ray.air", "optuna", "sqlalchemy")
"""Loggers whose records go to the file only; ``ray`` itself (node and cluster warnings) still prints."""


class QuietFileHandler(logging.FileHandler):
    """A file handler that drops a record it cannot write (a full disk) instead of printing a traceback."""

    def handleError(self, record) -> None:
        pass


@contextlib.contextmanager
def to_log_file(sweep_dir: Path, *, enabled: bool = True):
    """Within the block, :data:`ROUTED` loggers write (WARNING and up, with tracebacks) to ``sweep_dir``'s log only."""
    if not enabled:
        yield None
        return
    path = sweep_dir / LOG_NAME
    try:
        handler = QuietFileHandler(path, encoding="utf-8", delay=True)
    except OSError:  # an unwritable directory: the libraries keep printing, nothing is lost
        yield None
        return
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in ROUTED:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield path
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
        with contextlib.suppress(Exception):  # a full disk may refuse the last flush
            handler.close()
