"""The plugin host: a pluggy PluginManager for the project "nst", fed from the entry-point group `nst`.

Built-in plugins (gatys, ...) are entry points of this package, loaded exactly like third-party ones.
A plugin that fails to import is recorded with its error and left out; it never breaks the host.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Iterable

import pluggy

from nst import hookspecs
from nst.context import Method
from nst.core.encoder import register_vgg_sources
from nst.core.weights import Registry
from nst.errors import NSTError, UsageError

hookimpl = pluggy.HookimplMarker("nst")
GROUP = "nst"
OPTION_TYPES = (bool, int, float, str, Path)


@dataclass
class PluginRecord:
    """One installed plugin as `nst plugins` shows it."""

    name: str
    package: str
    version: str
    status: str  # "ok" or "error"
    error: str = ""


@dataclass
class Option:
    """A typed plugin option declared through nst_plugin_options."""

    key: str
    type: type
    default: Any
    help: str = ""
    choices: tuple | None = None

    def parse(self, plugin: str, value: Any) -> Any:
        """Convert VALUE (a CLI string or a native value) to this option's type, or raise UsageError."""
        where = f"option {plugin}.{self.key}"
        try:
            if self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError
                    value = low in ("1", "true", "yes", "on")
                elif not isinstance(value, bool):
                    raise ValueError
            elif self.type is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                value = int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
            elif self.type is Path:
                value = Path(value)
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where} expects {self.type.__name__}, got {value!r}") from None
        if self.choices and value not in self.choices:
            raise UsageError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


class PluginHost:
    """Loads plugins and answers: which plugins, methods, options and weight sources exist."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("nst")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        if load_entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            package = dist.metadata["Name"] if dist else "?"
            version = dist.version if dist else "?"
            if ep.name in self.records:
                continue
            try:
                self.pm.register(ep.load(), name=ep.name)
                self.records[ep.name] = PluginRecord(ep.name, package, version, "ok")
            except Exception as exc:  # a broken plugin is reported, not fatal
                message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
                self.records[ep.name] = PluginRecord(ep.name, package, version, "error", message)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register an in-process plugin object (module, class or instance); returns its name."""
        name = name or getattr(plugin, "name", None) or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.records and self.pm.get_plugin(name) is not plugin:
            raise NSTError(f"a plugin named '{name}' is already registered")
        if self.pm.get_plugin(name) is None:
            self.pm.register(plugin, name=name)
            self.records[name] = PluginRecord(name, "(in-process)", "", "ok")
        self._forget()
        return name

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.records.pop(name, None)
        self._forget()

    def _forget(self) -> None:
        self.__dict__.pop("_methods", None)
        self.__dict__.pop("_options", None)

    def _call_each(self, hook: str, binder) -> None:
        """Call HOOK on each plugin with its single argument from `binder(plugin_name) -> (value, undo)`. A plugin whose hook
        raises is marked broken (shown by `nst plugins`, refused in runs) instead of breaking the host."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if self.records.get(impl.plugin_name, PluginRecord("", "", "", "ok")).status != "ok":
                continue
            value, undo = binder(impl.plugin_name)
            try:
                impl.function(**{k: value for k in impl.argnames})
            except Exception as exc:
                undo()
                self.mark_broken(impl.plugin_name, f"{hook} failed: {type(exc).__name__}: {exc}")

    def mark_broken(self, name: str, error: str) -> None:
        rec = self.records.get(name)
        if rec is not None:
            rec.status, rec.error = "error", error.strip().splitlines()[0] if error.strip() else error

    # --- what exists ---------------------------------------------------------------------------

    def methods(self) -> dict[str, Method]:
        if "_methods" not in self.__dict__:
            found: dict[str, Method] = {}

            def binder(plugin: str):
                def register(name: str, run, help: str = "", needs_style: bool = True) -> None:
                    if name in found:
                        raise NSTError(f"method '{name}' is already provided by {found[name].plugin}")
                    found[name] = Method(name, run, help, needs_style, plugin)

                def undo() -> None:
                    for key in [k for k, m in found.items() if m.plugin == plugin]:
                        del found[key]
                return register, undo

            self._call_each("nst_register_methods", binder)
            self._methods = found
        return self._methods

    def method(self, name: str) -> Method:
        methods = self.methods()
        if name not in methods:
            raise UsageError(f"unknown method '{name}' (available: {', '.join(sorted(methods)) or 'none'})")
        return methods[name]

    def options(self) -> dict[str, dict[str, Option]]:
        """{plugin: {key: Option}} for every plugin that declares options."""
        if "_options" not in self.__dict__:
            specs: dict[str, dict[str, Option]] = {}

            def binder(plugin: str):
                def register(key: str, type: type, default: Any, help: str = "", choices: Iterable | None = None) -> None:
                    if type not in OPTION_TYPES:
                        raise NSTError(f"option '{key}' has unsupported type {type!r} (use bool, int, float, str or Path)")
                    specs.setdefault(plugin, {})[key] = Option(key, type, default, help, tuple(choices) if choices else None)
                return register, lambda: specs.pop(plugin, None)

            self._call_each("nst_plugin_options", binder)
            self._options = specs
        return self._options

    def weights(self) -> Registry:
        registry = Registry()
        register_vgg_sources(registry)

        def binder(plugin: str):
            added: list[str] = []

            def register(source) -> None:
                registry.add(source)
                added.append(source.name)

            def undo() -> None:
                for name in added:
                    registry.sources.pop(name, None)
            return register, undo

        self._call_each("nst_register_weights", binder)
        return registry

    def register_commands(self, app) -> None:
        """Let plugins add CLI sub-commands (a failing plugin is marked broken)."""
        self._call_each("nst_register_commands", lambda plugin: (app, lambda: None))

    # --- a run ---------------------------------------------------------------------------------

    def check_plugin(self, name: str) -> None:
        """Raise unless NAME is installed and loaded cleanly (its registration hooks included)."""
        self.methods(), self.options()
        record = self.records.get(name)
        if record is None:
            raise UsageError(f"unknown plugin '{name}' (installed: {', '.join(sorted(self.records)) or 'none'})")
        if record.status != "ok":
            raise NSTError(f"plugin '{name}' could not be loaded: {record.error}")

    def resolve_options(self, active: list[str], given: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Validated option values (defaults filled in) for the ACTIVE plugins; GIVEN may only name those."""
        specs = self.options()
        for plugin, values in given.items():
            if plugin not in active:
                self.check_plugin(plugin)
                raise UsageError(f"options given for plugin '{plugin}', which is not taking part (add --plugin {plugin})")
            known = specs.get(plugin, {})
            for key in values:
                if key not in known:
                    listing = ", ".join(sorted(known)) or "none"
                    raise UsageError(f"plugin '{plugin}' has no option '{key}' (its options: {listing})")
        resolved = {}
        for plugin in active:
            values = given.get(plugin, {})
            resolved[plugin] = {key: opt.parse(plugin, values[key]) if key in values else opt.default
                                for key, opt in specs.get(plugin, {}).items()}
        return resolved

    def run_hooks(self, active: list[str]) -> "RunHooks":
        return RunHooks(self.pm, active)


class RunHooks:
    """The run hooks, called only on the plugins taking part; results are in registration order."""

    def __init__(self, pm: pluggy.PluginManager, active: list[str]) -> None:
        keep = set(active)
        self._pm = pm
        self._skip = [p for name, p in pm.list_name_plugin() if name not in keep]

    def _caller(self, name: str):
        return self._pm.subset_hook_caller(name, remove_plugins=self._skip)

    def prepare(self, ctx) -> dict[str, Any]:
        guides: dict[str, Any] = {}
        for result in reversed(self._caller("nst_prepare")(ctx=ctx)):
            guides.update(result or {})
        return guides

    def losses(self, ctx, encoder) -> list:
        return [term for terms in reversed(self._caller("nst_losses")(ctx=ctx, encoder=encoder)) for term in terms or []]

    def schedule(self, ctx):
        return self._caller("nst_schedule")(ctx=ctx)

    def train_network(self, ctx, config):
        return self._caller("nst_train_network")(ctx=ctx, config=config)

    def network_inputs(self, ctx, net) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for result in reversed(self._caller("nst_network_inputs")(ctx=ctx, net=net)):
            inputs.update(result or {})
        return inputs

    def on_step(self, ctx, step: int, image, losses: dict[str, float]) -> None:
        self._caller("nst_on_step")(ctx=ctx, step=step, image=image, losses=losses)

    def postprocess(self, ctx, image):
        for impl in self._caller("nst_postprocess").get_hookimpls():
            args = {"ctx": ctx, "image": image}
            result = impl.function(**{k: args[k] for k in impl.argnames})
            if result is not None:
                image = result
        return image
