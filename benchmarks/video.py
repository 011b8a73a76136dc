"""nst video: frames/s and flicker with and without temporal consistency, per method.

The clip: assets/content.jpg panned by (2, 1) px per frame at --size on the long side, with mild Gaussian
sensor noise (sigma 3 levels), as a folder of PNG frames. Each row is one `stylize_video` call writing PNG
frames (so video encoding is not timed), after an untimed 2-frame warm-up call per method: frames/s over the whole call (flow, blending, PNG writing and the
final flicker measure included); flicker = the mean warping error between consecutive output frames on the
pixels whose motion is reliable (mean squared RGB difference, values in 0..1; flow from the input frames).
johnson uses a Johnson TransformerNet (width 32) with random weights: its speed is the trained network's;
arbitrary the Magenta networks with --style (default: Starry Night from ../shared/data/styles, else
assets/style.jpg); gatys runs at --gatys-size with --gatys-steps L-BFGS steps per frame.
Usage: python benchmarks/video.py [--size 512] [--frames 12] [--methods johnson arbitrary gatys] [--out FILE]
"""
from __future__ import annotations

import argparse
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from common import CONTENT, ROOT, STYLE, machine, write_report
from PIL import Image

from nst.core.johnson import TransformerNet, save_model
from nst.plugins.video.engine import stylize_video

STARRY = ROOT.parent / "shared" / "data" / "styles" / "starry_night.jpg"
SHIFT = (2, 1)


def make_clip(folder: Path, size: int, frames: int) -> Path:
    """FRAMES PNGs of the content photo panned by SHIFT px per frame, long side SIZE, sensor noise sigma 3."""
    photo = Image.open(CONTENT).convert("RGB")
    w = size if photo.width >= photo.height else round(size * photo.width / photo.height)
    h = round(w * photo.height / photo.width)
    big = np.asarray(photo.resize((w + frames * SHIFT[0] + 8, h + frames * SHIFT[1] + 8), Image.Resampling.BICUBIC))
    rng = np.random.default_rng(0)
    clip = folder / "clip"
    clip.mkdir(parents=True)
    for i in range(frames):
        x, y = 4 + i * SHIFT[0], 4 + i * SHIFT[1]
        noisy = big[y:y + h, x:x + w].astype(np.float32) + rng.normal(0, 3, (h, w, 3))
        Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)).save(clip / f"f{i:04d}.png")
    return clip


def row(clip: Path, out: Path, temporal: bool, **kwargs) -> tuple[float, float, int]:
    """(frames/s, flicker, frames) of one stylize_video call."""
    result = stylize_video(clip, kwargs.pop("styles", ()), out, temporal=temporal, note=lambda m: None, **kwargs)
    return result.frames / result.seconds, result.flicker, result.frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="long side of the clip for johnson and arbitrary, px")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--methods", nargs="+", default=["johnson", "arbitrary", "gatys"],
                        choices=["johnson", "arbitrary", "gatys"])
    parser.add_argument("--gatys-size", type=int, default=128)
    parser.add_argument("--gatys-steps", type=int, default=50)
    parser.add_argument("--gatys-frames", type=int, default=4)
    parser.add_argument("--style", type=Path, default=STARRY if STARRY.is_file() else STYLE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    lines = [f"# nst video ({args.device}: {machine(args.device)}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, {datetime.now():%Y-%m-%d})", "",
             f"Clip: assets/content.jpg panned by {SHIFT} px/frame, sensor noise sigma 3; style {args.style.name}; "
             "flow DIS. Flicker: mean warping error (lower is steadier).", "",
             "| method | size | frames | temporal | frames/s | s/frame | flicker |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = save_model(TransformerNet(width=32).eval(), tmp / "random.safetensors", {"style": "random"})
        for method in args.methods:
            gatys = method == "gatys"
            size, frames = (args.gatys_size, args.gatys_frames) if gatys else (args.size, args.frames)
            clip = make_clip(tmp / method, size, frames)
            kwargs = {"johnson": dict(model=str(model)), "arbitrary": dict(styles=[args.style]),
                      "gatys": dict(styles=[args.style], steps=args.gatys_steps)}[method]
            row(make_clip(tmp / method / "warm", 32, 2), tmp / method / "warm-out", False, method=method,
                device=args.device, **dict(kwargs))  # loads weights, exports ONNX graphs: not timed
            for temporal in (False, True):
                out = tmp / method / f"out-{temporal}"
                fps, measure, count = row(clip, out, temporal, method=method, device=args.device, **dict(kwargs))
                lines.append(f"| {method} | {size} | {count} | {'yes' if temporal else 'no'} | {fps:.2f} | "
                             f"{1 / fps:.2f} | {measure:.5f} |")
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
