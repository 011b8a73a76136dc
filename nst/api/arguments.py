"""What the API's entry points (run, train, the video engine) check and merge of their arguments before any work:
plugins given by name or as objects, the config file under explicit arguments, blend weights, input files."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from nst.errors import FieldError, NSTError, UsageError
from nst.host import PluginHost
from nst.settings.configfile import read_config


def blend_weights(blend: list[float] | None, count: int) -> list[float]:
    """Blend weights for COUNT styles, normalised to sum 1 (equal when not given)."""
    if count == 0:
        return []
    weights = blend if blend is not None else [1.0] * count
    if len(weights) != count:
        raise FieldError("style_blend", f"has {len(weights)} weight(s) for {count} style image(s)")
    total = sum(weights)
    if total <= 0:
        raise FieldError("style_blend", "the weights must not all be 0")
    return [w / total for w in weights]


def split_plugins(plugins: Iterable[str | object]) -> tuple[list[str], list[object]]:
    """(names of installed plugins, plugin objects) from a `plugins=` argument (a list, not one string)."""
    if isinstance(plugins, (str, Path)) or not isinstance(plugins, Iterable):
        raise UsageError(f"plugins must be a list, e.g. plugins=[\"depth\"], got {plugins!r}")
    plugins = list(plugins)
    objects = [p for p in plugins if not isinstance(p, str)]
    for p in objects:
        if not any(name.startswith("nst_") for name in dir(p)):
            raise UsageError(f"plugins: {p!r} is neither a plugin name nor a plugin object (it has no nst_* hooks)")
    return [p for p in plugins if isinstance(p, str)], objects


def merge_config(config: str | Path | None, plugins: list[str], options: dict | None,
                 settings: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Plugins, options and settings with the config file's underneath the explicit ones."""
    if options is not None and not isinstance(options, dict):
        raise UsageError(f"options must be a dict {{plugin: {{key: value}}}}, got {options!r}")
    merged_options: dict[str, dict[str, Any]] = {}
    if config is not None:
        values, file_plugins, sets = read_config(config)
        settings = {**values, **settings}
        plugins = list(dict.fromkeys(file_plugins + plugins))
        merged_options = {k: dict(v) for k, v in sets.items()}
    for name, values in (options or {}).items():
        if not isinstance(values, dict):
            raise UsageError(f"options for plugin '{name}' must be a dict of option values, got {values!r}")
        merged_options.setdefault(name, {}).update(values)
    return plugins, merged_options, settings


IMAGE_TYPES = (str, os.PathLike, Image.Image, torch.Tensor)


def image_list(styles: Any) -> list:
    """STYLES as a list: one image (path, PIL image or tensor) or an iterable of them."""
    if isinstance(styles, IMAGE_TYPES):
        return [styles]
    if not isinstance(styles, Iterable):
        raise NSTError(f"styles must be an image (a path, a PIL image or a tensor) or a list of them, got {styles!r}")
    return list(styles)


def check_call(note: Any, output: Any, host: Any, overwrite: Any = False) -> None:
    """One clear error for API arguments of the wrong type (instead of a TypeError deep inside)."""
    if not isinstance(overwrite, bool):
        raise UsageError(f"overwrite must be True or False, got {overwrite!r}")
    if not callable(note):
        raise UsageError(f"note must be a function taking a message, got {note!r}")
    if output is not None and not isinstance(output, (str, os.PathLike)):
        raise UsageError(f"output must be a file path, got {output!r}")
    if host is not None and not isinstance(host, PluginHost):
        raise UsageError(f"host must be an nst.PluginHost, got {host!r}")


def input_paths(*items: Any, options: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Every file among ITEMS (paths, lists of paths, other values ignored) and the Path-valued OPTIONS."""
    found: list[Path] = []
    for item in items:
        for value in item if isinstance(item, (list, tuple)) else [item]:
            if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
                found.append(Path(value))
    for values in (options or {}).values():
        found += input_paths(*values.values())
    return found
