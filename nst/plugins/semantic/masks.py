"""`nst masks`: the label map of one image; or, for a content and its style image(s), label maps whose colours
already pair the regions (paired one to one by the similarity of their mean VGG features, as a run without maps
pairs them), a legend image (colour -> region, content beside style) and the pairing printed by colour."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import typer

from nst.errors import UsageError, printable
from nst.plugins.semantic.regions import (
    MASK_BYTES_PER_PIXEL,
    MAX_LABELS,
    LabelMap,
    colour_name,
    overlay,
    region_similarity,
    segment,
)

UNUSED = (128, 128, 128)  # style regions that no content region pairs with
THUMB = 240  # the legend's pictures, long side in px
PAIR_LAYER = "relu3_1"  # the features regions are paired by (as in runs)


def as_flag(key: str, value: str) -> str:
    """How `nst masks` spells the option KEY set to VALUE: --key VALUE."""
    return f"--{key.replace('_', '-')} {value}"


def pair_one_to_one(sim: np.ndarray) -> list[int | None]:
    """Per content region, its style partner in the optimal one-to-one assignment by SIM (Kc, Ks): None for the
    content regions left over when the style has fewer regions."""
    from scipy.optimize import linear_sum_assignment

    pairing: list[int | None] = [None] * sim.shape[0]
    for c, s in zip(*linear_sum_assignment(-sim)):
        pairing[int(c)] = int(s)
    return pairing


def recolour(style: LabelMap, content: LabelMap, pairing: list[int | None]) -> LabelMap:
    """STYLE with each region in the colour of its content partner (PAIRING: per content region, its style region
    or None); style regions without a partner are UNUSED grey."""
    colours = [UNUSED] * len(style.colours)
    for c, s in enumerate(pairing):
        if s is not None:
            colours[s] = content.colours[c]
    return LabelMap(style.labels, colours)


def shares(lm: LabelMap) -> dict[tuple[int, int, int], float]:
    """Colour -> the fraction of the map it covers."""
    counts = torch.bincount(lm.labels.flatten(), minlength=len(lm.colours)).tolist()
    out: dict[tuple[int, int, int], float] = {}
    for colour, n in zip(lm.colours, counts):
        out[colour] = out.get(colour, 0.0) + n / lm.labels.numel()
    return out


def pairing_lines(content: LabelMap, styles: list[LabelMap]) -> list[str]:
    """The pairing by colour, one line per colour: what it covers in the content and in each style."""
    cover = [shares(content)] + [shares(s) for s in styles]
    heads = ["content"] + (["style"] if len(styles) == 1 else [f"style {j + 1}" for j in range(len(styles))])
    lines = []
    for colour in dict.fromkeys([*content.colours, *(c for s in styles for c in s.colours)]):
        cells = [f"{head} {part[colour]:.0%}" if colour in part else f"{head} -" for head, part in zip(heads, cover)]
        if colour == UNUSED:
            what = "style regions no content region pairs with (unused)"
        elif all(colour not in part for part in cover[1:]):
            what = "no partner: takes the whole style"
        else:
            what = "paired"
        lines.append(f"  {colour_name(colour) if colour != UNUSED else 'grey':8} {'  '.join(cells)}  ({what})")
    return lines


def legend(images: list[torch.Tensor], maps: list[LabelMap], titles: list[str]):
    """A PIL image: each image half-painted with its regions, side by side under TITLES, then one row per colour
    with the share of each image it covers (so a colour's row reads across from content to style)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    pictures = []
    for image, lm in zip(images, maps):
        picture = overlay(image, lm, lm.colours)
        scale = THUMB / max(picture.size)
        pictures.append(picture.resize((round(picture.width * scale), round(picture.height * scale))))
    pad, label_w, row_h, top = 8, 150, 24, 26
    column = THUMB + pad
    colours = list(dict.fromkeys(c for lm in maps for c in lm.colours))
    body = top + max(p.height for p in pictures) + pad
    sheet = Image.new("RGB", (label_w + column * len(maps) + pad, body + row_h * len(colours) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    cover = [shares(lm) for lm in maps]
    for k, (picture, title) in enumerate(zip(pictures, titles)):
        draw.text((label_w + k * column, 6), title[:32], fill="black", font=font)
        sheet.paste(picture, (label_w + k * column, top))
    for r, colour in enumerate(colours):
        y = body + r * row_h
        draw.rectangle([pad, y + 2, pad + 18, y + 20], fill=colour, outline="black")
        draw.text((pad + 26, y + 4), "grey (unused)" if colour == UNUSED else colour_name(colour), fill="black", font=font)
        for k, part in enumerate(cover):
            text = f"{part[colour]:.0%} of the image" if colour in part else \
                "no partner: whole style" if k and colour in cover[0] else "-"
            draw.text((label_w + k * column, y + 4), text, fill="black", font=font)
    return sheet


def style_map_names(count: int) -> list[str]:
    return ["style_labels.png"] if count == 1 else [f"style{j + 1}_labels.png" for j in range(count)]


def masks_command(
    images: Annotated[list[Path], typer.Argument(
        help="IMAGE, or CONTENT STYLE [STYLE ...]: with style images the label maps pair the regions by colour.",
        show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="One image: its label map (PNG). With style images: a folder that receives "
                               "content_labels.png, style_labels.png (style1_labels.png, ... for several) and legend.png.",
        show_default=False)],
    segmenter: Annotated[str, typer.Option(help="auto (offline k-means) or sam.")] = "auto",
    regions: Annotated[int, typer.Option(help="Number of regions.")] = 3,
    sam_checkpoint: Annotated[Optional[Path], typer.Option(help="Segment Anything checkpoint, for --segmenter sam.")] = None,
    sam_model: Annotated[str, typer.Option(help="vit_b, vit_l or vit_h.")] = "vit_b",
    size: Annotated[int, typer.Option(help="Long side to work at (the label maps have this size).")] = 512,
    weights: Annotated[str, typer.Option(help="VGG19 weights whose features pair the regions: a name from `nst weights` "
                                              "or a file.")] = "vgg19",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace label maps and a legend already in the output "
                                                               "folder.")] = False,
) -> None:
    """Make a label map of IMAGE to inspect or edit; or, given a content and its style image(s), label maps whose
    colours pair the regions, a legend and the pairing by colour. Pass the maps to the semantic plugin."""
    from PIL import Image

    from nst.core.devices import check_memory, pick_device
    from nst.core.files import Outputs
    from nst.core.images import MAX_SIDE, SAVE_FORMATS, check_output_path, image_writer, load_image, resize_long_side
    from nst.errors import note_line

    if segmenter not in ("auto", "sam"):
        raise UsageError(f"--segmenter must be auto or sam, got '{segmenter}'")
    if not 1 <= regions <= MAX_LABELS:
        raise UsageError(f"--regions must be between 1 and {MAX_LABELS}, got {regions}")
    if not 16 <= size <= MAX_SIDE:
        raise UsageError(f"--size must be between 16 and {MAX_SIDE}, got {size}")
    styles = images[1:]
    if styles and SAVE_FORMATS.get(output.suffix.lower()):
        raise UsageError(f"-o: with style images -o names a folder (for content_labels.png, {style_map_names(len(styles))[0]} "
                         f"and legend.png), got the file name '{output}'")
    check_memory(MASK_BYTES_PER_PIXEL * size * size, f"a {size} px label map", torch.device("cpu"), "use a smaller --size")
    outputs = Outputs([*images, sam_checkpoint], overwrite=overwrite)
    targets = [output / name for name in ["content_labels.png", *style_map_names(len(styles)), "legend.png"]]
    if not styles:
        outputs.reserve(check_output_path(output))
    else:
        for path in targets:  # names nst chose in the user's folder: the overwrite rule
            outputs.reserve(path, make_folder=True, within=output)
    pictures = [resize_long_side(load_image(path, note_line), size) for path in images]
    device = pick_device("auto")
    opts = {"segmenter": segmenter, "regions": regions, "sam_checkpoint": sam_checkpoint, "sam_model": sam_model}
    maps = [segment(opts, picture, device, as_flag) for picture in pictures]
    if not styles:
        outputs.add(output, image_writer(Image.fromarray(maps[0].image(), "RGB"), output))
        outputs.commit()
        cover = shares(maps[0])
        typer.echo(printable(f"wrote {output} ({len(maps[0].colours)} regions: "
                             f"{', '.join(f'{colour_name(c)} {share:.0%}' for c, share in cover.items())})"))
        return
    content, style_maps = maps[0], pair_styles(pictures, maps, weights, device)
    for path, lm in zip(targets, [content, *style_maps]):
        outputs.add(path, image_writer(Image.fromarray(lm.image(), "RGB"), path))
    titles = [f"content: {images[0].name}"] + [f"style: {p.name}" for p in styles]
    outputs.add(targets[-1], image_writer(legend(pictures, [content, *style_maps], titles), targets[-1]))
    written = outputs.commit()
    typer.echo(printable(f"wrote {', '.join(map(str, written))}"))
    typer.echo("pairing by colour (the same colour in both maps is one pair of regions):")
    for line in pairing_lines(content, style_maps):
        typer.echo(printable(line))
    style_masks = ",".join(str(p) for p in targets[1:-1])
    typer.echo(printable("use them with: " + shlex.join(["nst", "run", *map(str, images), "-o", "out.png", "--plugin",
                                                         "semantic", "--set", f"semantic.content_mask={targets[0]}",
                                                         "--set", f"semantic.style_mask={style_masks}"])))


def pair_styles(pictures: list[torch.Tensor], maps: list[LabelMap], weights: str, device) -> list[LabelMap]:
    """The style maps (MAPS[1:]) recoloured so that each region paired with a content region (MAPS[0]) has its colour;
    PICTURES (1, 3, H, W) are the images the maps were made of."""
    from nst.core.encoder import Encoder, load_vgg
    from nst.host import default_host

    encoder = Encoder(load_vgg(default_host().weights(), weights), "avg").to(device)
    with torch.no_grad():
        feats = [encoder(p.to(device), [PAIR_LAYER])[PAIR_LAYER].cpu() for p in pictures]
    content = maps[0]
    return [recolour(lm, content, pair_one_to_one(region_similarity(feats[0], content.masks(), f, lm.masks())))
            for f, lm in zip(feats[1:], maps[1:])]
