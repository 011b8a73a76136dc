"""Plugin `stroke`: stroke-size control (Jing et al. 2018), continuous and spatial, in both families.

A stroke size S (px) means: the output's strokes are as large, in output pixels, as the style's strokes
when the style image is resized to S px on its long side.

- `nst train --plugin stroke`: trains a StrokePyramidNet (nst.plugins.stroke.network) with one branch per size of
  `stroke.sizes`; each step takes the next size of a cycle (every branch size, then the geometric
  midpoints) and matches the Gram statistics of the style resized to that size.
- `--method johnson --plugin stroke`: feeds `stroke.size` (clamped to the model's trained range, with a
  note) or `stroke.map` (per pixel) to the network.
- `--method gatys --plugin stroke`: the style term uses the style resized to `stroke.size` × (scale's
  size / --size) at every coarse-to-fine scale; with `stroke.map`, one masked Gram term per size of
  `stroke.sizes`, the masks being the map's interpolation weights; extra coarse scales are added when
  the largest stroke is far beyond the encoder's receptive field.
- `--method nnst --plugin stroke`: the method reads the guides this plugin prepares (`stroke.size`, or
  `stroke.sizes` and `stroke.levels`, the map's interpolation weights) and searches neighbours in the style
  at those sizes; this plugin adds no terms and no schedule there.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from nst.contract.context import RunContext, Scale
from nst.contract.hookspecs import hookimpl
from nst.core import gatys
from nst.core.colors import luminance
from nst.core.images import load_image, resize_long_side
from nst.core.johnson import MAX_BLOCKS, MAX_CHANNELS, config_int
from nst.core.losses import LossTerm, gram_matrix, guided_style_term, resize_masks, style_term
from nst.errors import UsageError
from nst.plugins.stroke.network import (
    StrokePyramidNet,
    check_sizes,
    gate_weights,
    map_to_sizes,
    middle_size,
    receptive_field,
    training_sizes,
)

DEFAULT_SIZES = [256, 512, 768]
RF_FACTOR = 2  # coarse-to-fine: at the coarsest scale the largest style is at most this × the receptive field
MIN_COARSE = 64  # ... and the coarsest scale keeps at least this many pixels on its long side
MIN_SHARE = 1e-3  # map levels covering less of the image than this get no style term


def _sizes(options: dict) -> list[int]:
    """stroke.sizes (default 256,512,768), checked."""
    return check_sizes(options["sizes"] or DEFAULT_SIZES)


def _largest(ctx: RunContext, options: dict) -> int:
    """The largest stroke size a gatys run uses: the top of stroke.sizes with a map, else stroke.size (or the middle)."""
    return _sizes(options)[-1] if "stroke.map" in ctx.guides else (options["size"] or middle_size(_sizes(options)))


def read_stroke_map(path: Path, hw: tuple[int, int], note) -> torch.Tensor:
    """A stroke map image -> (1, 1, H, W) grey levels in [0, 1] (luminance; black 0, white 1), resized
    (bilinear, with a note) to HW."""
    grey = luminance(load_image(path))
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
             "long side (0: the middle of the range); outside a model's trained range it is clamped, with a note",
             min=0, max=16384)
    register("map", Path, None, "grey image of per-pixel stroke sizes: black = smallest, white = largest size of the "
             "range, geometric in between")
    register("sizes", list[int], None, "stroke sizes in px, increasing: the network's branches in training (default "
             f"{','.join(map(str, DEFAULT_SIZES))}), the stroke.map range in gatys runs; johnson runs use the model's")


@hookimpl
def nst_register_architectures(register) -> None:
    register("stroke", lambda config: StrokePyramidNet(config_int(config, "width", 32, MAX_CHANNELS),
                                                       config_int(config, "blocks", 5, MAX_BLOCKS, 0),
                                                       config.get("sizes", DEFAULT_SIZES)))


@hookimpl
def nst_prepare(ctx: RunContext, options):
    """Check the options; read the stroke map at the content's size."""
    _sizes(options)
    if ctx.mode == "train":
        if options["size"] or options["map"] is not None:
            raise UsageError("stroke.size and stroke.map are for runs; training learns every size of stroke.sizes")
        return None
    if options["size"] and options["map"] is not None:
        raise UsageError("give stroke.size or stroke.map, not both")
    sizes = _sizes(options)
    if options["map"] is None:
        return {"stroke.size": options["size"] or middle_size(sizes)}
    grey = read_stroke_map(options["map"], tuple(ctx.content.shape[-2:]), ctx.note).to(ctx.device)
    return {"stroke.map": grey, "stroke.sizes": sizes,
            "stroke.levels": gate_weights(map_to_sizes(grey, sizes[0], sizes[-1]), sizes)}


@hookimpl
def nst_train_network(config, options):
    """A StrokePyramidNet with one branch per stroke.sizes entry."""
    return StrokePyramidNet(config.width, config.blocks, _sizes(options))


def _step_size(ctx: RunContext, options: dict) -> int:
    """The stroke size trained at this step: the cycle of training_sizes, by step index."""
    cycle = training_sizes(_sizes(options))
    return cycle[ctx.batch.index % len(cycle)]


@hookimpl
def nst_network_inputs(ctx: RunContext, net, options):
    """The stroke input: this step's size in training; stroke.size or the map's sizes in johnson runs."""
    if ctx.mode == "train":
        return {"stroke": float(_step_size(ctx, options))}
    if not isinstance(net, StrokePyramidNet):
        raise UsageError(f"{Path(ctx.settings.model).name} is a plain Johnson model with no stroke control; train a "
                         "stroke model with `nst train ... --plugin stroke`")
    lo, hi = net.sizes[0], net.sizes[-1]
    if options["sizes"]:
        ctx.note(f"stroke.sizes is ignored in johnson runs: the model was trained for {lo}-{hi} px")
    if "stroke.map" in ctx.guides:
        ctx.summary["stroke"] = f"map, {lo} (black) to {hi} px (white)"
        return {"stroke": map_to_sizes(ctx.guides["stroke.map"], lo, hi)}
    size = clamp_size(ctx, options["size"] or middle_size(net.sizes), lo, hi)
    ctx.summary["stroke"] = f"{size} px (trained {lo}-{hi})"
    return {"stroke": float(size)}


def _style_at(img: torch.Tensor, size: float) -> torch.Tensor:
    return resize_long_side(img, max(16, round(size)))


def _training_term(ctx: RunContext, encoder, options: dict) -> LossTerm:
    """This step's style term: Gram against the style at the step's stroke size (built once per size)."""
    cache = ctx.guides.setdefault("stroke.terms", {})
    size, s = _step_size(ctx, options), ctx.settings
    if size not in cache:
        with torch.no_grad():
            feats = encoder(_style_at(ctx.styles[0], size), s.style_layers)
        cache[size] = style_term("gram", [feats], [1.0], s.style_layers, s.style_weight)
    return cache[size]


def _map_term(ctx: RunContext, encoder, ratio: float, options: dict) -> LossTerm:
    """Masked Gram terms, one per stroke.sizes level: level k's mask is its interpolation weight in the map
    (so a uniform map is the plain Gram loss), its target the style at sizes[k] × RATIO."""
    s, sizes = ctx.settings, _sizes(options)
    hw = tuple(ctx.scale.content.shape[-2:])
    grey = F.interpolate(ctx.guides["stroke.map"], size=hw, mode="area" if hw[0] <= ctx.content.shape[-2] else "bilinear")
    masks = gate_weights(map_to_sizes(grey, sizes[0], sizes[-1]), sizes)  # (1, K, h, w), summing to 1
    share = masks.mean((0, 2, 3))
    levels = [k for k in range(len(sizes)) if share[k] > MIN_SHARE]
    with torch.no_grad():
        targets = [[{l: gram_matrix(f) for l, f in encoder(_style_at(img, sizes[k] * ratio), s.style_layers).items()}
                    for k in levels] for img in ctx.styles]
    layer_masks = {l: resize_masks(masks[:, levels], encoder.feature_size(hw, l)) for l in s.style_layers}
    return guided_style_term(targets, layer_masks, [float(share[k]) for k in levels], ctx.style_weights, s.style_layers,
                             s.style_weight)


def _note_upsampling(ctx: RunContext, size: int) -> None:
    """A note when stroke SIZE needs a style larger than the run holds: because the file is smaller (a larger file
    is needed), or because the run shrank it (--style-scale keeps more of it)."""
    held = min(max(img.shape[-2:]) for img in ctx.styles)
    if size <= held:
        return
    read = min(ctx.style_sides or [held])
    if read >= size:
        scale = math.ceil(100 * size / ctx.settings.size) / 100
        ctx.note(f"stroke size {size} px upsamples the style: the run keeps it at {held} px on its long side (styles "
                 f"over 2 x --size x --style-scale are shrunk; the file is {read} px): blurry strokes; "
                 f"--style-scale {scale:g} keeps {size} px")
    else:
        ctx.note(f"stroke size {size} px upsamples the style, whose file is {read} px on its long side: blurry "
                 "strokes; use a larger style image or a smaller stroke.size")


@hookimpl
def nst_losses(ctx: RunContext, encoder, options):
    """A "style" term replacing the core one: the style at this step's / the requested stroke size."""
    if ctx.mode == "train":
        return [_training_term(ctx, encoder, options)]
    s = ctx.settings
    if s.method == "nnst":
        return None
    ratio = ctx.scale.size / s.size  # this coarse-to-fine scale relative to the output
    biggest = _largest(ctx, options)
    if ratio == 1:
        _note_upsampling(ctx, biggest)
    if "stroke.map" in ctx.guides:
        if s.style_loss != "gram":
            ctx.note(f"stroke.map uses masked Gram style terms, not --style-loss {s.style_loss}")
        return [_map_term(ctx, encoder, ratio, options)]
    size = _largest(ctx, options)
    ctx.summary["stroke"] = f"{size} px"
    with torch.no_grad():
        feats = [encoder(_style_at(img, size * ratio), s.style_layers) for img in ctx.styles]
    return [style_term(s.style_loss, feats, ctx.style_weights, s.style_layers, s.style_weight, s.mmd_kernel, s.seed)]


@hookimpl
def nst_schedule(ctx: RunContext, options):
    """More coarse-to-fine scales than --scales when the largest stroke's style is over RF_FACTOR × the
    deepest style layer's receptive field at the coarsest scale (and that scale keeps MIN_COARSE px)."""
    s = ctx.settings
    if s.method == "nnst":
        return None  # its pyramid already starts at 64 px
    biggest = _largest(ctx, options)
    limit = RF_FACTOR * max(receptive_field(l) for l in s.style_layers)
    levels = max(1, s.scales)
    while biggest / 2 ** (levels - 1) > limit and s.size / 2 ** levels >= MIN_COARSE:
        levels += 1
    if levels == max(1, s.scales):
        return None
    ctx.note(f"stroke: {levels} coarse-to-fine scales, so {biggest} px strokes fit the encoder's receptive field")
    return [Scale(size, s.steps) for size in gatys.scale_sizes(s.size, levels)]
