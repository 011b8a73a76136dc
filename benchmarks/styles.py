"""Style scalability (the review's "style scalability"): N styles in one conditional network against N separate
Johnson networks, for N = 1, 2, 4, 8: seconds per training step, training time for a fixed budget of steps per
style, model size on disk, and inference ms per image at 512 px (torch on --device; onnxruntime on the CPU).

Training runs nst.train on 8 generated photos with the embedded VGG19 (each style gets --steps steps: the
conditional network trains N x steps, each separate network steps; a discarded 2-step training warms up first);
inference nets have the trained weights.
Usage: python benchmarks/styles.py [--counts 1 2 4 8] [--steps 4] [--size 128] [--arch johnson] [--device cpu|cuda]
       [--out FILE]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from common import StepClock, machine, write_report
from PIL import Image

import nst
from nst.core.johnson import load_model
from nst.core.onnxrun import onnx_runner
from nst.host import default_host


def make_inputs(root: Path, styles: int) -> tuple[Path, list[Path]]:
    """8 random-texture photos and STYLES striped paintings of different periods and colours."""
    rng = np.random.default_rng(0)
    (root / "photos").mkdir(exist_ok=True)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(root / "photos" / f"p{i}.png")
    paths = []
    for k in range(styles):
        y, x = np.mgrid[0:256, 0:256]
        on = ((x + y) // (4 + 3 * k)) % 2 == 0
        colours = rng.integers(0, 256, (2, 3))
        Image.fromarray(np.where(on[..., None], colours[0], colours[1]).astype(np.uint8)).save(root / f"style{k}.png")
        paths.append(root / f"style{k}.png")
    return root / "photos", paths


def train_once(styles: list[Path], data: Path, out: Path, steps: int, args) -> tuple[float, float]:
    """(seconds per step after the first, whole training seconds) of one nst.train call."""
    clock = StepClock(lambda: None)
    start = time.perf_counter()
    nst.train(styles if len(styles) > 1 else styles[0], data, out, steps=steps, size=args.size, batch_size=2, workers=0,
              arch=args.arch, plugins=[clock], device=args.device, note=lambda m: None, overwrite=True)
    total = time.perf_counter() - start
    return (clock.times[-1] - clock.times[0]) / max(1, len(clock.times) - 1), total


def inference_ms(model: Path, device: str, runs: int = 5) -> tuple[float, float]:
    """(torch ms on DEVICE, onnxruntime ms on the CPU) per 512 px image, medians after a warm-up."""
    net, _ = load_model(model, default_host().architectures())
    x = torch.rand(1, 3, 512, 512)
    extra = (torch.full((net.styles,), 1 / net.styles),) if hasattr(net, "styles") else ()
    names = ["image"] + (["style"] if extra else [])
    axes = {0: "batch", 2: "height", 3: "width"}
    run_onnx = onnx_runner(net, (x[..., :64, :64], *extra), names, {"image": axes, "output": axes})

    def med(fn):
        fn()
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            ts.append((time.perf_counter() - t) * 1000)
        return statistics.median(ts)

    onnx_ms = med(lambda: run_onnx(x, *extra))
    net, x, extra = net.to(device), x.to(device), tuple(e.to(device) for e in extra)
    with torch.inference_mode():
        torch_ms = med(lambda: net(x, *extra))
    return torch_ms, onnx_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of styles")
    parser.add_argument("--steps", type=int, default=4, help="training steps per style (at least 2)")
    parser.add_argument("--size", type=int, default=128, help="training crop size, px")
    parser.add_argument("--arch", default="johnson", choices=["johnson", "light"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="training and torch inference")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, styles = make_inputs(root, max(args.counts))
        train_once(styles[:1], data, root / "warm-up.safetensors", 2, args)  # the first call loads VGG19 and warms up
        single = root / "single.safetensors"
        single_step, single_total = train_once(styles[:1], data, single, args.steps, args)
        single_mb = single.stat().st_size / 2 ** 20
        single_ms = inference_ms(single, args.device)
        for n in args.counts:
            model = root / f"cond{n}.safetensors"
            step_s, total = train_once(styles[:n], data, model, max(2, args.steps * n), args)
            torch_ms, onnx_ms = inference_ms(model, args.device)
            rows.append(dict(n=n, step_s=step_s, total=total, mb=model.stat().st_size / 2 ** 20, torch_ms=torch_ms, onnx_ms=onnx_ms,
                             sep_total=single_total * n, sep_mb=single_mb * n))
            print(f"done: {n} styles", flush=True)
    lines = [f"# Style scalability: one conditional network vs N separate ones, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             f"- {args.device}: {machine(args.device)}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
             f"nst.train at {args.size} px, batch 2, {args.steps} steps per style, layout {args.arch}; inference: one "
             f"512 px image, median of 5, torch on {args.device}, onnxruntime on the CPU",
             f"- one separate (one-style) network: {single_step:.2f} s/step, {single_mb:.2f} MB, "
             f"{single_ms[0]:.0f} ms torch / {single_ms[1]:.0f} ms onnxruntime per image", "",
             "| styles | conditional: s/step | conditional: training s | separate: training s | conditional MB | separate MB "
             "| inference ms (torch / onnx) |", "|---" * 7 + "|"]
    lines += [f"| {r['n']} | {r['step_s']:.2f} | {r['total']:.1f} | {r['sep_total']:.1f} | {r['mb']:.2f} | {r['sep_mb']:.2f} | "
              f"{r['torch_ms']:.0f} / {r['onnx_ms']:.0f} |" for r in rows]
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
