"""Every hook of nst, in one place, with the markers: plugins implement hooks with ``@nst.hookimpl``.

pluggy calls hooks with keyword arguments; an implementation may accept any subset of them, by the
names used here. Two kinds:

- **host hooks** are called once for every installed plugin when the host loads it (registries:
  methods, options, weight sources, network architectures, CLI commands);
- **run hooks** are called only for the plugins taking part in a run or a training (named with
  ``--plugin``, providing the chosen method, or passed in-process). Every run hook may also take
  ``options``: this plugin's validated options (the same dict as ``ctx.options[NAME]``), so a module
  works the same installed under any name or passed in-process. Run hooks are called in pluggy's order:
  implementations marked ``tryfirst=True`` first, then plain ones (the plugin registered last first: third-party
  packages after the built-ins, in-process objects last), then ``trylast=True`` ones. Hook wrappers
  (``wrapper=True`` / ``hookwrapper=True``) are refused on run hooks: the plugin is reported broken.

docs/plugins.md has a table of which run hook fires in which mode, and a worked example package.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy
import torch
import typer

from nst.contract.context import RunContext, Schedule
from nst.core.encoder import Encoder
from nst.core.losses import LossTerm

hookspec = pluggy.HookspecMarker("nst")
hookimpl = pluggy.HookimplMarker("nst")


# --- host hooks: called for every plugin when it is loaded ------------------------------------------

@hookspec
def nst_register_methods(register: Callable[..., None]) -> None:
    """Add transfer methods (gatys, johnson, analogy, ...).

    Call ``register(name, run, help="", needs_style=True)`` once per method, where
    ``run(ctx: RunContext) -> torch.Tensor`` returns the result, shape (1, 3, H, W), RGB in [0, 1].
    A plugin that provides the method chosen with ``--method`` takes part in that run. A name that is
    already taken (by a built-in or an earlier plugin) is refused and this plugin is marked broken.
    """


@hookspec
def nst_plugin_options(register: Callable[..., None]) -> None:
    """Declare this plugin's typed options.

    Call ``register(key, type, default, help="", choices=None, min=None, max=None, file=None)``; ``type``
    is bool, int, float, str, pathlib.Path or a list of one of the last four (``list[int]``, ...); a
    default of None makes the option optional. ``file="out"`` marks an option that makes the plugin write
    files (a folder for side outputs): it is never replayed from a run record (``--config-from``), and the
    files go through ``ctx.outputs.reserve(path, within=folder)``. Path options name files the plugin reads
    (``file="in"``, implied): a record shows them and replays them only with ``--recorded-files``. Users set
    options with ``--set PLUGIN.KEY=VALUE``, a ``[set.PLUGIN]`` table in the config file, or
    ``options={"PLUGIN": {"KEY": value}}`` in the API; ``nst plugins show PLUGIN`` lists them.
    """


@hookspec
def nst_register_weights(register: Callable[..., None]) -> None:
    """Add named weight sources (``register(nst.WeightSource(...))``): URL + sha256 + cache, or embedded.
    ``nst weights`` lists them with their status. A name already taken marks this plugin broken.
    """


@hookspec
def nst_register_architectures(register: Callable[..., None]) -> None:
    """Add feed-forward network architectures that model files may name.

    Call ``register(name, build)``, where ``build(config: dict) -> torch.nn.Module`` rebuilds the
    network from the ``config`` dict saved in the model file (the network's ``config`` attribute when
    it was trained; its ``"arch"`` key is NAME). ``--method johnson --model M``, ``nst export`` and
    ``nst train --resume`` build networks through this registry.
    """


@hookspec
def nst_register_commands(app: typer.Typer) -> None:
    """Add CLI sub-commands to the ``nst`` typer app (e.g. ``nst depth``). A command whose name exists
    already (``run``, or another plugin's) is refused and this plugin is marked broken.
    """


# --- run hooks: called only for the plugins taking part ---------------------------------------------

@hookspec
def nst_prepare(ctx: RunContext, options: dict[str, Any]) -> dict[str, Any] | None:
    """Once before the method starts (or before training): compute guides (depth maps, masks, stroke
    maps) or load models.

    In runs, ``ctx.content`` (1, 3, H, W) and ``ctx.styles`` (list of (1, 3, H_i, W_i)) are on
    ``ctx.device`` at the output size. In training (``ctx.mode == "train"``) ``ctx.content`` is None
    (photos arrive per step in ``ctx.batch``) and ``ctx.styles`` holds the style image. The returned
    dict is merged into ``ctx.guides``; prefix keys with the plugin name to avoid clashes.
    """


@hookspec
def nst_losses(ctx: RunContext, encoder: Encoder, options: dict[str, Any]) -> list[LossTerm] | None:
    """Extra loss terms, built for the current content: gatys calls it once per scale (``ctx.scale``),
    `nst train` once per step (``ctx.batch``); ``ctx.current_content`` is the content of either.

    ``encoder`` is the shared VGG encoder. Each ``LossTerm(name, weight, fn, layers)`` names the
    encoder layers it reads; the engine runs the encoder once per step on the union of all terms'
    layers and calls ``fn(features, image)``, ``image`` having the content's shape. A term named
    "content", "style" or "tv" replaces the core term of that name; two plugins replacing the same
    core term is an error.
    """


@hookspec(firstresult=True)
def nst_schedule(ctx: RunContext, options: dict[str, Any]) -> Schedule | None:
    """First non-None result wins: replace the coarse-to-fine schedule of a gatys run.

    Return a list of ``Scale(size, steps)`` (long side in pixels, optimisation steps), coarse first.
    The default schedule comes from ``--size``, ``--steps`` and ``--scales``.
    """


@hookspec
def nst_train_network(ctx: RunContext, settings: Any, options: dict[str, Any], config: Any) -> torch.nn.Module | None:
    """`nst train` only: the network to train instead of the Johnson TransformerNet (called once, before
    ``nst_prepare``; do not call ``ctx.encoder()`` here). None: no opinion; two plugins returning one is an error.

    ``settings`` is the training's ``nst.TrainSettings`` (``config`` is the same object, under the name
    plugins written for nst 0.1 use). The module maps (B, 3, H, W) in [0, 1] to the same
    shape and takes the keyword inputs that ``nst_network_inputs`` provides. Its ``config`` attribute, a
    JSON-able dict whose ``"arch"`` names an architecture registered with ``nst_register_architectures``,
    is saved in the model file. A ``default_lr`` attribute replaces the 1e-3 default of ``--lr`` (a
    pretrained network fine-tuned with smaller steps); a ``--lr`` the user gives wins.
    """


@hookspec
def nst_network_inputs(ctx: RunContext, net: torch.nn.Module, options: dict[str, Any]) -> dict[str, Any] | None:
    """Extra keyword inputs for a feed-forward network's forward call, merged over plugins.

    `nst train` calls it every step (``ctx.batch`` holds the step index and photos) and
    ``--method johnson`` once per image, with the network in ``net``. Return e.g. ``{"stroke": 400.0}``.
    """


@hookspec
def nst_on_step(ctx: RunContext, step: int, image: torch.Tensor, losses: dict[str, float],
                options: dict[str, Any]) -> None:
    """After every optimisation step (or layer, for analogy; or training step): observe only.

    ``step`` counts from 1 (over all scales); ``image`` (B, 3, h, w) is the current estimate
    (unclamped, do not modify); ``losses`` maps each term's name and "total" to its weighted value.
    """


@hookspec
def nst_postprocess(ctx: RunContext, image: torch.Tensor, options: dict[str, Any]) -> torch.Tensor | None:
    """After the method (and colour preservation) of a run: return a new (1, 3, H, W) image in [0, 1]
    or None to leave it. Plugins are applied in turn (pluggy's order, see above), each receiving the previous
    one's result.
    """


@hookspec
def nst_finish(ctx: RunContext, result: Any, error: BaseException | None, options: dict[str, Any]) -> None:
    """Once at the end of every run or training that started (options and inputs were valid), also
    after a failure or Ctrl-C: flush and close files, write reports.

    ``result`` is the final image (1, 3, H, W) of a run or the ``nst.TrainResult`` of a training, None
    after a failure; ``error`` is the exception that ended it (KeyboardInterrupt for Ctrl-C), or None.
    """
