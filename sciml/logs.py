"""Logging set-up for the command line (library code only calls ``logging.getLogger(__name__)``)."""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (pytest's capture, a redirected stream), never to a
    stream that was closed after set-up."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbosity: int = 0) -> None:
    """Configure the ``sciml`` logger: -1 quiet (warnings), 0 info, 1+ debug.

    Only the ``sciml`` logger tree is touched; third-party loggers keep their own levels.
    """
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logger = logging.getLogger("sciml")
    logger.setLevel(level)
    for h in list(logger.handlers):
        if getattr(h, "_sciml", False):
            logger.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler._sciml = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
