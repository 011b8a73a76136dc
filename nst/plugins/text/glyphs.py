"""Glyph images for text-effect transfer: finding the glyph, rendering text with a font, and the
distance-based guidance map (Yang et al. 2017).

The guidance map U (H, W) is a signed distance to the glyph's outline in stroke-radius units:
inside, -(d_in - 0.5) / r, where d_in is the distance to the nearest background pixel and r the
radius of the stroke there (the distance-transform value at the nearest skeleton pixel), so U runs
from -1 on the stroke's centre line to 0 on the outline whatever the stroke width; outside,
(d_out - 0.5) / R, with d_out the distance to the nearest glyph pixel and R the glyph's typical stroke
radius, twice the mean inside distance (d_in - 0.5): exact for strokes of uniform width, and stable
across the letters of a font. The skeleton is approximated by the ridge of the inside distance
transform: pixels no smaller than any 8-neighbour by more than 0.5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from nst.core.colors import luminance
from nst.errors import NSTError

MIN_CONTRAST = 0.1  # glyph and ground must differ this much in luminance (0..1)
MIN_GLYPH_PIXELS = 4
MAX_CANVAS_PIXELS = 1 << 26  # 64 Mpx: a rendered text larger than this is refused before drawing
NOTDEF_PROBE = "\U0010fffd"  # a private-use code point no font maps: it draws the font's "missing" glyph


@dataclass
class Guide:
    """A glyph's guidance: MASK (H, W) bool, U (H, W) float32 signed distance in stroke radii
    (negative inside), RADIUS the typical stroke radius in pixels."""

    mask: np.ndarray
    u: np.ndarray
    radius: float


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold in [0, 1] that maximises the between-class variance of VALUES (any shape)."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(edges[int(np.argmax(between[:-1])) + 1])


def glyph_mask(image: torch.Tensor, name: str) -> np.ndarray:
    """(H, W) bool: the glyph pixels of a text image (1, 3, H, W), dark on light or light on dark.

    The luminance is split at Otsu's threshold; the class holding most of the image's one-pixel
    border is the ground. NAME labels the one-line NSTError raised when there is no glyph.
    """
    lum = luminance(image.detach().float().cpu())[0, 0].numpy()
    if float(lum.max() - lum.min()) < MIN_CONTRAST:
        raise NSTError(f"{name}: no glyph found (the image is plain; expected dark or light text on a plain ground)")
    light = lum > otsu_threshold(lum)
    border = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]])
    mask = ~light if border.mean() >= 0.5 else light
    count = int(mask.sum())
    if count < MIN_GLYPH_PIXELS or count == mask.size:
        raise NSTError(f"{name}: no glyph found (expected dark or light text on a plain ground)")
    return mask


def distance_guide(mask: np.ndarray) -> Guide:
    """The Guide of a glyph MASK (H, W) bool (see the module docstring for U)."""
    from scipy import ndimage  # imported here: every nst command loads this plugin, few use it

    d_in = ndimage.distance_transform_edt(mask).astype(np.float32)
    d_out = ndimage.distance_transform_edt(~mask).astype(np.float32)
    ridge = mask & (d_in >= ndimage.maximum_filter(d_in, size=3) - 0.5)
    radius = max(2.0 * float((d_in[mask] - 0.5).mean()), 0.5)
    nearest = ndimage.distance_transform_edt(~ridge, return_distances=False, return_indices=True)
    local = np.maximum(d_in[nearest[0], nearest[1]] - 0.5, 0.5)
    u = np.where(mask, -np.clip((d_in - 0.5) / local, 0.0, 1.0), (d_out - 0.5) / radius)
    return Guide(mask, u.astype(np.float32), radius)


def load_font(font: str | Path | None, size: int) -> ImageFont.FreeTypeFont:
    """A TrueType/OpenType font at SIZE px: FONT (a path, or a file name Pillow finds among the system
    fonts), or Pillow's built-in scalable font when FONT is None."""
    size = max(1, int(round(size)))
    if font is None:
        return ImageFont.load_default(size)
    if Path(font).is_dir():
        raise NSTError(f"{font}: is a folder, not a font file")
    try:
        return ImageFont.truetype(str(font), size)
    except FileNotFoundError:
        raise NSTError(f"{font}: font file not found") from None
    except OSError as exc:
        if not Path(font).exists():
            raise NSTError(f"{font}: font file not found") from None
        raise NSTError(f"{font}: cannot read font ({exc})") from None


@dataclass
class Layout:
    """How a string is set: FONT (path or None for the built-in font), LINE_SPACING (times the font's
    line height), LETTER_SPACING (extra space between letters, in font sizes), ALIGN of the lines."""

    font: str | Path | None = None
    line_spacing: float = 1.0
    letter_spacing: float = 0.0
    align: str = "center"


def _drawn(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    """The pixels FONT draws for CHAR (with the box size), to compare glyphs."""
    left, top, right, bottom = font.getbbox(char)
    canvas = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(canvas).text((-left, -top), char, font=font, fill=255)
    return bytes(canvas.size) + canvas.tobytes()


def missing_glyphs(text: str, font_path: str | Path | None) -> list[str]:
    """The characters of TEXT that the font has no glyph for (they would draw as its "missing" box)."""
    font = load_font(font_path, 32)
    notdef = _drawn(font, NOTDEF_PROBE)
    return [c for c in dict.fromkeys(text) if not c.isspace() and _drawn(font, c) == notdef]


def render_text(text: str, layout: Layout, font_size: float, margin: int) -> torch.Tensor:
    """(1, 3, H, W): TEXT in black on white, anti-aliased, cropped to its ink plus MARGIN px each side.

    Lines are split at newlines; letters are placed at the font's advance (kerning included) plus
    LETTER_SPACING * FONT_SIZE after each letter."""
    lines = text.split("\n")
    if not text.strip():
        raise NSTError("empty text: give at least one visible character with --text")
    font = load_font(layout.font, font_size)
    spacing = layout.letter_spacing * font_size
    ascent, descent = font.getmetrics()
    step = (ascent + descent) * layout.line_spacing
    widths = [font.getlength(line) + spacing * max(0, len(line) - 1) for line in lines]
    pad = int(math.ceil(font_size)) + 2
    w = int(math.ceil(max(widths))) + 2 * pad
    h = int(math.ceil(step * (len(lines) - 1) + ascent + descent)) + 2 * pad
    if w * h > MAX_CANVAS_PIXELS or w <= 0 or h <= 0:
        raise NSTError(f"the text would need a {w}x{h} px canvas ({w * h / 2 ** 20:.0f} Mpx), over the "
                       f"{MAX_CANVAS_PIXELS >> 20} Mpx limit; lower --font-size, --letter-spacing or --line-spacing, "
                       "or "
                       "shorten the text")
    canvas = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    shift = {"left": 0.0, "center": 0.5, "right": 1.0}[layout.align]
    for row, (line, width) in enumerate(zip(lines, widths)):
        x0 = pad + shift * (max(widths) - width)
        for i, char in enumerate(line):
            draw.text((x0 + font.getlength(line[:i]) + spacing * i, pad + ascent + row * step), char,
                      font=font, fill=0, anchor="ls")
    box = Image.eval(canvas, lambda v: 255 - v).getbbox()
    if box is None:
        raise NSTError(f"the text {text!r} draws no visible pixels with this font")
    framed = ImageOps.expand(canvas.crop(box), border=max(0, int(margin)), fill=255)
    arr = np.asarray(framed, dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None, None].expand(1, 3, *arr.shape).contiguous()


def guide_picture(u: np.ndarray, far: float) -> torch.Tensor:
    """(1, 3, H, W) a viewable picture of a guidance map U: the glyph in blue (dark on the centre
    line, light at the outline), the outside in orange fading to white at U = FAR."""
    inside = np.clip(-u, 0.0, 1.0)
    outside = np.clip(u / max(far, 1e-6), 0.0, 1.0)
    blue = np.stack([0.6 - 0.55 * inside, 0.75 - 0.6 * inside, 1.0 - 0.45 * inside])
    orange = np.stack([np.ones_like(outside), 0.55 + 0.45 * outside, 0.1 + 0.9 * outside])
    rgb = np.where(u[None] <= 0, blue, orange).astype(np.float32)
    return torch.from_numpy(rgb)[None].clamp(0, 1)
