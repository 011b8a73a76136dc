"""What the studio's form offers, described from the plugin host (GET /api/plugins): methods, plugins
with their typed options, the core run settings and the weight sources, so a third-party plugin's
options appear in the page with no UI code."""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from nst.contract.dispatch import RUN_HOOKS
from nst.serve.forms import SERVER_FIELDS, is_path_type
from nst.settings import Settings
from nst.settings.declare import declared
from nst.settings.values import Option, split_optional, type_name

# where the studio differs from `nst run`: names only, never paths
STUDIO_HELP = {"weights": "Encoder weights: a name from `nst weights` (the studio takes names, not file paths).",
               "model": "For method johnson: a preset model name such as multistyle26 (for a trained model file, "
                        "use nst run)."}
IN_RUNS = tuple(h for h in RUN_HOOKS if h != "nst_train_network")  # a plugin with one of these can join a run


def json_value(value: Any) -> Any:
    """VALUE with paths as strings (lists too)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


def kind_of(kind: Any, choices: Any) -> str:
    """How the page renders a value of type KIND: bool, choice, int, float, list, path or text."""
    base, _ = split_optional(kind)
    if is_path_type(base):
        return "path"
    if choices:
        return "choice"
    if typing.get_origin(base) is list:
        return "list"
    return {bool: "bool", int: "int", float: "float"}.get(base, "text")


def describe_option(opt: Option) -> dict[str, Any]:
    kind = kind_of(opt.type, opt.choices)
    return {"key": opt.key, "type": type_name(opt.type), "kind": kind, "default": json_value(opt.default),
            "help": opt.help, "choices": [json_value(c) for c in opt.choices] if opt.choices else None,
            "min": opt.min, "max": opt.max, "optional": split_optional(opt.type)[1], "settable": kind != "path"}


def describe_settings() -> list[dict[str, Any]]:
    """The core run settings a job may set (CLI names), with type, default, choices and help, from their
    declarations."""
    out = []
    for name, opt in declared(Settings).items():
        if name in SERVER_FIELDS:
            continue
        choices = None if typing.get_origin(split_optional(opt.type)[0]) is list else opt.choices
        out.append({"name": name.replace("_", "-"), "type": type_name(opt.type), "kind": kind_of(opt.type, choices),
                    "default": json_value(opt.default), "choices": list(choices) if choices else None,
                    "min": opt.min, "max": opt.max, "help": STUDIO_HELP.get(name) or opt.help})
    return out


def describe(host, hidden: set[str]) -> dict[str, Any]:
    """Methods, plugins (options; `selectable` when it takes part in runs without providing a method),
    settings and weight sources of HOST, leaving out the plugins named in HIDDEN."""
    methods, plugins = [], []
    for rec in host.records.values():
        if rec.status != "ok" or rec.name in hidden:
            continue
        methods += [{"name": m.name, "plugin": rec.name, "help": m.help, "needs_style": m.needs_style}
                    for m in rec.methods.values()]
        hooks = any(i.plugin_name == rec.name for h in IN_RUNS for i in getattr(host.pm.hook, h).get_hookimpls())
        plugins.append({"name": rec.name, "version": rec.version, "package": rec.package,
                        "methods": list(rec.methods), "selectable": hooks and not rec.methods,
                        "options": [describe_option(o) for o in rec.options.values()]})
    weights = [{"name": s.name, "description": s.description, "encoder": "convention" in s.info}
               for s in host.weights().sources.values()]
    return {"methods": methods, "plugins": plugins, "settings": describe_settings(), "weights": weights}
