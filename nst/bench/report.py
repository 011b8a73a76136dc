"""The report of `nst bench`: plots, contact sheets, report.md and report.html (plots embedded) from the cells.

The report is a list of blocks (heading, paragraph, table, picture) rendered twice, as Markdown and as HTML.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst.bench.plan import OPTIMISING, SECTIONS

Block = tuple  # ("h1" | "h2" | "p", text) | ("table", header, rows) | ("img", path relative to the report, alt)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _mean_sd(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"


def _cells(results: dict, prefix: str) -> list[dict]:
    return [v for k, v in results["cells"].items() if k.startswith(prefix) and "skipped" not in v and "error" not in v]


MIN_FIT_SIZES, MIN_R2 = 3, 0.95  # an exponent is reported only from this many sizes, and when the fit explains them


def growth(pixels: list[int], seconds: list[float]) -> tuple[float | None, str]:
    """How time grows with pixels: (b of seconds ~ a · pixels^b by least squares in log-log, or None, and the report's
    text). An exponent needs MIN_FIT_SIZES sizes and an R² of MIN_R2; otherwise the text gives the measured ratio
    (two sizes) or says why there is no fit, so fixed costs or noise never pass for a power law."""
    if len(pixels) < 2:
        return None, "–"
    x, y = np.log(pixels), np.log(seconds)
    ratio = f"×{seconds[-1] / seconds[0]:.2f} time for ×{pixels[-1] / pixels[0]:.0f} pixels"
    if len(pixels) < MIN_FIT_SIZES:
        return None, f"{ratio} ({len(pixels)} sizes: too few to fit an exponent)"
    b, a = np.polyfit(x, y, 1)
    residual, total = float(((y - (a + b * x)) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    r2 = 1 - residual / total if total > 0 else 0.0
    if r2 < MIN_R2:
        return None, f"{ratio}; no power law (R² {r2:.2f} over {len(pixels)} sizes: noise or fixed costs dominate)"
    return float(b), f"pixels^{b:.2f} (R² {r2:.3f} over {len(pixels)} sizes)"


def _plot_times(rows: list[dict], path: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    fits = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = sorted((r for r in rows if r["method"] == method), key=lambda r: r["size"])
        px, sec = [r["size"] ** 2 for r in sel], [r["seconds"] for r in sel]
        b, fits[method] = growth(px, sec)
        label = method + (f" (∝ px^{b:.2f})" if b is not None else "")
        ax.loglog(px, sec, "o-", label=label)
    ax.set_xlabel("pixels (size²)")
    ax.set_ylabel("seconds per image")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fits


def _plot_curves(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False)
    for ax, (title, curve) in zip(axes[0], curves.items()):
        for term, values in curve.items():
            if term != "step" and any(v > 0 for v in values):
                ax.semilogy(curve["step"], [max(v, 1e-12) for v in values], label=term)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_scale(series: dict[str, tuple[list[int], list[float]]], ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, (xs, ys) in series.items():
        ax.semilogy(xs, ys, "o-", label=name)
    ax.set_xticks(sorted({x for xs, _ in series.values() for x in xs}))
    ax.set_xlabel("number of styles")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def contact_sheet(rows: list[dict], photos: list[Path], styles: list[Path], path: Path, cell: int = 160) -> None:
    """A grid image: the styles along the top, the photos down the left, each result at its crossing."""
    font = ImageFont.load_default(12)
    sheet = Image.new("RGB", ((len(styles) + 1) * cell, (len(photos) + 1) * cell + 16), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)

    def put(img_path: Path | str, col: int, row: int, label: str) -> None:
        img = Image.open(img_path).convert("RGB")
        k = (cell - 8) / max(img.size)
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.LANCZOS)
        sheet.paste(img, (col * cell + 4, row * cell + 16 + 4))
        draw.text((col * cell + 4, row * cell + 2 if row == 0 else row * cell + 16 - 14 + 2), label, fill=(0, 0, 0), font=font)

    for c, style in enumerate(styles, 1):
        put(style, c, 0, style.stem)
    for r, photo in enumerate(photos, 1):
        put(photo, 0, r, photo.stem)
        for c, style in enumerate(styles, 1):
            found = [x for x in rows if x["photo"] == photo.stem and x["style"] == style.stem]
            if found:
                put(found[0]["image"], c, r, "")
    sheet.save(path)


def build(results: dict, folder: Path) -> list[Block]:
    """Blocks of the report; plots and contact sheets are written under FOLDER/plots and FOLDER/sheets."""
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "sheets").mkdir(exist_ok=True)
    meta, plan = results["meta"], results["plan"]
    blocks: list[Block] = [("h1", f"nst bench — {meta['device_name']}"),
                           ("p", f"nst {meta['nst']}, torch {meta['torch']}, CUDA {meta['cuda'] or '–'}, "
                                 f"{meta['threads']} CPU threads, {meta['date']}. Plan: "
                                 f"{'quick' if plan['quick'] else 'full'} "
                                 f"on {plan['device']}; sizes {plan['sizes']}; {plan['steps']} optimisation steps; "
                                 f"training {plan['train_steps']} steps per style at {plan['train_size']} px; quality "
                                 "grid "
                                 f"at {plan['grid_size']} px. Images: built-in procedural photos and paintings"
                                 f"{' plus the given folders' if plan['given_images'] else ''}.")]
    skipped = {k: v["skipped"] for k, v in results["cells"].items() if "skipped" in v}
    skipped.update(results.get("skipped", {}))
    failed = {k: v["error"] for k, v in results["cells"].items() if "error" in v}

    # 1. time per image
    blocks.append(("h2", SECTIONS["time"]))
    rows = sorted(_cells(results, "time/"), key=lambda r: (r["method"], r["size"]))
    if rows:
        fits = _plot_times(rows, folder / "plots" / "time.png")
        blocks.append(("p", "Wall-clock seconds for one image through nst.run (optimisation methods: the whole run; "
                            "feed-forward: warm, one call, model file read included, on the CPU through onnxruntime "
                            "when it "
                            "is installed), the network's PyTorch forward pass alone (feed-forward), seconds per "
                            "optimisation step, peak memory during the call and its increase "
                            "over the memory in use when the call began."))
        blocks.append(("table", ["method", "size px", "s / image", "torch forward ms", "s / step", "peak MB", "added MB"],
                       [[r["method"], r["size"], _fmt(r["seconds"]), _fmt(r.get("forward_ms")), _fmt(r["s_per_step"]),
                         _fmt(r["peak_mb"], 4), _fmt(r.get("added_mb"), 4)] for r in rows]))
        blocks.append(("table", ["method", "how time grows with pixels"], [[m, text] for m, text in fits.items()]))
        blocks.append(("img", "plots/time.png", "time per image against pixels, log-log"))

    # 2. training
    blocks.append(("h2", SECTIONS["train"]))
    trains = sorted(_cells(results, "train/"), key=lambda r: (r["arch"], r["styles"]))
    optimising = [m for m in OPTIMISING if m in plan["methods"]]
    if optimising:
        blocks.append(("p", f"{' and '.join(optimising)} optimise every image and train nothing: their whole cost is "
                            "in section 1, their loss curves in section 4."))
    if trains:
        blocks.append(("p", "nst.train on the built-in photos at the plan's training size, batch 4. Time to quality: "
                            "seconds until the style loss (mean over 5 steps) first falls to half its first value."))
        blocks.append(("table", ["network", "styles", "steps", "training s", "images / s", "s to half style loss",
                                 "model MB", "inference s (grid size)"],
                       [[r["arch"], r["styles"], r["steps"], _fmt(r["seconds"]), _fmt(r["images_per_s"]),
                         _fmt(r["seconds_to_half_style"]), _fmt(r["model_mb"]), _fmt(r["inference_s"])] for r in trains]))

    # 3. quality grid
    blocks.append(("h2", SECTIONS["grid"]))
    grid = _cells(results, "grid/")
    if grid:
        blocks.append(("p", "Mean ± sd over the content × style grid, measured without the VGG19 the methods optimise: "
                            "content by SSIM and edge correlation with the photo (higher = closer), style by the "
                            "colour "
                            "distance (sliced Wasserstein, lower = closer) and the texture distance of Magenta's "
                            "MobileNetV2 style predictor (lower = closer; it drives `arbitrary`, so that row scores "
                            "itself there)."))
        methods = list(dict.fromkeys(r["method"] for r in grid))
        blocks.append(("table", ["method", "images", "SSIM", "edges", "colour", "texture"],
                       [[m, len([r for r in grid if r["method"] == m])] +
                        [_mean_sd([r[k] for r in grid if r["method"] == m]) for k in ("ssim", "edges", "colour", "texture")]
                        for m in methods]))
        photos = [Path(p) for p in plan["grid_photos"]]
        styles = [Path(s) for s in plan["grid_styles"]]
        for m in methods:
            contact_sheet([r for r in grid if r["method"] == m], photos, styles, folder / "sheets" / f"{m}.png")
            blocks.append(("img", f"sheets/{m}.png", f"contact sheet: {m}"))

    # 4. loss curves
    blocks.append(("h2", SECTIONS["curves"]))
    curves = {f"train {r['arch']} ({r['styles']} "
              f"style{'s' if r['styles'] > 1 else ''})": r["curve"] for r in trains if r.get("curve")}
    for method in OPTIMISING:
        first = next((r for r in grid if r["method"] == method and r.get("curve")), None)
        if first:
            curves[f"{method} {first['photo']} × {first['style']}"] = first["curve"]
    if curves:
        _plot_curves(curves, folder / "plots" / "curves.png")
        blocks.append(("p", f"Each weighted loss term against the step (log scale), for {'; '.join(curves)}; the "
                            "figures are in results.json."))
        blocks.append(("img", "plots/curves.png", "loss terms during training and optimisation"))

    # 5. scalability
    blocks.append(("h2", SECTIONS["scale"]))
    scale = sorted(_cells(results, "scale/"), key=lambda r: (r["method"], r["styles"]))
    cond = [r for r in trains if r["arch"] == "johnson"]
    if scale or cond:
        blocks.append(("p", "gatys blends N styles' statistics in one optimisation, nnst draws neighbours from N "
                            "paintings in proportion (one search per painting); `arbitrary` blends N style vectors "
                            "(constant cost); "
                            "one conditional Johnson network learns N styles against N separate networks (separate = N "
                            "× "
                            "the one-style network). Colour / texture: mean distance of the blend to each of its "
                            "styles."))
        blocks.append(("table", ["method", "styles", "s / image", "s / step", "colour", "texture"],
                       [[r["method"], r["styles"], _fmt(r["seconds"]), _fmt(r["s_per_step"]), _fmt(r["colour"]),
                         _fmt(r["texture"])] for r in scale]))
        one = next((r for r in cond if r["styles"] == 1), None)
        if cond and one:
            blocks.append(("table", ["styles", "conditional: training s", "separate: training s", "conditional MB",
                                     "separate MB", "s / step"],
                           [[r["styles"], _fmt(r["seconds"]), _fmt(one["seconds"] * r["styles"]), _fmt(r["model_mb"]),
                             _fmt(one["model_mb"] * r["styles"]), _fmt(r["s_per_step"])] for r in cond]))
        series = {m: ([r["styles"] for r in scale if r["method"] == m], [r["seconds"] for r in scale if r["method"] == m])
                  for m in dict.fromkeys(r["method"] for r in scale)}
        if cond and one:
            series["johnson training: conditional"] = ([r["styles"] for r in cond], [r["seconds"] for r in cond])
            series["johnson training: separate"] = ([r["styles"] for r in cond], [one["seconds"] * r["styles"] for r in cond])
        _plot_scale(series, "seconds", folder / "plots" / "scale.png")
        blocks.append(("img", "plots/scale.png", "cost against the number of styles"))

    if skipped or failed:
        blocks.append(("h2", "Skipped"))
        blocks.append(("table", ["what", "why"], [[k, v] for k, v in {**skipped, **failed}.items()]))
    return blocks


def markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h1":
            out.append(f"# {b[1]}\n")
        elif b[0] == "h2":
            out.append(f"## {b[1]}\n")
        elif b[0] == "p":
            out.append(f"{b[1]}\n")
        elif b[0] == "table":
            out.append("| " + " | ".join(map(str, b[1])) + " |\n" + "|---" * len(b[1]) + "|\n" +
                       "".join("| " + " | ".join(map(str, r)) + " |\n" for r in b[2]))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})\n")
    return "\n".join(out)


def html_page(blocks: list[Block], folder: Path) -> str:
    """One self-contained page: pictures embedded as base64 PNG."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>nst bench</title><style>"
           "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
           "th{background:#f4f4f4}img{max-width:100%}</style></head><body>"]
    for b in blocks:
        if b[0] in ("h1", "h2"):
            out.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "p":
            out.append(f"<p>{html.escape(b[1])}</p>")
        elif b[0] == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif b[0] == "img":
            data = base64.b64encode((folder / b[1]).read_bytes()).decode()
            out.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'></p>")
    out.append("</body></html>")
    return "\n".join(out)
