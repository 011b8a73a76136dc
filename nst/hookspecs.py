"""Every hook of nst, in one place. Plugins implement them with `@nst.hookimpl`.

pluggy calls hooks with keyword arguments; an implementation may accept any subset of them.
Hooks marked "run hooks" are called only for the plugins taking part in a run (named with
`--plugin`, or providing the chosen method); the others are called for every installed plugin.
See docs/plugins.md for a worked example package.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    import torch
    import typer

    from nst.context import RunContext, Schedule
    from nst.core.encoder import Encoder
    from nst.core.losses import LossTerm

hookspec = pluggy.HookspecMarker("nst")


@hookspec
def nst_register_methods(register: Callable[..., None]) -> None:
    """Add transfer methods (gatys, johnson, analogy, ...). Called for every plugin when the host starts.

    Call ``register(name, run, help="", needs_style=True)`` once per method, where
    ``run(ctx: RunContext) -> torch.Tensor`` returns the result, shape (1, 3, H, W), RGB in [0, 1].
    A plugin that provides the method chosen with ``--method`` takes part in that run.
    """


@hookspec
def nst_plugin_options(register: Callable[..., None]) -> None:
    """Declare this plugin's typed options. Called for every plugin when the host starts.

    Call ``register(key, type, default, help, choices=None)``; ``type`` is one of bool, int, float,
    str or pathlib.Path. Users set them with ``--set PLUGIN.KEY=VALUE``, a ``[set.PLUGIN]`` table in
    the config file, or ``options={"PLUGIN": {"KEY": value}}`` in the API; the validated values
    (defaults filled in) are in ``ctx.options[PLUGIN]``. ``nst plugins show PLUGIN`` lists them.
    """


@hookspec
def nst_register_weights(register: Callable[..., None]) -> None:
    """Add named weight sources (``register(nst.WeightSource(...))``): URL + sha256 + cache, or embedded.
    Called for every plugin; ``nst weights`` lists them with their status.
    """


@hookspec
def nst_prepare(ctx: RunContext) -> dict[str, Any] | None:
    """Run hook, once before the method starts (or before training): compute guides (depth maps,
    masks, stroke maps) or load models.

    ``ctx.content`` (1, 3, H, W) and ``ctx.styles`` (list of (1, 3, H_i, W_i)) are on ``ctx.device``
    at the output size. The returned dict is merged into ``ctx.guides``; prefix keys with the plugin
    name to avoid clashes.
    """


@hookspec
def nst_losses(ctx: RunContext, encoder: Encoder) -> list[LossTerm] | None:
    """Run hook: extra loss terms, built for the current content. Gatys calls it once per scale;
    `nst train` once per step, with the batch of training photos as content.

    ``ctx.scale`` holds the current content ((1, 3, h, w), or the (B, 3, S, S) batch in training) and
    styles; ``encoder`` is the shared VGG encoder. The image a term sees has the content's shape.
    Each ``LossTerm(name, weight, fn, layers)`` names the encoder layers it reads; the engine runs
    the encoder once per step on the union of all terms' layers and calls ``fn(features, image)``.
    A term named "content", "style" or "tv" replaces the core term of that name (e.g. region-wise
    style in place of the global one).
    """


@hookspec(firstresult=True)
def nst_schedule(ctx: RunContext) -> Schedule | None:
    """Run hook, first non-None result wins: replace the coarse-to-fine schedule.

    Return a list of ``Scale(size, steps)`` (long side in pixels, optimisation steps), coarse first.
    The default schedule comes from ``--size``, ``--steps`` and ``--scales``.
    """


@hookspec(firstresult=True)
def nst_train_network(ctx: RunContext, config: Any) -> torch.nn.Module | None:
    """Run hook of `nst train`, first non-None result wins: the network to train instead of the
    Johnson TransformerNet (called once, before ``nst_prepare``; do not call ``ctx.encoder()`` here).

    ``config`` is the ``nst.training.TrainSettings``. The module maps (B, 3, H, W) in [0, 1] to the same
    shape and takes the keyword inputs that ``nst_network_inputs`` provides; its ``config`` attribute (a
    JSON-able dict with an "arch" key that ``nst.core.johnson.load_model`` knows) is saved in the model file.
    """


@hookspec
def nst_network_inputs(ctx: RunContext, net: torch.nn.Module) -> dict[str, Any] | None:
    """Run hook: extra keyword inputs for a feed-forward network's forward call, merged over plugins.

    `nst train` calls it every step (``ctx.scale`` holds the step index and batch) and ``--method johnson``
    once per image, with the network in ``net``. Return e.g. ``{"stroke": 400.0}``, or None.
    """


@hookspec
def nst_on_step(ctx: RunContext, step: int, image: torch.Tensor, losses: dict[str, float]) -> None:
    """Run hook, after every optimisation step: observe only (progress, snapshots, logging).

    ``step`` counts from 1 over all scales; ``image`` (1, 3, h, w) is the current estimate
    (unclamped, do not modify); ``losses`` maps each term's name (and "total") to its weighted value.
    """


@hookspec
def nst_postprocess(ctx: RunContext, image: torch.Tensor) -> torch.Tensor | None:
    """Run hook, after the method (and colour preservation): return a new (1, 3, H, W) image in [0, 1]
    or None to leave it. Plugins are applied in turn, each receiving the previous one's result.
    """


@hookspec
def nst_register_commands(app: typer.Typer) -> None:
    """Add CLI sub-commands to the ``nst`` typer app (e.g. ``nst depth``). Called for every plugin."""
