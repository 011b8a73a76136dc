"""`nst train --arch light` against the default Johnson network on the same training: both are trained on the
same photos, painting, steps and seed, then stylise photos they did not see at 512 px. Reported: CPU ms per
image (nst.run, warm), and with ../shared/tools/metric.py the content and style distances of the results; a
contact sheet (photo, johnson, light per row) is written for looking.

Training photos: --data, or scikit-image's sample photos (the held-out ones are the project's
assets/content.jpg and, with scikit-image, its astronaut). Painting: --style (default: the first of ../shared/data/styles,
else assets/style.jpg).
Usage: python benchmarks/light.py [--steps 300] [--size 192] [--data DIR] [--style IMG] [--sheet PNG] [--out FILE]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from common import CONTENT, STYLE, machine, sample_photos, write_report
from fast import METRIC, SHARED_STYLES, load_metric, timed_ms
from PIL import Image

import nst

TRAIN_SAMPLES = ("chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
HELD_OUT = "astronaut"
ARCHS = ("johnson", "light")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps for each network")
    parser.add_argument("--size", type=int, default=192, help="training crop size, px")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--run-size", type=int, default=512, help="long side of the results, px")
    parser.add_argument("--runs", type=int, default=5, help="timed nst.run calls per photo after one warm-up")
    parser.add_argument("--data", type=Path, help="training photos (default: scikit-image's samples)")
    parser.add_argument("--style", type=Path, help="the painting")
    parser.add_argument("--metric", type=Path, default=METRIC, help="metric.py of ../shared/tools (distances; optional)")
    parser.add_argument("--sheet", type=Path, help="write the contact sheet here")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    style = args.style or (sorted(SHARED_STYLES.glob("*.jpg"))[0] if SHARED_STYLES.is_dir() else STYLE)
    metric = load_metric(args.metric)
    rows, sheet = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "photos"
            data.mkdir()
            if not sample_photos(data, TRAIN_SAMPLES):
                raise SystemExit("no training photos: pass --data DIR, or pip install scikit-image for its samples")
        held_out = [CONTENT, *sample_photos(tmp, [HELD_OUT])]
        models = {}
        for arch in ARCHS:
            start = time.perf_counter()
            models[arch] = tmp / f"{arch}.safetensors"
            nst.train(style, data, models[arch], steps=args.steps, size=args.size, batch_size=args.batch_size,
                      arch=arch, workers=0, device="cpu", seed=0, note=lambda m: None)
            rows.append(dict(kind="train", arch=arch, seconds=time.perf_counter() - start,
                             mb=models[arch].stat().st_size / 2 ** 20))
        for photo in held_out:
            content = Image.open(photo).convert("RGB")
            k = args.run_size / max(content.size)
            content = content.resize((round(content.width * k), round(content.height * k)), Image.LANCZOS)
            content.save(tmp / "content.png")
            line = [content]
            for arch in ARCHS:
                ms, _, out = timed_ms(lambda: nst.stylize(tmp / "content.png", method="johnson", model=models[arch],
                                                       size=args.run_size, device="cpu", note=lambda m: None), args.runs)
                row = dict(kind="run", arch=arch, photo=photo.stem, ms=ms)
                if metric is not None:
                    row["content"] = metric.content_distance(out, content)
                    row["style"] = metric.style_distance(out, Image.open(style).convert("RGB"))
                rows.append(row)
                line.append(out)
            sheet.append(line)
    if args.sheet:
        h = 256
        tiles = [[im.resize((round(im.width * h / im.height), h)) for im in line] for line in sheet]
        width = max(sum(t.width for t in line) for line in tiles)
        canvas = Image.new("RGB", (width, h * len(tiles)), "white")
        for y, line in enumerate(tiles):
            x = 0
            for t in line:
                canvas.paste(t, (x, y * h))
                x += t.width
        canvas.save(args.sheet)
    write_report(report(rows, args, style, metric is not None), args.out)


def report(rows: list[dict], args, style: Path, with_metric: bool) -> str:
    lines = [f"# `--arch light` against the Johnson network, same training, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
             "", f"- cpu: {machine('cpu')}, torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"- training: nst.train on the CPU, {args.steps} steps, {args.size} px crops, batch {args.batch_size}, "
             f"seed 0, painting {style.name}, the same photos for both",
             f"- runs: nst.run --method johnson at {args.run_size} px on photos not in the training (default backend: "
             f"onnxruntime when installed), median of {args.runs} warm calls",
             "- distances from ../shared/tools/metric.py: content (lower = closer to the photo), style (lower = closer "
             "to the painting)" if with_metric else "- distances not measured (../shared/tools/metric.py not found)", "",
             "| arch | training s | model MB | ms / image | content | style | photos |", "|---" * 7 + "|"]
    for arch in ARCHS:
        train = next(r for r in rows if r["kind"] == "train" and r["arch"] == arch)
        runs = [r for r in rows if r["kind"] == "run" and r["arch"] == arch]
        m = (f"{np.mean([r['content'] for r in runs]):.3f} | {np.mean([r['style'] for r in runs]):.3f}"
             if with_metric else "- | -")
        lines.append(f"| {arch} | {train['seconds']:.0f} | {train['mb']:.2f} | {np.mean([r['ms'] for r in runs]):.0f} "
                     f"| {m} | {len(runs)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
