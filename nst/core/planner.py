"""The memory planner: how a run fits a memory budget (scales, tile size and halo, L-BFGS history) and what
it will cost (estimated peak memory and time), printed before the work starts.

Memory model, per scale: a fixed BASE (interpreter, torch, network weights), bytes per pixel of the WHOLE
image (the image, its gradient, optimiser state, stored features) and bytes per pixel of one WINDOW (the
activations of the network over one tile with its halo). The per-pixel figures are measured (see
benchmarks/large.py, which also checks the estimates against peak RSS); the planner picks the largest
cell whose window fits what the budget leaves after the whole-image buffers.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from nst.core.tiles import grid
from nst.errors import FieldError, NSTError

GB = 2 ** 30
MARGIN = 0.10  # the default budget: free memory less this share (and at least 256 MB)
UNITS = {"": 1, "b": 1, "k": 2 ** 10, "kb": 2 ** 10, "m": 2 ** 20, "mb": 2 ** 20, "g": GB, "gb": GB, "t": 2 ** 40,
         "tb": 2 ** 40, "p": 2 ** 50, "pb": 2 ** 50, "kib": 2 ** 10, "mib": 2 ** 20, "gib": GB, "tib": 2 ** 40,
         "pib": 2 ** 50}
MIN_CELL = 64


def parse_bytes(text: str, field_name: str = "max_memory") -> int:
    """'8GB', '512 MB', '1.5g', '1073741824' -> bytes (powers of 1024); FieldError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in UNITS:
        raise FieldError(field_name, f"give a size like 8GB, 512MB or 2.5GiB, got '{text}'")
    value = float(m.group(1)) * UNITS[m.group(2).lower()]
    if not 64 * 2 ** 20 <= value <= 2 ** 50:
        raise FieldError(field_name, f"{text} is out of range (64MB to 1PB, got {value:.4g} bytes)")
    return int(value)


def default_budget(free: int | None) -> int:
    """Free memory less a margin (MARGIN of it, at least 256 MB); 4 GB when the free memory cannot be read."""
    if free is None:
        return 4 * GB
    return max(64 * 2 ** 20, int(free - max(MARGIN * free, 256 * 2 ** 20)))


@dataclass(frozen=True)
class Costs:
    """Measured costs of one kind of work. base: bytes; image / window: bytes per pixel of the whole image and
    of one tile window; work: per pixel per step (FLOPs, or seconds for a rate of 1)."""

    base: float
    image: float
    window: float
    work: float


@dataclass
class ScalePlan:
    """One scale: (h, w) image, STEPS, CELL px (0 = untiled), HALO px, TILES, estimated PEAK bytes, SECONDS; for an
    optimisation, its OPTIMIZER and L-BFGS HISTORY pairs; SPILL: bytes of whole-image maps kept in temporary files."""

    h: int
    w: int
    steps: int
    cell: int
    halo: int
    tiles: int
    peak: float
    seconds: float
    optimizer: str = ""
    history: int = 0
    spill: float = 0.0


@dataclass
class MemoryPlan:
    """What a run will do and cost; describe() is the text printed before it starts."""

    method: str
    device: str
    budget: int
    scales: list[ScalePlan]
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> float:
        return max(s.peak for s in self.scales)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.scales)

    def describe(self) -> str:
        lines = [f"plan for {self.method} on {self.device}, memory budget {self.budget / GB:.1f} GB: "
                 f"peak ~{self.peak / GB:.2f} GB, ~{_duration(self.seconds)}"]
        for s in self.scales:
            how = f"{s.tiles} tiles of {s.cell} px" + (f" (halo {s.halo} px)" if s.halo else "") if s.cell else "untiled"
            how += f", whole-image maps (~{s.spill / GB:.1f} GB) in temporary files" if s.spill else ""
            steps = f", {s.steps} steps" if s.steps else ""
            steps += {"lbfgs": f" of L-BFGS ({s.history} pairs)", "adam": " of Adam"}.get(s.optimizer, "")
            lines.append(f"  {s.w}x{s.h}{steps}: {how}, peak ~{s.peak / GB:.2f} GB, ~{_duration(s.seconds)}")
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0.1):.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def window_pixels(h: int, w: int, cell: int, halo: int) -> int:
    """Pixels of the largest window: a cell grown by HALO on each side, inside (H, W)."""
    return min(h, cell + 2 * halo) * min(w, cell + 2 * halo)


def plan_scale(h: int, w: int, steps: int, costs: Costs, budget: float, halo: int, align: int, rate: float,
               tile: int = 0, tiled_work: float = 1.0) -> ScalePlan:
    """The plan of one (H, W) scale: untiled if it fits BUDGET (and TILE is 0), else the largest cell (a multiple
    of ALIGN) whose window fits; TILE > 0 forces that cell size. RATE: work per second; TILED_WORK: the cost of a
    tiled step over an untiled one of the same pixels (extra passes)."""
    whole = costs.base + costs.image * h * w

    def peak(cell: int) -> float:
        px = h * w if cell == 0 else window_pixels(h, w, cell, halo)
        return whole + costs.window * px

    if tile:
        cell = max(align, tile // align * align)
        if cell >= max(h, w):
            cell = 0
    elif peak(0) <= budget:
        cell = 0
    else:
        room = (budget - whole) / costs.window
        if room < (MIN_CELL + 2 * halo) ** 2:
            raise NSTError(f"{w}x{h} px needs about {whole / GB:.1f} GB for its whole-image buffers alone, more than "
                           f"the {budget / GB:.1f} GB budget leaves for {MIN_CELL} px tiles; raise --max-memory or "
                           "lower --size")
        cell = int(math.sqrt(room)) - 2 * halo
        cell = max(MIN_CELL, cell // align * align)
        if cell >= max(h, w):
            cell = 0
    windows = [(t.window[1] - t.window[0]) * (t.window[3] - t.window[2]) for t in grid(h, w, cell, halo, align)] \
        if cell else [h * w]
    tiles, px = len(windows), sum(windows)
    work = costs.work * px * max(steps, 1) * (tiled_work if cell else 1)
    return ScalePlan(h, w, steps, cell, halo if cell else 0, tiles, peak(cell), work / rate)
