"""The plugin host: a pluggy PluginManager for the project "nst".

Built-in plugins are registered first, by module (BUILTINS), then third-party packages from the entry-point
group `nst`. Each plugin's host hooks are collected when it is loaded (nst.host.collect); a plugin whose
loading or host hooks fail, or that claims a name already taken, is recorded as broken with the reason and
contributes nothing. `NST_DISABLE_PLUGINS=a,b` leaves plugins out, as pytest's `-p no:NAME`, except the
essential built-ins (the default method), which cannot be disabled.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

import pluggy
import torch

from nst.contract import hookspecs
from nst.contract.context import Method
from nst.contract.dispatch import RunHooks
from nst.contract.failures import first_line
from nst.core.encoder import register_vgg_sources
from nst.core.weights import Registry
from nst.errors import FieldError, NSTError, UsageError
from nst.host.collect import collect
from nst.host.records import RESERVED_COMMANDS, PluginRecord, command_names
from nst.settings.values import Option
from nst.version import __version__

GROUP = "nst"
DISABLE_ENV = "NST_DISABLE_PLUGINS"
BUILTINS = {"gatys": "nst.plugins.gatys", "nnst": "nst.plugins.nnst", "johnson": "nst.plugins.johnson",
            "depth": "nst.plugins.depth", "semantic": "nst.plugins.semantic", "stroke": "nst.plugins.stroke",
            "analogy": "nst.plugins.analogy", "text": "nst.plugins.text", "arbitrary": "nst.plugins.arbitrary",
            "video": "nst.plugins.video"}
ESSENTIAL = ("gatys",)  # the default method: NST_DISABLE_PLUGINS cannot take it away


class PluginHost:
    """Loads plugins and answers: which plugins, methods, options, weight sources, architectures exist.
    NOTES: what loading has to tell the user (an essential plugin named in NST_DISABLE_PLUGINS)."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("nst")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.refused: list[PluginRecord] = []  # entry points refused before loading (a name already taken)
        self.notes: list[str] = []
        self._attached: set[int] = set()
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        for name in sorted(disabled & set(ESSENTIAL)):
            self.notes.append(f"{DISABLE_ENV}: the built-in plugin '{name}' provides the default method and cannot "
                              "be disabled")
        disabled -= set(ESSENTIAL)
        for name, module in BUILTINS.items():
            self._load(name, lambda module=module: import_module(module), "nst-suite", __version__, True, disabled)
        if load_entry_points:
            self._load_entry_points(disabled)

    # --- loading --------------------------------------------------------------------------------

    def _load_entry_points(self, disabled: set[str]) -> None:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            if BUILTINS.get(ep.name) == ep.value:
                continue  # nst's own entry points: registered above, by module
            dist = getattr(ep, "dist", None)
            package, ver = (dist.metadata["Name"], dist.version) if dist else ("?", "?")
            owner = self.records.get(ep.name)
            if owner is not None:
                kind = "a built-in plugin" if owner.builtin else f"the plugin from {owner.package}"
                self.refused.append(PluginRecord(ep.name, package, ver, "error",
                                                 f"refused: the name '{ep.name}' belongs to {kind}"))
                continue
            self._load(ep.name, ep.load, package, ver, False, disabled)

    def _load(self, name: str, loader: Callable[[], object], package: str, ver: str, builtin: bool,
              disabled: Iterable[str]) -> PluginRecord:
        record = self.records[name] = PluginRecord(name, package, ver, builtin=builtin)
        if name in disabled:
            record.status, record.error = "disabled", f"disabled by {DISABLE_ENV}"
            return record
        try:
            self.pm.register(loader(), name=name)
        except Exception as exc:  # a plugin that cannot be imported is reported, not fatal
            self._fail(record, first_line(exc))
            return record
        problem = collect(self.pm, record, self._owner)
        if problem is not None:
            self._fail(record, problem)
        return record

    def _owner(self, kind: str, name: str, builtin: bool = False) -> str | None:
        """Who already has a NAME of KIND ('method', 'weights', 'architecture', 'command'), described; a BUILTIN
        plugin may take a reserved command name."""
        for rec in self.records.values():
            if rec.status == "ok" and name in {"method": rec.methods, "architecture": rec.architectures,
                                               "weights": [w.name for w in rec.weights], "command": rec.commands}[kind]:
                return f"the built-in plugin '{rec.name}'" if rec.builtin else f"plugin '{rec.name}'"
        if kind == "weights":
            vgg = Registry()
            register_vgg_sources(vgg)
            return "nst's encoder weights" if name in vgg.sources else None
        if kind == "command" and name in RESERVED_COMMANDS and not builtin:
            return "nst's own command"
        return None

    def _fail(self, rec: PluginRecord, reason: str) -> None:
        """Mark REC broken: it keeps its listing, reason and claims, and contributes nothing (no run hooks either)."""
        rec.status, rec.error = "error", reason.strip().splitlines()[0] if reason.strip() else reason
        rec.methods, rec.options, rec.weights, rec.architectures, rec.commands, rec.command_infos = {}, {}, [], {}, [], []
        if self.pm.has_plugin(rec.name):
            self.pm.unregister(name=rec.name)

    def attach_commands(self, app) -> None:
        """Add every working plugin's commands to the typer APP (once per app); a command whose name the
        app already has marks its plugin broken."""
        if id(app) in self._attached:
            return
        self._attached.add(id(app))
        own = set(command_names(app))
        for rec in self.records.values():
            clash = [n for n in rec.commands if n in own]
            if clash:
                self._fail(rec, f"refused: command '{clash[0]}' is already provided by nst's own command")
            elif rec.status == "ok":
                app.registered_commands.extend(i for i in rec.command_infos if not hasattr(i, "typer_instance"))
                app.registered_groups.extend(i for i in rec.command_infos if hasattr(i, "typer_instance"))

    # --- in-process plugins ---------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register an in-process plugin object (module, class or instance); returns its name. An object
        already registered (e.g. the module of an installed plugin) keeps its name and registration."""
        if self.pm.is_registered(plugin):
            return self.pm.get_name(plugin)
        name = name or getattr(plugin, "name", None) or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.records:
            raise NSTError(f"a plugin named '{name}' is already registered")
        rec = self._load(name, lambda: plugin, "(in-process)", "", False, ())
        if rec.status != "ok":
            del self.records[name]
            raise NSTError(f"plugin '{name}' {rec.error}")
        return name

    def unregister(self, name: str) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.records.pop(name, None)

    # --- what exists ----------------------------------------------------------------------------

    def _working(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "ok"]

    def not_working(self, kind: str, name: str) -> PluginRecord | None:
        """The broken or disabled plugin that provides (or claimed, or is called) NAME of KIND, if any."""
        return next((r for r in [*self.records.values(), *self.refused]
                     if r.status != "ok" and r.would_provide(kind, name)), None)

    def methods(self) -> dict[str, Method]:
        return {name: m for rec in self._working() for name, m in rec.methods.items()}

    def method(self, name: str) -> Method:
        """The method NAME; an unknown one is refused naming the broken plugin that provides it, if any."""
        methods = self.methods()
        if name in methods:
            return methods[name]
        broken = self.not_working("method", name)
        if broken is not None:
            raise FieldError("method", f"method '{name}' comes from plugin '{broken.name}', which {broken.state()}")
        raise FieldError("method", f"unknown method '{name}' (available: {', '.join(sorted(methods)) or 'none'})")

    def options(self) -> dict[str, dict[str, Option]]:
        """{plugin: {key: Option}} for every working plugin that declares options."""
        return {rec.name: rec.options for rec in self._working() if rec.options}

    def weights(self) -> Registry:
        registry = Registry()
        register_vgg_sources(registry)
        for rec in self._working():
            for src in rec.weights:
                registry.add(src)
        return registry

    def architectures(self) -> dict[str, Callable[[dict], torch.nn.Module]]:
        return {name: build for rec in self._working() for name, build in rec.architectures.items()}

    # --- a run ----------------------------------------------------------------------------------

    def check_plugin(self, name: str) -> None:
        """Raise unless NAME is installed and loaded cleanly."""
        if not isinstance(name, str):
            raise UsageError(f"a plugin is named by a string or passed as an object, got {name!r}")
        record = self.records.get(name)
        if record is None:
            raise UsageError(f"unknown plugin '{name}' (installed: {', '.join(sorted(self.records)) or 'none'})")
        if record.status != "ok":
            raise NSTError(f"plugin '{name}' {record.state()}")

    def resolve_options(self, active: list[str], given: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Validated option values (defaults filled in) for the ACTIVE plugins; GIVEN may only name those."""
        if not isinstance(given, dict):
            raise UsageError(f"options must be a dict {{plugin: {{key: value}}}}, got {given!r}")
        specs = self.options()
        for plugin, values in given.items():
            if plugin not in active:
                self.check_plugin(plugin)
                raise UsageError(f"options given for plugin '{plugin}', which is not taking part (add --plugin "
                                 f"{plugin})")
            if not isinstance(values, dict):
                raise UsageError(f"options for plugin '{plugin}' must be a dict of option values, got {values!r}")
            known = specs.get(plugin, {})
            for key in values:
                if key not in known:
                    listing = ", ".join(sorted(known)) or "none"
                    raise UsageError(f"plugin '{plugin}' has no option '{key}' (its options: {listing})")
        return {plugin: {key: opt.parse(f"{plugin}.{key}", given.get(plugin, {}).get(key, opt.default))
                         for key, opt in specs.get(plugin, {}).items()} for plugin in active}

    def run_hooks(self, active: list[str], options: dict[str, dict[str, Any]] | None = None) -> RunHooks:
        return RunHooks(self.pm, active, options or {})


_HOST: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide plugin host (built-ins and entry points loaded once)."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost()
    return _HOST


@contextmanager
def plugins_for_call(host: PluginHost, plugins: Iterable[object]):
    """Register plugin objects for one call; yields their names. Objects the host already had (an
    installed plugin's module) stay registered: the host is left as it was found."""
    added, names = [], []
    try:
        for p in plugins:
            new = not host.pm.is_registered(p)
            names.append(host.register(p))
            if new:
                added.append(names[-1])
        yield names
    finally:
        for name in added:
            host.unregister(name)
