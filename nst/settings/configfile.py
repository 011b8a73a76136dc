"""Config files (TOML) for `nst run` / `nst train` / `nst video` and the API's `config=`: the same keys as the
flags, `plugins = [...]` and one `[set.PLUGIN]` table of options per plugin. "Config" in nst means this file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nst.errors import NSTError, UsageError


def read_config(path: str | Path) -> tuple[dict[str, Any], list[str], dict[str, dict[str, Any]]]:
    """(settings values, plugin names, {plugin: options}) from the TOML file PATH; one clear error each."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NSTError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise NSTError(f"{path}: is a folder, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NSTError(f"{path}: cannot read config ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    plugins = data.pop("plugins", [])
    if isinstance(plugins, str) or not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise UsageError(f"{path}: plugins must be a list of names, e.g. plugins = [\"depth\"], got {plugins!r}")
    sets = data.pop("set", {})
    if not isinstance(sets, dict) or not all(isinstance(v, dict) for v in sets.values()):
        raise UsageError(f"{path}: [set] must hold one table per plugin, e.g. [set.depth]")
    tables = [k for k, v in data.items() if isinstance(v, dict)]
    if tables:
        raise UsageError(f"{path}: unknown table [{tables[0]}] (plugin options go in [set.PLUGIN])")
    return data, plugins, sets
