"""`nst run` over a folder or a glob of photos: one output name per input, every target checked before any
work, the model kept loaded from image to image."""
from __future__ import annotations

from pathlib import Path

import typer

from nst.errors import NSTError, UsageError, note_line, printable


def expand_many(first: Path) -> list[Path] | None:
    """The images of a folder or glob pattern given as CONTENT, or None for a single file."""
    import glob

    from nst.core.photos import PHOTO_SUFFIXES

    text = str(first)
    if first.is_dir():
        found = sorted(p for p in first.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES | {".tif", ".tiff"} and p.is_file())
    elif any(ch in text for ch in "*?[") and not first.exists():
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    else:
        return None
    if not found:
        raise NSTError(f"{first}: no images to stylise")
    return found


def output_names(images: list[Path]) -> list[str]:
    """A distinct NAME.png per input: the stem, then stem_ext, then the parent folders too, until no two
    names clash (compared without case, as macOS and Windows do)."""
    def name(p: Path, level: int) -> str:
        parts = [p.stem] if level == 0 else [p.stem, p.suffix.lstrip(".")] if level == 1 else \
            [*p.parent.parts[-(level - 1):], p.stem, p.suffix.lstrip(".")]
        return "_".join(x for x in parts if x not in ("", "/", ".")) + ".png"

    levels = [0] * len(images)
    for _ in range(64):
        names = [name(p, lv) for p, lv in zip(images, levels)]
        folded = [n.lower() for n in names]
        clashing = [i for i, n in enumerate(folded) if folded.count(n) > 1]
        if not clashing:
            return names
        for i in clashing:
            levels[i] += 1
    raise NSTError("cannot give every input its own output name; put the inputs in one folder with distinct names")


def run_many(images: list[Path], styles: list[Path], out_dir: Path, quiet: bool, call: dict) -> None:
    """Stylise each image into OUT_DIR (checked in full before any work: a result nst wrote there before is replaced
    only with --overwrite, another file never); the model stays loaded between images. Under torchrun the images
    are shared out (process r of N takes every N-th from the r-th, on its own GPU) and process 0 reports for all."""
    import time

    from nst.api import run as run_api
    from nst.api.arguments import input_paths
    from nst.core.files import Manifest, Outputs, check_replace, same_file
    from nst.core.progress import progress_bar
    from nst.runtime.distributed import rank_and_world, shard_device, total_over_ranks, wait_for_all

    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: with several inputs, -o must be a folder")
    if not out_dir.exists() and out_dir.suffix:
        raise UsageError(f"{out_dir}: with several inputs, -o must be a folder (it does not exist; give a name without "
                         "a suffix)")
    holding = next((p for p in images if same_file(out_dir, p.parent)), None)
    if holding is not None:  # a folder given as an input is never written into (a second run would read the results)
        raise UsageError(f"{out_dir}: is the folder of the input {holding.name}; choose another output folder")
    rank, world = rank_and_world()
    targets = [out_dir / n for n in output_names(images)]
    shared = input_paths(styles, call.get("model"), call.get("weights"))  # what every image's run reads
    plan = Outputs([*input_paths(images), *shared])
    for target in targets:
        plan.reserve(target, make_folder=True)
    existing = [t for t in targets if t.exists()]
    if existing and not call["overwrite"]:
        raise UsageError(f"{len(existing)} result(s) already exist in {out_dir} (e.g. {existing[0].name}); add "
                         "--overwrite to replace them")
    for target in targets:
        check_replace(target, out_dir, True)  # replaced: only results nst wrote there, unchanged since
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir)
    wait_for_all(world)  # every process has checked the targets before any writes one
    call = {**call, "device": shard_device(call.get("device") or "auto")}
    mine = list(zip(images, targets))[rank::world]
    started, failed = time.perf_counter(), []
    with progress_bar(disable=quiet or rank > 0, transient=True, unit="image") as bar:
        task = bar.add_task("stylising", total=len(mine))
        for path, target in mine:
            try:
                run_api(path, styles, output=target, progress=False, **call)
                manifest.record([target])
                typer.echo(printable(f"  {path} -> {target}"))
            except UsageError:
                raise
            except NSTError as exc:
                if any(str(p) in str(exc) for p in shared):  # a bad model or style fails every image: stop at once
                    raise
                failed.append(path)
                note_line(str(exc))
            bar.advance(task)
    done, not_done = total_over_ranks([len(mine) - len(failed), len(failed)], world)
    seconds = time.perf_counter() - started
    if rank == 0:
        processes = f" by {world} processes" if world > 1 else ""
        typer.echo(printable(f"wrote {done} image(s) to {out_dir}{processes} ({seconds:.1f} s, {done / seconds:.1f} "
                             "images/s)"))
    if not_done:
        raise NSTError(f"{not_done} image(s) could not be stylised (see the notes above)")
