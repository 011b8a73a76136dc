"""One progress display for every long job (runs, training, batches, downloads, text synthesis), on stderr: rich's
bar on a terminal; anywhere else (a file, a pipe, a log) one plain line every NST_PROGRESS_SECONDS (default 10)
with step, total, rate and time left, and a last line when the job ends."""
from __future__ import annotations

import os
import time

from rich.progress import Progress

INTERVAL_ENV = "NST_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0


class Pace:
    """Rate and time left of a count growing towards a total, measured from the first count seen (so the start-up
    before it is not counted as slowness)."""

    def __init__(self) -> None:
        self.first: tuple[float, float] | None = None

    def update(self, done: float, total: float | None, now: float | None = None) -> tuple[float | None, float | None]:
        """(units per second, seconds left) after DONE of TOTAL; None where not known yet."""
        now = time.monotonic() if now is None else now
        if self.first is None or done < self.first[1]:
            self.first = (now, done)
            return None, None
        elapsed, gained = now - self.first[0], done - self.first[1]
        if elapsed <= 0 or gained <= 0:
            return None, None
        rate = gained / elapsed
        return rate, (max(total - done, 0) / rate if total else None)


def clock(seconds: float | None) -> str:
    """SECONDS as 0:42, 12:05 or 1:02:05 ('?' when unknown)."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def rate_text(rate: float | None, unit: str = "step") -> str:
    """'3.2 steps/s', or '6.4 s/step' when slower than one a second."""
    if not rate:
        return f"? {unit}s/s"
    if rate >= 9.95:  # whole numbers ('.2g' would write 1.3e+02)
        return f"{rate:.0f} {unit}s/s"
    return f"{rate:.2g} {unit}s/s" if rate >= 1 else f"{1 / rate:.3g} s/{unit}"


def number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


class PlainProgress(Progress):
    """A rich Progress that draws nothing live: it prints one line per task at most every INTERVAL seconds (and the
    first and last state), for logs and pipes. EXTRA: format strings of task fields shown at the end of the line."""

    def __init__(self, *columns, extra: tuple[str, ...] = (), interval: float = DEFAULT_INTERVAL, counts: bool = True,
                 unit: str = "step", **kwargs) -> None:
        super().__init__(*columns, disable=True, **kwargs)
        self.extra, self.interval, self.counts, self.unit = extra, interval, counts, unit
        self._paces: dict = {}
        self._shown: dict = {}  # task id -> (time printed, completed printed)

    def update(self, task_id, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._report(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def stop(self) -> None:
        for task in self.tasks:
            if task.id in self._shown and self._shown[task.id][1] != task.completed:
                self._report(task.id, force=True)
        super().stop()

    def line(self, task, rate: float | None, left: float | None) -> str:
        """One task's state: 'gatys 512px: 40/300 (13%), 2.1 s/step, 1:24 elapsed, 9:06 left, content 1.2e+05'."""
        done = f"{number(task.completed)}/{number(task.total)} " if self.counts and task.total else ""
        parts = [f"{done}({task.percentage:.0f}%)" if task.total else number(task.completed)]
        if self.counts:
            parts.append(rate_text(rate, self.unit))
        parts += [f"{clock(task.elapsed)} elapsed", f"{clock(0 if task.finished else left)} left"]
        fields = "  ".join(t for t in (e.format(task=task).strip() for e in self.extra) if t)
        return f"{task.description.strip() or 'working'}: {', '.join(parts)}" + (f", {fields}" if fields else "")

    def _report(self, task_id, force: bool = False) -> None:
        with self._lock:
            task = self._tasks[task_id]
            rate, left = self._paces.setdefault(task_id, Pace()).update(task.completed, task.total)
            now = time.monotonic()
            shown = self._shown.get(task_id)
            due = shown is None or now - shown[0] >= self.interval or (task.finished and shown[1] != task.completed)
            if not (force or due):
                return
            self._shown[task_id] = (now, task.completed)
            text = self.line(task, rate, left)
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def interval() -> float:
    """Seconds between plain progress lines: NST_PROGRESS_SECONDS, or the default."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def progress_bar(*extra, disable: bool = False, transient: bool = False, counts: bool = True,
                 unit: str = "step") -> Progress:
    """A started-on-enter progress display on stderr: description, bar, done/total (when COUNTS), elapsed, remaining,
    then the EXTRA columns (rich column objects, or format strings such as "{task.fields[losses]}"). On a terminal
    (or in Jupyter) rich draws it; otherwise it is a PlainProgress printing lines at a steady interval, with the rate
    in UNITs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not disable and not console.is_terminal and not console.is_jupyter:
        return PlainProgress(console=console, extra=tuple(c for c in extra if isinstance(c, str)), interval=interval(),
                             counts=counts, unit=unit)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), *([MofNCompleteColumn()] if counts else []),
               TimeElapsedColumn(), TimeRemainingColumn()]
    columns += [TextColumn(c) if isinstance(c, str) else c for c in extra]
    return Progress(*columns, console=console, disable=disable, transient=transient)
