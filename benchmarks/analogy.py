"""Seconds per pair and peak memory of a deep image analogy, per device x size x direction mode.

Each configuration runs in a fresh child process (this script with --child), so its peak memory is its own.
Real embedded VGG19 weights and the default analogy settings; A = assets/content.jpg, B′ = assets/style.jpg.
Usage: python benchmarks/analogy.py [--sizes 224 448 512] [--devices auto] [--one-direction] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from common import CONTENT as A
from common import MB, devices, machine, memory_now, memory_peak, run_child, synchroniser, write_report
from common import STYLE as B_PRIME


def child(device: str, size: int, both: bool) -> dict:
    """Measure one configuration in this process: a 64 px warm-up, then one timed pair."""
    from nst.core.encoder import Encoder, load_vgg
    from nst.core.images import load_image, resize_long_side
    from nst.host import default_host
    from nst.plugins.analogy.engine import AnalogyParams, image_analogy

    cuda = device.startswith("cuda")
    sync = synchroniser(device)
    encoder = Encoder(load_vgg(default_host().weights(), "vgg19", progress=False), "max").to(device)
    a, b = (resize_long_side(load_image(p), size).to(device) for p in (A, B_PRIME))
    base = memory_now(device)
    image_analogy(encoder, resize_long_side(a, 64), resize_long_side(b, 64), AnalogyParams(both_directions=both))
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    layer_times = []
    sync()
    start = time.perf_counter()

    def on_layer(_index, _preview, _cost):
        sync()
        layer_times.append(time.perf_counter() - start)

    image_analogy(encoder, a, b, AnalogyParams(both_directions=both), on_layer)
    sync()
    elapsed = time.perf_counter() - start
    peak = memory_peak(device)
    return dict(device=device, size=f"{a.shape[-1]}x{a.shape[-2]} / {b.shape[-1]}x{b.shape[-2]}",
                directions="both" if both else "one", pair_s=elapsed,
                layers_s=" ".join(f"{t:.1f}" for t in layer_times), peak_mb=peak / MB, increase_mb=(peak - base) / MB,
                torch=torch.__version__, threads=torch.get_num_threads(), machine=machine(device))


def measure(device: str, size: int, both: bool) -> dict:
    """Run one configuration in a fresh interpreter."""
    return run_child(__file__, ["--devices", device, "--sizes", str(size)] + ([] if both else ["--one-direction"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 512], help="long side of A and B′")
    parser.add_argument("--devices", nargs="+", default=["auto"], help="cpu, cuda, cuda:N or auto (cpu + cuda if present)")
    parser.add_argument("--one-direction", action="store_true", help="only A′ (no B, half the searches)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.devices[0], args.sizes[0], not args.one_direction)))
        return
    rows = [measure(d, s, not args.one_direction) for d in devices(args.devices) for s in args.sizes]
    lines = [f"# Deep image analogy: seconds per pair ({datetime.now():%Y-%m-%d})", "",
             f"A = assets/content.jpg, B′ = assets/style.jpg, default settings; `python benchmarks/analogy.py {' '.join(sys.argv[1:])}`",
             "", "| device | A / B′ px | directions | s per pair | s after each layer | peak MB | increase MB | torch | threads | machine |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['device']} | {r['size']} | {r['directions']} | {r['pair_s']:.2f} | {r['layers_s']} | {r['peak_mb']:.0f} "
                     f"| {r['increase_mb']:.0f} | {r['torch']} | {r['threads']} | {r['machine']} |")
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
