"""A plugin's host hooks, called once when it is loaded: what it registers (methods, options, weight sources,
architectures, commands) is staged and handed over only when every hook succeeded without a clash."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from nst.contract.context import Method
from nst.contract.dispatch import RUN_HOOKS, is_wrapper
from nst.contract.failures import first_line
from nst.core.weights import WeightSource
from nst.host.records import Clash, PluginRecord, command_names
from nst.settings.values import Option

HOST_HOOKS = ("nst_register_methods", "nst_plugin_options", "nst_register_weights", "nst_register_architectures",
              "nst_register_commands")


def impls(pm, hook: str, plugin: str) -> list:
    """PLUGIN's implementations of HOOK."""
    return [i for i in getattr(pm.hook, hook).get_hookimpls() if i.plugin_name == plugin]


def collect(pm, rec: PluginRecord, owner: Callable[..., str | None]) -> str | None:
    """Call REC's host hooks into staging registries and fill REC from them; returns why REC is refused or
    broken (None when it is fine), after calling every host hook, so that the names a broken plugin claims are
    known. OWNER(kind, name, builtin) describes who already has a name, or None."""
    import typer

    wrapped = [h for h in RUN_HOOKS if any(is_wrapper(i) for i in impls(pm, h, rec.name))]
    if wrapped:
        return (f"refused: {wrapped[0]} is a hook wrapper; run hooks take plain implementations (order them with "
                "tryfirst / trylast)")
    methods: dict[str, Method] = {}
    options: dict[str, Option] = {}
    weights: list[WeightSource] = []
    archs: dict[str, Callable] = {}
    commands = typer.Typer()

    def claim(kind: str, name: str, mine: Iterable[str]) -> None:
        rec.claimed.setdefault(kind, []).append(name)
        taken = owner(kind, name, False) or ("this plugin itself" if name in mine else None)
        if taken:
            raise Clash(f"{kind} '{name}' is already provided by {taken}")

    def method(name: str, run: Callable, help: str = "", needs_style: bool = True) -> None:
        if not isinstance(name, str) or not name or not callable(run):
            raise TypeError("register(name, run, ...) needs a method name and a callable run(ctx)")
        claim("method", name, methods)
        methods[name] = Method(name, run, help, needs_style, rec.name)

    def option(key: str, type: Any, default: Any, help: str = "", choices: Iterable | None = None,
               min: float | None = None, max: float | None = None, file: str | None = None) -> None:
        options[key] = Option(key, type, default, help, tuple(choices) if choices else None, min, max, file=file)

    def source(src: WeightSource) -> None:
        if not isinstance(src, WeightSource):
            raise TypeError(f"register() takes an nst.WeightSource, got {type(src).__name__}")
        claim("weights", src.name, [w.name for w in weights])
        weights.append(src)

    def architecture(name: str, build: Callable[[dict], torch.nn.Module]) -> None:
        if not isinstance(name, str) or not name or not callable(build):
            raise TypeError("register(name, build) needs an architecture name and a callable build(config)")
        claim("architecture", name, archs)
        archs[name] = build

    problem = None
    for hook, value in zip(HOST_HOOKS, (method, option, source, architecture, commands)):
        for impl in impls(pm, hook, rec.name):
            try:
                impl.function(*[value if a in ("register", "app") else None for a in impl.argnames])
            except Clash as exc:
                problem = problem or f"refused: {exc}"
            except Exception as exc:
                problem = problem or f"{hook} failed: {first_line(exc)}"
    names = command_names(commands) if commands.registered_commands or commands.registered_groups else []
    rec.claimed["command"] = names
    if problem:
        return problem
    for name in names:
        taken = owner("command", name, rec.builtin)
        if taken:
            return f"refused: command '{name}' is already provided by {taken}"
    rec.methods, rec.options, rec.weights, rec.architectures = methods, options, weights, archs
    rec.commands, rec.command_infos = names, [*commands.registered_commands, *commands.registered_groups]
    return None
