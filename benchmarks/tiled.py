"""Tiled against untiled feed-forward inference: the same network, image and size, in one process.

For each network (the multistyle26 preset; the arbitrary-style transformer) it times `nst.run` untiled as a
user runs it (backend auto: onnxruntime on the CPU when installed), untiled with backend torch, and with
--tile CELL (torch, tiles), alternating the three --repeats times and keeping each one's best; then the
largest difference between the tiled and the untiled torch results. Goal (issue 24): tiled <= 1.5x untiled.
Usage: python benchmarks/tiled.py [--sizes 1024 2048] [--tiles 256 512] [--repeats 3] [--device cpu] [--out FILE]
(each size with the tile side at the same place)
"""
import argparse
import time
from pathlib import Path

import torch
from common import CONTENT, STYLE, machine, synchroniser, write_report

import nst

NETWORKS = {"multistyle26": dict(method="johnson", model="multistyle26"), "arbitrary": dict(method="arbitrary")}


def timed(sync, **run) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    result = nst.run(CONTENT, [STYLE], note=lambda m: None, **run)
    sync()
    return time.perf_counter() - start, result.image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--out", type=Path, help="write the table here too (markdown)")
    args = parser.parse_args()
    if len(args.sizes) != len(args.tiles):
        parser.error("give one --tiles side per --sizes entry")
    sync = synchroniser(args.device)
    lines = [f"# Tiled vs untiled feed-forward, {args.device} ({machine(args.device)}, {torch.get_num_threads()} threads)",
             "", f"`python benchmarks/tiled.py --sizes {' '.join(map(str, args.sizes))} --tiles "
             f"{' '.join(map(str, args.tiles))} --repeats {args.repeats}`: seconds of `nst.run` (best of the repeats, "
             "interleaved); ratio = tiled / untiled; difference = tiled vs untiled torch", ""]
    for size, tile in zip(args.sizes, args.tiles):
        forms = {"untiled (auto backend)": {}, "untiled (torch)": {"backend": "torch"},
                 f"tiled {tile} px (torch)": {"backend": "torch", "tile": tile}}
        lines += [f"## {size} px, {tile} px tiles", "",
                  "| network | " + " | ".join(forms) + " | tiled / auto | tiled / torch | max abs difference |",
                  "|---|" + "---|" * (len(forms) + 3)]
        for name in args.networks:
            run = dict(NETWORKS[name], size=size, device=args.device)
            timed(sync, **run)  # warm-up: weights, ONNX export
            best, images = {f: float("inf") for f in forms}, {}
            for _ in range(args.repeats):
                for form, extra in forms.items():
                    seconds, images[form] = timed(sync, **run, **extra)
                    best[form] = min(best[form], seconds)
            untiled, torch_untiled, tiled = best.values()
            diff = float((images[list(forms)[1]] - images[list(forms)[2]]).abs().max())
            lines.append(f"| {name} | " + " | ".join(f"{best[f]:.2f}" for f in forms) +
                         f" | {tiled / untiled:.2f} | {tiled / torch_untiled:.2f} | {diff:.1e} |")
            print(lines[-1], flush=True)
        lines.append("")
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
