"""Built-in plugin `nnst`: the method `nnst`, Neural Neighbor Style Transfer (Kolkin et al. 2022), optimisation variant.

The engine is nst.plugins.nnst.engine (matching, loss, optimisation of a Laplacian pyramid), .search (chunked
nearest neighbours), .features (hypercolumns), .pyramid and .colour (the final OkLab colour correction). This
module connects it to a run: the schedule, the memory plan (tiles at print size), the guides other plugins
leave (semantic regions, stroke sizes and maps, nst video's start image), plugin loss terms, progress.
"""
from __future__ import annotations

import math

import torch

from nst.contract.context import RunContext, ScaleState
from nst.contract.hookspecs import hookimpl
from nst.core.encoder import LAYERS as VGG_LAYERS
from nst.core.gatys import LEAST_STEPS, STEPS_DECAY
from nst.core.images import MIN_SCALE_SIDE, check_min_side, resize, resize_long_side
from nst.errors import FieldError
from nst.plugins.nnst import colour
from nst.plugins.nnst.engine import Guidance, Params, Scale, optimise_scale, positions, style_bank, tile_halo
from nst.plugins.nnst.features import LAYERS, Padded, cell_sizes, channels, grid_shape
from nst.plugins.nnst.pyramid import decompose, level_shapes, synthesise
from nst.plugins.nnst.search import CHUNK_BYTES
from nst.runtime import large

COARSEST = 64  # px: the reference starts 512 px outputs at 64 px (4 scales) and 1024 px ones too (5 scales)
COLOURS = ("content", "result", "none")


def params_from_options(opts: dict, seed: int) -> Params:
    bad = [l for l in opts["layers"] if not l.startswith("relu") or l not in VGG_LAYERS]
    if bad or not opts["layers"]:
        raise FieldError("nnst.layers", f"give VGG relu layers (relu1_1 ... relu5_4), got {','.join(bad) or 'none'}")
    return Params(tuple(opts["layers"]), opts["alpha"], opts["rotate"], opts["lr"], opts["rematch"], seed)


def levels_to_run(ctx: RunContext, shapes: list[tuple[int, int]], coarsest: int) -> list[tuple[int, int]]:
    """[(pyramid level, steps)], coarse first: a plugin's schedule (each size at the nearest level), else every
    level from the finest down to the first whose long side is at most COARSEST px (and at least --scales). With
    --scales 0, --steps at the first level and STEPS_DECAY as many at each finer one (at least LEAST_STEPS, or
    --steps when fewer): a step costs four times the one before, and the finer levels add detail to a layout the
    coarse ones made. With --scales N, --steps at every level."""
    sides = [max(hw) for hw in shapes]
    custom = ctx.hooks.schedule(ctx)
    if custom:
        picked = {min(range(len(sides)), key=lambda k: abs(math.log(sides[k] / max(1, s.size)))): s.steps
                  for s in custom}
        return sorted(picked.items(), reverse=True)
    scales, steps = ctx.settings.scales, ctx.settings.steps
    top = next((k for k, side in enumerate(sides) if side <= coarsest), len(sides) - 1)
    top = min(max(top, scales - 1), len(sides) - 1)
    if scales:
        return [(k, steps) for k in range(top, -1, -1)]
    return [(k, steps if i == 0 else max(min(LEAST_STEPS, steps), round(steps * STEPS_DECAY ** i)))
            for i, k in enumerate(range(top, -1, -1))]


def guidance(ctx: RunContext) -> Guidance:
    """What other plugins prepared: semantic regions and their pairing, stroke-map levels."""
    g = ctx.guides
    guide = Guidance(list(ctx.style_weights))
    if "semantic.content" in g:
        guide.labels = g["semantic.content"].labels
        guide.style_labels = [lm.labels for lm in g["semantic.styles"]]
        guide.pairings = g["semantic.pairings"]
        guide.region_weights = g["semantic.weights"]
    if "stroke.levels" in g:
        guide.levels = g["stroke.levels"]
    return guide


def stroke_sizes(ctx: RunContext) -> list[float]:
    """The style's long side at the output size, per stroke level: stroke.sizes with a stroke map, stroke.size,
    else --size × --style-scale."""
    g, s = ctx.guides, ctx.settings
    if "stroke.levels" in g:
        return [float(v) for v in g["stroke.sizes"]]
    if "stroke.size" in g:
        return [float(g["stroke.size"])]
    return [s.size * s.style_scale]


def run(ctx: RunContext) -> torch.Tensor:
    s, opts = ctx.settings, ctx.plugin_options("nnst")
    params = params_from_options(opts, s.seed)
    if s.style_loss != "gram":
        ctx.note(f"--style-loss {s.style_loss} is for gatys; nnst matches neighbours")
    content = ctx.content
    hw = tuple(content.shape[-2:])
    shapes = level_shapes(hw)
    schedule = levels_to_run(ctx, shapes, opts["coarsest"])
    ctx.total_steps = sum(steps for _, steps in schedule)
    ctx.step_work = [float(shapes[level][0] * shapes[level][1]) for level, steps in schedule for _ in range(steps)]
    guide, sizes = guidance(ctx), stroke_sizes(ctx)
    encoder = Padded(ctx.encoder())
    dtype = torch.bfloat16 if ctx.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    styles_at = [[[resize_long_side(img, max(16, round(size * max(shapes[k]) / max(hw)))) for img in ctx.styles]
                  for size in sizes] for k, _ in schedule]
    copies = 4 if params.rotate else 1
    bank_rows = [copies * sum(math.prod(grid_shape(tuple(img.shape[-2:]))) for row in per for img in row)
                 for per in styles_at]
    dims = sum(channels(encoder, params.layers))
    row_bytes = dims * torch.finfo(dtype).bits // 8 + 2 * sum(cell_sizes(encoder, params.layers)) + 12
    plan, max_rows = large.plan_nnst(ctx, [(*shapes[k], steps) for k, steps in schedule], encoder.encoder,
                                     params.layers, tile_halo(params.layers), bank_rows, dims, row_bytes, dtype,
                                     params.rematch, CHUNK_BYTES)
    large.announce(ctx, plan)
    content_pyramid = decompose(content)
    if "gatys.init" in ctx.guides:  # a plugin's start image (nst video: the warped previous frame)
        pyramid = decompose(resize(ctx.guides["gatys.init"], hw))
    else:  # the content's low frequencies: the bands finer than the first scale start at zero
        pyramid = [torch.zeros_like(p) if i < schedule[0][0] else p.clone() for i, p in enumerate(content_pyramid)]
    done, changed, matching = 0, [], 0.0
    for index, (k, steps) in enumerate(schedule):
        scaled = synthesise(content_pyramid[k:])
        check_min_side(scaled, f"the content at the {max(shapes[k])} px scale", "raise nnst.coarsest or --size",
                       MIN_SCALE_SIDE)
        for images in styles_at[index]:
            for i, img in enumerate(images):
                check_min_side(img, f"style image {i + 1} at the {max(shapes[k])} px scale",
                               "raise --style-scale or stroke.size", MIN_SCALE_SIDE)
        ctx.scale = ScaleState(index, max(shapes[k]), scaled, styles_at[index][0])
        cell = plan.scales[index].cell
        bank = style_bank(encoder, styles_at[index], guide, params, dtype, max_rows, cell)
        where = positions(guide, shapes[k], ctx.device, s.seed + index)

        def observe(step: int, image: torch.Tensor, losses: dict[str, float], offset: int = done) -> None:
            ctx.hooks.on_step(ctx, offset + step, image, losses)

        while True:  # on CUDA out-of-memory: the scale again from its start, in smaller tiles
            try:
                pyramid, targets = optimise_scale(pyramid, content_pyramid, Scale(k, steps, scaled, cell), index == 0,
                                                  encoder, bank, where, guide, params,
                                                  lambda: ctx.hooks.losses(ctx, encoder.encoder), observe,
                                                  ctx.on_tile)
                break
            except torch.cuda.OutOfMemoryError:
                if ctx.device.type == "cuda":
                    torch.cuda.empty_cache()
                before, cell = cell, large.smaller(cell, *shapes[k])
                ctx.note(f"CUDA ran out of memory at {max(shapes[k])} px with "
                         f"{f'{before} px tiles' if before else 'the whole image'}; continuing with {cell} px tiles")
        changed += targets.changed
        matching += targets.seconds
        done += steps
    ctx.scale = None
    image = synthesise(pyramid).clamp(0, 1)
    ctx.summary["nnst matching"] = f"{len(schedule) + len(changed)} matchings, {matching:.1f} s"
    if changed:
        ctx.summary["nnst rematch changed"] = f"{100 * sum(changed) / len(changed):.0f}% of neighbours on average"
    which = opts["colors"]
    if which != "none" and s.preserve_colors != "luminance":
        image = colour.correct(image, content, _blended_style(ctx, hw), which)
    return image


def _blended_style(ctx: RunContext, hw) -> torch.Tensor:
    """The paintings side by side, each with pixels in proportion to its blend weight: the colour statistics
    the correction aims at."""
    pixels = hw[0] * hw[1]
    parts = []
    for img, w in zip(ctx.styles, ctx.style_weights):
        if w > 0:
            side = max(8, round(math.sqrt(w * pixels)))
            parts.append(resize(img, (side, side)).flatten(2))
    return torch.cat(parts, 2)[..., None]


@hookimpl
def nst_register_methods(register) -> None:
    register("nnst", run, help="Kolkin et al. 2022 neural neighbours: every feature of the result replaced by its "
             "nearest in the painting, then the pixels optimised to match (coarse to fine); best looking, slower",
             needs_style=True)


@hookimpl
def nst_plugin_options(register) -> None:
    register("alpha", float, 0.75, "share of the content in the images whose features are matched: 1 keeps the most "
             "of the photo, 0 stylises the most", min=0, max=1)
    register("colors", str, "content", "final colour correction in OkLab: content = the photo's chroma in the "
             "painting's palette (the reference's, robust), result = the result's own chroma given the palette's "
             "statistics, none", choices=COLOURS)
    register("rotate", bool, True, "also search the painting's 90, 180 and 270 degree rotations (more neighbours; "
             "the bank and the search are 4x larger)")
    register("rematch", int, 100, "steps between matchings at a scale (the neighbours follow the changing image; "
             "the interval doubles once a matching changes under 2% of them); 0 = once per scale", min=0,
             max=1_000_000)
    register("lr", float, 2e-3, "Adam's step on the Laplacian pyramid's coefficients", min=1e-6, max=1.0)
    register("coarsest", int, COARSEST, "long side in px of the first (coarsest) scale", min=16, max=4096)
    register("layers", list[str], list(LAYERS), "VGG relu layers of the hypercolumns")
