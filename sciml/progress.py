"""Progress reporting as an injected object (cf. diffrax's progress meters).

Long loops take a :class:`Progress` argument instead of printing. On a terminal it is a tqdm bar with the
latest metrics and an ETA; off a terminal (CI, SLURM logs, pipes) it degrades to one log line every
``log_every`` seconds, so logs stay readable and small.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

LOGGER = logging.getLogger("sciml.progress")


class Progress(Protocol):
    """What a long loop reports to."""

    def start(self, total: int, desc: str) -> None: ...

    def update(self, n: int = 1, metrics: Mapping[str, Any] | None = None) -> None: ...

    def close(self) -> None: ...


def _fmt_metrics(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return ""
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k}={v:.3e}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


class NoProgress:
    """Reports nothing."""

    def start(self, total: int, desc: str) -> None:
        pass

    def update(self, n: int = 1, metrics: Mapping[str, Any] | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class LogProgress:
    """Periodic log lines: ``desc: 1200/5000 (24%) loss=1.2e-03 eta 0:00:41``.

    ``eta=False`` shows the elapsed time instead: for loops whose ``total`` is only an upper bound (a solver that
    stops early on a tolerance), or whose steps differ in cost by stage, an ETA would be a guess.
    """

    def __init__(self, log_every: float = 10.0, logger: logging.Logger = LOGGER, eta: bool = True) -> None:
        self.log_every = log_every
        self.logger = logger
        self.eta = eta
        self.total = 0
        self.desc = ""
        self.n = 0
        self._t0 = 0.0
        self._last = 0.0
        self._metrics: Mapping[str, Any] | None = None

    def start(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self._t0 = self._last = time.monotonic()

    def _line(self) -> str:
        elapsed = time.monotonic() - self._t0
        pct = 100.0 * self.n / self.total if self.total else 0.0
        if not self.eta:
            return f"{self.desc}: {self.n}/{self.total} ({pct:.0f}%) {_fmt_metrics(self._metrics)} {elapsed:.0f} s"
        eta = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?"
        return f"{self.desc}: {self.n}/{self.total} ({pct:.0f}%) {_fmt_metrics(self._metrics)} eta {eta_s}"

    def update(self, n: int = 1, metrics: Mapping[str, Any] | None = None) -> None:
        self.n += n
        if metrics:
            self._metrics = dict(metrics)
        now = time.monotonic()
        if now - self._last >= self.log_every:
            self._last = now
            self.logger.info(self._line())

    def close(self) -> None:
        if self.total:
            self.logger.info(self._line() + f" done in {time.monotonic() - self._t0:.1f}s")


class BarProgress:
    """A tqdm bar on stderr showing the latest metrics as a postfix (``eta=False``: elapsed time, no ETA)."""

    NO_ETA_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, eta: bool = True) -> None:
        self._bar: Any = None
        self.eta = eta

    def start(self, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        fmt = None if self.eta else self.NO_ETA_FORMAT
        self._bar = tqdm(total=total, desc=desc, dynamic_ncols=True, file=sys.stderr, bar_format=fmt)

    def update(self, n: int = 1, metrics: Mapping[str, Any] | None = None) -> None:
        if self._bar is None:
            return
        if metrics:
            self._bar.set_postfix_str(_fmt_metrics(metrics), refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def default_progress(quiet: bool = False, eta: bool = True) -> Progress:
    """A bar on an interactive terminal, log lines otherwise, nothing when ``quiet``; ``eta`` as in
    :class:`LogProgress`."""
    if quiet:
        return NoProgress()
    if sys.stderr.isatty():
        return BarProgress(eta=eta)
    return LogProgress(eta=eta)
