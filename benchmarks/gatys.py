"""Seconds per step and peak memory of a Gatys run, per device x size x optimizer.

Each configuration runs in a fresh child process (this script with --child), so its peak memory is its own.
Real embedded VGG19 weights, default settings otherwise, content/style from assets/.
Usage: python benchmarks/gatys.py [--sizes 256 512] [--steps 10] [--devices auto] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

import nst
from nst.api import default_host
from nst.core.encoder import load_vgg

ROOT = Path(__file__).resolve().parent.parent
CONTENT, STYLE = ROOT / "assets" / "content.jpg", ROOT / "assets" / "style.jpg"
MB = 2 ** 20


class StepClock:
    """Run-hook plugin: perf_counter() at every step, after the device has finished that step."""

    name = "bench-clock"

    def __init__(self, sync):
        self.sync, self.times = sync, []

    @nst.hookimpl
    def nst_on_step(self, step):
        self.sync()
        self.times.append(time.perf_counter())


def proc_field(path: str, key: str) -> str:
    """The value of the first 'KEY: value' line of a /proc file (Linux)."""
    return next(l.split(":", 1)[1].strip() for l in Path(path).read_text().splitlines() if l.startswith(key))


def child(device: str, size: int, steps: int, optimizer: str) -> dict:
    """Measure one configuration in this process; returns the figures for the parent."""
    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    weights = load_vgg(default_host().weights(), "vgg19", progress=False)  # baseline: imports + one copy of the
    base = torch.cuda.memory_allocated(device) if cuda else int(proc_field("/proc/self/status", "VmRSS").split()[0]) * 1024
    del weights  # weights, which each run loads again
    run = dict(size=size, device=device, optimizer=optimizer, note=lambda m: None)
    nst.run(CONTENT, [STYLE], steps=2, **run)  # warm-up
    clock = StepClock(sync)
    sync()
    start = time.perf_counter()
    result = nst.run(CONTENT, [STYLE], steps=steps, plugins=[clock], **run)
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(device=device, optimizer=optimizer, size=result.summary["size"],
                step_s=(clock.times[-1] - clock.times[0]) / (steps - 1), run_s=elapsed,
                peak_mb=peak / MB, increase_mb=(peak - base) / MB, torch=torch.__version__,
                threads=torch.get_num_threads(),
                machine=torch.cuda.get_device_name(device) if cuda else proc_field("/proc/cpuinfo", "model name"))


def measure(device: str, size: int, steps: int, optimizer: str) -> dict:
    """Run one configuration in a fresh interpreter and parse the JSON line it prints last."""
    cmd = [sys.executable, __file__, "--child", "--devices", device, "--sizes", str(size), "--steps", str(steps),
           "--optimizer", optimizer]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"child failed: {' '.join(cmd)}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    auto = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    devices = list(dict.fromkeys(d for name in args.devices for d in (auto if name == "auto" else [name])))
    rows = []
    for device in devices:
        for size in args.sizes:
            for optimizer in args.optimizer:
                rows.append(measure(device, size, args.steps, optimizer))
                print(f"done: {device} {size} {optimizer}: {rows[-1]['step_s']:.3f} s/step", file=sys.stderr)
    text = report(rows, args.steps)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
