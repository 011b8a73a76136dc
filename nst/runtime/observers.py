"""In-process plugins that watch a run through nst_on_step: a progress bar and snapshots."""
from __future__ import annotations

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

    def _open(self, total, step: int) -> None:
        if self._bar is None:
            self._bar = progress_bar("{task.fields[losses]}")
            self._bar.start()
            self._task = self._bar.add_task("", total=total, losses="")
            self._started, self._first, self._step = time.perf_counter(), step, 0

    def tile(self, ctx, done: int, total: int) -> None:
        """Tiled work: DONE of TOTAL tiles within the current step (or of the whole pass, for a method without
        steps); the bar advances by fractions of a step, so its time estimate counts tiles."""
        self._open(ctx.total_steps or total, 0)
        label = ctx.settings.method + (f" {ctx.scale.size}px" if ctx.scale is not None else "")
        completed = self._step + done / total if ctx.total_steps else done
        self._bar.update(self._task, completed=completed, description=f"{label} tile {done}/{total}")

    @hookimpl
    def nst_on_step(self, ctx, step, losses) -> None:
        self._open(ctx.total_steps, step)
        self._step = step
        text = "  ".join(f"{k} {v:.3g}" for k, v in losses.items())
        if self.unit and step > self._first:
            text += f"  {(step - self._first) * self.per_step / (time.perf_counter() - self._started):.1f} {self.unit}/s"
        label = ctx.settings.method if ctx.mode == "run" else "train"
        size = f"{ctx.scale.size}px" if ctx.scale is not None else ""
        self._bar.update(self._task, completed=step, losses=text, description=f"{label} {size}")

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
