"""Built-in plugin `gatys`: the optimisation method, wired to the run hooks (schedule, losses, on_step)."""
from __future__ import annotations

import torch

from nst.contract.context import RunContext, Scale, ScaleState
from nst.contract.hookspecs import hookimpl
from nst.core import gatys
from nst.core.images import MIN_SCALE_SIDE, check_min_side, resize, resize_long_side
from nst.core.losses import content_term, merge_terms, style_term, tv_term
from nst.core.tiled_gatys import TiledLoss, tiled_features, tiled_moments
from nst.errors import UsageError
from nst.runtime import large


def default_schedule(ctx: RunContext) -> list[Scale]:
    s = ctx.settings
    return [Scale(size, steps) for size, steps in gatys.schedule(s.size, s.steps, s.scales)]


def core_terms(ctx: RunContext, encoder, cell: int = 0) -> list:
    """Content, style (blended over the styles) and TV terms for the current scale; with CELL > 0 the
    targets are computed in tiles of that size (the style's Grams as sums over tiles)."""
    s, state = ctx.settings, ctx.scale
    if cell and s.style_loss not in ("gram", "w2"):
        raise UsageError(f"style loss '{s.style_loss}'{' (' + s.mmd_kernel + ')' if s.style_loss == 'mmd' else ''} "
                         "cannot be computed in tiles (MMD and OT sample positions of the whole image at random, MRF "
                         "matches patches against all style patches); use --style-loss gram or w2, or raise "
                         "--max-memory")
    with torch.no_grad():
        if cell:
            target = tiled_features(encoder, state.content, s.content_layers, cell)
            sums = [tiled_moments(encoder, img, s.style_layers, cell) for img in state.styles]
            style = style_term(s.style_loss, [], ctx.style_weights, s.style_layers, s.style_weight,
                               grams=[{l: ff[None] / n for l, (_, ff, n) in m.items()} for m in sums],
                               moments=[{l: (f / n, ff / n) for l, (f, ff, n) in m.items()} for m in sums])
        else:
            target = encoder(state.content, s.content_layers)
            style_feats = [encoder(img, s.style_layers) for img in state.styles]
            style = style_term(s.style_loss, style_feats, ctx.style_weights, s.style_layers, s.style_weight,
                               s.mmd_kernel, s.seed)
    return [content_term(target, s.content_layers, s.content_weight), style, tv_term(s.tv_weight)]


def run(ctx: RunContext) -> torch.Tensor:
    """Coarse-to-fine optimisation; each scale starts from the previous result, upsampled."""
    s = ctx.settings
    schedule = ctx.hooks.schedule(ctx) or default_schedule(ctx)
    ctx.total_steps = sum(scale.steps for scale in schedule)
    h, w = ctx.content.shape[-2:]
    encoder = ctx.encoder()
    sizes = [(*scale_shape(h, w, scale.size), scale.steps) for scale in schedule]
    ctx.step_work = [float(sh * sw) for sh, sw, steps in sizes for _ in range(steps)]
    plan = large.plan_gatys(ctx, sizes, encoder, sorted(set(s.content_layers) | set(s.style_layers)))
    large.announce(ctx, plan)
    x, done = None, 0
    for index, scale in enumerate(schedule):
        content = resize_long_side(ctx.content, scale.size) if scale.size != max(ctx.content.shape[-2:]) else ctx.content
        check_min_side(content, f"the content at the {scale.size} px "
                                "scale", "use fewer scales or a larger size", MIN_SCALE_SIDE)
        styles = [check_min_side(resize_long_side(img, max(16, round(scale.size * s.style_scale))),
                                 f"style image {i + 1} at the {scale.size} px scale",
                                 "raise style_scale, or use fewer scales or a less elongated style", MIN_SCALE_SIDE)
                  for i, img in enumerate(ctx.styles)]
        ctx.scale = ScaleState(index, scale.size, content, styles)
        if x is None and "gatys.init" in ctx.guides:  # a plugin's start image (nst video: the warped previous frame)
            x = resize(ctx.guides["gatys.init"], tuple(content.shape[-2:]))
        elif x is None:
            x = gatys.initial_image(s.init, content, styles[0] if styles else content, ctx.generator)
        else:
            x = resize(x, tuple(content.shape[-2:]))

        def observe(step: int, image: torch.Tensor, losses: dict[str, float], offset: int = done) -> None:
            ctx.hooks.on_step(ctx, offset + step, image, losses)

        cell, optimizer, history = plan.scales[index].cell, plan.scales[index].optimizer, plan.scales[index].history
        while True:  # on CUDA out-of-memory: the scale again from its start, in smaller tiles
            try:
                terms = merge_terms(core_terms(ctx, encoder, cell), ctx.hooks.losses(ctx, encoder))
                tiled = TiledLoss(terms, encoder, tuple(content.shape[-2:]), cell, on_tile=ctx.on_tile) if cell else None
                x = gatys.optimise(x, terms, encoder, scale.steps, optimizer, s.lr, observe, history, tiled,
                                   s.average)
                break
            except torch.cuda.OutOfMemoryError:
                if ctx.device.type == "cuda":
                    torch.cuda.empty_cache()
                before, cell = cell, large.smaller(cell, *content.shape[-2:])
                ctx.note(f"CUDA ran out of memory at {scale.size} px with "
                         f"{f'{before} px tiles' if before else 'the whole image'}; continuing with {cell} px tiles")
        done += scale.steps
    return resize(x, tuple(ctx.content.shape[-2:]))


def scale_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) of an (H, W) image resized to SIZE on its long side (as resize_long_side does)."""
    k = size / max(h, w)
    return max(1, round(h * k)), max(1, round(w * k))


@hookimpl
def nst_register_methods(register) -> None:
    register("gatys", run, help="Gatys et al. 2016: optimise the pixels against content, style and TV losses", needs_style=True)
