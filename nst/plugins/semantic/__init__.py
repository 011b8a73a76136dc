"""Built-in plugin `semantic`: region-to-region style transfer (Gatys et al. 2017 spatial control).

Regions come from colour-coded label maps (the same colour pairs a content region with a style
region), from an offline segmenter (k-means on colour + position) or from Segment Anything. Each
content region is matched to the Gram statistics of its partner region in each style; the term
replaces the global style term.
"""
from __future__ import annotations

from pathlib import Path

import torch

from nst.contract.hookspecs import hookimpl
from nst.core.images import image_writer
from nst.core.losses import guided_gram, guided_style_term, resize_masks
from nst.core.weights import WeightSource
from nst.errors import NSTError, UsageError
from nst.plugins.semantic.regions import (
    MAX_LABELS,
    SAM_URLS,
    LabelMap,
    colour_name,
    overlay,
    pair_by_colour,
    pair_by_features,
    parse_pairs,
    read_label_map,
    segment,
)


@hookimpl
def nst_plugin_options(register) -> None:
    register("content_mask", Path, None, "colour-coded label map of the content (same colour = paired region)")
    register("style_mask", list[Path], None, "label map(s) of the style image(s), comma-separated, one per style")
    register("segmenter", str, "auto", "without masks: auto (k-means on colour + position, offline) or sam", choices=("auto",
                                                                                                                      "sam"))
    register("regions", int, 3, "number of regions for the automatic segmenters", min=1, max=MAX_LABELS)
    register("sam_checkpoint", Path, None, "Segment Anything checkpoint file (.pth)")
    register("sam_model", str, "vit_b", "Segment Anything model type of the checkpoint", choices=tuple(SAM_URLS))
    register("pairs", list[str], [], "override the pairing: CONTENT:STYLE region numbers, e.g. 0:1,1:0")
    register("unpaired", str, "style", "a content region with no partner takes the whole style, or is an error",
             choices=("style", "error"))
    register("region_weights", list[float], None, "style weight per content region, comma-separated (default all 1)",
             min=0, max=1e6)
    register("save_masks", Path, None, "folder for overlays of the regions (paired regions share a colour)",
             file="out")


@hookimpl
def nst_register_weights(register) -> None:
    for model, name in SAM_URLS.items():
        register(WeightSource(name=f"sam-{model.replace('_', '-')}", kind="url", filename=name,
                              url=f"https://dl.fbaipublicfiles.com/segment_anything/{name}", sha256=None,
                              local_hint="--set semantic.sam_checkpoint=PATH",
                              description=f"Segment Anything {model} (Apache-2.0); only an MD5 prefix is published, so "
                                          "unpinned"))


@hookimpl
def nst_prepare(ctx, options):
    if ctx.mode != "run":
        raise UsageError("the semantic plugin works in runs (gatys), not in training")
    opts = options
    if opts["save_masks"] is not None:
        names = ["content_regions.png"] + [f"style{j + 1}_regions.png" for j in range(len(ctx.styles))]
        for name in names:
            ctx.outputs.reserve(opts["save_masks"] / name, make_folder=True, within=opts["save_masks"])
    hw = tuple(ctx.content.shape[-2:])
    style_paths = opts["style_mask"] or []
    if (opts["content_mask"] is None) != (not style_paths):
        raise UsageError("give both semantic.content_mask and semantic.style_mask, or neither (automatic segmentation)")
    if style_paths and len(style_paths) != len(ctx.styles):
        raise UsageError(f"semantic.style_mask lists {len(style_paths)} file(s) for {len(ctx.styles)} style image(s)")
    if opts["content_mask"] is not None:
        content = read_label_map(opts["content_mask"], hw, ctx.note)
        styles = [read_label_map(p, tuple(s.shape[-2:]), ctx.note) for p, s in zip(style_paths, ctx.styles)]
        pairings = [pair_by_colour(content, s) for s in styles]
    else:
        content = segment(opts, ctx.content, ctx.device)
        styles = [segment(opts, s, ctx.device) for s in ctx.styles]
        enc = ctx.encoder()
        with torch.no_grad():
            cf = enc(ctx.content, ["relu3_1"])["relu3_1"].cpu()
            pairings = [pair_by_features(cf, content.masks(), enc(s, ["relu3_1"])["relu3_1"].cpu(), lm.masks())
                        for s, lm in zip(ctx.styles, styles)]
    for j, (lm, pairing) in enumerate(zip(styles, pairings)):
        for c, s in parse_pairs(opts["pairs"], len(content.colours), len(lm.colours)).items():
            pairing[c] = s
        for region, empty in enumerate(lm.masks()[0].sum((1, 2)) == 0):
            if empty:
                raise NSTError(f"style {j + 1}: region {region} is empty")
        if None in pairing and opts["unpaired"] == "error":
            raise NSTError(f"content region {pairing.index(None)} (colour {content.colours[pairing.index(None)]}) has "
                           f"no partner in style {j + 1}")
    weights = opts["region_weights"] or [1.0] * len(content.colours)
    if len(weights) != len(content.colours):
        raise UsageError(f"semantic.region_weights has {len(weights)} value(s) for {len(content.colours)} content "
                         "regions")
    ctx.summary["semantic pairing"] = "; ".join(
        f"style {j + 1}: " + ", ".join(f"{c} {colour_name(content.colours[c])}->{'whole style' if s is None else s}"
                                       for c, s in enumerate(p))
        for j, p in enumerate(pairings))
    if opts["save_masks"] is not None:
        _queue_overlays(opts["save_masks"], ctx, content, styles, pairings)
        ctx.summary["semantic masks"] = str(opts["save_masks"])
    return {"semantic.content": content, "semantic.styles": styles, "semantic.pairings": pairings,
            "semantic.weights": weights}


def _queue_overlays(folder: Path, ctx, content: LabelMap, styles: list[LabelMap], pairings) -> None:
    """Overlays of the regions, queued in ctx.outputs (written with the result)."""
    def queue(picture, name: str) -> None:
        ctx.outputs.add(folder / name, image_writer(picture, folder / name))

    queue(overlay(ctx.content, content, content.colours), "content_regions.png")
    for j, (img, lm, pairing) in enumerate(zip(ctx.styles, styles, pairings)):
        colours = [(128, 128, 128)] * len(lm.colours)  # style regions no content region uses stay grey
        for c, s in enumerate(pairing):
            if s is not None:
                colours[s] = content.colours[c]
        queue(overlay(img, lm, colours), f"style{j + 1}_regions.png")


@hookimpl
def nst_losses(ctx, encoder):
    """A 'style' term replacing the global one: a Gram per (content region, paired style region). nnst has no
    Gram term: it searches each region's neighbours in its partner region, from ctx.guides."""
    g, s = ctx.guides, ctx.settings
    if s.method == "nnst":
        return None
    layers = s.style_layers
    cmasks = g["semantic.content"].masks().to(ctx.device)
    targets = []  # per style: per content region: {layer: Gram}
    with torch.no_grad():
        for img, lm, pairing in zip(ctx.scale.styles, g["semantic.styles"], g["semantic.pairings"]):
            feats = encoder(img, layers)
            smasks = lm.masks().to(ctx.device)
            whole = torch.ones_like(smasks[:, :1])
            targets.append([{l: guided_gram(feats[l], resize_masks(whole if p is None else smasks[:, p:p + 1],
                                                                   tuple(feats[l].shape[-2:])))
                             for l in layers} for p in pairing])
    # the image keeps the scale's content size, so its layer masks are fixed for the whole scale
    hw = tuple(ctx.scale.content.shape[-2:])
    layer_masks = {l: resize_masks(cmasks, encoder.feature_size(hw, l)) for l in layers}
    return [guided_style_term(targets, layer_masks, g["semantic.weights"], ctx.style_weights, layers, s.style_weight)]


@hookimpl
def nst_register_commands(app) -> None:
    from nst.plugins.semantic.masks import masks_command

    app.command("masks", no_args_is_help=True)(masks_command)
