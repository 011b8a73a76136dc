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
ONE_PASS_WORK = 1.1  # a one-pass tiled network over the untiled pass (margins, copies to the kept maps; tiled.py)
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


def network_seconds(forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device, side: int) -> float:
    """Seconds per input pixel of one forward: the slope between two probes after a warm-up (fixed per-call costs
    and small-image inefficiency left out; timed now, so a loaded machine estimates honestly). The probes are an
    eighth and a sixteenth of SIDE (the image's long side), the larger within 128-512 px: a fraction of the run."""
    import time

    def timed(side: int) -> float:
        probe = torch.rand(1, 3, side, side, device=device)
        start = time.perf_counter()
        forward(probe)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    with torch.inference_mode():
        big = min(512, max(128, side // 8 // 32 * 32))
        timed(64)
        small, large = timed(big // 2), timed(big)
    return max(large - small, 0.25 * large) / (big * big - big * big // 4)


def plan_network(ctx: RunContext, net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 window_bytes: float) -> planner.MemoryPlan:
    """The plan of one network pass over ctx.content. WINDOW_BYTES: activations per pixel of a window, inference
    only (one-pass tiles count their own from the recorded maps). Tiles run in one pass where the network allows
    (tiles.one_pass): then the maps it keeps whole count as whole-image buffers, or go to temporary files when the
    budget has no room for them (the plan says so); else in a pass per norm layer over windows with a halo of the
    receptive field."""
    h, w = ctx.content.shape[-2:]
    s, limit = ctx.settings, budget(ctx)
    weights = sum(p.numel() * p.element_size() for p in net.parameters())
    shape = (1, 3, h + (-h) % 4, w + (-w) % 4)
    found = tiles.one_pass(net, lambda x, _tile: forward(x), torch.zeros(1, 1, 1, 1, device=ctx.device).expand(shape))
    one_pass = not isinstance(found, str)
    halo = 0 if one_pass else tiles.receptive_radius(net) + OVERLAP
    work = ONE_PASS_WORK if one_pass else 1 + len(tiles.norm_layers(net)) / 2
    maps = found.peak_bytes / (shape[2] * shape[3]) if one_pass and ctx.device.type == "cpu" else 0.0
    window = 4 * found.density if one_pass else window_bytes  # a one-pass tile holds its stage's maps at most

    def plan(rate: float) -> planner.ScalePlan:
        costs = planner.Costs(BASE_BYTES + weights, NETWORK_IMAGE_BYTES, window, rate)
        scale = planner.plan_scale(h, w, 0, costs, limit, halo, 4, 1.0, s.tile, tiled_work=work)
        if scale.cell and maps:  # the maps kept whole: in memory when the budget has room, else in files
            try:
                kept = planner.plan_scale(h, w, 0, planner.Costs(costs.base, costs.image + maps, costs.window, rate),
                                          limit, halo, 4, 1.0, s.tile, tiled_work=work)
                if kept.peak <= limit:
                    return kept
            except NSTError:
                pass
            scale.spill = maps * h * w
        return scale

    scale = plan(0.0)
    if scale.cell or s.plan or s.max_memory is not None or s.tile:  # the plan is shown: time it (a fraction of the run)
        scale = plan(network_seconds(forward, ctx.device, max(h, w)))
    result = planner.MemoryPlan(s.method, str(ctx.device), limit, [scale])
    if scale.cell and not one_pass:
        result.notes.append(f"tiles run in {len(tiles.norm_layers(net)) + 1} passes: {found} cannot be computed in one")
    return result


def check_tileable(plan: planner.MemoryPlan, inputs: dict) -> None:
    """Refuse extra network inputs that vary over the image (maps) when PLAN runs the network over windows with a
    halo (the passes of a network tiles cannot run in one pass do not crop them; one-pass tiles read them tile by
    tile)."""
    if not (plan.scales[0].cell and plan.scales[0].halo):
        return
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
    """NET over ctx.content as PLAN says: one pass, or tiles with whole-image norm statistics, in ctx.precision; on
    CUDA out-of-memory, again with tiles half as large (a note says so)."""
    scale = plan.scales[0]
    cell, content = scale.cell, ctx.content
    ctx.precision.prepare(net)
    forward = ctx.precision.network(forward)
    while True:
        try:
            if not cell:
                whole = (0, content.shape[-2], 0, content.shape[-1])
                with torch.inference_mode():
                    return forward(content, tiles.Tile(whole, whole))
            return tiles.run_network(net, forward, content, cell, scale.halo or tiles.receptive_radius(net) + OVERLAP,
                                     OVERLAP, on_tile=ctx.on_tile, spill=bool(scale.spill))
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
IMAGE_BYTES = 48  # per pixel of a scale: the image, its gradient, the best image so far, the content at that scale
PIXEL_BYTES = 12  # one float32 RGB pixel: the content at full size and the styles at each scale are kept whole
LBFGS_BYTES = 85  # torch's L-BFGS work vectors: direction, last gradient, line-search copies (measured at 2000² px)
HISTORY_BYTES = 24  # per image pixel and L-BFGS history pair (two 3-channel float vectors)
ADAM_BYTES = 36  # Adam's two moments and the denominator it computes per step
MAX_HISTORY, MIN_HISTORY = 50, 5
LBFGS_MIN_CELL = 512  # px: L-BFGS gives way to Adam where its buffers leave room only for smaller tiles
STEP_OVERHEAD = 1.1  # a Gatys step over the encoder's forward + backward alone: Grams, losses, optimiser (limit.py)
FORWARD_SHARE = 0.35  # a forward without gradients, as a share of forward + backward (targets; a tiled step's pass 1)


def step_seconds(encoder, layers, device: torch.device) -> float:
    """Seconds per pixel of the encoder's forward to LAYERS and backward, in its precision on DEVICE: the slope
    between a 96 and a 192 px probe after a warm-up (fixed per-call costs left out; timed now, so a loaded machine
    estimates honestly)."""
    import time

    def timed(side: int) -> float:
        x = torch.rand(1, 3, side, side, device=device, requires_grad=True)
        start = time.perf_counter()
        sum(f.mean() for f in encoder(x, layers).values()).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed(64)
    small, large = timed(96), timed(192)
    return max(large - small, 0.25 * large) / (192 ** 2 - 96 ** 2)


def feature_bytes(encoder, layers) -> float:
    """Bytes per input pixel of the float32 maps at LAYERS (e.g. the content target at relu4_2: 32)."""
    from nst.core.tiled_gatys import layer_stride

    return sum(4 * encoder.channels(l) / layer_stride(l) ** 2 for l in layers)


def plan_gatys(ctx: RunContext, sizes: list[tuple[int, int, int]], encoder, layers) -> planner.MemoryPlan:
    """The plan of a Gatys run over SIZES [(h, w, steps)] (coarse to fine): each scale untiled when it fits, else in
    tiles with a halo of VGG's receptive radius at the deepest of LAYERS; L-BFGS keeps fewer history pairs (down to
    MIN_HISTORY) when its buffers would take over half the budget, and a scale where even those do not fit is
    optimised by Adam (a third of L-BFGS's memory). The time comes from a probe of the encoder, made when the plan
    is shown."""
    from nst.core.tiled_gatys import ALIGN, halo_for

    s, limit, halo = ctx.settings, budget(ctx), halo_for(layers)
    weights = sum(p.numel() * p.element_size() for p in encoder.parameters())
    whole = ctx.content.shape[-2] * ctx.content.shape[-1]
    target = feature_bytes(encoder, s.content_layers)

    def plan(rate: float) -> list[planner.ScalePlan]:
        scales = []
        for h, w, steps in sizes:
            styles = sum(style_pixels(img, max(h, w) * s.style_scale) for img in ctx.styles)
            fixed = BASE_BYTES + weights + PIXEL_BYTES * (whole + styles) + target * h * w
            scale = scale_plan(h, w, steps, fixed, limit, halo, ALIGN, rate * STEP_OVERHEAD, s.optimizer, s.tile)
            scale.seconds += FORWARD_SHARE * rate * (h * w + styles)  # the content target and the styles' Grams
            scales.append(scale)
        return scales

    scales = plan(0.0)
    if any(p.cell for p in scales) or s.plan or s.max_memory is not None or s.tile:  # shown: timed
        scales = plan(step_seconds(encoder, layers, ctx.device))
    result = planner.MemoryPlan(s.method, str(ctx.device), limit, scales)
    fewer = [p.history for p in scales if p.optimizer == "lbfgs" and p.history < MAX_HISTORY]
    if fewer:
        result.notes.append(f"L-BFGS keeps {min(fewer)} of {MAX_HISTORY} history pairs to fit the budget")
    adam = [f"{p.w}x{p.h}" for p in scales if p.optimizer != s.optimizer]
    if adam:
        result.notes.append(f"Adam at {', '.join(adam)}: L-BFGS's buffers would leave room only for small tiles")
    return result


def style_pixels(image: torch.Tensor, long_side: float) -> int:
    """Pixels of IMAGE (1, 3, H, W) resized to LONG_SIDE on its long side."""
    k = max(16, round(long_side)) / max(image.shape[-2:])
    return round(image.shape[-2] * k) * round(image.shape[-1] * k)


def scale_plan(h: int, w: int, steps: int, fixed: float, limit: int, halo: int, align: int, rate: float,
               optimizer: str, tile: int) -> planner.ScalePlan:
    """One scale's plan: L-BFGS with as many history pairs as fit in half the budget (at least MIN_HISTORY), unless
    its buffers leave room only for tiles under LBFGS_MIN_CELL px (their halos would multiply the work): then Adam.
    FIXED: bytes besides the per-pixel buffers; RATE: seconds per pixel and step."""
    px, tiled_work = h * w, 1 + FORWARD_SHARE
    if optimizer == "lbfgs":
        history = int(((limit / 2 - fixed) / px - IMAGE_BYTES - LBFGS_BYTES) // HISTORY_BYTES)
        history = max(MIN_HISTORY, min(MAX_HISTORY, history))
        costs = planner.Costs(fixed, IMAGE_BYTES + LBFGS_BYTES + HISTORY_BYTES * history, VGG_WINDOW_BYTES, rate)
        try:
            result = planner.plan_scale(h, w, steps, costs, limit, halo, align, 1.0, tile, tiled_work)
        except NSTError:
            result = None
        if result is not None and (result.cell == 0 or result.cell >= min(LBFGS_MIN_CELL, tile or LBFGS_MIN_CELL)):
            result.optimizer, result.history = "lbfgs", history
            return result
    costs = planner.Costs(fixed, IMAGE_BYTES + ADAM_BYTES, VGG_WINDOW_BYTES, rate)
    result = planner.plan_scale(h, w, steps, costs, limit, halo, align, 1.0, tile, tiled_work)
    result.optimizer = "adam"
    return result


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
