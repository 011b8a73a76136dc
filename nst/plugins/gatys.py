"""Built-in plugin `gatys`: the optimisation method, wired to the run hooks (schedule, losses, on_step)."""
from __future__ import annotations

import torch

from nst.context import RunContext, Scale, ScaleState
from nst.core import gatys
from nst.core.devices import check_memory
from nst.core.images import MIN_SCALE_SIDE, check_min_side, resize, resize_long_side
from nst.core.losses import content_term, merge_terms, style_term, tv_term
from nst.hookspecs import hookimpl


BYTES_PER_PIXEL = 4096  # VGG19 activations and gradients up to relu5_1 (measured: ~3.1 kB per px at 512 px)


def default_schedule(ctx: RunContext) -> list[Scale]:
    s = ctx.settings
    return [Scale(size, s.steps) for size in gatys.scale_sizes(s.size, s.scales)]


def core_terms(ctx: RunContext, encoder) -> list:
    """Content, style (blended over the styles) and TV terms for the current scale."""
    s, state = ctx.settings, ctx.scale
    with torch.no_grad():
        target = encoder(state.content, s.content_layers)
        style_feats = [encoder(img, s.style_layers) for img in state.styles]
    return [
        content_term(target, s.content_layers, s.content_weight),
        style_term(s.style_loss, style_feats, ctx.style_weights, s.style_layers, s.style_weight, s.mmd_kernel, s.seed),
        tv_term(s.tv_weight),
    ]


def run(ctx: RunContext) -> torch.Tensor:
    """Coarse-to-fine optimisation; each scale starts from the previous result, upsampled."""
    s = ctx.settings
    schedule = ctx.hooks.schedule(ctx) or default_schedule(ctx)
    ctx.total_steps = sum(scale.steps for scale in schedule)
    h, w = ctx.content.shape[-2:]
    largest = max(scale.size for scale in schedule) / max(h, w)
    check_memory(BYTES_PER_PIXEL * h * w * largest ** 2, f"a gatys run at {max(h, w) * largest:.0f} px", ctx.device,
                 "use a smaller size")
    encoder = ctx.encoder()
    x, done = None, 0
    for index, scale in enumerate(schedule):
        content = resize_long_side(ctx.content, scale.size) if scale.size != max(ctx.content.shape[-2:]) else ctx.content
        check_min_side(content, f"the content at the {scale.size} px scale", "use fewer scales or a larger size", MIN_SCALE_SIDE)
        styles = [check_min_side(resize_long_side(img, max(16, round(scale.size * s.style_scale))),
                                 f"style image {i + 1} at the {scale.size} px scale",
                                 "raise style_scale, or use fewer scales or a less elongated style", MIN_SCALE_SIDE)
                  for i, img in enumerate(ctx.styles)]
        ctx.scale = ScaleState(index, scale.size, content, styles)
        terms = merge_terms(core_terms(ctx, encoder), ctx.hooks.losses(ctx, encoder))
        if x is None and "gatys.init" in ctx.guides:  # a plugin's start image (nst video: the warped previous frame)
            x = resize(ctx.guides["gatys.init"], tuple(content.shape[-2:]))
        elif x is None:
            x = gatys.initial_image(s.init, content, styles[0] if styles else content, ctx.generator)
        else:
            x = resize(x, tuple(content.shape[-2:]))

        def observe(step: int, image: torch.Tensor, losses: dict[str, float], offset: int = done) -> None:
            ctx.hooks.on_step(ctx, offset + step, image, losses)

        x = gatys.optimise(x, terms, encoder, scale.steps, s.optimizer, s.lr, observe)
        done += scale.steps
    return resize(x, tuple(ctx.content.shape[-2:]))


@hookimpl
def nst_register_methods(register) -> None:
    register("gatys", run, help="Gatys et al. 2016: optimise the pixels against content, style and TV losses", needs_style=True)
