"""The README's gallery: every picture under docs/gallery/, made by running nst as a user would.

    python docs/gallery.py [--styles ../shared/data/styles] [--out docs/gallery] [--threads 1] [--only PICTURE ...] [--keep]

1. Inputs, written into --out (they are committed, so the README's commands run on them): scikit-image's sample
   photos (astronaut, coffee, chelsea) at their own size, copies of the public-domain paintings in --styles at
   256 px (the Shipwreck at 512 px, for large strokes), a glyph and its effect for `nst text`, and a short clip panned over
   the cat for `nst video`.
2. Rows: each runs its `nst` commands, exactly as the README prints them, in a scratch folder holding the inputs
   (with NST_THREADS and OMP_NUM_THREADS set to --threads), and turns what they wrote into small JPEGs in --out.
   A row that cannot be made here (depth: its MiDaS weights are a download) is skipped with the reason.
3. The table between README.md's <!-- gallery --> markers is rewritten from ROWS: a row is listed when its
   pictures are in --out.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OUT = ROOT / "docs" / "gallery"
SMALL = 256  # long side of the pictures, and of most painting copies
QUALITY = 85
PHOTOS = ["astronaut", "coffee", "chelsea"]  # skimage.data
# --styles/NAME.jpg -> the long side of its copy (stroke.size=512 needs the painting at 512 px or more)
PAINTINGS = {"shipwreck": 512, "starry_night": SMALL, "the_scream": SMALL, "woman-with-hat-matisse": SMALL}

Make = Callable[[Path], Image.Image]  # the work folder -> a picture to show


@dataclass
class Row:
    title: str                 # the README's first column
    inputs: list[str]          # pictures of the inputs column (files in --out)
    commands: list[str]        # run in the work folder, as printed in the README
    results: dict[str, Make]   # picture in --out -> how it is made from what the commands wrote
    width: int = SMALL         # long side of the result pictures
    needs: Callable[[], str | None] = field(default=lambda: None)  # why it cannot be made here, or None


# --- pictures ---------------------------------------------------------------------------------------------------

def save(picture: Image.Image, path: Path, long_side: int = SMALL) -> None:
    """PICTURE as a JPEG at most LONG_SIDE px on its long side."""
    picture = picture.convert("RGB")
    picture.thumbnail((long_side, long_side), Image.LANCZOS)
    picture.save(path, quality=QUALITY, optimize=True)


def shown(name: str, crop: tuple[int, int, int, int] | None = None) -> Make:
    """The image NAME the commands wrote (or a CROP of it, left, top, right, bottom)."""
    def make(work: Path) -> Image.Image:
        picture = Image.open(work / name)
        return picture.crop(crop) if crop else picture
    return make


def strip(frames: list[Image.Image], height: int) -> Image.Image:
    """FRAMES side by side, each HEIGHT px high, 4 px apart on white."""
    frames = [f.resize((round(f.width * height / f.height), height), Image.LANCZOS) for f in frames]
    sheet = Image.new("RGB", (sum(f.width for f in frames) + 4 * (len(frames) - 1), height), "white")
    x = 0
    for f in frames:
        sheet.paste(f, (x, 0))
        x += f.width + 4
    return sheet


def video_frames(path: Path) -> list[Image.Image]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def video_strip(name: str, picks: tuple[int, ...] = (0, 5, 10, 15)) -> Make:
    return lambda work: strip([video_frames(work / name)[i] for i in picks], 96)


# --- inputs -----------------------------------------------------------------------------------------------------

def write_inputs(styles: Path, out: Path) -> None:
    import skimage.data

    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(out / f"{name}.jpg", quality=QUALITY, optimize=True)
    for name, long_side in PAINTINGS.items():
        source = styles / f"{name}.jpg"  # copied as NAME-small.jpg (a small copy, not the shared file itself)
        if not source.is_file():
            raise SystemExit(f"{source}: not found (give the folder of the paintings with --styles)")
        save(Image.open(source), out / f"{name}-small.jpg", long_side)
    write_glyphs(out)
    write_clip(out)


def write_glyphs(out: Path, size: int = 160) -> None:
    """text-source.png: an "A" in black on white; text-styled.jpg: the same A filled with a piece of Starry Night,
    outlined in dark blue, over a soft shadow on cream paper."""
    font = ImageFont.load_default(round(size * 0.85))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).text((size / 2, size / 2), "A", fill=255, font=font, anchor="mm")
    ImageChops.invert(mask).convert("RGB").save(out / "text-source.png", optimize=True)
    painting = Image.open(out / "starry_night-small.jpg").convert("RGB")
    fill = painting.crop((0, 0, painting.height, painting.height)).resize((size, size), Image.LANCZOS)
    outline = mask.filter(ImageFilter.MaxFilter(5))
    shadow = ImageChops.offset(outline, 4, 4).filter(ImageFilter.GaussianBlur(4))
    styled = Image.new("RGB", (size, size), (240, 232, 214))
    styled.paste((120, 110, 95), mask=shadow)
    styled.paste((20, 30, 70), mask=outline)
    styled.paste(fill, mask=mask)
    styled.save(out / "text-styled.jpg", quality=95)


def write_clip(out: Path, frames: int = 16, size: tuple[int, int] = (240, 160)) -> None:
    """clip.mp4: 16 frames (12 per second) panning left to right over the cat while zooming in a little; clip.jpg:
    four of them side by side."""
    import av
    import numpy as np
    import skimage.data

    cat = Image.fromarray(skimage.data.chelsea())  # 451 x 300
    pictures = []
    for i in range(frames):
        t = i / (frames - 1)
        w, h = 380 - 80 * t, 253 - 53 * t
        x, y = (cat.width - w) * t, (cat.height - h) * (0.3 + 0.4 * t)
        pictures.append(cat.resize(size, Image.LANCZOS, box=(x, y, x + w, y + h)))
    with av.open(str(out / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"crf": "20"}
        for picture in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")))
        container.mux(stream.encode())
    save(strip([pictures[i] for i in (0, 5, 10, 15)], 96), out / "clip.jpg", 1024)


# --- rows -------------------------------------------------------------------------------------------------------

def depth_weights() -> str | None:
    """None when the MiDaS weights are in the cache (`nst weights` says cached), else why the row is skipped."""
    listing = subprocess.run(["nst", "weights"], capture_output=True, text=True).stdout
    status = re.search(r"^midas-small\s+(\S+)", listing, re.M)
    if status and status.group(1) in ("cached", "local"):
        return None
    return "the MiDaS weights (midas-small) are a download and are not in the cache here (nst weights)"


ROWS = [
    Row("**gatys** (the default): Gatys et al. 2016, L-BFGS on VGG19",
        ["chelsea.jpg", "starry_night-small.jpg"],
        ["nst run chelsea.jpg starry_night-small.jpg -o gatys.png --size 256 --steps 80"],
        {"gatys.jpg": shown("gatys.png")}),
    Row("**nnst**: neural neighbours (Kolkin et al. 2022)",
        ["coffee.jpg", "the_scream-small.jpg"],
        ["nst run coffee.jpg the_scream-small.jpg --method nnst -o nnst.png --size 256 --steps 40"],
        {"nnst.jpg": shown("nnst.png")}),
    Row("**arbitrary**: any painting, one forward pass (Ghiasi et al. 2017)",
        ["coffee.jpg", "woman-with-hat-matisse-small.jpg"],
        ["nst run coffee.jpg woman-with-hat-matisse-small.jpg --method arbitrary -o arbitrary.png --size 256"],
        {"arbitrary.jpg": shown("arbitrary.png")}),
    Row("**johnson**, multi-style: two of multistyle26's 26 presets",
        ["coffee.jpg"],
        ["nst run coffee.jpg --method johnson --model multistyle26 --set johnson.style=blue-swirls -o blue-swirls.png "
         "--size 256",
         "nst run coffee.jpg --method johnson --model multistyle26 --set johnson.style=stained-glass "
         "-o stained-glass.png --size 256"],
        {"johnson-blue-swirls.jpg": shown("blue-swirls.png"), "johnson-stained-glass.jpg": shown("stained-glass.png")}),
    Row("**semantic**: each region of the photo from its partner region of the painting (automatic regions)",
        ["astronaut.jpg", "the_scream-small.jpg"],
        ["nst run astronaut.jpg the_scream-small.jpg --method arbitrary --plugin semantic --set semantic.save_masks=regions "
         "-o semantic.png --size 256"],
        {"semantic-regions.jpg": lambda work: strip([Image.open(work / "regions" / name) for name in (
            "content_regions.png", "style1_regions.png")], 128), "semantic.jpg": shown("semantic.png")}),
    Row("**stroke**: stroke size, the painting's strokes as at 128 px and at 512 px",
        ["chelsea.jpg", "shipwreck-small.jpg"],
        ["nst run chelsea.jpg shipwreck-small.jpg --plugin stroke --set stroke.size=128 -o stroke-128.png --size 256 "
         "--steps 40",
         "nst run chelsea.jpg shipwreck-small.jpg --plugin stroke --set stroke.size=512 -o stroke-512.png --size 256 "
         "--steps 40"],
        {"stroke-128.jpg": shown("stroke-128.png"), "stroke-512.jpg": shown("stroke-512.png")}),
    Row("**depth**: keep near and far apart (Liu et al. 2017)",
        ["astronaut.jpg", "the_scream-small.jpg"],
        ["nst run astronaut.jpg the_scream-small.jpg --plugin depth --set depth.save=depth -o depth.png --size 256 "
         "--steps 100"],
        {"depth.jpg": shown("depth.png"), "depth-maps.jpg": lambda work: strip(
            [Image.open(work / "depth" / name) for name in ("depth_content.png", "depth_result.png")], 128)},
        needs=depth_weights),
    Row("**analogy**: deep image analogy (Liao et al. 2017), the photo's structure with the painting's look",
        ["astronaut.jpg", "woman-with-hat-matisse-small.jpg"],
        ["nst analogy astronaut.jpg woman-with-hat-matisse-small.jpg -o analogy --size 224"],
        {"analogy.jpg": shown("analogy/A_prime.png"), "analogy-b.jpg": shown("analogy/B.png")}),
    Row("**text**: a text effect from one example glyph (Yang et al. 2017)",
        ["text-source.png", "text-styled.jpg"],
        ['nst text --source text-source.png --styled text-styled.jpg --text "nst" -o text.png --size 256'],
        {"text.jpg": shown("text.png")}),
    Row("**video**: `nst video` with temporal consistency (arbitrary, every 5th frame)",
        ["clip.jpg", "the_scream-small.jpg"],
        ["nst video clip.mp4 the_scream-small.jpg -o video.mp4"],
        {"video.jpg": video_strip("video.mp4")}, width=1024),
    Row("**print size**: 1536 px in 9 tiles under a 1 GB budget; a 256 px crop at 1:1",
        ["astronaut.jpg", "starry_night-small.jpg"],
        ["nst run astronaut.jpg starry_night-small.jpg --method arbitrary -o print.png --size 1536 --max-memory 1GB"],
        {"print.jpg": shown("print.png"), "print-crop.jpg": shown("print.png", (382, 1027, 638, 1283))}),
]


def run_row(row: Row, work: Path, out: Path, env: dict) -> None:
    for command in row.commands:
        start = time.perf_counter()
        print(f"  $ {command}", flush=True)
        subprocess.run(shlex.split(command), cwd=work, env=env, check=True)
        print(f"    {time.perf_counter() - start:.0f} s", flush=True)
    for name, make in row.results.items():
        save(make(work), out / name, row.width)


# --- the README's table -----------------------------------------------------------------------------------------

def table(out: Path = OUT) -> str:
    """The markdown table of the rows whose pictures are all in OUT."""
    def img(name: str, **attributes) -> str:
        extra = "".join(f' {key}="{value}"' for key, value in attributes.items())
        return f'<img src="{out.relative_to(ROOT).as_posix()}/{name}" alt="{Path(name).stem}"{extra}>'

    lines = ["| method | inputs | result | command (in docs/gallery/) |", "|---|---|---|---|"]
    for row in ROWS:
        if all((out / name).is_file() for name in [*row.inputs, *row.results]):
            inputs = " ".join(img(name, height=96) for name in row.inputs)
            results = " ".join(img(name) for name in row.results)
            commands = "<br>".join(f"`{command}`" for command in row.commands)
            lines.append(f"| {row.title} | {inputs} | {results} | {commands} |")
    return "\n".join(lines)


def rewrite(text: str, out: Path = OUT) -> str:
    pattern = re.compile(r"(<!-- gallery -->\n).*?(<!-- /gallery -->)", re.S)
    if not pattern.search(text):
        raise SystemExit("README.md has no <!-- gallery --> ... <!-- /gallery --> markers")
    return pattern.sub(lambda m: m.group(1) + table(out) + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", type=Path, default=ROOT.parent / "shared" / "data" / "styles",
                        help="folder of the paintings (default ../shared/data/styles from the repository root)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the pictures (default docs/gallery)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every nst command (default 1)")
    parser.add_argument("--only", nargs="+", metavar="PICTURE",
                        help="make only the rows that make these pictures (e.g. gatys.jpg)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (full-size results) and say where")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NST_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    began = time.perf_counter()
    write_inputs(args.styles, out)
    work = Path(tempfile.mkdtemp(prefix="nst-gallery-"))
    for path in out.iterdir():
        if path.is_file() and not any(path.name in row.results for row in ROWS):
            shutil.copy(path, work / path.name)
    made, skipped = [], []
    for row in ROWS:
        if args.only and not set(args.only) & set(row.results):
            continue
        reason = row.needs()
        if reason:
            print(f"skipped {', '.join(row.results)}: {reason}")
            skipped.append(row)
            continue
        start = time.perf_counter()
        print(f"{', '.join(row.results)}:", flush=True)
        run_row(row, work, out, env)
        made.append((row, time.perf_counter() - start))
        print(f"  row done in {made[-1][1]:.0f} s", flush=True)
    if out == OUT:
        README.write_text(rewrite(README.read_text(encoding="utf-8"), out), encoding="utf-8")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work)
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    for row, seconds in made:
        print(f"{seconds:6.0f} s  {', '.join(row.results)}")
    print(f"{len(made)} rows made, {len(skipped)} skipped, in {time.perf_counter() - began:.0f} s "
          f"({args.threads} thread(s)); {out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
