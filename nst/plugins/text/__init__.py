"""Built-in plugin `text`: text-effect and font transfer (Yang et al. 2017) as the command `nst text`.

S is a glyph image, S′ the same glyph with an effect; the effect is synthesised for a target glyph
image T or for a string rendered with any TrueType/OpenType font. Several S/S′ pairs pool their patches
(font transfer: one consistent effect over a whole alphabet).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from nst.contract.hookspecs import hookimpl
from nst.core.devices import pick_device
from nst.core.files import Outputs
from nst.core.images import MAX_SIDE, check_output_path, image_writer, load_image, resize_long_side
from nst.core.progress import progress_bar
from nst.errors import FieldError, NSTError, UsageError, note_line, printable
from nst.plugins.text.effects import BACKGROUNDS, EffectParams, measure_background, plan_transfer, total_steps, transfer
from nst.plugins.text.glyphs import (
    Guide,
    Layout,
    distance_guide,
    glyph_mask,
    guide_picture,
    missing_glyphs,
    render_text,
)
from nst.settings.values import check_range, flag

PROBE_SIZE = 100  # font size (px) at which a font's stroke radius is measured for the automatic size
ALPHA_FORMATS = (".png", ".webp", ".tif", ".tiff")
BACKGROUND_HELP = ("keep: one synthesis for the whole canvas; beyond the distance where S′'s effect ends all "
                   "pixels share one guidance value, so they take S′'s far-ground patches; transparent: RGBA, alpha = "
                   "how clearly a pixel differs from S′'s ground colour "
                   "(at least S′'s coverage at that distance inside the glyph, 0 beyond the distance where "
                   "S′'s effect ends), colours unmixed from the ground; synthesize: that effect layer over a "
                   "ground texture synthesised on its own for the whole canvas.")


def load_examples(sources: list[Path], styleds: list[Path], note: Callable[[str], None]) -> list[tuple[Guide, torch.Tensor]]:
    """[(guide of S_i, S′_i (1, 3, H, W))] from pairs of files; one clear error for a bad pair."""
    if len(sources) != len(styleds):
        raise UsageError(f"give --source and --styled in pairs (got {len(sources)} --source, {len(styleds)} --styled)")
    examples = []
    for s_path, styled_path in zip(sources, styleds):
        s, styled = load_image(s_path, note), load_image(styled_path, note)
        if s.shape != styled.shape:
            raise NSTError(f"{s_path} ({s.shape[-1]}x{s.shape[-2]}) and {styled_path} ({styled.shape[-1]}x"
                           f"{styled.shape[-2]}) differ in size: S′ must be S with the effect applied")
        examples.append((distance_guide(glyph_mask(s, str(s_path))), styled))
    return examples


def text_target(text: str, layout: Layout, font_size: float | None, size: int | None, radius: float,
                margin_radii: float) -> torch.Tensor:
    """(1, 3, H, W) TEXT in black on white. FONT_SIZE None: the size at which the font's strokes have
    RADIUS px (the examples' radius). A margin of MARGIN_RADII stroke radii around the ink; SIZE, when
    given, is the long side (the text is drawn again at the font size that gives it)."""
    probe = distance_guide(glyph_mask(render_text(text, layout, PROBE_SIZE, 0), "the rendered text")).radius
    if font_size is None:
        font_size = PROBE_SIZE * radius / probe
    margin = max(2.0, margin_radii * probe * font_size / PROBE_SIZE)
    image = render_text(text, layout, font_size, math.ceil(margin))
    if size is not None:
        k = size / max(image.shape[-2:])
        image = resize_long_side(render_text(text, layout, font_size * k, math.ceil(margin * k)), size)
    return image


def image_target(path: Path, size: int | None, note: Callable[[str], None]) -> torch.Tensor:
    """(1, 3, H, W) the target glyph image, its long side resized to SIZE when given."""
    image = load_image(path, note)
    return image if size is None else resize_long_side(image, size)


def _mean_radius(examples: list[tuple[Guide, torch.Tensor]]) -> float:
    return float(sum(g.radius for g, _ in examples) / len(examples))


def guide_names(count: int) -> list[str]:
    """File names of the distance maps of COUNT examples S_i and of T."""
    sources = ["source_distance.png"] if count == 1 else [f"source{i + 1}_distance.png" for i in range(count)]
    return sources + ["target_distance.png"]


def queue_guides(outputs, folder: Path, examples: list[tuple[Guide, torch.Tensor]], target: Guide, far: float) -> list[Path]:
    """The distance maps of every S and of T, queued in OUTPUTS as PNGs in FOLDER; returns their paths."""
    guides = [g for g, _ in examples] + [target]
    paths = [folder / name for name in guide_names(len(examples))]
    for guide, path in zip(guides, paths):
        outputs.add(path, image_writer(guide_picture(guide.u, far), path))
    return paths


def to_picture(image: torch.Tensor):
    """(1, 3, H, W) -> itself; (1, 4, H, W) RGBA -> an RGBA PIL image (save_image keeps the alpha)."""
    if image.shape[1] == 3:
        return image
    from PIL import Image

    arr = (image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0 + 0.5).astype("uint8")
    return Image.fromarray(arr, "RGBA")


@dataclass
class TextResult:
    """What text_effect() wrote: OUTPUT, its SIZE (w, h), how many EXAMPLES pooled, the BACKGROUND mode, GUIDES
    (' and N distance map(s) in FOLDER' or ''), SECONDS."""

    output: Path
    size: tuple[int, int]
    examples: int
    background: str
    guides: str
    seconds: float


def text_effect(source: list[Path], styled: list[Path], output: Path, *, text: str | None = None,
                target: Path | None = None, font: str | None = None, font_size: float | None = None,
                line_spacing: float = 1.0, letter_spacing: float = 0.0, align: str = "center", size: int | None = None,
                background: str = "keep", save_guides: Path | None = None, seed: int = 0,
                patch_size: int = EffectParams.patch_size, large_patch: int = EffectParams.large_patch,
                iterations: int = EffectParams.iters_coarse, distance_weight: float = EffectParams.distance_weight,
                mask_weight: float = EffectParams.mask_weight, threads: int = 1, device: str = "auto",
                overwrite: bool = False, progress: bool = False, note: Callable[[str], None] | None = None) -> TextResult:
    """The effect of the pairs SOURCE -> STYLED applied to TEXT (rendered) or to the glyph image TARGET, written
    to OUTPUT (replaced when it exists; see `nst text --help` for every argument; errors name the flags). The
    SAVE_GUIDES maps nst wrote there before are replaced only with OVERWRITE."""
    started = time.perf_counter()
    note = note or note_line
    if (text is None) == (target is None):
        raise UsageError("give exactly one target: --text STRING or --target IMAGE")
    if background not in BACKGROUNDS:
        raise UsageError(f"--background must be one of {', '.join(BACKGROUNDS)}, got '{background}'")
    if align not in ("left", "center", "right"):
        raise UsageError(f"--align must be left, center or right, got '{align}'")
    if background == "transparent" and output.suffix.lower() not in ALPHA_FORMATS:
        raise UsageError(f"{output}: {output.suffix} has no alpha channel; use {', '.join(ALPHA_FORMATS)} for "
                         "--background transparent")
    for name, value, lo, hi in [("--size", size, 16, MAX_SIDE), ("--threads", threads, 1, 256),
                                ("--font-size", font_size, 1, 4096), ("--line-spacing", line_spacing, 0.1, 10),
                                ("--letter-spacing", letter_spacing, -0.5, 10)]:
        if value is not None:
            check_range(name, value, lo, hi)
    if save_guides is not None and save_guides.exists() and not save_guides.is_dir():
        raise UsageError(f"{save_guides}: --save-guides must be a folder")
    outputs = Outputs([*source, *styled, target, font], overwrite)
    outputs.reserve(check_output_path(output))
    for name in guide_names(len(source)) if save_guides is not None else []:
        outputs.reserve(save_guides / name, make_folder=True, within=save_guides)
    if text is not None:
        missing = missing_glyphs(text.replace("\\n", ""), font)
        if missing:
            raise NSTError(f"the font {font or '(built-in)'} has no glyph for {' '.join(repr(c) for c in missing[:8])}"
                           f"{' …' if len(missing) > 8 else ''}; use --font with a font that has them")
    try:
        params = EffectParams(patch_size=patch_size, large_patch=large_patch, iters_coarse=iterations,
                              iters_fine=min(iterations, EffectParams.iters_fine), distance_weight=distance_weight,
                              mask_weight=mask_weight, seed=seed).validate()
    except FieldError as exc:
        raise exc.spelled("--iterations" if exc.field.startswith("iters") else flag(exc.field)) from None
    examples = load_examples(list(source), list(styled), note)
    if text is not None:
        layout = Layout(font, line_spacing, letter_spacing, align)
        margin = measure_background(examples).reach + 1.0
        t_image = text_target(text.replace("\\n", "\n"), layout, font_size, size, _mean_radius(examples), margin)
        t_name = "the rendered text"
    else:
        t_image, t_name = image_target(target, size, note), str(target)
    t_guide = distance_guide(glyph_mask(t_image, t_name))
    plan = plan_transfer(examples, t_guide, background, params)
    steps = plan.runs * total_steps(tuple(t_guide.mask.shape), tuple(plan.source_styled.shape[-2:]), params)
    bar, advance = _progress(not progress, steps)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with bar:
            result = transfer(plan, t_guide, background, params, advance, pick_device(device))
    finally:
        torch.set_num_threads(previous)
    outputs.add(output, image_writer(to_picture(result), output))
    extra = ""
    if save_guides is not None:
        written = queue_guides(outputs, save_guides, examples, t_guide, plan.background.far)
        extra = f" and {len(written)} distance map(s) in {save_guides}"
    outputs.commit()
    return TextResult(output, tuple(result.shape[-2:])[::-1], len(examples), background, extra,
                      time.perf_counter() - started)


def _progress(quiet: bool, total: int):
    """The progress bar (a disabled one when QUIET) and its advance() function."""
    bar = progress_bar(disable=quiet, unit="iteration")
    task = bar.add_task("text effect", total=total)
    return bar, lambda: bar.advance(task)


@hookimpl
def nst_register_commands(app) -> None:
    @app.command("text", no_args_is_help=True)
    def text_command(
        source: Annotated[list[Path], typer.Option("--source", "-s", help="S: a glyph image, dark or light text on a "
                                                                          "plain ground (found by Otsu's threshold; "
                                                                          "the ground is the class on the border). "
                                                                          "Repeat with --styled for font transfer.",
                                                                          show_default=False)],
        styled: Annotated[list[Path], typer.Option("--styled", help="S′: the same glyph with the effect, same size as "
                                                                    "its S; give one per --source, in the same "
                                                                    "order.", show_default=False)],
        output: Annotated[Path, typer.Option("--output", "-o", help="Output image (PNG, WebP or TIFF for --background "
                                                                    "transparent).", show_default=False)],
        text: Annotated[Optional[str], typer.Option(help="Target string to render (a literal \\n starts a new "
                                                         "line).", show_default=False)] = None,
        target: Annotated[Optional[Path], typer.Option(help="Target glyph image T instead of --text (same conventions "
                                                            "as S).", show_default=False)] = None,
        font: Annotated[Optional[str], typer.Option(help="TrueType/OpenType font file (or a system font file name) for "
                                                         "--text. [default: Pillow's built-in scalable font]",
                                                         show_default=False)] = None,
        font_size: Annotated[Optional[float], typer.Option(help="Font size in px for --text. [default: the size at "
                                                                "which the font's strokes are as thick as S's, so the "
                                                                "effect keeps its own scale]", show_default=False)] = None,
        line_spacing: Annotated[float, typer.Option(help="Distance between lines of --text, times the font's line "
                                                         "height.")] = 1.0,
        letter_spacing: Annotated[float, typer.Option(help="Extra space after each letter of --text, in font sizes "
                                                           "(0.1 = a tenth of the size; negative tightens).")] = 0.0,
        align: Annotated[str, typer.Option(help="Alignment of the lines of --text: left, center or right.")] = "center",
        size: Annotated[Optional[int], typer.Option(help="Long side of the output in px (the text or T is scaled to "
                                                         "it; S is rescaled to T's stroke width when they differ by "
                                                         "over 25%). [default: T's own size]", show_default=False)] = None,
        background: Annotated[str, typer.Option(help=f"{'|'.join(BACKGROUNDS)}. {BACKGROUND_HELP}")] = "keep",
        save_guides: Annotated[Optional[Path], typer.Option(help="Folder for the distance maps of S and T as PNGs "
                                                                 "(blue inside, dark on the centre line; orange "
                                                                 "outside, white where guidance stops).",
                                                                 show_default=False)] = None,
        seed: Annotated[int, typer.Option(help="Random seed of the patch search (results are reproducible).")] = 0,
        patch_size: Annotated[int, typer.Option(help="Patch size in px (odd).")] = EffectParams.patch_size,
        large_patch: Annotated[int, typer.Option(help="Larger patch size tried everywhere, kept where it fits about as "
                                                      "well as the small one (smooth parts); equal to --patch-size "
                                                      "turns the adaptive size off.")] = EffectParams.large_patch,
        iterations: Annotated[int, typer.Option(help="Search-and-vote iterations at the coarsest level (falling "
                                                     "linearly to 3 at the finest).")] = EffectParams.iters_coarse,
        distance_weight: Annotated[float, typer.Option(help="Weight of the distance guidance per px of distance "
                                                            "mismatch (higher = the effect follows the outline more "
                                                            "strictly).")] = EffectParams.distance_weight,
        mask_weight: Annotated[float, typer.Option(help="Weight of the glyph-mask guidance at the first iteration of "
                                                        "each level (fades to 0 over the level's iterations)."
                                                        )] = EffectParams.mask_weight,
        threads: Annotated[int, typer.Option(help="CPU threads for torch during a CPU synthesis; its many small "
                                                  "operations run fastest on one (256 px: 5 s on 1 thread, 16-70 s on "
                                                  "2 of a busy 2-core machine).")] = 1,
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (the patch search and voting run "
                                                 "there).")] = "auto",
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the distance maps an earlier run wrote in "
                                                                    "the --save-guides folder (refused otherwise).")
                             ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Text effects: the effect S → S′ applied to a string or a glyph image T (Yang 2017, Awesome Typography).

        Guided patch synthesis: glyph masks and distances to the outline (in stroke radii) steer a
        coarse-to-fine PatchMatch search + voting that places S′'s patches at matching distances.
        """
        result = text_effect(source, styled, output, text=text, target=target, font=font, font_size=font_size,
                             line_spacing=line_spacing, letter_spacing=letter_spacing, align=align, size=size,
                             background=background, save_guides=save_guides, seed=seed, patch_size=patch_size,
                             large_patch=large_patch, iterations=iterations, distance_weight=distance_weight,
                             mask_weight=mask_weight, threads=threads, device=device, overwrite=overwrite,
                             progress=not quiet)
        w, h = result.size
        typer.echo(printable(f"wrote {result.output}{result.guides} ({w}x{h}, background {result.background}, "
                             f"{result.examples} example(s), {result.seconds:.1f} s)"))
