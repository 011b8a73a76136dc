"""Generate the example images in ``assets/``.

* ``content.jpg``: scikit-image's ``chelsea`` sample photo, long side 384 px.
* ``style.jpg``: a procedural, painting-like texture of bold swirling strokes.

Run with ``python assets/make_assets.py``.
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

HERE = Path(__file__).resolve().parent
SIZE = 384
PALETTE = np.array([
    (16, 32, 96), (30, 70, 170), (60, 130, 210), (245, 200, 30),
    (250, 150, 20), (220, 80, 20), (250, 235, 120), (20, 110, 120),
], dtype=float)


def make_content(path):
    """Save chelsea resized so its long side is SIZE px."""
    img = Image.fromarray(data.chelsea())
    scale = SIZE / max(img.size)
    new = (round(img.width * scale), round(img.height * scale))
    img.resize(new, Image.LANCZOS).save(path, quality=90)


def flow(p, vortices):
    """Unit flow direction at points ``p`` (N, 2) from a sum of vortices."""
    v = np.tile([0.3, 0.1], (len(p), 1))
    for cx, cy, s, r in vortices:
        d = p - (cx, cy)
        w = s * np.exp(-(d ** 2).sum(1) / (2 * r * r)) / r
        v += w[:, None] * np.stack([-d[:, 1], d[:, 0]], 1)
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)


def make_style(path, seed=7, n_strokes=3000, steps=7, step=3.0):
    """Paint short strokes along streamlines of a random vortex field."""
    rng = np.random.default_rng(seed)
    vortices = [(rng.uniform(0, SIZE), rng.uniform(0, SIZE),
                 rng.choice([-1, 1]) * rng.uniform(1.5, 3),
                 rng.uniform(40, 90))
                for _ in range(6)]
    img = Image.new("RGB", (SIZE, SIZE), (25, 50, 120))
    draw = ImageDraw.Draw(img)
    # Smooth colour-region field so strokes form coherent colour areas.
    k = rng.normal(size=(3, 2)) * 0.02
    phase = rng.uniform(0, 2 * np.pi, 3)
    for batch in range(3):  # later batches are thinner and sit on top
        p = rng.uniform(-10, SIZE + 10, (n_strokes, 2))
        pts = [p.copy()]
        for _ in range(steps):
            p = p + step * flow(p, vortices)
            pts.append(p.copy())
        pts = np.stack(pts, 1)  # (n, steps+1, 2)
        region = np.sin(pts[:, 0] @ k.T + phase).sum(1)  # in [-3, 3]
        idx = np.clip(((region + 3) / 6 * len(PALETTE)
                       + rng.normal(0, 0.7, n_strokes)).astype(int),
                      0, len(PALETTE) - 1)
        for line, i in zip(pts, idx):
            col = np.clip(PALETTE[i] + rng.normal(0, 14, 3), 0, 255)
            dark = tuple(int(c) for c in col * 0.5)
            width = int(rng.integers(4, 10)) - batch
            xy = [tuple(q) for q in line]
            bright = tuple(int(c) for c in col)
            for fill, w in ((dark, width + 2), (bright, width)):
                draw.line(xy, fill=fill, width=w, joint="curve")
                for x, y in (xy[0], xy[-1]):  # round brush caps
                    r = w / 2
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    img.save(path, quality=90)


def main():
    """Write both example images next to this script."""
    make_content(HERE / "content.jpg")
    make_style(HERE / "style.jpg")


if __name__ == "__main__":
    main()
