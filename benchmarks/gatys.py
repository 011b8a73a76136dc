"""Seconds per step and peak memory of a Gatys run, per device x size x optimizer.

Each configuration runs in a fresh child process (this script with --child), so its peak memory is its own.
Real embedded VGG19 weights, default settings otherwise, content/style from assets/.
Usage: python benchmarks/gatys.py [--sizes 256 512] [--steps 10] [--devices auto] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from common import (
    CONTENT,
    MB,
    STYLE,
    StepClock,
    devices,
    machine,
    memory_now,
    memory_peak,
    run_child,
    synchroniser,
    write_report,
)

import nst
from nst.core.encoder import load_vgg
from nst.host import default_host


def child(device: str, size: int, steps: int, optimizer: str) -> dict:
    """Measure one configuration in this process; returns the figures for the parent."""
    sync = synchroniser(device)
    weights = load_vgg(default_host().weights(), "vgg19", progress=False)  # baseline: imports + one copy of the
    base = memory_now(device)
    del weights  # weights, which each run loads again
    run = dict(size=size, device=device, optimizer=optimizer, note=lambda m: None)
    nst.run(CONTENT, [STYLE], steps=2, **run)  # warm-up
    clock = StepClock(sync)
    sync()
    start = time.perf_counter()
    result = nst.run(CONTENT, [STYLE], steps=steps, plugins=[clock], **run)
    sync()
    elapsed = time.perf_counter() - start
    peak = memory_peak(device)
    return dict(device=device, optimizer=optimizer, size=result.summary["size"],
                step_s=(clock.times[-1] - clock.times[0]) / (steps - 1), run_s=elapsed,
                peak_mb=peak / MB, increase_mb=(peak - base) / MB, torch=torch.__version__,
                threads=torch.get_num_threads(), machine=machine(device))


def measure(device: str, size: int, steps: int, optimizer: str) -> dict:
    """Run one configuration in a fresh interpreter."""
    return run_child(__file__, ["--devices", device, "--sizes", str(size), "--steps", str(steps), "--optimizer", optimizer])


def report(rows: list[dict], steps: int) -> str:
    machines = sorted({f"{r['device']}: {r['machine']}" for r in rows})
    lines = [f"# Gatys benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             *[f"- {m}" for m in machines],
             f"- {steps} steps after a 2-step warm-up; s/step = (time at step {steps} - time at step 1) / {steps - 1}, "
             "setup excluded; run s = the whole nst.run call (image and weights loading included)",
             "- peak MB: CPU peak RSS of the process; CUDA torch.cuda.max_memory_allocated. "
             "increase MB: peak minus the figure after imports and weights load", "",
             "| device | optimizer | size | s/step | run s | peak MB | increase MB | torch | CPU threads |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['device']} | {r['optimizer']} | {r['size']} | {r['step_s']:.3f} | {r['run_s']:.1f} | "
              f"{r['peak_mb']:.0f} | {r['increase_mb']:.0f} | {r['torch']} | {r['threads']} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="output long sides, px")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (at least 2)")
    parser.add_argument("--devices", nargs="+", default=["auto"], help="auto = cpu, plus cuda when available")
    parser.add_argument("--optimizer", nargs="+", default=["lbfgs"], choices=["lbfgs", "adam"])
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.child:
        print(json.dumps(child(args.devices[0], args.sizes[0], args.steps, args.optimizer[0])))
        return
    rows = []
    for device in devices(args.devices):
        for size in args.sizes:
            for optimizer in args.optimizer:
                rows.append(measure(device, size, args.steps, optimizer))
                print(f"done: {device} {size} {optimizer}: {rows[-1]['step_s']:.3f} s/step", file=sys.stderr)
    write_report(report(rows, args.steps), args.out)


if __name__ == "__main__":
    main()
