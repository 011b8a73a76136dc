"""Seconds per pair and peak memory of a deep image analogy, per device x size x direction mode.

Each configuration runs in a fresh child process (this script with --child), so its peak memory is its own.
Real embedded VGG19 weights and the default analogy settings; A = assets/content.jpg, B′ = assets/style.jpg.
Usage: python benchmarks/analogy.py [--sizes 224 448 512] [--devices auto] [--one-direction] [--out FILE]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gatys import MB, proc_field  # noqa: E402  (sibling benchmark script)

ROOT = Path(__file__).resolve().parent.parent
A, B_PRIME = ROOT / "assets" / "content.jpg", ROOT / "assets" / "style.jpg"


def child(device: str, size: int, both: bool) -> dict:
    """Measure one configuration in this process: a 64 px warm-up, then one timed pair."""
    from nst.api import default_host
    from nst.plugins.analogy.engine import AnalogyParams, image_analogy
    from nst.core.encoder import Encoder, load_vgg
    from nst.core.images import load_image, resize_long_side

    cuda = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    encoder = Encoder(load_vgg(default_host().weights(), "vgg19", progress=False), "max").to(device)
    a, b = (resize_long_side(load_image(p), size).to(device) for p in (A, B_PRIME))
    base = torch.cuda.memory_allocated(device) if cuda else int(proc_field("/proc/self/status", "VmRSS").split()[0]) * 1024
    image_analogy(encoder, resize_long_side(a, 64), resize_long_side(b, 64), AnalogyParams(both_directions=both))
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    layer_times = []
    sync()
    start = time.perf_counter()

    def on_layer(_index, _preview):
        sync()
        layer_times.append(time.perf_counter() - start)

    image_analogy(encoder, a, b, AnalogyParams(both_directions=both), on_layer)
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(device=device, size=f"{a.shape[-1]}x{a.shape[-2]} / {b.shape[-1]}x{b.shape[-2]}",
                directions="both" if both else "one", pair_s=elapsed,
                layers_s=" ".join(f"{t:.1f}" for t in layer_times), peak_mb=peak / MB, increase_mb=(peak - base) / MB,
                torch=torch.__version__, threads=torch.get_num_threads(),
                machine=torch.cuda.get_device_name(device) if cuda else proc_field("/proc/cpuinfo", "model name"))


def measure(device: str, size: int, both: bool) -> dict:
    """Run one configuration in a fresh interpreter and parse the JSON line it prints last."""
    cmd = [sys.executable, __file__, "--child", "--devices", device, "--sizes", str(size)] + ([] if both else ["--one-direction"])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"child failed: {' '.join(cmd)}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    devices = [d for name in args.devices
               for d in (["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if name == "auto" else [name])]
    rows = [measure(d, s, not args.one_direction) for d in devices for s in args.sizes]
    lines = [f"# Deep image analogy: seconds per pair ({datetime.now():%Y-%m-%d})", "",
             f"A = assets/content.jpg, B′ = assets/style.jpg, default settings; `python benchmarks/analogy.py {' '.join(sys.argv[1:])}`",
             "", "| device | A / B′ px | directions | s per pair | s after each layer | peak MB | increase MB | torch | threads | machine |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['device']} | {r['size']} | {r['directions']} | {r['pair_s']:.2f} | {r['layers_s']} | {r['peak_mb']:.0f} "
                     f"| {r['increase_mb']:.0f} | {r['torch']} | {r['threads']} | {r['machine']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
