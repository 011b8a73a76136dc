"""Large output for the methods: the memory plan of a run (printed before it starts, or alone with --plan),
feed-forward networks run tile by tile, and a replan with smaller tiles when CUDA runs out of memory.

The engines are nst.core.tiles (tiling, whole-image instance norm), nst.core.planner (budget, costs) and
nst.core.tiled_gatys (the Gatys loss tile by tile); this module connects them to a RunContext.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nst.contract.context import RunContext
from nst.core import planner, tiles
from nst.core.devices import available_memory
from nst.errors import NSTError, UsageError

BASE_BYTES = 780 * 2 ** 20  # interpreter, torch, onnx and the other libraries a run imports (measured: 780-900 MB RSS)
NETWORK_IMAGE_BYTES = 64  # per output pixel: the content at full size, padded copy, result, blend, 8-bit copy
OVERLAP = 16  # feathered blend across cell borders, px
PLANNED = ("gatys", "nnst", "johnson", "arbitrary")  # the methods that plan their memory (and stop at --plan)


class PlanReady(NSTError):
    """--plan: the method has made its plan; the run stops here (nothing is computed or written)."""

    def __init__(self, plan: planner.MemoryPlan) -> None:
        super().__init__("plan ready")
        self.plan = plan


def budget(ctx: RunContext) -> int:
    """--max-memory in bytes, or the device's free memory less a margin."""
    given = ctx.settings.memory_budget
    return given if given is not None else planner.default_budget(available_memory(ctx.device))


def announce(ctx: RunContext, plan: planner.MemoryPlan) -> None:
    """Print the plan before the work (when it tiles, or when the user set --max-memory / --tile); with --plan,
    stop the run here."""
    ctx.plan = plan
    if ctx.settings.plan:
        raise PlanReady(plan)
    s = ctx.settings
    if any(p.cell for p in plan.scales):
        ctx.summary["tiles"] = ", ".join(f"{p.w}x{p.h}: {p.tiles} x {p.cell} px" for p in plan.scales if p.cell)
    if s.max_memory is not None or s.tile or any(p.cell for p in plan.scales):
        for line in plan.describe().splitlines():
            ctx.note(line)


def network_seconds(forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> float:
    """Seconds per input pixel of one forward: the slope between a 256 and a 512 px probe after a warm-up (fixed
    per-call costs and small-image inefficiency left out; timed now, so a loaded machine estimates honestly)."""
    import time

    def timed(side: int) -> float:
        probe = torch.rand(1, 3, side, side, device=device)
        start = time.perf_counter()
        forward(probe)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    with torch.inference_mode():
        timed(64)
        small, large = timed(256), timed(512)
    return max(large - small, 0.25 * large) / (512 * 512 - 256 * 256)


def plan_network(ctx: RunContext, net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 window_bytes: float) -> tuple[planner.MemoryPlan, int]:
    """(the plan of one network pass over ctx.content, the norm layers' count). WINDOW_BYTES: activations per
    pixel of a window, inference only."""
    h, w = ctx.content.shape[-2:]
    weights = sum(p.numel() * p.element_size() for p in net.parameters())
    costs = planner.Costs(BASE_BYTES + weights, NETWORK_IMAGE_BYTES, window_bytes, 0.0)
    norms = len(tiles.norm_layers(net))
    halo = tiles.receptive_radius(net) + OVERLAP
    scale = planner.plan_scale(h, w, 0, costs, budget(ctx), halo, 4, 1.0, ctx.settings.tile, tiled_work=1 + norms / 2)
    s = ctx.settings
    if scale.cell or s.plan or s.max_memory is not None or s.tile:  # the plan is shown: time it (about a second)
        costs = planner.Costs(costs.base, costs.image, costs.window, network_seconds(forward, ctx.device))
        scale = planner.plan_scale(h, w, 0, costs, budget(ctx), halo, 4, 1.0, s.tile, tiled_work=1 + norms / 2)
    return planner.MemoryPlan(s.method, str(ctx.device), budget(ctx), [scale]), norms


def check_tileable(inputs: dict) -> None:
    """Refuse extra network inputs that vary over the image (maps): tiled inference does not crop them."""
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 2:
            raise UsageError(f"network input '{name}' is a map over the image, which tiled inference does not "
                             "support; give one value, or raise --max-memory so the image is not tiled")


def smaller(cell: int, h: int, w: int) -> int:
    """The next cell size after CUDA ran out of memory with CELL (0: untiled)."""
    nxt = (cell or max(h, w)) // 2 // 4 * 4
    if nxt < planner.MIN_CELL:
        raise NSTError(f"CUDA ran out of memory even with {cell or max(h, w)} px tiles; lower --size or use device cpu")
    return nxt


def run_network(ctx: RunContext, net: nn.Module, forward: tiles.Forward, plan: planner.MemoryPlan) -> torch.Tensor:
    """NET over ctx.content as PLAN says: one pass, or tiles with whole-image norm statistics; on CUDA
    out-of-memory, again with tiles half as large (a note says so)."""
    scale = plan.scales[0]
    cell, content = scale.cell, ctx.content
    while True:
        try:
            if not cell:
                whole = (0, content.shape[-2], 0, content.shape[-1])
                with torch.inference_mode():
                    return forward(content, tiles.Tile(whole, whole))
            return tiles.run_network(net, forward, content, cell, scale.halo or tiles.receptive_radius(net) + OVERLAP,
                                     OVERLAP, on_tile=ctx.on_tile)
        except torch.cuda.OutOfMemoryError:
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
            before, cell = cell, smaller(cell, *content.shape[-2:])
            ctx.note(f"CUDA ran out of memory with {f'{before} px tiles' if before else 'the whole image'}; "
                     f"continuing with {cell} px tiles")


# --- gatys ---------------------------------------------------------------------------------------------------------

# per window pixel: VGG19 activations to relu5_1 kept for the backward, and gradients (fitted to a 2048 px run in
# 608 px windows)
VGG_WINDOW_BYTES = 2400
GATYS_IMAGE_BYTES = 160  # per image pixel: image, gradient, best image, content and its relu4_2 target, L-BFGS work
HISTORY_BYTES = 24  # per image pixel and L-BFGS history pair (two 3-channel float vectors)
MAX_HISTORY, MIN_HISTORY = 50, 5


def step_seconds(encoder, layers, device: torch.device) -> float:
    """Seconds per pixel of one untiled step (encoder forward to LAYERS and backward), timed on a 128×128 probe."""
    import time

    x = torch.rand(1, 3, 128, 128, device=device, requires_grad=True)
    sum(f.mean() for f in encoder(x[..., :64, :64], layers).values()).backward()
    start = time.perf_counter()
    sum(f.mean() for f in encoder(x, layers).values()).backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / x[0, 0].numel()


def plan_gatys(ctx: RunContext, sizes: list[tuple[int, int, int]], encoder, layers) -> planner.MemoryPlan:
    """The plan of a Gatys run over SIZES [(h, w, steps)] (coarse to fine): each scale untiled when it fits,
    else in tiles with a halo of VGG's receptive radius at the deepest of LAYERS; the L-BFGS history
    shrinks (down to MIN_HISTORY) when the whole-image buffers would take over half the budget."""
    from nst.core.tiled_gatys import ALIGN, halo_for

    s, limit = ctx.settings, budget(ctx)
    h, w, _ = sizes[-1]
    history = MAX_HISTORY
    if s.optimizer == "lbfgs":
        room = (limit / 2 - BASE_BYTES) / (h * w) - GATYS_IMAGE_BYTES
        history = int(max(MIN_HISTORY, min(MAX_HISTORY, room // HISTORY_BYTES)))
    per_pixel = GATYS_IMAGE_BYTES + (HISTORY_BYTES * history if s.optimizer == "lbfgs" else 24)
    weights = sum(p.numel() * p.element_size() for p in encoder.parameters())
    costs = planner.Costs(BASE_BYTES + weights, per_pixel, VGG_WINDOW_BYTES, step_seconds(encoder, layers, ctx.device))
    halo = halo_for(layers)
    scales = [planner.plan_scale(sh, sw, steps, costs, limit, halo, ALIGN, 1.0, s.tile, tiled_work=1.4)
              for sh, sw, steps in sizes]
    plan = planner.MemoryPlan(s.method, str(ctx.device), limit, scales, history=history)
    if history < MAX_HISTORY:
        plan.notes.append(f"L-BFGS keeps {history} of {MAX_HISTORY} history pairs to fit the budget")
    return plan


# --- nnst ----------------------------------------------------------------------------------------------------------

NNST_IMAGE_BYTES = 260  # per image pixel: the pyramid, its gradient and Adam's two moments (4 × 4/3 × 12 B), the
# content and its pyramid, the query, the result, and the grid's targets, scores and labels (about 40 B per 16 px)
NNST_WINDOW_BYTES = 3200  # per window pixel: VGG19 to relu4_3 kept for the backward, the hypercolumns and targets
MAX_BANK_ROWS = 2 ** 18  # style positions searched at most (a 1024 px painting with its rotations); beyond, every
# s-th row and column of the painting's grid is kept (the strokes keep their size, the choice thins)
BANK_SHARE = 0.25  # of the memory budget, at most, for the bank


def search_seconds(dims: int, dtype: torch.dtype, device: torch.device) -> float:
    """Seconds per multiply-add of the neighbour search (queries × bank rows × channels), timed on a probe."""
    import time

    q, b = torch.rand(1024, dims, device=device, dtype=dtype), torch.rand(4096, dims, device=device, dtype=dtype)
    q @ b[:64].t()
    start = time.perf_counter()
    q @ b.t()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / (1024 * 4096 * dims)


def plan_nnst(ctx: RunContext, sizes: list[tuple[int, int, int]], encoder, layers, halo: int, bank_rows: list[int],
              dims: int, row_bytes: int, dtype: torch.dtype, rematch: int,
              chunk_bytes: int) -> tuple[planner.MemoryPlan, int]:
    """(the plan of an nnst run over SIZES [(h, w, steps)], the most bank rows a scale may hold). Memory: the
    whole-image buffers, a window's activations, the style bank (BANK_ROWS[i] rows of ROW_BYTES, capped) and the
    search's chunk of scores; time: the steps and the matchings (1 + steps // REMATCH a scale) of DIMS channels in
    DTYPE."""
    from nst.core.tiled_gatys import ALIGN

    s, limit = ctx.settings, budget(ctx)
    cap = int(max(1024, min(MAX_BANK_ROWS, BANK_SHARE * limit // row_bytes)))
    rows = [min(r, cap) for r in bank_rows]
    weights = sum(p.numel() * p.element_size() for p in encoder.parameters())
    costs = planner.Costs(BASE_BYTES + weights + max(rows) * row_bytes + chunk_bytes, NNST_IMAGE_BYTES,
                          NNST_WINDOW_BYTES, step_seconds(encoder, layers, ctx.device))
    per_mac = search_seconds(dims, dtype, ctx.device)
    scales = []
    for (h, w, steps), n in zip(sizes, rows):
        scale = planner.plan_scale(h, w, steps, costs, limit, halo, ALIGN, 1.0, s.tile, tiled_work=1.4)
        matchings = 1 + (max(steps - 1, 0) // rematch if rematch else 0)
        scale.seconds += matchings * (-(-h // 4) * -(-w // 4)) * n * dims * per_mac
        scales.append(scale)
    plan = planner.MemoryPlan(s.method, str(ctx.device), limit, scales)
    if max(bank_rows) > cap:
        plan.notes.append(f"the style bank keeps {cap} of {max(bank_rows)} positions (every few rows and columns of "
                          "the painting's grid) to fit the budget")
    return plan, cap
