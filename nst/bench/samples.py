"""The built-in image set of `nst bench`: procedural photos and paintings made on the fly (no files ship, no
download), the same on every machine, so reports from different machines compare.

Photos are landscapes (sky gradient, sun, layered hills with grain, a house) with real edges and smooth
areas; paintings are swirls of brush strokes along a vortex field, each with its own palette, and a mosaic
of flat polygons. `assets/make_assets.py` draws the project's example painting with `painting()`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PALETTES = {
    "swirl": [(16, 32, 96), (30, 70, 170), (60, 130, 210), (245, 200, 30), (250, 150, 20), (220, 80, 20),
              (250, 235, 120), (20, 110, 120)],
    "ember": [(40, 10, 10), (120, 20, 20), (200, 60, 20), (240, 140, 40), (250, 210, 120), (90, 40, 60)],
    "meadow": [(20, 60, 30), (60, 120, 40), (150, 180, 60), (230, 220, 120), (120, 160, 200), (240, 240, 230)],
}


def _flow(p: np.ndarray, vortices: list) -> np.ndarray:
    """Unit flow directions (N, 2) at points P (N, 2) from a sum of vortices (cx, cy, strength, radius)."""
    v = np.tile([0.3, 0.1], (len(p), 1))
    for cx, cy, s, r in vortices:
        d = p - (cx, cy)
        w = s * np.exp(-(d ** 2).sum(1) / (2 * r * r)) / r
        v += w[:, None] * np.stack([-d[:, 1], d[:, 0]], 1)
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)


def painting(seed: int = 7, size: int = 384, palette=PALETTES["swirl"], strokes: int = 3000, steps: int = 7,
             step: float = 3.0) -> Image.Image:
    """A SIZE x SIZE painting of short strokes along streamlines of a random vortex field, in coherent colour areas."""
    palette = np.array(palette, dtype=float)
    rng = np.random.default_rng(seed)
    vortices = [(rng.uniform(0, size), rng.uniform(0, size), rng.choice([-1, 1]) * rng.uniform(1.5, 3),
                 rng.uniform(40, 90)) for _ in range(6)]
    img = Image.new("RGB", (size, size), (25, 50, 120))
    draw = ImageDraw.Draw(img)
    k = rng.normal(size=(3, 2)) * 0.02
    phase = rng.uniform(0, 2 * np.pi, 3)
    for batch in range(3):  # later batches are thinner and sit on top
        p = rng.uniform(-10, size + 10, (strokes, 2))
        pts = [p.copy()]
        for _ in range(steps):
            p = p + step * _flow(p, vortices)
            pts.append(p.copy())
        pts = np.stack(pts, 1)  # (strokes, steps + 1, 2)
        region = np.sin(pts[:, 0] @ k.T + phase).sum(1)  # in [-3, 3]
        idx = np.clip(((region + 3) / 6 * len(palette) + rng.normal(0, 0.7, strokes)).astype(int), 0, len(palette) - 1)
        for line, i in zip(pts, idx):
            col = np.clip(palette[i] + rng.normal(0, 14, 3), 0, 255)
            dark = tuple(int(c) for c in col * 0.5)
            width = int(rng.integers(4, 10)) - batch
            xy = [tuple(q) for q in line]
            bright = tuple(int(c) for c in col)
            for fill, w in ((dark, width + 2), (bright, width)):
                draw.line(xy, fill=fill, width=w, joint="curve")
                for x, y in (xy[0], xy[-1]):  # round brush caps
                    r = w / 2
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    return img


def mosaic(seed: int = 3, size: int = 384, cells: int = 14) -> Image.Image:
    """A SIZE x SIZE mosaic of flat jittered quadrilaterals with dark grout, in a warm-cold palette."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (30, 25, 20))
    draw = ImageDraw.Draw(img)
    step = size / cells
    grid = np.stack(np.meshgrid(np.arange(cells + 1), np.arange(cells + 1), indexing="xy"), -1) * step
    grid = grid + rng.uniform(-0.3, 0.3, grid.shape) * step
    palette = np.array(PALETTES["ember"] + PALETTES["meadow"][3:5], dtype=float)
    for y in range(cells):
        for x in range(cells):
            quad = [grid[y, x], grid[y, x + 1], grid[y + 1, x + 1], grid[y + 1, x]]
            col = np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 12, 3), 0, 255)
            draw.polygon([tuple(q) for q in quad], fill=tuple(int(c) for c in col), outline=(30, 25, 20), width=3)
    return img


def photo(seed: int = 0, width: int = 384, height: int = 288) -> Image.Image:
    """A WIDTH x HEIGHT landscape: sky gradient, sun, three hill ridges with grain, a house; blurred like a lens."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    top, bottom = rng.uniform([20, 60, 140], [90, 130, 220]), rng.uniform([180, 190, 200], [250, 230, 220])
    sky = top * (1 - y) + bottom * y
    img = np.broadcast_to(sky, (height, width, 3)).copy()
    xs = np.arange(width)
    sx, sy, sr = rng.uniform(0.15, 0.85) * width, rng.uniform(0.12, 0.35) * height, rng.uniform(0.05, 0.09) * width
    yy, xx = np.mgrid[0:height, 0:width]
    img[(xx - sx) ** 2 + (yy - sy) ** 2 < sr ** 2] = (255, 235, 170)
    for layer in range(3):
        base = (0.45 + 0.15 * layer) * height
        ridge = base + sum(rng.uniform(8, 30) * np.sin(xs / width * rng.uniform(2, 9) + rng.uniform(0, 6))
                           for _ in range(3))
        colour = rng.uniform([30, 70, 30], [110, 150, 80]) * (1 - 0.25 * layer)
        below = yy > ridge[None, :]
        grain = rng.normal(0, 12, (height, width, 1))
        img[below] = np.clip(colour + grain, 0, 255)[below]
    pil = Image.fromarray(img.astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    hx, hy, hw = rng.uniform(0.2, 0.7) * width, 0.72 * height, rng.uniform(0.12, 0.2) * width
    draw.rectangle((hx, hy - 0.6 * hw, hx + hw, hy), fill=tuple(int(c) for c in rng.uniform(150, 240, 3)))
    draw.polygon([(hx - 0.1 * hw, hy - 0.6 * hw), (hx + 0.5 * hw, hy - 1.1 * hw), (hx + 1.1 * hw, hy - 0.6 * hw)],
                 fill=(120, 40, 30))
    draw.rectangle((hx + 0.4 * hw, hy - 0.3 * hw, hx + 0.6 * hw, hy), fill=(60, 40, 30))
    return pil.filter(ImageFilter.GaussianBlur(0.8))


def builtin_photos(folder: Path, count: int) -> list[Path]:
    """COUNT built-in photos written as PNGs into FOLDER (which must exist)."""
    paths = []
    for i in range(count):
        paths.append(folder / f"landscape{i}.png")
        photo(seed=i).save(paths[-1])
    return paths


def builtin_styles(folder: Path, count: int) -> list[Path]:
    """COUNT built-in paintings (swirl, mosaic, ember, meadow, ...) written as PNGs into FOLDER."""
    makers = [("swirl", lambda: painting(7, 256, PALETTES["swirl"], strokes=1400)), ("mosaic", lambda: mosaic(3, 256)),
              ("ember", lambda: painting(11, 256, PALETTES["ember"], strokes=1400)),
              ("meadow", lambda: painting(5, 256, PALETTES["meadow"], strokes=1400))]
    paths = []
    for i in range(count):
        name, make = makers[i % len(makers)]
        paths.append(folder / f"{name}{i // len(makers) or ''}.png")
        make().save(paths[-1])
    return paths


def text_example(folder: Path, size: int) -> tuple[Path, Path]:
    """(S, S′) for `nst text`, SIZE px: the letter "A" in black on white, and the same glyph filled with the
    ember painting inside a dark glow, written as PNGs into FOLDER."""
    font = ImageFont.load_default(round(size * 0.8))
    source = Image.new("L", (size, size), 255)
    ImageDraw.Draw(source).text((size / 2, size / 2), "A", fill=0, font=font, anchor="mm")
    inside = np.asarray(source) < 128
    glow = np.asarray(Image.fromarray((inside * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(size / 40)))
    fill = np.asarray(painting(11, size, PALETTES["ember"], strokes=max(200, size * 4)), dtype=float)
    ground = np.array([235.0, 230, 220]) * (1 - glow[..., None] / 255 * 0.8)
    styled = np.where(inside[..., None], fill, ground).astype(np.uint8)
    paths = folder / f"text-source-{size}.png", folder / f"text-styled-{size}.png"
    source.convert("RGB").save(paths[0])
    Image.fromarray(styled).save(paths[1])
    return paths
