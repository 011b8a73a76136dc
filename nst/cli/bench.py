"""`nst bench`: the source review's evaluation, run by nst.bench."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nst.errors import note_line, printable


def bench(
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder: report.md, report.html (plots "
                                                                "embedded), results.json, plots/, sheets/ (contact "
                                                                "sheets), images/, work/ (trained networks, "
                                                                "inputs).", show_default=False)],
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes and steps: a few minutes on a 2-core CPU (the full "
                                                        "plan is meant for a GPU).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods to measure. [default: "
                                                        "gatys,nnst,johnson,stroke,arbitrary,analogy,text]",
                                                        show_default=False)] = None,
    sizes: Annotated[Optional[str], typer.Option(help="Comma-separated long sides in px for the time-per-image "
                                                      "section. [default: 64,128 with --quick; 256,512 on a CPU; "
                                                      "256,512,1024 on CUDA]", show_default=False)] = None,
    styles: Annotated[Optional[Path], typer.Option(help="Folder of paintings to use before the built-in ones.",
                                                   show_default=False)] = None,
    photos: Annotated[Optional[Path], typer.Option(help="Folder of photos to use before the built-in ones.",
                                                   show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimisation steps per gatys run (per scale for nnst). "
                                                      "[default: 10 with --quick; "
                                                      "100 on a CPU; 500 on CUDA]", show_default=False)] = None,
    train_steps: Annotated[Optional[int], typer.Option(help="Training steps per style for the networks. [default: 12 "
                                                            "with --quick; 200 on a CPU; 400 on CUDA]",
                                                            show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="Loss-network weights for every method (as nst run --weights).")] = "vgg19",
    max_time: Annotated[float, typer.Option(help="Seconds after which no new measurement starts; the report is written "
                                                 "with what was measured and lists the rest as skipped. 0 = no "
                                                 "limit.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted bench in the same folder with the "
                                                          "same options (finished cells are kept).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier bench report in the folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate nst as the source review asks: time per image by size, training time per model, mean content loss
    over content images, loss during training, style scalability; with contact sheets."""
    from nst.bench import bench as run_bench
    from nst.settings.values import Text, coerce

    results = run_bench(output, quick=quick, device=device, methods=coerce(Optional[list[str]], Text(methods or ""), "--methods"),
                        sizes=coerce(Optional[list[int]], Text(sizes or ""), "--sizes"), styles=styles, photos=photos,
                        steps=steps, train_steps=train_steps, weights=weights, max_time=max_time, resume=resume,
                        overwrite=overwrite, progress=not quiet, note=note_line)
    failed = [k for k, v in results["cells"].items() if "error" in v]
    typer.echo(printable(f"wrote {Path(output) / 'report.md'}, report.html and results.json ({len(results['cells'])} "
                         f"cells{f', {len(failed)} failed: see the report' if failed else ''})"))
