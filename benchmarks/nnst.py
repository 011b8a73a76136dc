"""nnst against gatys, both at their defaults, in one process: the time of one image (runs alternate, so a busy
neighbour weighs on both; the ratio of the best runs is the figure), and the quality of the results on photo ×
painting pairs, side by side, by measures neither method optimises (nst.bench.measures: SSIM and edges against the
photo, colour and Magenta texture distances to the painting) and, when present, ../shared/tools/metric.py.

Usage: python benchmarks/nnst.py [--size 512] [--repeats 2] [--pairs 4] [--steps N] [--sheet FILE.jpg]
       [--metric PATH|none] [--out FILE]
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
from fast import METRIC, SHARED_STYLES, distances, load_metric
from PIL import Image, ImageDraw

import nst
from nst.bench import measures
from nst.core.images import load_image, to_pil

METHODS = ("gatys", "nnst")
PAIRS = [("astronaut", "starry_night"), ("coffee", "the_scream"), ("chelsea", "woman-with-hat-matisse"),
         ("content", "shipwreck"), ("astronaut", "shipwreck"), ("coffee", "starry_night")]


class Clock:
    """Run plugin: the time of every step."""

    name = "nnst-bench-clock"

    def __init__(self):
        self.times = []

    @nst.hookimpl
    def nst_on_step(self):
        self.times.append(time.perf_counter())


def run(method: str, content: Path, style: Path, size: int, steps: int | None, clock: Clock | None = None):
    """(seconds, result) of one nst.run at the method's defaults."""
    kwargs = {"steps": steps} if steps else {}
    start = time.perf_counter()
    result = nst.run(content, [style], method=method, size=size, device="cpu", note=lambda m: None,
                     plugins=[clock] if clock else [], **kwargs)
    return time.perf_counter() - start, result


def timing(args) -> list[dict]:
    """REPEATS alternating runs of each method on the assets' photo and painting, after a warm-up of each."""
    for method in METHODS:
        run(method, CONTENT, STYLE, 64, 2)
    rows = []
    for repeat in range(args.repeats):
        for method in METHODS:
            clock = Clock()
            seconds, result = run(method, CONTENT, STYLE, args.size, args.steps, clock)
            steps = np.diff(clock.times)
            rows.append({"repeat": repeat + 1, "method": method, "seconds": seconds, "steps": len(clock.times),
                         "s_per_step": float(np.median(steps)) if len(steps) else None,
                         "matching": result.summary.get("nnst matching", "–"),
                         "changed": result.summary.get("nnst rematch changed", "–")})
            print(rows[-1], flush=True)
    return rows


def quality(args, metric, folder: Path) -> tuple[list[dict], list[list[Image.Image]]]:
    photos = {p.stem: p for p in sample_photos(folder, ["astronaut", "coffee", "chelsea"])}
    photos["content"] = CONTENT
    styles = {p.stem: p for p in sorted(SHARED_STYLES.glob("*.jpg"))} if SHARED_STYLES.is_dir() else {}
    styles.setdefault("style", STYLE)
    pairs = [(p, s) for p, s in PAIRS if p in photos and s in styles][: args.pairs] or [("content", "style")]
    rows, sheet = [], []
    for photo, style in pairs:
        content, painting = photos[photo], styles[style]
        line = [to_pil(load_image(content)), to_pil(load_image(painting))]
        for method in METHODS:
            seconds, result = run(method, content, painting, args.size, args.steps)
            out = result.pil()
            row = {"pair": f"{photo} × {style}", "method": method, "seconds": seconds,
                   **measures.all_measures(result.image, load_image(content), load_image(painting))}
            if metric is not None:
                row["content_d"], row["style_d"], row["layout"] = distances(metric, out, content, painting)
            rows.append(row)
            line.append(out)
            print(row, flush=True)
        sheet.append(line)
    return rows, sheet


def contact_sheet(lines: list[list[Image.Image]], path: Path, height: int = 256) -> None:
    """One row per pair: photo, painting, then each method's result, all HEIGHT px high, labelled."""
    labels = ["photo", "painting", *METHODS]
    rows = []
    for line in lines:
        scaled = [img.resize((max(1, round(img.width * height / img.height)), height), Image.LANCZOS) for img in line]
        rows.append(scaled)
    width = max(sum(img.width + 4 for img in row) for row in rows)
    sheet = Image.new("RGB", (width, len(rows) * (height + 4) + 16), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = 0
    for img, label in zip(rows[0], labels):
        draw.text((x + 4, 2), label, fill=(0, 0, 0))
        x += img.width + 4
    for r, row in enumerate(rows):
        x = 0
        for img in row:
            sheet.paste(img, (x, 16 + r * (height + 4)))
            x += img.width + 4
    sheet.save(path, quality=90)


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def report(times: list[dict], rows: list[dict], args, with_metric: bool) -> str:
    best = {m: min(r["seconds"] for r in times if r["method"] == m) for m in METHODS}
    lines = [f"# nnst against gatys, {datetime.now():%Y-%m-%d %H:%M}", "",
             f"- cpu: {machine('cpu')}, {torch.get_num_threads()} threads, torch {torch.__version__}",
             f"- both at their defaults, {args.size} px{f', {args.steps} steps per scale' if args.steps else ''}; "
             "runs alternate (gatys, nnst, gatys, ...) in one process after a warm-up of each; the machine was shared, "
             "so compare ratios, not seconds", "",
             "| repeat | method | run s | steps | median s/step | nnst matching | neighbours changed per rematch |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['repeat']} | {r['method']} | {r['seconds']:.1f} | {r['steps']} | {_f(r['s_per_step'])} | "
              f"{r['matching']} | {r['changed']} |" for r in times]
    lines += ["", f"Best of {args.repeats}: gatys {best['gatys']:.1f} s, nnst {best['nnst']:.1f} s: "
              f"**nnst / gatys = {best['nnst'] / best['gatys']:.2f}**.", ""]
    if rows:
        lines += ["## Quality", "",
                  "SSIM and edges: against the photo (higher = closer); colour: sliced Wasserstein distance to the "
                  "painting's RGB; texture: Magenta style-vector distance (lower = closer)" +
                  ("; content / style / layout: ../shared/tools/metric.py (its style distance is a Gram distance, "
                   "which gatys optimises)." if with_metric else "."), "",
                  "| pair | method | s | SSIM | edges | colour | texture | content | style | layout |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['pair']} | {r['method']} | {r['seconds']:.0f} | {_f(r['ssim'])} | {_f(r['edges'])} | "
                  f"{_f(r['colour'])} | {_f(r['texture'])} | {_f(r.get('content_d'))} | {_f(r.get('style_d'))} | "
                  f"{_f(r.get('layout'))} |" for r in rows]
        lines += ["", "| method | SSIM | edges | colour | texture | content | style | layout |", "|---|---|---|---|---|---|---|---|"]
        for m in METHODS:
            sel = [r for r in rows if r["method"] == m]
            mean = lambda k: _f(np.mean([r[k] for r in sel]) if sel and all(r.get(k) is not None for r in sel) else None)  # noqa: E731
            lines.append(f"| {m} (mean) | " + " | ".join(mean(k) for k in ("ssim", "edges", "colour", "texture",
                                                                             "content_d", "style_d", "layout")) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=4, help="photo × painting pairs for the quality section (0: none)")
    parser.add_argument("--steps", type=int, default=None, help="steps per scale for both (default: their defaults)")
    parser.add_argument("--sheet", type=Path, default=None, help="contact sheet of the pairs (JPEG)")
    parser.add_argument("--metric", type=Path, default=METRIC, help="metric.py of ../shared/tools (optional)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    metric = load_metric(args.metric)
    times = timing(args)
    rows, sheet = [], []
    if args.pairs:
        with tempfile.TemporaryDirectory() as folder:
            rows, sheet = quality(args, metric, Path(folder))
    if args.sheet and sheet:
        contact_sheet(sheet, args.sheet)
    write_report(report(times, rows, args, metric is not None), args.out)


if __name__ == "__main__":
    main()
