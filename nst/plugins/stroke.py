"""Plugin `stroke`: stroke-size control (Jing et al. 2018), continuous and spatial, in both families.

A stroke size S (px) means: the output's strokes are as large, in output pixels, as the style's strokes
when the style image is resized to S px on its long side.

- `nst train --plugin stroke`: trains a StrokePyramidNet (nst.core.stroke) with one branch per size of
  `stroke.sizes`; each step takes the next size of a cycle (every branch size, then the geometric
  midpoints) and matches the Gram statistics of the style resized to that size.
- `--method johnson --plugin stroke`: feeds `stroke.size` (clamped to the model's trained range, with a
  note) or `stroke.map` (per pixel) to the network.
- `--method gatys --plugin stroke`: the style term uses the style resized to `stroke.size` × (scale's
  size / --size) at every coarse-to-fine scale; with `stroke.map`, one masked Gram term per size of
  `stroke.sizes`, the masks being the map's interpolation weights; extra coarse scales are added when
  the largest stroke is far beyond the encoder's receptive field.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from nst.context import RunContext, Scale
from nst.core import gatys
from nst.core.images import load_image, resize_long_side
from nst.core.losses import LossTerm, gram_matrix, guided_gram_loss, resize_masks, style_term
from nst.core.stroke import (StrokePyramidNet, gate_weights, map_to_sizes, middle_size, parse_sizes, receptive_field,
                             training_sizes)
from nst.errors import UsageError
from nst.plugins.manager import hookimpl
from nst.training import TrainSettings

DEFAULT_SIZES = "256,512,768"
LUMA = (0.299, 0.587, 0.114)
RF_FACTOR = 2  # coarse-to-fine: at the coarsest scale the largest style is at most this × the receptive field
MIN_COARSE = 64  # ... and the coarsest scale keeps at least this many pixels on its long side
MIN_SHARE = 1e-3  # map levels covering less of the image than this get no style term


def _options(ctx: RunContext) -> dict:
    return ctx.options["stroke"]


def _sizes(ctx: RunContext) -> list[int]:
    """stroke.sizes (default 256,512,768), checked."""
    return parse_sizes(_options(ctx)["sizes"] or DEFAULT_SIZES)


def _largest(ctx: RunContext) -> int:
    """The largest stroke size a gatys run uses: the top of stroke.sizes with a map, else stroke.size (or the middle)."""
    return _sizes(ctx)[-1] if "stroke.map" in ctx.guides else (_options(ctx)["size"] or middle_size(_sizes(ctx)))


def _training(ctx: RunContext) -> bool:
    return isinstance(ctx.settings, TrainSettings)


def read_stroke_map(path: Path, hw: tuple[int, int], note) -> torch.Tensor:
    """A stroke map image -> (1, 1, H, W) grey levels in [0, 1] (luminance; black 0, white 1), resized
    (bilinear, with a note) to HW."""
    img = load_image(path)
    grey = (img * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if tuple(grey.shape[-2:]) != tuple(hw):
        note(f"{Path(path).name}: stroke map is {grey.shape[-1]}x{grey.shape[-2]}, the image {hw[1]}x{hw[0]}; resized")
        grey = F.interpolate(grey, size=hw, mode="bilinear", align_corners=False).clamp(0, 1)
    return grey


def clamp_size(ctx: RunContext, size: int, lo: int, hi: int) -> int:
    """SIZE clamped to [LO, HI], with a note when it was outside."""
    if lo <= size <= hi:
        return size
    clamped = min(max(size, lo), hi)
    ctx.note(f"stroke.size {size} is outside the trained range {lo}-{hi} px; using {clamped}")
    return clamped


@hookimpl
def nst_plugin_options(register) -> None:
    register("size", int, 0, "stroke size in px: strokes as large as the style's when the style is this many px on its "
             "long side (0: the middle of the range); outside a model's trained range it is clamped, with a note")
    register("map", Path, None, "grey image of per-pixel stroke sizes: black = smallest, white = largest size of the "
             "range, geometric in between")
    register("sizes", str, "", f"stroke sizes in px, increasing: the network's branches in training (default "
             f"{DEFAULT_SIZES}), the stroke.map range in gatys runs; johnson runs use the model's")


@hookimpl
def nst_prepare(ctx: RunContext):
    """Check the options; read the stroke map at the content's size."""
    opts = _options(ctx)
    _sizes(ctx)
    if _training(ctx):
        if opts["size"] or opts["map"] is not None:
            raise UsageError("stroke.size and stroke.map are for runs; training learns every size of stroke.sizes")
        return None
    if opts["size"] < 0 or (opts["size"] and opts["map"] is not None):
        raise UsageError("give stroke.size (a positive number of px) or stroke.map, not both")
    if opts["map"] is None:
        return None
    return {"stroke.map": read_stroke_map(opts["map"], tuple(ctx.content.shape[-2:]), ctx.note).to(ctx.device)}


@hookimpl
def nst_train_network(ctx: RunContext, config: TrainSettings):
    """A StrokePyramidNet with one branch per stroke.sizes entry."""
    return StrokePyramidNet(config.width, config.blocks, _sizes(ctx))


def _step_size(ctx: RunContext) -> int:
    """The stroke size trained at this step: the cycle of training_sizes, by step index."""
    cycle = training_sizes(_sizes(ctx))
    return cycle[ctx.scale.index % len(cycle)]


@hookimpl
def nst_network_inputs(ctx: RunContext, net):
    """The stroke input: this step's size in training; stroke.size or the map's sizes in johnson runs."""
    if _training(ctx):
        return {"stroke": float(_step_size(ctx))}
    if not isinstance(net, StrokePyramidNet):
        raise UsageError(f"{Path(ctx.settings.model).name} is a plain Johnson model with no stroke control; train a "
                         "stroke model with `nst train ... --plugin stroke`")
    lo, hi = net.sizes[0], net.sizes[-1]
    if _options(ctx)["sizes"]:
        ctx.note(f"stroke.sizes is ignored in johnson runs: the model was trained for {lo}-{hi} px")
    if "stroke.map" in ctx.guides:
        ctx.summary["stroke"] = f"map, {lo} (black) to {hi} px (white)"
        return {"stroke": map_to_sizes(ctx.guides["stroke.map"], lo, hi)}
    size = clamp_size(ctx, _options(ctx)["size"] or middle_size(net.sizes), lo, hi)
    ctx.summary["stroke"] = f"{size} px (trained {lo}-{hi})"
    return {"stroke": float(size)}


def _style_at(img: torch.Tensor, size: float) -> torch.Tensor:
    return resize_long_side(img, max(16, round(size)))


def _training_term(ctx: RunContext, encoder) -> LossTerm:
    """This step's style term: Gram against the style at the step's stroke size (built once per size)."""
    cache = ctx.guides.setdefault("stroke.terms", {})
    size, s = _step_size(ctx), ctx.settings
    if size not in cache:
        with torch.no_grad():
            feats = encoder(_style_at(ctx.styles[0], size), s.style_layers)
        cache[size] = style_term("gram", [feats], [1.0], s.style_layers, s.style_weight)
    return cache[size]


def _map_term(ctx: RunContext, encoder, ratio: float) -> LossTerm:
    """Masked Gram terms, one per stroke.sizes level: level k's mask is its interpolation weight in the map
    (so a uniform map is the plain Gram loss), its target the style at sizes[k] × RATIO."""
    s, sizes = ctx.settings, _sizes(ctx)
    hw = tuple(ctx.scale.content.shape[-2:])
    grey = F.interpolate(ctx.guides["stroke.map"], size=hw, mode="area" if hw[0] <= ctx.content.shape[-2] else "bilinear")
    masks = gate_weights(map_to_sizes(grey, sizes[0], sizes[-1]), sizes)  # (1, K, h, w), summing to 1
    share = masks.mean((0, 2, 3))
    levels = [k for k in range(len(sizes)) if share[k] > MIN_SHARE]
    with torch.no_grad():
        targets = [{k: {l: gram_matrix(f) for l, f in encoder(_style_at(img, sizes[k] * ratio), s.style_layers).items()}
                    for k in levels} for img in ctx.styles]
    layer_masks = {l: resize_masks(masks, encoder.feature_size(hw, l)) for l in s.style_layers}

    def fn(feats, _image):
        total = 0.0
        for blend, per_level in zip(ctx.style_weights, targets):
            for k in levels:
                for l in s.style_layers:
                    m = layer_masks[l][:, k:k + 1]
                    total = total + blend * share[k] * guided_gram_loss(feats[l], m, per_level[k][l]) / len(s.style_layers)
        return total

    return LossTerm("style", s.style_weight, fn, tuple(s.style_layers))


@hookimpl
def nst_losses(ctx: RunContext, encoder):
    """A "style" term replacing the core one: the style at this step's / the requested stroke size."""
    if _training(ctx):
        return [_training_term(ctx, encoder)]
    s = ctx.settings
    ratio = ctx.scale.size / s.size  # this coarse-to-fine scale relative to the output
    biggest = _largest(ctx)
    have = min(max(img.shape[-2:]) for img in ctx.styles)
    if ratio == 1 and biggest > have:
        ctx.note(f"stroke size {biggest} px upsamples the style ({have} px on its long side here): blurry strokes; styles "
                 "are kept up to 2 x --size x --style-scale, so raise --style-scale if the style file is larger")
    if "stroke.map" in ctx.guides:
        if s.style_loss != "gram":
            ctx.note(f"stroke.map uses masked Gram style terms, not --style-loss {s.style_loss}")
        return [_map_term(ctx, encoder, ratio)]
    size = _largest(ctx)
    ctx.summary["stroke"] = f"{size} px"
    with torch.no_grad():
        feats = [encoder(_style_at(img, size * ratio), s.style_layers) for img in ctx.styles]
    return [style_term(s.style_loss, feats, ctx.style_weights, s.style_layers, s.style_weight, s.mmd_kernel, s.seed)]


@hookimpl
def nst_schedule(ctx: RunContext):
    """More coarse-to-fine scales than --scales when the largest stroke's style is over RF_FACTOR × the
    deepest style layer's receptive field at the coarsest scale (and that scale keeps MIN_COARSE px)."""
    s = ctx.settings
    biggest = _largest(ctx)
    limit = RF_FACTOR * max(receptive_field(l) for l in s.style_layers)
    levels = s.scales
    while biggest / 2 ** (levels - 1) > limit and s.size / 2 ** levels >= MIN_COARSE:
        levels += 1
    if levels == s.scales:
        return None
    ctx.note(f"stroke: {levels} coarse-to-fine scales, so {biggest} px strokes fit the encoder's receptive field")
    return [Scale(size, s.steps) for size in gatys.scale_sizes(s.size, levels)]
