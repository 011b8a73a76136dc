"""`nst bench`: the evaluation the source review asks for, as a command.

Five sections, named as the review names them: time per image by size, training time per model, mean content
loss over content images, loss during training, style scalability; plus a contact sheet per method. Writes
REPORT/report.md, REPORT/report.html (plots embedded), REPORT/results.json (every figure, the machine, versions,
plan), REPORT/plots/, REPORT/sheets/, REPORT/images/ (the grid's results) and REPORT/work/ (trained networks,
generated inputs; a resumed bench reuses them).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch

from nst.bench.plan import METHODS, BenchPlan, cell_problem, make_plan
from nst.core.files import MANIFEST, Manifest, atomic_path, inside
from nst.core.images import load_image
from nst.errors import NSTError, UsageError, note_line

__all__ = ["bench", "METHODS"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
MAX_RESULTS = 256 << 20  # a results.json larger than this is not one a bench wrote


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    try:
        line = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _images(folder: Path | None, what: str, note: Callable[[str], None]) -> list[Path]:
    """Readable images directly in FOLDER (sorted), for --photos / --styles."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise UsageError(f"--{what}: {folder} is not a folder")
    found = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            try:
                load_image(p)
                found.append(p)
            except NSTError as exc:
                note(f"{p.name} skipped: {exc}")
    if not found:
        raise UsageError(f"--{what}: no readable image in {folder}")
    return found


def _unavailable(method: str) -> str | None:
    """Why METHOD cannot run here, or None."""
    if method != "arbitrary":
        return None
    from nst.host import default_host

    try:
        from nst.plugins.arbitrary import SOURCES

        default_host().weights().get(SOURCES["predict"].name).fetch()
    except (NSTError, ImportError) as exc:
        return f"its weights are not installed ({exc})"
    return None


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str))


def _plan_key(plan: BenchPlan, quick: bool) -> dict:
    return {"quick": quick, "device": plan.device, "methods": plan.methods, "sizes": plan.sizes, "steps": plan.steps,
            "train_steps": plan.train_steps, "train_size": plan.train_size, "grid_size": plan.grid_size,
            "grid_photos": [str(p) for p in plan.grid_photo_paths()], "grid_styles": [str(p) for p in plan.grid_style_paths()],
            "style_counts": plan.style_counts, "weights": plan.weights}


def bench(output: str | Path, *, quick: bool = False, device: str = "auto", methods: list[str] | None = None,
          sizes: list[int] | None = None, styles: str | Path | None = None, photos: str | Path | None = None,
          steps: int | None = None, train_steps: int | None = None, weights: str = "vgg19", max_time: float = 0,
          resume: bool = False, overwrite: bool = False, progress: bool = True,
          note: Callable[[str], None] = note_line) -> dict:
    """Run the evaluation into the folder OUTPUT; returns the results (as in results.json). STYLES / PHOTOS: folders
    of images used before the built-in ones; STEPS, TRAIN_STEPS (per style), WEIGHTS (loss network): override the
    plan's. MAX_TIME (seconds, 0 = none): cells not started by then are listed as skipped and the report is
    written with what was measured."""
    from nst.bench.cells import Bench
    from nst.bench.report import build, html_page, markdown
    from nst.bench.samples import builtin_photos, builtin_styles
    from nst.core.devices import pick_device
    from nst.core.progress import progress_bar

    folder = Path(output)
    if resume and overwrite:
        raise UsageError("give --resume or --overwrite, not both")
    if not 0 <= max_time < 1e7:
        raise UsageError(f"--max-time must be 0 (no limit) or a number of seconds, got {max_time:g}")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder")
    for flag, given in (("--photos", photos), ("--styles", styles)):
        if given is not None and inside(given, folder):
            raise UsageError(f"{flag}: {given} is inside the report folder {folder}; keep the images elsewhere")
    results_path = folder / "results.json"
    Manifest(folder).check()
    strangers = [p for p in Manifest(folder).strangers() if p != results_path and p.name not in CLUTTER] \
        if folder.is_dir() else []
    if strangers:
        raise UsageError(f"{folder} is not empty and holds files nst did not write there (e.g. {strangers[0]}): choose "
                         "a new or empty folder (nst bench never replaces or deletes them)")
    previous = _read_results(results_path, folder, note) if results_path.exists() else None
    if previous is not None and not (resume or overwrite):
        raise UsageError(f"{folder} already holds a bench report: continue it with --resume, or replace it with "
                         "--overwrite")
    dev = str(pick_device(device))
    given_photos = _images(Path(photos) if photos else None, "photos", note)
    given_styles = _images(Path(styles) if styles else None, "styles", note)
    plan = make_plan(dev, quick, methods, sizes, steps, train_steps, weights)
    if overwrite and previous is not None:
        Manifest(folder).remove_written()  # only what an earlier bench wrote there, unchanged since
        results_path.unlink(missing_ok=True)
        previous = None
    with Written(folder) as written:  # every file the bench writes is recorded, also when it fails
        work, images = folder / "work", folder / "images"
        for sub in (work / "photos", work / "train", images):
            sub.mkdir(parents=True, exist_ok=True)
        plan.photos = given_photos + builtin_photos(work / "photos", max(0, plan.grid_photos - len(given_photos)))
        plan.styles = given_styles + builtin_styles(work, max(0, max(plan.grid_styles, *plan.style_counts) - len(given_styles)))
        train_photos = builtin_photos(work / "train", 8)
        key = _plan_key(plan, quick)
        key["given_images"] = bool(given_photos or given_styles)
        results = {"cells": {}, "skipped": {}}
        if resume and previous is not None:
            results = previous
            if results.get("plan") != key:
                raise UsageError(f"{folder} holds a bench with another plan (options changed): use the same options to "
                                 "resume, "
                                 "or --overwrite")
        results["plan"] = key
        results["skipped"] = {}  # what cannot run, or did not fit in --max-time, is found anew
        results["meta"] = {"nst": _version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda if dev.startswith("cuda") else None,
                           "device_name": _device_name(dev), "threads": torch.get_num_threads(),
                           "python": platform.python_version(), "platform": platform.platform(),
                           "date": datetime.now().astimezone().isoformat(timespec="seconds")}
        for method in plan.methods:
            why = _unavailable(method)
            if why:
                results["skipped"][method] = why
                note(f"{method} skipped: {why}")
        runner = Bench(plan, work, images, train_photos[0].parent)
        todo = [(k, p) for k, p in plan.cells() if k not in results["cells"] and k.split("/")[1] not in results["skipped"]]
        started = time.perf_counter()
        try:
            with progress_bar(disable=not progress, unit="cell") as bar:
                task = bar.add_task("bench", total=len(todo))
                for cell_key, params in todo:
                    bar.update(task, description=cell_key)
                    if max_time and time.perf_counter() - started > max_time:
                        results["skipped"][cell_key] = f"not started: the bench's --max-time of {max_time:g} s was spent"
                        continue
                    results["cells"][cell_key] = _measure(runner, cell_key, params)
                    _write_json(results_path, results)
                    written.record()
                    bar.advance(task)
        except KeyboardInterrupt:
            _write_json(results_path, results)
            raise NSTError(f"interrupted; {len(results['cells'])} cells are kept in {results_path}: continue with "
                           "--resume") from None
        results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
        staging = work / "report"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        blocks = build(results, staging)
        (staging / "report.md").write_text(markdown(blocks))
        (staging / "report.html").write_text(html_page(blocks, staging))
        for path in sorted(staging.rglob("*")):  # each file renamed into place (atomic per file), results.json last
            if path.is_file():
                target = folder / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        shutil.rmtree(staging, ignore_errors=True)
        _write_json(results_path, results)
        return results


CLUTTER = {".DS_Store", "Thumbs.db", "desktop.ini"}  # what file browsers leave in a folder they showed


class Written:
    """The files a bench writes into FOLDER, recorded in FOLDER's manifest (nst.core.files.Manifest) as they appear:
    record() (and leaving the `with` block) adds every file new or changed since the last call (the bench refuses to
    start in a folder holding files it did not write, so every change is its own)."""

    def __init__(self, folder: Path) -> None:
        self.manifest, self.seen = Manifest(folder), self._scan(folder)

    def __enter__(self) -> Written:
        return self

    def __exit__(self, *_) -> None:
        self.record()

    @staticmethod
    def _scan(folder: Path) -> dict[Path, tuple[int, int]]:
        found = {}
        for path in folder.rglob("*") if folder.is_dir() else []:
            if path.is_file() and not path.is_symlink() and path.name != MANIFEST:
                stat = path.stat()
                found[path] = (stat.st_size, stat.st_mtime_ns)
        return found

    def record(self) -> None:
        now = self._scan(self.manifest.folder)
        self.manifest.record(p for p, seen in now.items() if self.seen.get(p) != seen)
        self.seen = now


def _read_results(path: Path, folder: Path, note: Callable[[str], None]) -> dict:
    """The results.json of an earlier bench in FOLDER, checked (it is read back: --resume continues from it); cells
    that are not what the bench writes are dropped, with a note, and measured again."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.stat().st_size < MAX_RESULTS else None
    except (OSError, ValueError, RecursionError):
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("cells"), dict) and isinstance(data.get("plan"), dict)):
        raise UsageError(f"{path}: not the results of a bench nst wrote (damaged, or another program's); move it away, "
                         "or choose another folder")
    for key, cell in list(data["cells"].items()):
        problem = cell_problem(key, cell)
        # a grid cell's image (a cell recorded as an error or skipped has none)
        if problem is None and "image" in cell and not (inside(cell["image"], folder / "images")
                                                         and Path(cell["image"]).is_file()):
            problem = "its image is not in the report's images/"
        if problem is not None:
            note(f"{path}: cell {key[:60]} is damaged ({problem}); it is measured again")
            del data["cells"][key]
    return data


def _measure(runner, key: str, params: dict) -> dict:
    """One cell; a failure is recorded in the cell (the report lists it) instead of ending the bench."""
    kind = key.split("/")[0]
    try:
        if kind == "train":
            return runner.train(params["arch"], params["styles"])
        if kind == "time":
            return runner.time(params["method"], params["size"])
        if kind == "grid":
            return runner.grid(params["method"], params["photo"], params["style"])
        return runner.scale(params["method"], params["styles"])
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"error": "CUDA out of memory"}
    except (NSTError, MemoryError) as exc:
        return {"error": str(exc) or type(exc).__name__}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nst-suite")
    except PackageNotFoundError:
        return "unknown"
