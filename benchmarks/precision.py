"""bf16 against fp32: the quality of Gatys results on photo x painting pairs, measured with the independent metric.

For each pair a default `nst.run` (gatys, L-BFGS, --size, --steps) in --precision fp32 and in bf16; the content
distance, style distance and layout correlation of ../shared/tools/metric.py for both, their relative
differences, each run's final loss, how many steps the loss rose after its first 20 (L-BFGS stability), and the
mean |bf16 - fp32| pixel difference. --sheet FOLDER writes photo | fp32 | bf16 | 8 x |difference| per pair.

Where the CPU has no native bfloat16 (no AVX512-BF16 or AMX; torch emulates it about 6x slower than fp32 there),
--emulate computes the bf16 run's numerics in float32: every convolution's input, weights, bias and output
rounded to bfloat16 (so are the gradients flowing back through them), products accumulated in float32, as
oneDNN's and cuDNN's bf16 kernels do; --check-emulation first compares emulated and real bf16 on one encoder
forward + backward.

    python benchmarks/precision.py --size 256 --steps 300 --emulate --out benchmarks/results/precision-cpu.md
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from common import CONTENT, ROOT, machine, sample_photos, write_report

import nst
from nst.core import encoder as encoder_module
from nst.core.images import load_image, resize, to_pil

METRIC = ROOT.parent / "shared" / "tools" / "metric.py"
PAINTINGS = ROOT.parent / "shared" / "data" / "styles"


class _RoundBF16(torch.autograd.Function):
    """x rounded to bfloat16 (kept in float32); the gradient rounded the same way on its way back."""

    @staticmethod
    def forward(ctx, x):
        return x.bfloat16().float()

    @staticmethod
    def backward(ctx, grad):
        return grad.bfloat16().float()


def emulated_layer(self, name: str, h: torch.Tensor) -> torch.Tensor:
    """Encoder._layer with bf16 numerics in float32 (see the module's docstring)."""
    r = _RoundBF16.apply
    if name.startswith("conv"):
        conv = self.convs[name]
        return r(F.conv2d(r(h), conv.weight.bfloat16().float(), conv.bias.bfloat16().float(), padding=1))
    if name.startswith("relu"):
        return F.relu(h)
    pool = F.max_pool2d if self.pooling == "max" else F.avg_pool2d
    return r(pool(h, 2, ceil_mode=True))


def check_emulation(size: int) -> str:
    """Relative errors against fp32 of real and emulated bf16 on one forward + backward of the encoder."""
    from nst.core.precision import choose

    weights = encoder_module.load_vgg(nst.default_host().weights(), "vgg19", progress=False)
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    x0 = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))

    def run(enc):
        x = x0.clone().requires_grad_(True)
        feats = enc(x, layers)
        sum((f * torch.linspace(-1, 1, f.numel()).view_as(f)).sum() for f in feats.values()).backward()
        return feats, x.grad

    cpu = torch.device("cpu")
    ref = run(encoder_module.Encoder(weights, "avg", precision=choose("fp32", cpu)))
    real = run(encoder_module.Encoder(weights, "avg", precision=choose("bf16", cpu)))
    plain = encoder_module.Encoder(weights, "avg", precision=choose("fp32", cpu))
    plain._layer = emulated_layer.__get__(plain)
    emulated = run(plain)

    def rel(a, b):
        return float((a - b).detach().norm() / b.detach().norm())

    lines = ["| quantity | real bf16 vs fp32 | emulated bf16 vs fp32 | emulated vs real |", "|---|---|---|---|"]
    for l in layers:
        lines.append(f"| {l} | {rel(real[0][l], ref[0][l]):.2e} | {rel(emulated[0][l], ref[0][l]):.2e} | "
                     f"{rel(emulated[0][l], real[0][l]):.2e} |")
    lines.append(f"| dL/dx | {rel(real[1], ref[1]):.2e} | {rel(emulated[1], ref[1]):.2e} | {rel(emulated[1], real[1]):.2e} |")
    return "\n".join(lines)


def metric(out: Path, content: Path, style: Path) -> tuple[float, float, float]:
    done = subprocess.run([sys.executable, str(METRIC), "both", str(out), str(content), str(style)],
                          capture_output=True, text=True, check=True)
    return tuple(float(v) for v in done.stdout.split()[:3])


class Losses:
    name = "bench-losses"

    def __init__(self):
        self.values = []

    @nst.hookimpl
    def nst_on_step(self, losses):
        self.values.append(losses["total"])


def one(content: Path, style: Path, precision: str, emulate: bool, args, out: Path) -> dict:
    losses = Losses()
    original = encoder_module.Encoder._layer
    if emulate:
        encoder_module.Encoder._layer = emulated_layer
    try:
        result = nst.run(content, [style], output=out, size=args.size, steps=args.steps, plugins=[losses],
                         precision="fp32" if emulate else precision,  # emulated: bf16's rounding in float32 kernels
                         threads=args.threads)
    finally:
        encoder_module.Encoder._layer = original
    v = losses.values
    rises = sum(b > a * (1 + 1e-6) for a, b in zip(v[20:], v[21:]))
    c, s, layout = metric(out, content, style)
    return dict(image=result.image, content=c, style=s, layout=layout, loss=min(v), rises=rises,
                precision=result.summary.get("precision"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--emulate", action="store_true", help="bf16 numerics emulated in float32 (see above)")
    parser.add_argument("--check-emulation", type=int, default=0, metavar="PX",
                        help="first compare emulated with real bf16 on one PX x PX forward + backward")
    parser.add_argument("--sheet", type=Path, help="folder for one comparison sheet per pair")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not METRIC.is_file():
        sys.exit(f"{METRIC} not found (the metric lives in the shared folder next to the checkout)")
    tmp = Path(tempfile.mkdtemp(prefix="nst-precision-"))
    photos = sample_photos(tmp, ["astronaut", "coffee", "chelsea", "rocket"]) + [CONTENT]
    paintings = sorted(PAINTINGS.glob("*.jpg"))
    pairs = [(p, s) for p, s in zip(itertools.cycle(photos), itertools.islice(itertools.cycle(paintings),
                                                                              2 * len(photos)))]
    pairs = sorted(set(pairs), key=pairs.index)[: args.pairs]
    text = [f"# bf16 against fp32: Gatys quality, {datetime.now():%Y-%m-%d}", "",
            f"- cpu: {machine('cpu')}, torch {torch.__version__}; `nst.run` defaults (gatys, L-BFGS, content init), "
            f"{args.size} px, {args.steps} steps; metric: ../shared/tools/metric.py (content and style distances: "
            "lower is closer; layout: correlation with the photo)",
            "- bf16: " + ("**emulated** in float32 (bf16-rounded convolution inputs, weights, outputs and gradients, "
                          "float32 accumulation), this CPU having no native bfloat16" if args.emulate else
                          "real (torch autocast)"),
            "- rises: steps after the 20th whose loss exceeded the step before (an L-BFGS line search probing)", ""]
    if args.check_emulation:
        text += [f"Emulation check, one encoder forward + backward at {args.check_emulation} px (relative L2 errors):", "",
                 check_emulation(args.check_emulation), ""]
    text += ["| photo | painting | content fp32 / bf16 | style fp32 / bf16 | layout fp32 / bf16 | loss bf16 / fp32 | "
             "rises fp32 / bf16 | mean abs diff |", "|---|---|---|---|---|---|---|---|"]
    changes = {"content": [], "style": [], "layout": []}
    for photo, painting in pairs:
        a = one(photo, painting, "fp32", False, args, tmp / "fp32.png")
        b = one(photo, painting, "bf16", args.emulate, args, tmp / "bf16.png")
        for k in changes:
            changes[k].append(b[k] / a[k] - 1)
        diff = (a["image"] - b["image"]).abs()
        text.append(f"| {photo.stem} | {painting.stem} | {a['content']:.3f} / {b['content']:.3f} | {a['style']:.3f} / "
                    f"{b['style']:.3f} | {a['layout']:.3f} / {b['layout']:.3f} | {b['loss'] / a['loss']:.3f} | "
                    f"{a['rises']} / {b['rises']} | {diff.mean():.4f} |")
        print(text[-1], flush=True)
        if args.sheet:
            args.sheet.mkdir(parents=True, exist_ok=True)
            photo_t = resize(load_image(photo), tuple(a["image"].shape[-2:]))
            row = torch.cat([photo_t, a["image"], b["image"], (8 * diff).clamp(0, 1)], dim=-1)
            to_pil(row).save(args.sheet / f"{photo.stem}-{painting.stem}.png")
    mean = {k: sum(v) / len(v) for k, v in changes.items()}
    worst = {k: max(v, key=abs) for k, v in changes.items()}
    text += ["", "bf16 relative to fp32 over the pairs: " + "; ".join(
        f"{k} mean {mean[k]:+.1%}, worst {worst[k]:+.1%}" for k in changes)]
    write_report("\n".join(text) + "\n", args.out)


if __name__ == "__main__":
    main()
