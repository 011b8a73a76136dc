"""What `nst bench` measures: the plan (sizes, steps, images) for a quick or full run on a device, and its cells.

A cell is one measurement with a stable key ("time/gatys/256", "grid/arbitrary/landscape0/swirl", ...); a
resumed bench skips the keys already in results.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nst.errors import UsageError

METHODS = ("gatys", "nnst", "johnson", "stroke", "arbitrary", "analogy", "text")
OPTIMISING = ("gatys", "nnst")  # methods that optimise every image (steps, loss curves, nothing to train)
NUMBER, TEXT, WHOLE, CURVE = "number", "text", "whole", "curve"
CELL_FIELDS = {  # what each kind of cell holds (results.json is read back by --resume: cells are checked against it)
    "time": {"method": TEXT, "size": WHOLE, "seconds": NUMBER},
    "train": {"arch": TEXT, "styles": WHOLE, "steps": WHOLE, "seconds": NUMBER, "model_mb": NUMBER, "curve": CURVE},
    "grid": {"method": TEXT, "photo": TEXT, "style": TEXT, "image": TEXT},
    "scale": {"method": TEXT, "styles": WHOLE, "seconds": NUMBER},
}
SECTIONS = {
    "time": "1. Time per image by size",
    "train": "2. Training time per model",
    "grid": "3. Mean content loss over content images",
    "curves": "4. Loss during training",
    "scale": "5. Style scalability",
}


@dataclass
class BenchPlan:
    """Sizes in px (long side), steps per optimisation run, training steps and size, the quality grid's size,
    the numbers of styles for scalability, and the images (filled in by the runner)."""

    device: str
    methods: list[str]
    sizes: list[int]
    steps: int
    train_steps: int
    train_size: int
    grid_size: int
    grid_photos: int
    grid_styles: int
    style_counts: list[int]
    analogy_max: int
    weights: str = "vgg19"
    photos: list[Path] = field(default_factory=list)
    styles: list[Path] = field(default_factory=list)

    def cells(self) -> list[tuple[str, dict]]:
        """(key, parameters) of every measurement, in the order they run (trainings first: later cells use
        the networks they write)."""
        out: list[tuple[str, dict]] = []
        if "johnson" in self.methods:
            counts = {n for n in self.style_counts if n <= len(self.styles)} | {1, len(self.grid_style_paths())}
            out += [(f"train/johnson/{n}", {"arch": "johnson", "styles": n}) for n in sorted(counts)]
        if "stroke" in self.methods:
            out.append(("train/stroke/1", {"arch": "stroke", "styles": 1}))
        for method in self.methods:
            for size in self.sizes:
                if method == "analogy" and size > self.analogy_max:
                    continue
                out.append((f"time/{method}/{size}", {"method": method, "size": size}))
        for method in self.methods:
            if method == "text":
                continue  # text effects take a glyph pair, not a photo and a painting
            for photo in self.grid_photo_paths():
                for style in self.grid_style_paths():
                    out.append((f"grid/{method}/{photo.stem}/{style.stem}",
                                {"method": method, "photo": str(photo), "style": str(style)}))
        for n in self.style_counts:
            for method in ("gatys", "nnst", "arbitrary"):
                if method in self.methods and n <= len(self.styles):
                    out.append((f"scale/{method}/{n}", {"method": method, "styles": n}))
        return out

    def grid_photo_paths(self) -> list[Path]:
        return self.photos[: self.grid_photos]

    def grid_style_paths(self) -> list[Path]:
        return self.styles[: self.grid_styles]


def cell_problem(key: str, cell) -> str | None:
    """What is wrong with CELL (read back from results.json) for the cell KEY, or None: a dict holding the fields
    its kind needs (CELL_FIELDS) and only numbers, None, text or loss curves, or an error / skipped line."""
    import math

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def curve(v) -> bool:
        return isinstance(v, dict) and all(isinstance(k, str) and isinstance(s, list) and all(map(number, s))
                                           for k, s in v.items())

    kind = key.split("/")[0]
    if kind not in CELL_FIELDS or not isinstance(cell, dict):
        return "not a cell of this bench"
    if set(cell) in ({"error"}, {"skipped"}):
        return None if isinstance(next(iter(cell.values())), str) else "its message is not text"
    checks = {NUMBER: number, TEXT: lambda v: isinstance(v, str), CURVE: curve,
              WHOLE: lambda v: isinstance(v, int) and not isinstance(v, bool)}
    for name, kind_of in CELL_FIELDS[kind].items():
        if not checks[kind_of](cell.get(name)):
            return f"{name} is {str(cell.get(name))[:30]!r}"
    for name, value in cell.items():
        if not (value is None or isinstance(value, (int, float, str)) or curve(value)):
            return f"{name} is {str(value)[:30]!r}"
    return None


def make_plan(device: str, quick: bool, methods: list[str] | None, sizes: list[int] | None, steps: int | None = None,
              train_steps: int | None = None, weights: str = "vgg19") -> BenchPlan:
    """The plan for DEVICE ("cpu" or "cuda..."): --quick is sized for a few minutes on a 2-core CPU; the full CPU
    plan for an idle hour; the CUDA plan for under 8 minutes on one modern GPU. STEPS / TRAIN_STEPS / WEIGHTS
    override the plan's optimisation steps, training steps per style and loss-network weights."""
    methods = list(dict.fromkeys(methods or METHODS))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise UsageError(f"--methods: unknown method {', '.join(bad)} (known: {', '.join(METHODS)})")
    cuda = device.startswith("cuda")
    if quick:
        plan = BenchPlan(device, methods, [64, 128], steps=10, train_steps=12, train_size=64, grid_size=96, grid_photos=2,
                    grid_styles=2, style_counts=[1, 2], analogy_max=64)
    elif cuda:
        plan = BenchPlan(device, methods, [256, 512, 1024], steps=500, train_steps=400, train_size=256, grid_size=512,
                    grid_photos=3, grid_styles=4, style_counts=[1, 2, 4], analogy_max=512)
    else:
        plan = BenchPlan(device, methods, [256, 512], steps=100, train_steps=200, train_size=128, grid_size=256,
                    grid_photos=3, grid_styles=3, style_counts=[1, 2, 4], analogy_max=256)
    if sizes:
        if any(not 16 <= s <= 8192 for s in sizes):
            raise UsageError(f"--sizes: each size must be between 16 and 8192 px, got {', '.join(map(str, sizes))}")
        plan.sizes = sorted(set(sizes))
    for name, value in (("steps", steps), ("train_steps", train_steps)):
        if value is not None:
            if not 2 <= value <= 100_000:
                raise UsageError(f"--{name.replace('_', '-')} must be between 2 and 100000, got {value}")
            setattr(plan, name, value)
    plan.weights = weights
    return plan
