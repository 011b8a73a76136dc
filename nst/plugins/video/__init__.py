"""Built-in plugin `video`: `nst video`, style transfer for videos with temporal consistency.

Every frame goes through nst.run (any method, any plugin); optical flow between consecutive frames (DIS,
Farneback or RAFT) with the forward-backward consistency mask of Ruder et al. 2016 keeps the result steady:
gatys and nnst frames start from the warped previous output and carry a temporal loss, feed-forward frames blend the
warped previous output in. Frames are written to OUT.frames/ as they are made (--resume continues), and the
output appears when the last frame is done. The Python entry point is nst.plugins.video.stylize_video.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nst.contract.hookspecs import hookimpl
from nst.plugins.video.flow import ESTIMATORS, RAFT_SOURCES
from nst.plugins.video.temporal import BLEND, TEMPORAL_LOSS
from nst.settings import Settings
from nst.settings.flags import with_settings
from nst.settings.values import parse_sets

__all__ = ["stylize_video"]
NOT_PER_FRAME = ("method", "save_every", "plan", "max_memory", "tile", "bit_depth")  # own flag, or not for videos


def stylize_video(*args, **kwargs):
    """See nst.plugins.video.engine.stylize_video (imported on first use: PyAV and OpenCV load only for videos)."""
    from nst.plugins.video.engine import stylize_video as run

    return run(*args, **kwargs)


@hookimpl
def nst_register_weights(register) -> None:
    for source in RAFT_SOURCES.values():
        register(source)


@hookimpl
def nst_register_commands(app) -> None:
    @app.command("video", no_args_is_help=True)
    @with_settings(Settings, exclude=NOT_PER_FRAME, shown={"size": "the input's"})
    def video_command(
        inputs: Annotated[list[Path], typer.Argument(help="The VIDEO (any format FFmpeg reads), a folder of frames or "
                                                          "a glob "
                                                     "('shots/*.png'), then the STYLE image(s) for arbitrary, gatys "
                                                     "and nnst.", show_default=False)],
        output: Annotated[Path, typer.Option("--output", "-o", help="Output video (.mp4 .mkv .mov .webm .avi: same "
                                                                    "frame rate, "
                                             "frame count and audio) or a folder for PNG frames (a name without a "
                                             "suffix).", show_default=False)],
        method: Annotated[str, typer.Option(help="arbitrary (any painting, one pass per frame), johnson (--model), "
                                                 "gatys "
                                            "or nnst (optimisation: minutes per frame), or a plugin's method.")] = "arbitrary",
        temporal: Annotated[bool, typer.Option("--temporal/--no-temporal", help="Temporal consistency through optical "
                                                                                "flow; "
                                               "--no-temporal stylises every frame on its own (to compare).")] = True,
        temporal_blend: Annotated[float, typer.Option(help="Feed-forward methods: share of the warped previous output "
                                                           "kept on "
                                                      "pixels whose motion is reliable, 0..1 (0 = none).")] = BLEND,
        temporal_weight: Annotated[float, typer.Option(help="gatys, nnst: weight of the temporal loss (squared difference to "
                                                            "the "
                                                       "warped previous output on reliable pixels).")] = TEMPORAL_LOSS,
        flow: Annotated[str, typer.Option(help=f"Optical flow: {', '.join(ESTIMATORS)} (raft downloads torchvision's "
                                               "weights "
                                          "once, sha256-checked).")] = "dis",
        flow_weights: Annotated[str, typer.Option(help=f"For --flow raft: {', '.join(RAFT_SOURCES)} or a .pth file of "
                                                  "torchvision RAFT weights.")] = "raft-large",
        fps: Annotated[Optional[float], typer.Option(help="Frame rate of a folder or glob of frames. [default: 25]")] = None,
        audio: Annotated[bool, typer.Option("--audio/--no-audio", help="Carry the input's audio track over.")] = True,
        resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last finished "
                                                              "frame "
                                             "(same options).")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over from an interrupted run's frames, or "
                                                "replace the frames an earlier run wrote into an output folder (an "
                                                "output file is replaced anyway, as cp does).")] = False,
        plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin taking part in every frame "
                                                                                   "(repeatable).")] = None,
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE "
                                                                        "(repeatable).")] = None,
        config: Annotated[Optional[Path], typer.Option(help="TOML file with any `nst run` setting, `plugins = [..]` "
                                                            "and "
                                                       "[set.PLUGIN] tables. Flags win.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
        settings: dict[str, Any] = None,
    ) -> None:
        """Stylise a video with temporal consistency: nst video IN.mp4 STYLE.jpg -o OUT.mp4.

        Frames are kept in OUT.frames/ as they are made; an interrupted run continues with --resume, and
        OUT appears only when every frame is done. At the end the flicker (mean warping error between
        consecutive output frames on pixels whose motion is reliable; lower is steadier) is printed.
        """
        from nst.errors import note_line, printable
        from nst.plugins.video.engine import stylize_video as run

        result = run(inputs[0], inputs[1:], output, method=method, temporal=temporal, blend_weight=temporal_blend,
                     temporal_weight=temporal_weight, flow=flow, flow_weights=flow_weights, fps=fps, audio=audio,
                     resume=resume, overwrite=overwrite, progress=not quiet, note=note_line, plugins=plugin or [],
                     options=parse_sets(set_ or []), config=config, **settings)
        if result.rank != 0:  # under torchrun, process 0 reports
            return
        w, h = result.size
        typer.echo(printable(f"wrote {result.output} ({result.frames} frames, {w}x{h}, {float(result.fps):g} fps"
                             f"{', audio kept' if result.audio else ''}; {result.seconds} s, "
                             f"{(result.frames - result.resumed_at) / max(result.seconds, 1e-9):.2f} frames/s)"))
        typer.echo(f"  flicker (mean warping error): {result.flicker:.6f}{'' if temporal else ' (--no-temporal)'}")
