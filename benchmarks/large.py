"""Large output: peak memory and time against size, tiled and untiled, with the planner's estimate, a seam
score and the tiled-vs-untiled difference.

Each configuration runs in a fresh child process (this script with --child), so its peak memory is its own.
Methods: gatys (real embedded VGG19, --steps steps, one scale) and arbitrary (the embedded Magenta network,
torch backend). Tiled rows use --max-memory (the planner picks the tiles) or --tile.
Seam score: per-column mean |horizontal gradient|, max over median (and the same per row); a tile border
that shows would stand out as a column far above the median. diff: max and mean |tiled - untiled| (0..1).
Usage: python benchmarks/large.py [--methods gatys arbitrary] [--sizes 512 1024] [--steps 2]
       [--max-memory 2GB | --tile 256] [--untiled-up-to 2048] [--devices auto] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from common import CONTENT, MB, STYLE, StepClock, devices, machine, memory_peak, run_child, synchroniser, write_report

import nst


def seam_score(image: np.ndarray) -> float:
    """(H, W, 3) floats: the largest of (max / median) of the per-column and per-row mean |gradient|."""
    gx = np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))
    gy = np.abs(np.diff(image, axis=0)).mean(axis=(1, 2))
    return float(max(gx.max() / max(np.median(gx), 1e-8), gy.max() / max(np.median(gy), 1e-8)))


def child(method: str, device: str, size: int, steps: int, budget: str | None, tile: int, out: str) -> dict:
    """Measure one configuration in this process; the result image goes to OUT (.npy) for the parent."""
    sync = synchroniser(device)
    clock = StepClock(sync)
    run = dict(method=method, size=size, device=device, note=lambda m: None, max_memory=budget, tile=tile)
    if method == "gatys":
        run.update(steps=steps, scales=1, plugins=[clock])
    else:
        run.update(backend="torch")
    start = time.perf_counter()
    result = nst.run(CONTENT, [STYLE], **run)
    sync()
    elapsed = time.perf_counter() - start
    np.save(out, result.image[0].permute(1, 2, 0).numpy())
    plan = result.plan
    step_s = (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1) if len(clock.times) > 1 else elapsed
    return dict(method=method, device=device, size=result.summary["size"], run_s=elapsed, step_s=step_s,
                peak_mb=memory_peak(device) / MB, estimate_mb=plan.peak / MB if plan else float("nan"),
                estimate_s=plan.seconds if plan else float("nan"), tiles=plan.scales[-1].tiles if plan else 1,
                cell=plan.scales[-1].cell if plan else 0, machine=machine(device), threads=torch.get_num_threads())


def measure(method: str, device: str, size: int, steps: int, budget: str | None, tile: int, out: Path) -> dict:
    args = ["--methods", method, "--devices", device, "--sizes", str(size), "--steps", str(steps), "--tile", str(tile),
            "--image", str(out)] + (["--max-memory", budget] if budget else [])
    return run_child(__file__, args)


def compare(row: dict, image: np.ndarray, reference: np.ndarray | None) -> None:
    row["seam"] = seam_score(image)
    if reference is not None and reference.shape == image.shape:
        row["diff_max"], row["diff_mean"] = float(np.abs(image - reference).max()), float(np.abs(image - reference).mean())


def report(rows: list[dict], args) -> str:
    machines = sorted({f"{r['device']}: {r['machine']} ({r['threads']} threads)" for r in rows})
    lines = [f"# Large output benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "", *[f"- {m}" for m in machines],
             f"- gatys: {args.steps} steps at one scale (s/step between the first and last step); arbitrary: one "
             "tiled or untiled pass (s = the whole call)",
             "- peak MB: CPU peak RSS of the process (CUDA: max allocated); estimate: the planner's peak; est/meas: their ratio",
             "- seam: max/median of per-column and per-row mean |gradient| (tile borders would show as outliers); "
             "diff: |tiled - untiled| max / mean in 0..1", "",
             "| method | device | size | tiles | cell px | s/step | run s | plan s | peak MB | estimate MB | est/meas | seam | diff max / mean |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = f"{r['diff_max']:.2g} / {r['diff_mean']:.2g}" if "diff_max" in r else "-"
        lines.append(f"| {r['method']} | {r['device']} | {r['size']} | {r['tiles']} | {r['cell'] or '-'} | {r['step_s']:.2f} | "
                     f"{r['run_s']:.1f} | {r['estimate_s']:.0f} | {r['peak_mb']:.0f} | {r['estimate_mb']:.0f} | "
                     f"{r['estimate_mb'] / r['peak_mb']:.2f} | {r['seam']:.2f} | {diff} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["gatys", "arbitrary"], choices=["gatys", "arbitrary"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--steps", type=int, default=2, help="gatys steps per run")
    parser.add_argument("--max-memory", default="2GB", help="budget of the tiled rows (the planner picks the tiles)")
    parser.add_argument("--tile", type=int, default=0, help="tile side of the tiled rows instead of planning")
    parser.add_argument("--untiled-up-to", type=int, default=1024, help="also run untiled up to this size")
    parser.add_argument("--devices", nargs="+", default=["auto"], help="auto = cpu, plus cuda when available")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        budget = args.max_memory if args.max_memory != "none" else None
        print(json.dumps(child(args.methods[0], args.devices[0], args.sizes[0], args.steps, budget, args.tile, args.image)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices(args.devices):
            for method in args.methods:
                for size in args.sizes:
                    reference = None
                    if size <= args.untiled_up_to:
                        path = Path(tmp) / f"{method}-{size}-whole.npy"
                        rows.append(measure(method, device, size, args.steps, "none", 0, path))
                        reference = np.load(path)
                        compare(rows[-1], reference, None)
                    path = Path(tmp) / f"{method}-{size}-tiled.npy"
                    rows.append(measure(method, device, size, args.steps, args.max_memory, args.tile, path))
                    compare(rows[-1], np.load(path), reference)
                    print(f"done: {method} {device} {size}: peak {rows[-1]['peak_mb']:.0f} MB", file=sys.stderr)
    write_report(report(rows, args), args.out)


if __name__ == "__main__":
    main()
