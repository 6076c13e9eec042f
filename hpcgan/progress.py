"""Progress of the long stages, for a terminal and for a cluster log file (``--progress``).

Every long loop (preprocessing, GAN training, classifier epochs, the experiment
grid, feature extraction, generation) reports through :class:`Progress`. The
mode is one of :data:`MODES`:

* ``bar``: a tqdm bar on stderr (a terminal). An inner bar opened while another is
  open (batches inside an epoch inside the grid) prints lines instead when stderr
  is not a terminal, so nested bars never write cursor-movement codes into a file.
* ``lines``: a plain line on stdout at most every ``interval`` seconds
  (``HPCGAN_PROGRESS_INTERVAL``, default 30) and one when a top-level loop ends:
  ``<what>: <n>/<total> <unit> (<pct>%), <rate> <unit>/s, ETA <time>``. No carriage
  returns, no escape codes: what a SLURM log file should hold.
* ``off``: nothing.
* ``auto`` (the default): ``bar`` when stderr is a terminal, else ``lines``.

Only rank 0 reports (``hpcgan.dist.is_rank0``, or the ``rank0`` argument); the
other ranks are always ``off``. ``True``/``False`` (older configs) mean ``auto``/``off``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator

from hpcgan.errors import HpcganError

__all__ = ["MODES", "Progress", "normalize", "resolve", "track", "format_duration", "default_interval"]

MODES = ("auto", "bar", "lines", "off")
DEFAULT_INTERVAL_S = 30.0
_open_bars: list[Progress] = []  # bars (tqdm) open now, outermost first


def normalize(mode) -> str:
    """A ``--progress`` value (one of :data:`MODES`, a bool, or None = auto) as one of :data:`MODES`."""
    if mode is None or mode is True:
        return "auto"
    if mode is False:
        return "off"
    if isinstance(mode, str) and mode.strip().lower() in MODES:
        return mode.strip().lower()
    raise HpcganError(f"progress must be one of {', '.join(MODES)} (or true/false), got {mode!r}")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def resolve(mode, rank0: bool | None = None, nested: bool = False) -> str:
    """What a loop does now: ``bar``, ``lines`` or ``off`` (see the module docstring)."""
    mode = normalize(mode)
    if rank0 is None:
        from hpcgan import dist

        rank0 = dist.is_rank0()
    if not rank0 or mode == "off":
        return "off"
    tty = _isatty(sys.stderr)
    if mode == "auto":
        mode = "bar" if tty else "lines"
    if mode == "bar" and nested and not tty:
        mode = "lines"
    return mode


def default_interval() -> float:
    """Seconds between two lines in ``lines`` mode: ``$HPCGAN_PROGRESS_INTERVAL`` or 30."""
    raw = os.environ.get("HPCGAN_PROGRESS_INTERVAL")
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise HpcganError(f"HPCGAN_PROGRESS_INTERVAL must be a number of seconds, got {raw!r}") from None
    if value < 0 or not math.isfinite(value):
        raise HpcganError(f"HPCGAN_PROGRESS_INTERVAL must be >= 0 seconds, got {raw!r}")
    return value


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _fmt_rate(rate: float) -> str:
    return f"{rate:.3g}" if rate >= 0.1 else f"{rate:.2g}"


class Progress:
    """One loop's progress: ``update(n)`` as work is done, ``write(msg)`` for a log line, ``close()``.

    ``total`` may be None (unknown length: no percentage, no ETA). ``leave=False``
    marks an inner loop (an epoch's batches): in ``lines`` mode it prints no closing
    line unless it already printed an interval line. Usable as a context manager.
    """

    def __init__(self, total: float | None = None, desc: str = "", unit: str = "it", mode="auto",
                 initial: float = 0, leave: bool = True, interval: float | None = None, rank0: bool | None = None):
        self.total, self.desc, self.unit, self.leave = total, desc, unit, leave
        self.n = initial
        self._start_n = initial
        self.mode = resolve(mode, rank0=rank0, nested=bool(_open_bars))
        self.interval = default_interval() if interval is None else float(interval)
        self._t0 = self._last = time.monotonic()
        self._printed = False
        self._bar = None
        self._closed = False
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                             mininterval=0.5, file=sys.stderr)
            _open_bars.append(self)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units done; in ``lines`` mode print a line when ``interval`` has passed."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._emit(self.line(now))

    def line(self, now: float | None = None) -> str:
        """``<what>: <n>/<total> <unit> (<pct>%), <rate> <unit>/s, ETA <time>``."""
        elapsed = (time.monotonic() if now is None else now) - self._t0
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            left = (self.total - self.n) / rate if rate > 0 else None
            return (f"{head}{self.n:g}/{self.total:g} {self.unit} ({100.0 * self.n / self.total:.0f}%), "
                    f"{_fmt_rate(rate)} {self.unit}/s, ETA {format_duration(left)}")
        return f"{head}{self.n:g} {self.unit}, {_fmt_rate(rate)} {self.unit}/s, {format_duration(elapsed)} so far"

    def _emit(self, text: str) -> None:
        self._printed = True
        print(text, file=sys.stdout, flush=True)

    def write(self, msg: str) -> None:
        """Print a log line (a tick, a failed task) without breaking a bar; printed in every mode, off included."""
        if self._bar is not None:
            self._bar.write(msg, file=sys.stderr)
        else:
            print(msg, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            if self in _open_bars:
                _open_bars.remove(self)
        elif self.mode == "lines" and (self.leave or self._printed) and self.n > self._start_n:
            elapsed = time.monotonic() - self._t0
            done = self.n - self._start_n
            rate = done / elapsed if elapsed > 0 else 0.0
            total = f"/{self.total:g}" if self.total else ""
            head = f"{self.desc}: " if self.desc else ""
            self._emit(f"{head}{self.n:g}{total} {self.unit} done in {format_duration(elapsed)} "
                       f"({_fmt_rate(rate)} {self.unit}/s)")


def track(iterable: Iterable, total: float | None = None, **kw) -> Iterator:
    """Iterate ``iterable`` with a :class:`Progress` (``kw`` as its constructor); closes it at the end."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total=total, **kw) as p:
        for item in iterable:
            yield item
            p.update(1)
