"""The record an output image keeps of its run (nst info, nst run --config-from): nst version, seed, every
setting, the plugins named and their options, the input files.

A record read back is data, checked as the user's own input is (the same declarations, one line naming the
file and the field). It replays settings only: values that name files the run read (inputs, weights, models,
masks: declared `file="in"`) are held back until the user confirms them, and values that make nst write files
(side-output folders, snapshots: `file="out"`) are never replayed.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nst.core.printfile import read_record
from nst.errors import FieldError, NSTError, UsageError
from nst.host import PluginHost
from nst.settings import Settings, make_settings
from nst.settings.declare import declared
from nst.settings.values import flag
from nst.version import __version__

SCALAR = (str, int, float, bool, type(None))


def run_record(settings: Settings, content, styles: list, plugins: list[str], options: dict,
               precision: str = "") -> dict:
    """What the output file records of its run (nst info, nst run --config-from): nst version, seed, every
    setting, the plugins named and their options, the input files, and the PRECISION the networks computed in
    (settings.precision may say auto: this is what auto chose on that machine)."""
    def name(image) -> str | None:
        return str(Path(image).resolve()) if isinstance(image, (str, os.PathLike)) else None

    values = {k: v for k, v in asdict(settings).items() if k != "plan"}
    for key in ("weights", "model"):  # a file, recorded as a full path (a weight source's name stays a name)
        if isinstance(values[key], str) and Path(values[key]).is_file():
            values[key] = name(values[key])
    return {"version": __version__, "seed": settings.seed, "settings": values, "plugins": plugins,
            "options": options, "content": name(content), "styles": [name(s) for s in styles], "precision": precision}


@dataclass
class RunRecord:
    """A record read back from FILE, its structure checked: SETTINGS {field: value} as recorded, PLUGINS named,
    OPTIONS {plugin: {key: value}}, CONTENT and STYLES (the paths read, None where the run read no file)."""

    file: Path
    version: str
    seed: Any
    settings: dict[str, Any]
    plugins: list[str]
    options: dict[str, dict[str, Any]]
    content: str | None
    styles: list[str | None]
    precision: str = ""  # what the networks computed in ('bf16, channels_last (auto: AMX)'), when recorded


def _plain(value: Any) -> bool:
    """Whether VALUE is what a setting or option can hold: a scalar or a list of scalars."""
    return isinstance(value, SCALAR) or (isinstance(value, list) and all(isinstance(v, SCALAR) for v in value))


def read_run_record(path: str | Path) -> RunRecord:
    """The record of the run that wrote PATH; one NSTError when it has none, one UsageError naming the file and the
    field when its structure is not a record's."""
    path = Path(path)
    raw = read_record(path)
    if raw is None or not isinstance(raw.get("settings"), dict):
        raise NSTError(f"{path}: holds no nst run record (written by another program, by an older nst, or in a "
                       "format without metadata such as WebP or BMP)")

    def bad(name: str, expected: str, value: Any) -> UsageError:
        return UsageError(f"{path}: {name}: expected {expected}, got {str(repr(value))[:60]}")

    settings, plugins, options = raw["settings"], raw.get("plugins", []), raw.get("options") or {}
    for key, value in settings.items():
        if not _plain(value):
            raise bad(key, "a number, a string, true/false or a list of them", value)
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise bad("plugins", "a list of plugin names", plugins)
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise bad("options", "one table of options per plugin", options)
    for plugin, values in options.items():
        for key, value in values.items():
            if not _plain(value):
                raise bad(f"{plugin}.{key}", "a number, a string, true/false or a list of them", value)
    content, styles = raw.get("content"), raw.get("styles", [])
    if not isinstance(content, (str, type(None))):
        raise bad("content", "the path of the content image", content)
    if not isinstance(styles, list) or not all(isinstance(s, (str, type(None))) for s in styles):
        raise bad("styles", "a list of style image paths", styles)
    precision = raw.get("precision") or ""
    if not isinstance(precision, str) or len(precision) > 100:
        raise bad("precision", "a short description of the precision", precision)
    version = raw.get("version")
    return RunRecord(path, version if isinstance(version, str) else "?", raw.get("seed", "?"), settings, plugins,
                     options, content, styles, precision)


@dataclass
class Replay:
    """What a record may replay, checked against the declarations: SETTINGS, PLUGINS and OPTIONS ({plugin: {key:
    value}}) without HELD, the values naming files the run read ({name as typed: value}, e.g. '--weights',
    'semantic.content_mask', with ('settings' | plugin, key) in WHERE), replayed only when the user confirms
    them, and DROPPED, the values that make nst write files ({name as typed: value}), never replayed."""

    record: RunRecord
    settings: dict[str, Any] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    held: dict[str, Any] = field(default_factory=dict)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)
    dropped: dict[str, Any] = field(default_factory=dict)


def replay(path: str | Path, host: PluginHost) -> Replay:
    """The replayable part of the record in PATH (see Replay); its settings and options pass the same checks as a
    user's (errors spelled 'FILE: steps', 'FILE: depth.weight'), plugins must be installed."""
    record = read_run_record(path)
    name = record.file
    try:
        make_settings(record.settings)
    except FieldError as exc:
        raise exc.spelled(f"{name}: {exc.field}") from None
    except UsageError as exc:
        raise UsageError(f"{name}: {exc}") from None
    out = Replay(record, plugins=list(dict.fromkeys(record.plugins)))
    names = host.weights().sources
    declarations = declared(Settings)
    for key, value in record.settings.items():
        kind = declarations[key].file
        if kind == "out":
            if value != declarations[key].default:
                out.dropped[flag(key)] = value
        elif kind == "in" and value is not None and value not in names:
            out.held[flag(key)], out.where[flag(key)] = value, ("settings", key)
        else:
            out.settings[key] = value
    specs = host.options()
    for plugin, values in record.options.items():
        try:
            host.check_plugin(plugin)
        except NSTError as exc:
            raise type(exc)(f"{name}: {exc}") from None
        for key, value in values.items():
            spec = specs.get(plugin, {}).get(key)
            if spec is None:
                raise UsageError(f"{name}: plugin '{plugin}' has no option '{key}'")
            spec.parse(f"{name}: {plugin}.{key}", value)
            if spec.file == "out":
                if value is not None:
                    out.dropped[f"{plugin}.{key}"] = value
            elif spec.file == "in" and value is not None:
                out.held[f"{plugin}.{key}"], out.where[f"{plugin}.{key}"] = value, (plugin, key)
            else:
                out.options.setdefault(plugin, {})[key] = value
    for plugin in out.plugins:
        try:
            host.check_plugin(plugin)
        except NSTError as exc:
            raise type(exc)(f"{name}: {exc}") from None
    return out
