"""Gatys speed-ups on CUDA measured against plain fp32: seconds for a whole run and per step, and how far each
variant's result is from the fp32 result (SSIM) and from the painting (colour and texture distances of
`nst bench`), one process, warm.

Variants: fp32 (TF32 off, cuDNN autotuning off), tf32 (TF32 matmuls and convolutions), tf32+bench (cuDNN
autotuning as well), bf16 (autocast to bfloat16 around the run: the encoder's convolutions and the Gram
matmuls). The goal on one H200: 512 px, 500 steps in at most 3 s. On a CPU (for the smoke test) tf32 and
cuDNN flags change nothing.
Usage: python benchmarks/gatys_cuda.py [--device cuda] [--size 512] [--steps 500] [--out FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import time
from datetime import datetime
from pathlib import Path

import torch
from common import CONTENT, STYLE, StepClock, machine, synchroniser, write_report

import nst
from nst.bench import measures
from nst.core.images import load_image

VARIANTS = {"fp32": (False, False, None), "tf32": (True, False, None), "tf32+bench": (True, True, None),
            "bf16": (True, True, torch.bfloat16)}


def run_variant(name: str, device: str, size: int, steps: int):
    """(seconds, s/step, image) of one Gatys run with the variant's flags."""
    tf32, autotune, dtype = VARIANTS[name]
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = autotune
    sync = synchroniser(device)
    clock = StepClock(sync)
    cast = torch.autocast(device.split(":")[0], dtype=dtype) if dtype else contextlib.nullcontext()
    kwargs = dict(size=size, device=device, note=lambda m: None)
    with cast:
        nst.run(CONTENT, [STYLE], steps=2, **kwargs)  # warm-up (and cuDNN autotuning)
        sync()
        start = time.perf_counter()
        result = nst.run(CONTENT, [STYLE], steps=steps, plugins=[clock], **kwargs)
        sync()
    seconds = time.perf_counter() - start
    return seconds, (clock.times[-1] - clock.times[0]) / max(1, len(clock.times) - 1), result.image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    style = load_image(STYLE)
    rows, reference = [], None
    for name in args.variants:
        seconds, per_step, image = run_variant(name, args.device, args.size, args.steps)
        reference = image if reference is None else reference
        rows.append((name, seconds, per_step, measures.ssim(image, reference), measures.colour(image, style),
                     measures.texture(image, style)))
    lines = [f"# Gatys on {args.device}: speed-ups against plain fp32, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             f"- {machine(args.device)}, torch {torch.__version__}; {args.size} px, {args.steps} L-BFGS steps after a 2-step "
             f"warm-up; SSIM against the first variant's result ({args.variants[0]}); colour / texture: distances to the "
             "painting (nst bench's measures, lower = closer)", "",
             "| variant | run s | s / step | SSIM vs first | colour | texture |", "|---" * 6 + "|"]
    lines += [f"| {n} | {s:.2f} | {p:.4f} | {q:.4f} | {c:.4f} | {'–' if t is None else f'{t:.4f}'} |"
              for n, s, p, q, c, t in rows]
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
