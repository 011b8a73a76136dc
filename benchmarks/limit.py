"""The machine's limit, and how close each method comes to it.

1. The peak: GFLOP/s of a large 3x3 convolution (256 -> 256 channels, 128 x 128, forward) in each form of
   nst.core.precision the device offers: fp32 (NCHW), fp32 channels_last, bf16 channels_last (CUDA: tf32 too).
2. The plain VGG19 step (forward to relu5_1 and backward to the input, no loss) in each form at the shape of the
   Gatys run, and the Gatys step of `nst.run` (precision auto) against the fastest of them, same shape, same
   process: the goal is a Gatys step within 1.2x of the plain one.
3. Every registered method, run through `nst.run` the way a user runs it (precision auto; feed-forward methods
   on their default backend): seconds per step (optimisation methods, between on_step calls) or per call, the
   useful work per step or call (FLOPs counted by torch.utils.flop_counter on a torch-backend run), the rate,
   and that rate as a share of the peak of the form it ran in. Methods it does not know are run with --size and
   --steps only, so a new optimisation method (nst's nnst, say) appears without a change here.

Times are the best of --repeats after a warm-up (a busy machine slows some repeats, rarely all). On a shared
CPU use --threads 1: the peak and the methods then share one core's limit, and the ratios stay meaningful.

    python benchmarks/limit.py --out benchmarks/results/limit-cpu.md
    python benchmarks/limit.py --device cuda --sizes 512 1024 --out benchmarks/results/limit-cuda.md
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from common import CONTENT, STYLE, StepClock, machine, synchroniser, write_report
from torch.utils.flop_counter import FlopCounterMode

import nst
from nst.core import threads
from nst.core.devices import pick_device
from nst.core.encoder import Encoder, load_vgg
from nst.core.images import load_image
from nst.core.precision import Precision, bf16_hardware, choose
from nst.plugins.gatys import scale_shape
from nst.runtime.large import STEP_OVERHEAD

FEED_FORWARD = {"johnson": {"model": "multistyle26"}, "arbitrary": {}}  # what these methods need beyond the defaults
WHOLE_CALL = {"analogy", "nnst"}  # optimisation methods whose on_step calls are not equal steps (analogy: one per
# layer; nnst: its scales grow from 64 px, with matchings between steps)


def forms(device: torch.device) -> dict[str, Precision]:
    """The forms of nst.core.precision to measure on DEVICE, by name: bf16 only where the hardware computes it (torch
    emulates it elsewhere, several times slower than fp32: not a limit worth measuring, and minutes per call)."""
    t = device.type
    out = {"fp32": Precision(t), "fp32 channels_last": Precision(t, channels_last=True)}
    if t == "cuda":
        out["tf32 channels_last"] = Precision(t, channels_last=True, tf32=True)
    if bf16_hardware(device):
        out["bf16 channels_last"] = Precision(t, torch.bfloat16, True, t == "cuda")
    return out


def best_seconds(fn, sync, repeats: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def conv_peak(form: Precision, device: torch.device, sync, repeats: int) -> float:
    """GFLOP/s of a 256 -> 256 3x3 convolution on 128 x 128 (forward) in FORM."""
    conv = form.prepare(torch.nn.Conv2d(256, 256, 3, padding=1).to(device))
    x = form.layout(torch.rand(1, 256, 128, 128, device=device))
    flops = 2 * 256 * 256 * 9 * 128 * 128

    def run():
        with torch.no_grad(), form.compute():
            conv(x)

    return flops / best_seconds(run, sync, repeats) / 1e9


def plain_step(weights, form: Precision, hw: tuple[int, int], device, sync, repeats: int) -> float:
    """Seconds of VGG19 forward to relu5_1 and backward to the input at HW in FORM."""
    encoder = Encoder(weights, "avg", precision=form).to(device)
    x = torch.rand(1, 3, *hw, device=device, requires_grad=True)

    def run():
        encoder(x, ["relu5_1"])["relu5_1"].sum().backward()

    return best_seconds(run, sync, repeats)


def counted_flops(call) -> float:
    """FLOPs (convolutions and matrix products) torch does in CALL()."""
    counter = FlopCounterMode(display=False)
    with counter:
        call()
    return float(counter.get_total_flops())


def run_method(name: str, size: int, steps: int, device: str, sync, repeats: int) -> dict:
    """One method the way a user runs it: seconds per step (between on_step calls; per call when it has no
    steps), FLOPs per step or call, and the precision it computed in."""
    extra = FEED_FORWARD.get(name, {})
    common = dict(method=name, size=size, device=device, note=lambda m: None, **extra)
    if name in FEED_FORWARD:
        seconds = best_seconds(lambda: nst.run(CONTENT, [STYLE], **common), sync, repeats)
        result = nst.run(CONTENT, [STYLE], **common)
        flops = counted_flops(lambda: nst.run(CONTENT, [STYLE], **common, backend="torch"))
        return dict(seconds=seconds, flops=flops, unit="call", precision=result.summary.get("precision", ""))
    common.update(scales=1)
    nst.run(CONTENT, [STYLE], **common, steps=2)  # warm-up
    clock = StepClock(sync)
    result = nst.run(CONTENT, [STYLE], **common, steps=steps + 1, plugins=[clock])
    gaps = [b - a for a, b in zip(clock.times, clock.times[1:])]
    if name in WHOLE_CALL or len(gaps) < steps:  # no equal steps: per call
        seconds = best_seconds(lambda: nst.run(CONTENT, [STYLE], **common, steps=steps), sync, repeats)
        return dict(seconds=seconds, unit="call", precision=result.summary.get("precision", ""),
                    flops=counted_flops(lambda: nst.run(CONTENT, [STYLE], **common, steps=steps)))
    per_step = min(sum(gaps[i:i + 2]) / 2 for i in range(0, max(1, len(gaps) - 1)))  # best pair of steps
    one = counted_flops(lambda: nst.run(CONTENT, [STYLE], **common, steps=1))
    three = counted_flops(lambda: nst.run(CONTENT, [STYLE], **common, steps=3))
    return dict(seconds=per_step, flops=(three - one) / 2, unit="step", precision=result.summary.get("precision", ""))


def form_of(precision: str) -> str:
    """The forms() name a run's precision summary ('bf16, channels_last (auto: ...)') corresponds to."""
    base = precision.split(" (")[0]
    if base.startswith("bf16"):
        return "bf16 channels_last"
    if "TF32" in base:
        return "tf32 channels_last"
    return "fp32 channels_last" if "channels_last" in base else "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="gatys (and other optimisation "
                        "methods') long sides")
    parser.add_argument("--feed-forward-size", type=int, default=1024)
    parser.add_argument("--analogy-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", help="default: every registered method")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = pick_device(args.device)
    sync = synchroniser(str(device))
    torch.set_flush_denormal(True)
    with threads.using(threads.resolve(args.threads)) as count, torch.random.fork_rng():
        torch.manual_seed(0)
        text = report(args, device, sync, count)
    write_report(text, args.out)


def report(args, device: torch.device, sync, count: int) -> str:
    shown = forms(device)
    peaks = {n: conv_peak(f, device, sync, args.repeats) for n, f in shown.items()}
    best = max(peaks, key=peaks.get)
    lines = [f"# The machine's limit and each method's share of it, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             f"- {device.type}: {machine(str(device))}, torch {torch.__version__}, {count} CPU thread(s); auto precision "
             f"here: {choose('auto', device).describe()}",
             f"- times: best of {args.repeats} after a warm-up; FLOPs: torch.utils.flop_counter (convolutions and matrix "
             "products)", "", "## Peak: a 256 -> 256 3x3 convolution on 128 x 128", "",
             "| form | GFLOP/s | share of the best |", "|---|---|---|"]
    lines += [f"| {n} | {g:.0f} | {g / peaks[best]:.2f} |" for n, g in peaks.items()]
    weights = load_vgg(nst.default_host().weights(), "vgg19", progress=False)
    h, w = load_image(CONTENT).shape[-2:]
    lines += ["", "## The Gatys step against the plain VGG19 step (forward to relu5_1 + backward), same shape", "",
              "| shape | " + " | ".join(f"plain {n} s" for n in shown) + " | gatys s/step (auto) | gatys / fastest plain |",
              "|---" * (len(shown) + 3) + "|"]
    methods = args.methods if args.methods is not None else list(nst.default_host().methods())
    rows = []
    for size in args.sizes:
        hw = scale_shape(h, w, size)
        plain = {n: plain_step(weights, f, hw, device, sync, args.repeats) for n, f in shown.items()}
        gatys = run_method("gatys", size, args.steps, str(device), sync, args.repeats)
        rows.append(("gatys", size, gatys))
        lines.append(f"| {hw[1]}x{hw[0]} | " + " | ".join(f"{s:.3f}" for s in plain.values()) +
                     f" | {gatys['seconds']:.3f} | {gatys['seconds'] / min(plain.values()):.2f} |")
    for name in methods:
        if name == "gatys":
            continue
        sizes = [args.feed_forward_size] if name in FEED_FORWARD else [args.analogy_size] if name == "analogy" else \
            args.sizes
        for size in sizes:
            try:
                rows.append((name, size, run_method(name, size, args.steps, str(device), sync, args.repeats)))
            except nst.NSTError as exc:
                rows.append((name, size, {"error": str(exc)}))
            print(f"measured {name} at {size} px", file=sys.stderr)
            if args.out:  # what is measured so far, so a run stopped midway keeps it
                write_report("\n".join(lines + method_table(rows, peaks, best)), args.out)
    return "\n".join(lines + method_table(rows, peaks, best))


def method_table(rows: list, peaks: dict[str, float], best: str) -> list[str]:
    """The lines of the methods' table for ROWS [(name, size, measurement)]."""
    lines = ["", f"## Each method's rate, as a share of the peak of the form it ran in (and of the best form, {best})",
             "", "| method | size | precision | seconds | per | GFLOP | GFLOP/s | share of its form's peak | share of the "
             "best peak |", "|---" * 9 + "|"]
    for name, size, r in rows:
        if "error" in r:
            lines.append(f"| {name} | {size} | – | – | – | – | – | – | could not run: {r['error']} |")
            continue
        rate = r["flops"] / r["seconds"] / 1e9
        form = form_of(r["precision"])
        lines.append(f"| {name} | {size} | {r['precision']} | {r['seconds']:.3f} | {r['unit']} | {r['flops'] / 1e9:.1f} | "
                     f"{rate:.0f} | {rate / peaks.get(form, peaks[best]):.2f} | {rate / peaks[best]:.2f} |")
    return lines + ["", f"The planner times a Gatys step as the encoder's forward + backward x {STEP_OVERHEAD} (its "
                        "STEP_OVERHEAD); the table above is where that figure comes from.", ""]

if __name__ == "__main__":
    main()
