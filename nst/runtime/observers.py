"""In-process plugins that watch a run through nst_on_step: a progress bar and snapshots."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

from nst.contract.hookspecs import hookimpl
from nst.core.images import save_image
from nst.core.progress import progress_bar


class ProgressBar:
    """Shows step, ETA and the current loss terms on stderr; closed by nst_finish."""

    name = "progress"

    def __init__(self, unit: str = "", per_step: int = 1) -> None:
        """UNIT/PER_STEP: also show a rate, e.g. unit="img", per_step=batch size for training."""
        self.unit, self.per_step = unit, per_step
        self._bar = None
        self._task = None
        self._started, self._first, self._step = 0.0, 0, 0
        self._done_work: list[float] | None = None  # work done after each step (index: steps done), if unequal

    def _open(self, ctx, total, step: int) -> None:
        if self._bar is None:
            work = getattr(ctx, "step_work", None)
            unequal = bool(work) and len(set(work)) > 1 and ctx.total_steps == len(work)
            self._done_work = [0.0, *itertools.accumulate(work)] if unequal else None
            if self._done_work is not None:  # steps of unequal cost: the bar counts work, the label the steps
                total = self._done_work[-1]
            self._bar = progress_bar("{task.fields[losses]}", counts=self._done_work is None)
            self._bar.start()
            self._task = self._bar.add_task("", total=total, losses="")
            self._started, self._first, self._step = time.perf_counter(), step, 0

    def _completed(self, step: float) -> float:
        """STEP (whole or fractional) as the bar's count: steps, or the work of the steps up to it."""
        if self._done_work is None:
            return step
        whole = min(int(step), len(self._done_work) - 1)
        after = self._done_work[min(whole + 1, len(self._done_work) - 1)]
        return self._done_work[whole] + (after - self._done_work[whole]) * (step - whole)

    def tile(self, ctx, done: int, total: int) -> None:
        """Tiled work: DONE of TOTAL tiles within the current step (or of the whole pass, for a method without
        steps); the bar advances by fractions of a step, so its time estimate counts tiles."""
        self._open(ctx, ctx.total_steps or total, 0)
        label = ctx.settings.method + (f" {ctx.scale.size}px" if ctx.scale is not None else "")
        completed = self._completed(self._step + done / total) if ctx.total_steps else done
        self._bar.update(self._task, completed=completed, description=f"{label}{self._steps(ctx)} tile {done}/{total}")

    def _steps(self, ctx) -> str:
        """' step 40/300' where the bar counts work, not steps."""
        return f" step {self._step}/{ctx.total_steps}" if self._done_work is not None else ""

    @hookimpl
    def nst_on_step(self, ctx, step, losses) -> None:
        self._open(ctx, ctx.total_steps, step)
        self._step = step
        text = "  ".join(f"{k} {v:.3g}" for k, v in losses.items())
        if self.unit and step > self._first:
            text += f"  {(step - self._first) * self.per_step / (time.perf_counter() - self._started):.1f} {self.unit}/s"
        label = ctx.settings.method if ctx.mode == "run" else "train"
        size = f"{ctx.scale.size}px" if ctx.scale is not None else ""
        self._bar.update(self._task, completed=self._completed(step), losses=text,
                         description=f"{label} {size}{self._steps(ctx)}")

    @hookimpl
    def nst_finish(self) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Snapshots:
    """Every N steps, writes the current image next to the output as NAME_stepNNNN.png."""

    name = "snapshots"

    def __init__(self, output: Path, every: int) -> None:
        self.output, self.every = Path(output), every
        self.written: list[Path] = []

    @hookimpl
    def nst_on_step(self, ctx, step, image) -> None:
        if step % self.every == 0:
            path = ctx.outputs.reserve(self.output.with_name(f"{self.output.stem}_step{step:04d}.png"))
            self.written.append(save_image(image.clamp(0, 1), path))
