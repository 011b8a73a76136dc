"""Loss curves of a training: MODEL.losses.csv (one row per step) and MODEL.losses.png (log-scale curves)."""
from __future__ import annotations

import csv
from pathlib import Path

from nst.core.files import Outputs


def curve_paths(model: Path) -> tuple[Path, Path]:
    """MODEL.losses.csv and MODEL.losses.png."""
    return model.with_name(model.name + ".losses.csv"), model.with_name(model.name + ".losses.png")


def write_csv(path: Path, history: list[dict[str, float]]) -> None:
    names = list(dict.fromkeys(k for row in history for k in row if k != "step"))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *names])
        writer.writerows([[row["step"], *(f"{row[n]:.6g}" if n in row else "" for n in names)] for row in history])


def write_plot(path: Path, history: list[dict[str, float]], title: str) -> None:
    """A figure of its own (no pyplot state, which an interrupted plot would leave broken for the next)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    steps = [row["step"] for row in history]
    for n in [k for k in history[0] if k != "step"] if history else []:
        ax.plot(steps, [max(row[n], 1e-12) for row in history], label=n, linewidth=1)
    ax.set(yscale="log", xlabel="step", ylabel="weighted loss", title=title)
    if history:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")


def write_loss_curves(model: Path, history: list[dict[str, float]]) -> None:
    """MODEL.losses.csv (one row per step) and MODEL.losses.png (log-scale curves), written together."""
    if not history:
        return
    outputs = Outputs()
    csv_path, png_path = curve_paths(model)
    outputs.add(csv_path, lambda tmp: write_csv(tmp, history))
    outputs.add(png_path, lambda tmp: write_plot(tmp, history, model.name))
    outputs.commit()
