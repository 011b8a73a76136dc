"""The record an output image keeps of its run (nst info, nst run --config-from): nst version, seed, every
setting, the plugins named and their options, the input files."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from nst.core.printfile import read_record
from nst.errors import NSTError
from nst.settings import Settings
from nst.version import __version__


def run_record(settings: Settings, content, styles: list, plugins: list[str], options: dict,
               precision: str = "") -> dict:
    """What the output file records of its run (nst info, nst run --config-from): nst version, seed, every
    setting, the plugins named and their options, the input files, and the PRECISION the networks computed in
    (settings.precision may say auto: this is what auto chose on that machine)."""
    def name(image) -> str | None:
        return str(Path(image).resolve()) if isinstance(image, (str, os.PathLike)) else None

    values = {k: v for k, v in asdict(settings).items() if k != "plan"}
    return {"version": __version__, "seed": settings.seed, "settings": values, "plugins": plugins,
            "options": options, "content": name(content), "styles": [name(s) for s in styles], "precision": precision}


def read_run_record(path: str | Path) -> dict:
    """The record of the run that wrote PATH (see run_record); one NSTError when it has none."""
    record = read_record(path)
    if record is None or not isinstance(record.get("settings"), dict):
        raise NSTError(f"{path}: holds no nst run record (written by another program, by an older nst, or in a "
                       "format without metadata such as WebP or BMP)")
    return record
