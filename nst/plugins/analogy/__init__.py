"""Built-in plugin `analogy`: deep image analogy (Liao et al. 2017) as the method `analogy` and `nst analogy`.

A (the content) gives the structure, B′ (the one style image) the appearance; the method returns A′.
With `analogy.save=DIR` (always, for `nst analogy`) it also writes B (B′'s structure, A's appearance)
and the final nearest-neighbour fields as flow-colour PNGs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from nst.contract.context import RunContext, ScaleState
from nst.contract.hookspecs import hookimpl
from nst.core.devices import check_memory
from nst.core.images import image_writer, resize_long_side
from nst.errors import FieldError, NSTError, UsageError, printable
from nst.plugins.analogy.engine import LAYERS, AnalogyParams, flow_image, image_analogy, normalise_aspect

BYTES_PER_PIXEL = 4096  # features, deconvolution and search of A and B′ (measured: ~3.6 kB per px at 512 px)
OUTPUTS = {"a_prime": "A_prime.png", "b": "B.png", "nnf_ab": "nnf_A_to_B.png", "nnf_ba": "nnf_B_to_A.png"}


def params_from_options(opts: dict, seed: int) -> AnalogyParams:
    """AnalogyParams from the plugin's options; errors name the option (analogy.alphas, ...)."""
    try:
        return AnalogyParams(layers=tuple(opts["layers"]), alphas=opts["alphas"], patch_sizes=opts["patch_sizes"],
                             pm_iters=opts["pm_iters"], deconv_steps=opts["deconv_steps"],
                             both_directions=opts["both_directions"], photo=opts["photo"], seed=seed).validate()
    except FieldError as exc:
        raise exc.spelled(f"analogy.{exc.field}") from None


def run(ctx: RunContext) -> torch.Tensor:
    """A′ for A = ctx.content and B′ = the style image, both at the run's size."""
    if len(ctx.styles) != 1:
        raise UsageError(f"--method analogy takes exactly one appearance image B′, got {len(ctx.styles)}")
    opts = ctx.plugin_options("analogy")
    params = params_from_options(opts, ctx.settings.seed)
    save = opts["save"]
    if save is not None:  # checked before any work: B and the NNF pictures appear with the result or not at all
        names = [OUTPUTS[k] for k in ("nnf_ab",) + (("b", "nnf_ba") if params.both_directions else ())]
        for name in names:
            ctx.outputs.reserve(Path(save) / name, make_folder=True, within=save)
    a = ctx.content
    b_prime = normalise_aspect(a, resize_long_side(ctx.styles[0], ctx.settings.size), ctx.note)
    check_memory(BYTES_PER_PIXEL * (a[0, 0].numel() + b_prime[0, 0].numel()), f"an analogy at {ctx.settings.size} px",
                 ctx.device, "use a smaller size")
    ctx.total_steps = len(params.layers)
    encoder = ctx.encoder()

    def on_layer(index: int, preview, cost: float) -> None:
        ctx.scale = ScaleState(index - 1, ctx.settings.size, a, [b_prime])
        ctx.hooks.on_step(ctx, index, preview(), {"patch": cost, "total": cost})

    result = image_analogy(encoder, a, b_prime, params, on_layer)
    ctx.scale = None
    if save is not None:
        ctx.summary["analogy outputs"] = ", ".join(str(p) for p in queue_outputs(ctx, result, Path(save), b_prime))
    return result.a_prime


def queue_outputs(ctx: RunContext, result, folder: Path, b_prime: torch.Tensor) -> list[Path]:
    """B and the NNF pictures, queued in ctx.outputs for FOLDER; returns their paths."""
    pictures = {}
    if result.b is not None:
        pictures[OUTPUTS["b"]] = result.b
    pictures[OUTPUTS["nnf_ab"]] = flow_image(result.nnf_ab, tuple(b_prime.shape[-2:]))[None]
    if result.nnf_ba is not None:
        pictures[OUTPUTS["nnf_ba"]] = flow_image(result.nnf_ba, tuple(result.nnf_ab.shape[:2]))[None]
    for name, picture in pictures.items():
        ctx.outputs.add(folder / name, image_writer(picture, folder / name))
    return [folder / name for name in pictures]


@hookimpl
def nst_register_methods(register) -> None:
    register("analogy", run, help="Liao et al. 2017 deep image analogy: CONTENT's structure with the STYLE image's "
             "appearance, by PatchMatch on VGG features (no optimisation of pixels)", needs_style=True)


@hookimpl
def nst_plugin_options(register) -> None:
    register("layers", list[str], list(LAYERS), "VGG19 relu layers, deep to shallow")
    register("alphas", list[float], None, "blend weight of A's own features per layer below the top (default "
                                          "0.8,0.7,0.6,0.1)")
    register("patch_sizes", list[int], None, "PatchMatch patch size per layer, odd (default 3,3,3,5,5)")
    register("pm_iters", int, 5, "PatchMatch iterations per layer and direction", min=1, max=1000)
    register("deconv_steps", int, 20, "L-BFGS iterations of each feature deconvolution", min=0, max=10000)
    register("both_directions", bool, True, "also reconstruct B (bidirectional constraint; off = about twice as fast)")
    register("photo", bool, False, "photo-realistic refinement (guided filter on A): for photo-to-photo colour "
                                   "transfer")
    register("save", Path, None, "folder for B and the nearest-neighbour field pictures", file="out")


@hookimpl
def nst_register_commands(app) -> None:
    @app.command("analogy", no_args_is_help=True)
    def analogy_command(
        a: Annotated[Path, typer.Argument(help="A: the image whose structure is kept.", show_default=False)],
        b_prime: Annotated[Path, typer.Argument(help="B′: the image whose appearance is transferred.", show_default=False)],
        output: Annotated[Path, typer.Option("--output", "-o", help=f"Output folder: {', '.join(OUTPUTS.values())}.",
                                             show_default=False)],
        size: Annotated[int, typer.Option(help="Long side of both images in pixels (no upper limit but memory).")] = 448,
        both_directions: Annotated[bool, typer.Option("--both-directions/--one-direction",
                                                      help="Also make B (B′'s structure, A's appearance); one direction "
                                                           "is about twice as fast.")] = True,
        photo: Annotated[bool, typer.Option(help="Photo-realistic refinement for photo-to-photo colour transfer.")] = False,
        layers: Annotated[str, typer.Option(help="VGG19 relu layers, deep to shallow.")] = ",".join(LAYERS),
        alphas: Annotated[str, typer.Option(help="Weight of A's own features per layer below the top. [default: "
                                                 "0.8,0.7,0.6,0.1]")] = "",
        patch_sizes: Annotated[str, typer.Option(help="PatchMatch patch size per layer (odd). [default: 3,3,3,5,5]")] = "",
        pm_iters: Annotated[int, typer.Option(help="PatchMatch iterations per layer and direction.")] = 5,
        deconv_steps: Annotated[int, typer.Option(help="L-BFGS iterations per feature deconvolution.")] = 20,
        seed: Annotated[int, typer.Option(help="Random seed (PatchMatch start and search).")] = 0,
        weights: Annotated[str, typer.Option(help="Encoder weights: a name from `nst weights` or a file path.")] = "vgg19",
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the files an earlier nst analogy wrote "
                                                                    "in the output folder (refused otherwise; other "
                                                                    "files are never replaced).")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Deep image analogy: A′ (A's structure, B′'s appearance) and B, with their nearest-neighbour fields.

        Both images are scaled to --size on the long side; when their aspect ratios differ by more than
        2×, B′ is centre-cropped to A's shape (with a note).
        """
        from nst.api import run as run_api
        from nst.core.files import Manifest, Outputs
        from nst.settings.values import Text

        if output.exists() and not output.is_dir():
            raise UsageError(f"{output}: -o must be a folder (it receives {', '.join(OUTPUTS.values())})")
        Outputs([a, b_prime], overwrite).reserve(output / OUTPUTS["a_prime"], make_folder=True, within=output)
        options = {"analogy": dict(layers=Text(layers), alphas=Text(alphas), patch_sizes=Text(patch_sizes),
                                   pm_iters=pm_iters, deconv_steps=deconv_steps, both_directions=both_directions,
                                   photo=photo, save=output)}
        made = not output.exists()
        try:
            output.mkdir(parents=True, exist_ok=True)
            result = run_api(a, [b_prime], method="analogy", options=options, size=size, seed=seed, weights=weights,
                             device=device, pooling="max", progress=not quiet, output=output / OUTPUTS["a_prime"],
                             overwrite=overwrite)
            Manifest(output).record([output / OUTPUTS["a_prime"]])
        except FieldError as exc:  # this command's flags are --alphas, not analogy.alphas
            raise exc.spelled("--" + exc.field.removeprefix("analogy.").replace("_", "-")) from None
        except OSError as exc:
            raise NSTError(f"{output}: cannot create the output folder ({exc.strerror or exc})") from None
        finally:
            if made and output.is_dir() and not any(output.iterdir()):
                output.rmdir()  # a failed run leaves no trace
        s = result.summary
        typer.echo(printable(f"wrote {output / OUTPUTS['a_prime']} and {s.pop('analogy outputs')} ({s['size']}, "
                             f"{s['seconds']} s on {s['device']})"))

