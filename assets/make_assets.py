"""Generate the example images in ``assets/``.

* ``content.jpg``: scikit-image's ``chelsea`` sample photo, long side 384 px.
* ``style.jpg``: a procedural, painting-like texture of bold swirling strokes (``nst.bench.samples.painting``).

* ``nst/serve/static/examples/``: 256 px copies of both, the studio's built-in examples.

Run with ``python assets/make_assets.py``.
"""
from pathlib import Path

from PIL import Image
from skimage import data

from nst.bench.samples import painting

HERE = Path(__file__).resolve().parent
SIZE = 384


def make_content(path):
    """Save chelsea resized so its long side is SIZE px."""
    img = Image.fromarray(data.chelsea())
    scale = SIZE / max(img.size)
    new = (round(img.width * scale), round(img.height * scale))
    img.resize(new, Image.LANCZOS).save(path, quality=90)


def make_style(path):
    """The swirling-strokes painting of nst's built-in image set (fixed seed)."""
    painting(seed=7, size=SIZE).save(path, quality=90)


def make_studio_examples(folder):
    """The studio's built-in examples (nst serve): both images with a 256 px long side."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("content.jpg", "style.jpg"):
        img = Image.open(HERE / name)
        scale = 256 / max(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(folder / name, quality=90)


def main():
    """Write both example images next to this script, and the studio's small copies into the package."""
    make_content(HERE / "content.jpg")
    make_style(HERE / "style.jpg")
    make_studio_examples(HERE.parent / "nst" / "serve" / "static" / "examples")


if __name__ == "__main__":
    main()
