"""Image optimisation (Gatys et al. 2016): pixels updated by L-BFGS or Adam against loss terms."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nst.core.encoder import Encoder
from nst.core.images import resize
from nst.core.losses import LossTerm
from nst.errors import NSTError

StepObserver = Callable[[int, torch.Tensor, dict[str, float]], None]


PRINT_START = 512  # px: where the automatic schedule starts (the default size: a print looks like its preview)
GROWTH = math.sqrt(2)  # each scale's long side over the one before (crowsonkb's style-transfer-pytorch)
STEPS_DECAY = 0.5  # each scale of the automatic schedule gets this share of the steps of the one before...
LEAST_STEPS = 20  # ...but at least these (or --steps, when fewer)


def scale_sizes(size: int, levels: int) -> list[int]:
    """Long sides of a coarse-to-fine pyramid ending at SIZE, halving each level: 512, 3 -> [128, 256, 512]."""
    return [max(16, round(size / 2 ** (levels - 1 - i))) for i in range(levels)]


def print_schedule(size: int, steps: int, start: int = PRINT_START) -> list[tuple[int, int]]:
    """[(long side, steps)] from START px up to SIZE, each scale GROWTH times the one before: STEPS at the first,
    STEPS_DECAY times fewer at each next one (at least LEAST_STEPS). Most of the work is spent where a step is
    cheap and the layout is made; the full size gets a few steps of detail. One scale up to START x GROWTH."""
    count = 1 + max(0, math.floor(math.log(size / start) / math.log(GROWTH) + 1e-6))
    sizes = [round(size / GROWTH ** k) for k in reversed(range(count))]
    return [(side, steps if i == 0 else max(min(LEAST_STEPS, steps), round(steps * STEPS_DECAY ** i)))
            for i, side in enumerate(sizes)]


def schedule(size: int, steps: int, scales: int) -> list[tuple[int, int]]:
    """[(long side, steps)] of a run: SCALES levels halving, STEPS each; SCALES 0: print_schedule."""
    return print_schedule(size, steps) if scales == 0 else [(side, steps) for side in scale_sizes(size, scales)]


def initial_image(kind: str, content: torch.Tensor, style: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(1, 3, H, W) start point: the content, uniform noise, or the style resized to the content's shape."""
    if kind == "content":
        return content.clone()
    if kind == "noise":
        noise = torch.rand(content.shape, generator=generator, dtype=content.dtype)
        return noise.to(content.device)
    if kind == "style":
        return resize(style, tuple(content.shape[-2:])).clone()
    raise NSTError(f"unknown init '{kind}' (content, noise, style)")


def evaluate(terms: list[LossTerm], encoder: Encoder, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One encoder pass over the union of every term's layers; returns (total, {name: weighted value})."""
    layers = {l for t in terms for l in t.layers}
    features = encoder(image, layers) if layers else {}
    parts: dict[str, torch.Tensor] = {}
    for term in terms:
        value = term(features, image)
        parts[term.name] = parts[term.name] + value if term.name in parts else value
    total = sum(parts.values())
    return total, parts


class _BudgetSpent(Exception):
    """Raised inside the closure when the step budget is used (L-BFGS may ask for more evaluations)."""


LossAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]]


def optimise(image: torch.Tensor, terms: list[LossTerm], encoder: Encoder, steps: int, optimizer: str = "lbfgs",
             lr: float = 0.02, on_step: StepObserver | None = None, history: int = 50,
             loss_and_grad: LossAndGrad | None = None, average: float = 0.0) -> torch.Tensor:
    """Minimise the sum of TERMS over the pixels of IMAGE (1, 3, H, W); returns the best image seen, in [0, 1]
    (with AVERAGE > 0: the exponential moving average of the iterates with that decay, bias-corrected).

    A step is one loss evaluation (one encoder forward + backward), so every step costs the same.
    L-BFGS (HISTORY pairs) uses a strong-Wolfe line search on unconstrained pixels; Adam takes steps of
    size LR and clamps after each. LOSS_AND_GRAD(x) -> (total, parts, dL/dx) replaces the one-pass
    evaluation (nst.core.tiled_gatys.TiledLoss computes it tile by tile).
    """
    x = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)  # L-BFGS views grads flat
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, max_eval=steps, history_size=history, tolerance_grad=-1.0,
                                tolerance_change=-1.0, line_search_fn="strong_wolfe")
    elif optimizer == "adam":
        opt = torch.optim.Adam([x], lr=lr)
    else:
        raise NSTError(f"unknown optimizer '{optimizer}' (lbfgs, adam)")
    done, best, best_loss = 0, x.detach().clone(), float("inf")
    mean = torch.zeros_like(best)

    def closure() -> torch.Tensor:
        nonlocal done, best, best_loss
        if done >= steps:
            raise _BudgetSpent
        opt.zero_grad(set_to_none=True)
        if loss_and_grad is None:
            total, parts = evaluate(terms, encoder, x)
        else:
            total, parts, x.grad = loss_and_grad(x.detach())
        if not torch.isfinite(total):
            raise NSTError("the optimisation diverged (non-finite loss); lower the loss weights or use --optimizer "
                           "adam")
        if loss_and_grad is None:
            total.backward()
        done += 1
        mean.mul_(average).add_(x.detach().clamp(0, 1), alpha=1 - average)
        if float(total.detach()) < best_loss:
            best, best_loss = x.detach().clone(), float(total.detach())
        if on_step is not None:
            losses = {k: float(v.detach()) for k, v in parts.items()}
            losses["total"] = float(total.detach())
            on_step(done, x.detach(), losses)
        return total

    try:
        while done < steps:
            opt.step(closure)
            if optimizer == "adam":
                with torch.no_grad():
                    x.clamp_(0, 1)
    except _BudgetSpent:
        pass
    if average > 0 and done:
        return (mean / (1 - average ** done)).clamp(0, 1)
    return best.clamp(0, 1)
