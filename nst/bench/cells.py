"""The measurements of `nst bench`, one function per kind of cell; each returns a JSON-ready dict.

Times are wall-clock seconds after the device finished (CUDA synchronised); feed-forward methods are timed
warm (one untimed call first). Peak memory: CUDA `max_memory_allocated` since the cell began; on Linux CPUs the
process's peak resident set since the cell began (VmHWM, reset through /proc/self/clear_refs), else the
process's peak so far.
"""
from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nst
from nst.bench import measures
from nst.bench.plan import OPTIMISING, BenchPlan
from nst.core.images import load_image, save_image
from nst.errors import NSTError

CURVE_POINTS = 200


def _quiet(_: str) -> None:
    pass


class Recorder:
    """In-process run plugin: the time (after the device finished) and the loss terms of every step."""

    name = "bench-recorder"

    def __init__(self, device: str) -> None:
        self.device, self.times, self.losses = device, [], []

    @nst.hookimpl
    def nst_on_step(self, step: int, losses: dict[str, float]) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter())
        self.losses.append({k: float(v) for k, v in losses.items()})

    def seconds_per_step(self) -> float | None:
        """Mean step time between the first and the last step (setup excluded), None under two steps."""
        return (self.times[-1] - self.times[0]) / (len(self.times) - 1) if len(self.times) > 1 else None

    def curve(self) -> dict[str, list[float]]:
        """Each loss term's values, at most CURVE_POINTS of them (evenly spaced steps), plus "step"."""
        if not self.losses:
            return {}
        idx = np.unique(np.linspace(0, len(self.losses) - 1, min(CURVE_POINTS, len(self.losses))).round().astype(int))
        out = {"step": [int(i) + 1 for i in idx]}
        for term in self.losses[0]:
            out[term] = [self.losses[i].get(term, float("nan")) for i in idx]
        return out


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _proc_mb(key: str) -> float | None:
    """The KEY line (VmRSS, VmHWM) of /proc/self/status in MB; None where there is no such file (not Linux)."""
    with contextlib.suppress(OSError, StopIteration):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
        return int(line.split()[1]) / 1024
    return None


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    peak = _proc_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _now_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.memory_allocated(device) / 2 ** 20
    now = _proc_mb("VmRSS")
    return now if now is not None else float("nan")


def measured(device: str, fn: Callable[[], Any]) -> tuple[float, dict[str, float], Any]:
    """(seconds, {"peak_mb", "added_mb"}, result) of FN() on DEVICE: the peak memory during the call, and its
    increase over the memory in use when the call began."""
    _reset_peak(device)
    before = _now_mb(device)
    start = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    seconds, peak = time.perf_counter() - start, _peak_mb(device)
    return seconds, {"peak_mb": peak, "added_mb": max(0.0, peak - before)}, result


class Bench:
    """Runs cells of PLAN; WORK holds the networks trained by train cells and the generated inputs, IMAGES the
    grid's results (the contact sheets are made from them)."""

    def __init__(self, plan: BenchPlan, work: Path, images: Path, photos_dir: Path) -> None:
        self.plan, self.work, self.images, self.photos_dir = plan, work, images, photos_dir
        self.device = plan.device

    # -- helpers --------------------------------------------------------------------------------------------
    def model(self, arch: str, styles: int) -> Path:
        return self.work / f"{arch}-{styles}.safetensors"

    def _run(self, method: str, content, styles: list, size: int, plugins=(), options=None, model: Path | None = None,
             **settings):
        """nst.run of METHOD with the plan's device and quiet notes; returns the Result. Networks ("johnson",
        "stroke") run MODEL, by default the one trained on the grid's styles (stroke: on the first style)."""
        kwargs: dict[str, Any] = dict(method=method, size=size, device=self.device, note=_quiet, weights=self.plan.weights)
        if method in OPTIMISING:
            kwargs["steps"] = self.plan.steps
        if method in ("johnson", "stroke"):
            kwargs["method"] = "johnson"
            model = model or self.model(method, len(self.plan.grid_style_paths()) if method == "johnson" else 1)
            if not model.is_file():
                raise NSTError(f"the {method} network was not trained (its training cell failed)")
            kwargs["model"] = str(model)
            styles = []
        kwargs.update(settings)
        return nst.run(content, styles, plugins=list(plugins), options=options, **kwargs)

    # -- section 2: training ----------------------------------------------------------------------------------
    def train(self, arch: str, styles: int) -> dict:
        paths = self.plan.styles[:styles]
        out = self.model(arch, styles)
        rec = Recorder(self.device)
        steps = self.plan.train_steps * styles
        plugins: list = [rec] + (["stroke"] if arch == "stroke" else [])
        seconds, memory, _ = measured(self.device, lambda: nst.train(
            [str(p) for p in paths] if styles > 1 else str(paths[0]), self.photos_dir, out, plugins=plugins,
            steps=steps, size=self.plan.train_size, batch_size=4, workers=0, device=self.device, note=_quiet,
            weights=self.plan.weights,
            overwrite=True, checkpoint_every=max(1, steps)))
        sps = rec.seconds_per_step()
        curve = rec.curve()
        row = {"arch": arch, "styles": styles, "steps": steps, "seconds": seconds, **memory,
               "s_per_step": sps, "images_per_s": 4 / sps if sps else None, "model_mb": out.stat().st_size / 2 ** 20,
               "curve": curve, "seconds_to_half_style": _time_to_half(rec, "style")}
        x = torch.rand(1, 3, self.plan.grid_size, self.plan.grid_size)
        row["inference_s"] = self._warm_time(lambda: self._run(arch, x, [], self.plan.grid_size, model=out))
        return row

    # -- section 1: time per image --------------------------------------------------------------------------
    def time(self, method: str, size: int) -> dict:
        photo, style = self.plan.photos[0], self.plan.styles[0]
        if method == "text":
            return self._time_text(size)
        rec = Recorder(self.device)
        model = self.model(method, 1) if method in ("johnson", "stroke") else None  # the one-style network
        if method in OPTIMISING:
            self._run(method, photo, [style], size, steps=2)  # warm-up: weights read, kernels chosen
        if method in (*OPTIMISING, "analogy"):
            seconds, memory, _ = measured(self.device, lambda: self._run(method, photo, [style], size, plugins=[rec]))
        else:
            self._run(method, photo, [style], size, model=model)  # warm-up
            seconds, memory, _ = measured(self.device, lambda: self._run(method, photo, [style], size, model=model))
        return {"method": method, "size": size, "seconds": seconds, **memory,
                "s_per_step": rec.seconds_per_step() if method in OPTIMISING else None,
                "steps": self.plan.steps if method in OPTIMISING else None,
                "forward_ms": self._forward_ms(model, size) if model else None}

    def _forward_ms(self, model: Path, size: int) -> float:
        """Milliseconds of the network's forward pass alone on a square SIZE image (median of 5, warm)."""
        from nst.core.johnson import load_model
        from nst.host import default_host

        net, _ = load_model(model, default_host().architectures())
        net = net.to(self.device).eval()
        x = torch.rand(1, 3, size, size, device=self.device)
        times = []
        with torch.inference_mode():
            for _ in range(6):
                times.append(measured(self.device, lambda: net(x))[0] * 1000)
        return float(np.median(times[1:]))

    def _time_text(self, size: int) -> dict:
        from nst.bench.samples import text_example

        source, styled = text_example(self.work, size)
        from nst.plugins.text import text_effect

        out = self.work / f"text-{size}.png"
        seconds, memory, _ = measured(self.device, lambda: text_effect([source], [styled], out, text="Ab", size=size,
                                                                        device=self.device, note=_quiet))
        return {"method": "text", "size": size, "seconds": seconds, **memory, "s_per_step": None, "steps": None}

    def _warm_time(self, fn: Callable[[], Any]) -> float:
        fn()
        return measured(self.device, fn)[0]

    # -- section 3: quality grid ----------------------------------------------------------------------------
    def grid(self, method: str, photo: str, style: str) -> dict:
        rec = Recorder(self.device)
        index = [str(p) for p in self.plan.grid_style_paths()].index(style)
        options = {"johnson": {"style": str(index)}} if method == "johnson" else None
        if method == "stroke" and index > 0:
            return {"skipped": "a stroke network learns one style (the first); its grid row has that style only"}
        result = self._run(method, photo, [style], self.plan.grid_size, plugins=[rec], options=options)
        target = self.images / method / f"{Path(photo).stem}__{Path(style).stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_image(result.image, target)
        content, painting = load_image(photo), load_image(style)
        row = {"method": method, "photo": Path(photo).stem, "style": Path(style).stem, "image": str(target),
               **measures.all_measures(result.image, content, painting)}
        if method in OPTIMISING:
            row["curve"] = rec.curve()
        return row

    # -- section 5: style scalability -----------------------------------------------------------------------
    def scale(self, method: str, count: int) -> dict:
        styles = self.plan.styles[:count]
        photo, size = self.plan.photos[0], self.plan.grid_size
        rec = Recorder(self.device)
        if method in OPTIMISING:
            seconds, memory, result = measured(self.device, lambda: self._run(method, photo, styles, size, plugins=[rec]))
        else:
            self._run(method, photo, styles, size)
            seconds, memory, result = measured(self.device, lambda: self._run(method, photo, styles, size))
        paintings = [load_image(s) for s in styles]
        texture = [measures.texture(result.image, p) for p in paintings]
        return {"method": method, "styles": count, "seconds": seconds, **memory,
                "s_per_step": rec.seconds_per_step() if method in OPTIMISING else None,
                "colour": float(np.mean([measures.colour(result.image, p) for p in paintings])),
                "texture": None if None in texture else float(np.mean(texture))}


def _time_to_half(rec: Recorder, term: str) -> float | None:
    """Seconds from the first step until the TERM loss (mean over 5 steps) first falls to half its first value."""
    values = [l.get(term) for l in rec.losses]
    if len(values) < 6 or values[0] is None:
        return None
    smooth = np.convolve(values, np.ones(5) / 5, mode="valid")
    below = np.nonzero(smooth <= 0.5 * smooth[0])[0]
    return float(rec.times[below[0] + 4] - rec.times[0]) if len(below) else None
