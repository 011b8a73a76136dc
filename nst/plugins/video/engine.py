"""stylize_video(): every frame through nst.run (so every method and plugin works), made temporally consistent,
written frame by frame into a work folder (resumable), then assembled into the output all at once.

The work folder is OUT.frames beside OUT (OUT.mp4.frames for OUT.mp4): frame_NNNNNN.png (the final frames,
each written atomically), job.json (what made them, checked by --resume) and the manifest of what nst wrote there
(nst.core.files.Manifest: only those files are ever removed). A work folder is data read back: its job.json and
frames are checked before they are used.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nst.core.devices import pick_device
from nst.core.files import Manifest, Outputs, atomic_path, check_writable, same_file
from nst.core.images import MIN_SIDE, as_tensor, resize_long_side
from nst.errors import NSTError, UsageError, note_line
from nst.plugins.video import io
from nst.plugins.video.flow import estimator, flow_pair, warp
from nst.plugins.video.temporal import (
    BLEND,
    TEMPORAL_LOSS,
    TemporalGatys,
    blend,
    flicker,
    quantised,
    to_array,
    to_tensor,
)
from nst.runtime.distributed import rank_and_world

OPTIMISING = {"gatys", "nnst"}  # methods made consistent by a start image + loss; every other method by blending
MANIFEST = "job.json"
GATYS_WARMUP = 2  # frames a torchrun process optimises before its chunk (see warmup_frames)


@dataclass
class VideoResult:
    """What stylize_video() made: OUTPUT (a video or a folder of PNG frames), FRAMES written, FPS, SIZE (w, h),
    FLICKER (mean warping error between consecutive output frames, see temporal.warping_errors), SECONDS of the
    whole call, AUDIO whether an audio track was carried over, RESUMED_AT the first frame this call stylised.
    Under torchrun, processes other than RANK 0 return the frames they wrote, FLICKER nan and no AUDIO."""

    output: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]
    flicker: float
    seconds: float
    audio: bool
    resumed_at: int = 0
    rank: int = 0


def work_folder(output: Path) -> Path:
    return output.with_name(output.name + ".frames")


def _done_frames(work: Path) -> int:
    """How many frames a work folder holds, counting from 0 without a gap."""
    count = 0
    while (work / io.frame_name(count)).is_file():
        count += 1
    return count


def _clear_work(work: Path) -> None:
    """Delete a work folder nst made: the files its manifest lists, unchanged, and temp files (anything else is
    refused)."""
    Manifest(work).remove_written()
    for item in work.glob(".nst.*.part*"):  # an atomic write cut short
        item.unlink()
    try:
        work.rmdir()
    except OSError:
        raise NSTError(f"{work}: holds files nst did not write; move them away") from None


def _check_paths(source: io.FrameSource, output: Path, kind: str, inputs: list, overwrite: bool) -> None:
    """Refuse an output that is an input (the video, a frame, a style, the model) or that exists (without
    --overwrite), before any work."""
    plan = Outputs(inputs, overwrite)
    frames = source.files or []
    if kind == "video":
        plan.reserve(output)  # a file the user names: replaced, as cp does
        return
    check_writable(output / "frame_000000.png", make_folder=True)
    if same_file(output, source.path) or any(same_file(output, f.parent) for f in frames[:1]):
        raise UsageError(f"{output}: is the folder of the input frames; choose another output folder")
    for path in plan.inputs:
        if same_file(output, path.parent):
            raise UsageError(f"{output}: holds an input of this command ({path}); choose another output folder")
    Manifest(output).check()
    for existing in sorted(output.glob("frame_*.png")) if output.is_dir() else []:  # nst's names in the user's folder
        plan.reserve(existing, within=output)


def _manifest(source: io.FrameSource, size: tuple[int, int], job: dict[str, Any]) -> dict[str, Any]:
    return {"input": str(Path(os.path.realpath(source.path))), "size": list(size), **job}


def _prepare_work(work: Path, manifest: dict, resume: bool, overwrite: bool) -> int:
    """The first frame to stylise: 0 for a new work folder, the frames already done for --resume."""
    if resume and overwrite:
        raise UsageError("give --resume or --overwrite, not both")
    if work.exists() and not work.is_dir():
        raise NSTError(f"{work}: is a file, but nst keeps the frames of this output there; move it away")
    if work.is_dir():
        Manifest(work).check()
        if resume:
            try:
                before = json.loads((work / MANIFEST).read_text())
            except (OSError, ValueError, RecursionError):
                before = None
            if not isinstance(before, dict) or not Manifest(work).owns(work / MANIFEST):
                raise NSTError(f"--resume: {work} has no {MANIFEST} that nst wrote; start over with --overwrite")
            differ = sorted(k for k in set(before) | set(manifest) if before.get(k) != manifest.get(k))
            if differ:
                raise UsageError(f"--resume: {work} was made with other options ({', '.join(differ)}); use the same "
                                 "ones, "
                                 "or --overwrite to start over")
            return _done_frames(work)
        if not overwrite:
            raise UsageError(f"{work} is left from an interrupted run: continue it with --resume, or start over with "
                             "--overwrite")
        _clear_work(work)
    elif resume:
        raise UsageError(f"--resume: nothing to resume ({work} does not exist)")
    work.mkdir(parents=True)
    with atomic_path(work / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    Manifest(work).record([work / MANIFEST])
    return 0


def _frame_size(source: io.FrameSource, size: int | None) -> tuple[tuple[int, int], int]:
    """((w, h), long side) of the output frames: the source's, or with the long side SIZE (nst.run's rounding)."""
    long = size or max(source.width, source.height)
    h, w = resize_long_side(torch.zeros(1, 1, source.height, source.width), long).shape[-2:]
    if min(h, w) < MIN_SIDE:
        made = f"would be {w}x{h} px at --size {size}" if size else "are"
        raise NSTError(f"{source.path}: its {source.width}x{source.height} px frames {made}, under the {MIN_SIDE} px "
                       f"minimum on each side; {'use a larger --size' if size else 'give --size to scale them up'}")
    return (w, h), long


def _sized_frames(source: io.FrameSource, start: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    for frame in source.frames(start):
        yield io.fit(frame, size) if (frame.shape[1], frame.shape[0]) != size else frame


def _read_frames(work: Path, count: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    for index in range(count):
        yield _work_frame(work, index, size)


def _work_frame(work: Path, index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame INDEX of the work folder, (h, w, 3) of SIZE (w, h); one error when it is not (the folder is read back)."""
    path = work / io.frame_name(index)
    frame = io.read_image_frame(path)
    if (frame.shape[1], frame.shape[0]) != size:
        raise NSTError(f"{path}: is {frame.shape[1]}x{frame.shape[0]} px, the video's frames are {size[0]}x{size[1]}: "
                       "not a frame this run wrote; start over with --overwrite")
    return frame


def _once(note: Callable[[str], None]) -> Callable[[str], None]:
    """NOTE, saying each message only once (every frame is a run that may note the same thing)."""
    seen: set[str] = set()

    def say(message: str) -> None:
        if message not in seen:
            seen.add(message)
            note(message)

    return say


def stylize_video(input: str | os.PathLike, styles: Iterable = (), output: str | os.PathLike = "", *,
                  method: str = "arbitrary", temporal: bool = True, blend_weight: float = BLEND,
                  temporal_weight: float = TEMPORAL_LOSS, flow: str = "dis", flow_weights: str = "raft-large",
                  fps: float | None = None, audio: bool = True, resume: bool = False, overwrite: bool = False,
                  progress: bool = False, note: Callable[[str], None] | None = None, plugins: Iterable = (),
                  options: dict | None = None, config: str | os.PathLike | None = None, host=None,
                  **settings: Any) -> VideoResult:
    """Stylise the video (or folder / glob of frames) INPUT into OUTPUT: a video file (.mp4 .mkv .mov .webm .avi),
    or a folder of PNG frames. Each frame goes through nst.run with METHOD, STYLES, PLUGINS, OPTIONS, CONFIG and
    SETTINGS (size: the long side, default the input's); with TEMPORAL, gatys and nnst frames start from the warped previous
    output and add a temporal loss (TEMPORAL_WEIGHT), other methods blend BLEND_WEIGHT of the warped previous output
    in on reliable pixels. FLOW: dis, farneback or raft (weights FLOW_WEIGHTS: raft-large, raft-small or a file).
    FPS: the frame rate of image inputs. Returns a VideoResult; prints nothing (NOTE gets the notes)."""
    from nst.api import run
    from nst.api.arguments import image_list, merge_config, split_plugins
    from nst.host import default_host
    from nst.settings import make_settings

    started = time.perf_counter()
    note = _once(note or note_line)
    if not 0 <= blend_weight < 1:
        raise UsageError(f"--temporal-blend must be in [0, 1), got {blend_weight}")
    if not 0 <= temporal_weight <= 1e12:
        raise UsageError(f"--temporal-weight must be between 0 and 1e12, got {temporal_weight}")
    if fps is not None and not 0 < fps <= 1000:
        raise UsageError(f"--fps must be between 0 and 1000, got {fps}")
    if not str(output):
        raise UsageError("give an output: a video file (OUT.mp4) or a folder for PNG frames")
    input, output = Path(input), Path(output)
    host = host or default_host()
    styles = image_list(styles)
    names, objects = split_plugins(plugins)
    names, options, merged = merge_config(config, names, options, {"method": method, **settings})
    config_ = make_settings(merged)
    host.method(config_.method)
    for name in names:
        host.check_plugin(name)
    kind = io.check_output(output)
    source = io.open_source(input, Fraction(fps).limit_denominator(1001) if fps else None)
    inputs = [*(source.files or [input]), *[s for s in styles if isinstance(s, (str, os.PathLike))],
              *([config_.model] if config_.model else [])]
    _check_paths(source, output, kind, inputs, overwrite)
    size, long_side = _frame_size(source, merged.get("size") and config_.size)
    optimising = config_.method in OPTIMISING
    rank, world = rank_and_world()
    if world > 1 and torch.cuda.is_available() and str(merged.get("device", "auto")) in ("auto", "cuda"):
        merged["device"] = f"cuda:{os.environ.get('LOCAL_RANK', rank)}"  # one GPU per process
    flow_fn = estimator(flow, host.weights(), flow_weights, pick_device(str(merged.get("device", "auto"))))
    job = {"world": world, "method": config_.method, "settings": {k: str(v) for k, v in sorted(merged.items())},
           "styles": [str(s) for s in styles], "plugins": names, "options": repr(options), "temporal": temporal,
           "blend": blend_weight, "temporal_weight": temporal_weight, "flow": flow, "flow_weights": flow_weights}
    style_images = [as_tensor(s, note) for s in styles]  # read once (and checked before any work)
    work, start = work_folder(output), 0
    if rank == 0:
        start = _prepare_work(work, _manifest(source, size, job), resume, overwrite)
        if start:
            note(f"resuming: {start} frame(s) are done in {work}")
    first, end, warm, total = 0, None, 0, source.count
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # the work folder is ready
        total = source.exact_count()
        first, end = total * rank // world, total * (rank + 1) // world
        warm = max(0, first - warmup_frames(temporal, optimising, blend_weight))
    call = dict(plugins=names, options=options, config=config, host=host, note=note, **{**merged, "size": long_side})

    def stylise(content: torch.Tensor, extra: list) -> torch.Tensor:
        return run(content, style_images, **{**call, "plugins": [*names, *objects, *extra]}).image

    try:
        made = _stylise_frames(source, work, (first, end, warm, total), size, stylise, flow_fn, temporal, optimising,
                               blend_weight, temporal_weight, progress and rank == 0, note, world > 1)
    except BaseException:
        if world == 1 and _done_frames(work) == 0:  # failed before any frame (a bad model, a style): leave no trace
            _clear_work(work)
        raise
    if world > 1:
        dist.barrier()  # every rank's frames are written
        if rank != 0:
            return VideoResult(output, made, source.fps, size, float("nan"), round(time.perf_counter() - started, 2),
                               False, first, rank)
    count = _done_frames(work)
    if count == 0:
        raise NSTError(f"{input}: no frames could be read")
    measure = flicker(_sized_frames(source, 0, size), _read_frames(work, count, size), flow_fn)
    kept_audio = _assemble(work, output, kind, count, source, size, audio, overwrite)
    return VideoResult(output, count, source.fps, size, measure, round(time.perf_counter() - started, 2), kept_audio,
                       first if world > 1 else start)


def warmup_frames(temporal: bool, optimising: bool, blend_weight: float) -> int:
    """Frames a process under torchrun stylises before its chunk and discards, to build the temporal state: for
    blending, enough that the influence of the missing history (BLEND_WEIGHT ** n) is under half an 8-bit level;
    for gatys and nnst, GATYS_WARMUP frames."""
    if not temporal or blend_weight == 0:
        return 0
    if optimising:
        return GATYS_WARMUP
    return math.ceil(math.log(0.5 / 255) / math.log(blend_weight))


def _stylise_frames(source, work: Path, plan: tuple, size, stylise, flow_fn, temporal: bool, optimising: bool,
                    blend_weight: float, temporal_weight: float, progress: bool, note, shared: bool) -> int:
    """Stylise the frames FIRST..END-1 of PLAN (FIRST, END or None for the last frame, WARM, TOTAL frames expected)
    into WORK, each written atomically, continuing after those already there; frames WARM..FIRST-1 are stylised
    only to build the temporal state. SHARED: other processes write into WORK too (the bar counts their frames).
    Returns the number of frames this call wrote."""
    from nst.core.progress import progress_bar

    first, end, warm, total = plan
    index = first
    while (end is None or index < end) and (work / io.frame_name(index)).is_file():
        index += 1
    previous_in = previous_out = None
    if index > first:  # the state an uninterrupted run had: the previous input frame and its output as written
        frames = _sized_frames(source, index - 1, size)
        previous_in = next(frames, None)
        previous_out = to_tensor(_work_frame(work, index - 1, size))
    else:
        index = warm
        frames = _sized_frames(source, warm, size)

    def finished() -> int:
        return sum(1 for n in os.listdir(work) if n.startswith("frame_") and n.endswith(".png")) if shared else index

    done, began = 0, time.perf_counter()
    try:
        with progress_bar("{task.fields[rate]}", disable=not progress, transient=True, unit="frame") as bar:
            task = bar.add_task("frames", total=max(total, finished() + 1), completed=finished(), rate="")
            for frame in frames:
                if end is not None and index >= end:
                    break
                content = to_tensor(frame)
                extra, back = [], None
                if temporal and previous_in is not None:
                    back, mask = flow_pair(flow_fn, previous_in, frame)
                    warped = warp(previous_out, back)
                    if optimising:
                        extra = [TemporalGatys(warped, mask, content, temporal_weight)]
                image = stylise(content, extra).float().cpu()
                if back is not None and not optimising:
                    image = blend(image, warped, mask, blend_weight)
                image = quantised(image)
                if index >= first:
                    with atomic_path(work / io.frame_name(index)) as tmp:
                        Image.fromarray(to_array(image)).save(tmp, format="PNG", compress_level=1)
                    Manifest(work).record([work / io.frame_name(index)])
                    done += 1
                previous_in, previous_out = frame, image
                index += 1
                count = finished()
                bar.update(task, completed=count, total=max(total, count),
                           rate=f"{done / (time.perf_counter() - began):.2f} frames/s")
    except KeyboardInterrupt:
        note(f"interrupted: the finished frames are in {work}; run the same command with --resume to continue")
        raise
    return done


def _assemble(work: Path, output: Path, kind: str, count: int, source, size, audio: bool, overwrite: bool) -> bool:
    """Write OUTPUT from the COUNT frames in WORK, all at once, then remove WORK; whether audio was carried over."""
    if kind == "video":
        with atomic_path(output) as tmp:
            io.write_video(tmp, output.suffix, _read_frames(work, count, size), source, size, audio)
        _clear_work(work)
        return audio and source.has_audio
    frames = [io.frame_name(index) for index in range(count)]  # each checked already, when the flicker was measured
    mine = Manifest(output)
    stale = [p for p in sorted(output.glob("frame_*.png")) if p.name not in frames] if output.is_dir() else []
    output.mkdir(parents=True, exist_ok=True)
    for name in frames:
        os.replace(work / name, output / name)
    mine.record(output / name for name in frames)
    for path in stale:  # frames of an earlier, longer run that nst wrote (--overwrite was given)
        if mine.owns(path):
            path.unlink()
    _clear_work(work)
    return False
