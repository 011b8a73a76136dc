"""The plugin host: a pluggy PluginManager for the project "nst".

Built-in plugins are registered first, by module (BUILTINS), then third-party packages from the
entry-point group `nst`. Each plugin's host hooks (methods, options, weight sources, architectures) are
collected when it is loaded; a plugin whose loading or host hooks fail, or that claims a name already
taken (plugin, method, weight source, architecture or command), is recorded as broken with the reason
and contributes nothing. `NST_DISABLE_PLUGINS=a,b` leaves plugins out, as pytest's `-p no:NAME`.
Run hooks are called per plugin through RunHooks, so a failure names the plugin and the hook.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import import_module
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any, Callable, Iterable

import pluggy
import torch

from nst import hookspecs
from nst.context import Method
from nst.core.encoder import register_vgg_sources
from nst.core.losses import LossTerm
from nst.core.weights import Registry, WeightSource
from nst.errors import NSTError, UsageError
from nst.options import FieldError, Option

GROUP = "nst"
DISABLE_ENV = "NST_DISABLE_PLUGINS"
BUILTINS = {"gatys": "nst.plugins.gatys", "johnson": "nst.plugins.johnson", "depth": "nst.plugins.depth",
            "semantic": "nst.plugins.semantic", "stroke": "nst.plugins.stroke", "analogy": "nst.plugins.analogy",
            "text": "nst.plugins.text", "arbitrary": "nst.plugins.arbitrary", "video": "nst.plugins.video"}
# nst's own commands (cli.py, and built-in plugins' such as `video`) and those planned: no other plugin may take these
RESERVED_COMMANDS = ("run", "train", "export", "plugins", "weights", "info", "video", "serve", "bench")
PASS_THROUGH = (KeyboardInterrupt, MemoryError, torch.cuda.OutOfMemoryError, NSTError)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class PluginFailure(NSTError):
    """A plugin's code raised: the message names the plugin and the hook (NST_DEBUG=1 shows the traceback)."""

    def __init__(self, plugin: str, where: str, exc: BaseException) -> None:
        self.plugin, self.where = plugin, where
        super().__init__(f"plugin '{plugin}' failed in {where}: {first_line(exc)}")


def guarded(plugin: str, where: str, fn: Callable, *args: Any) -> Any:
    """FN(*ARGS), turning an unexpected exception into a PluginFailure naming PLUGIN and WHERE."""
    try:
        return fn(*args)
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise PluginFailure(plugin, where, exc) from exc


class _Clash(Exception):
    """A registration that takes a name someone else has."""


@dataclass
class PluginRecord:
    """One plugin as `nst plugins` shows it, with what it contributes (empty unless status is "ok")."""

    name: str
    package: str
    version: str
    status: str = "ok"  # "ok", "error" or "disabled"
    error: str = ""
    builtin: bool = False
    methods: dict[str, Method] = field(default_factory=dict)
    options: dict[str, Option] = field(default_factory=dict)
    weights: list[WeightSource] = field(default_factory=list)
    architectures: dict[str, Callable[[dict], torch.nn.Module]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    command_infos: list = field(default_factory=list)

    def provides(self) -> list[str]:
        """'method gatys', 'command depth', '2 option(s)', ... for listings."""
        out = [f"method {m}" for m in self.methods] + [f"command {c}" for c in self.commands]
        out += [f"architecture {a}" for a in self.architectures] + [f"weights {w.name}" for w in self.weights]
        return out + ([f"{len(self.options)} option(s)"] if self.options else [])


def _nst_version() -> str:
    try:
        return version("nst-suite")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def _command_names(typer_app) -> list[str]:
    """The sub-command names a typer app defines (commands and groups), as click resolves them."""
    import typer

    probe = typer.Typer()
    probe.registered_commands = list(typer_app.registered_commands)
    probe.registered_groups = list(typer_app.registered_groups)
    probe.callback()(lambda: None)  # a callback makes it a group even with one command
    return list(typer.main.get_command(probe).commands)


class PluginHost:
    """Loads plugins and answers: which plugins, methods, options, weight sources, architectures exist."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("nst")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.refused: list[PluginRecord] = []  # entry points refused before loading (a name already taken)
        self._attached: set[int] = set()
        disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        for name, module in BUILTINS.items():
            self._load(name, lambda module=module: import_module(module), "nst-suite", _nst_version(), True, disabled)
        if load_entry_points:
            self._load_entry_points(disabled)

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
        self._collect(record)
        return record

    # --- host hooks -----------------------------------------------------------------------------

    def _impls(self, hook: str, plugin: str) -> list:
        return [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin_name == plugin]

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

    def _collect(self, rec: PluginRecord) -> None:
        """Call REC's host hooks into staging registries; commit them only if all succeed without a clash."""
        import typer

        methods: dict[str, Method] = {}
        options: dict[str, Option] = {}
        weights: list[WeightSource] = []
        archs: dict[str, Callable] = {}
        commands = typer.Typer()

        def taken(kind: str, name: str, mine) -> None:
            owner = self._owner(kind, name) or ("this plugin itself" if name in mine else None)
            if owner:
                raise _Clash(f"{kind} '{name}' is already provided by {owner}")

        def method(name: str, run: Callable, help: str = "", needs_style: bool = True) -> None:
            if not isinstance(name, str) or not name or not callable(run):
                raise TypeError("register(name, run, ...) needs a method name and a callable run(ctx)")
            taken("method", name, methods)
            methods[name] = Method(name, run, help, needs_style, rec.name)

        def option(key: str, type: Any, default: Any, help: str = "", choices: Iterable | None = None,
                   min: float | None = None, max: float | None = None) -> None:
            options[key] = Option(key, type, default, help, tuple(choices) if choices else None, min, max)

        def source(src: WeightSource) -> None:
            if not isinstance(src, WeightSource):
                raise TypeError(f"register() takes an nst.WeightSource, got {type(src).__name__}")
            taken("weights", src.name, [w.name for w in weights])
            weights.append(src)

        def architecture(name: str, build: Callable[[dict], torch.nn.Module]) -> None:
            if not isinstance(name, str) or not name or not callable(build):
                raise TypeError("register(name, build) needs an architecture name and a callable build(config)")
            taken("architecture", name, archs)
            archs[name] = build

        calls = [("nst_register_methods", "register", method), ("nst_plugin_options", "register", option),
                 ("nst_register_weights", "register", source), ("nst_register_architectures", "register", architecture),
                 ("nst_register_commands", "app", commands)]
        for hook, arg, value in calls:
            for impl in self._impls(hook, rec.name):
                try:
                    impl.function(*[value if a == arg else None for a in impl.argnames])
                except _Clash as exc:
                    return self._fail(rec, f"refused: {exc}")
                except Exception as exc:
                    return self._fail(rec, f"{hook} failed: {first_line(exc)}")
        names = _command_names(commands) if commands.registered_commands or commands.registered_groups else []
        for name in names:
            owner = self._owner("command", name, rec.builtin)
            if owner:
                return self._fail(rec, f"refused: command '{name}' is already provided by {owner}")
        rec.methods, rec.options, rec.weights, rec.architectures = methods, options, weights, archs
        rec.commands, rec.command_infos = names, [*commands.registered_commands, *commands.registered_groups]

    def _fail(self, rec: PluginRecord, reason: str) -> None:
        """Mark REC broken: it keeps its listing and reason, and contributes nothing (no run hooks either)."""
        rec.status, rec.error = "error", reason.strip().splitlines()[0] if reason.strip() else reason
        rec.methods, rec.options, rec.weights, rec.architectures, rec.commands, rec.command_infos = {}, {}, [], {}, [], []
        if self.pm.has_plugin(rec.name):
            self.pm.unregister(name=rec.name)

    def mark_broken(self, name: str, reason: str) -> None:
        if name in self.records:
            self._fail(self.records[name], reason)

    def attach_commands(self, app) -> None:
        """Add every working plugin's commands to the typer APP (once per app); a command whose name the
        app already has marks its plugin broken."""
        if id(app) in self._attached:
            return
        self._attached.add(id(app))
        own = set(_command_names(app))
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

    def methods(self) -> dict[str, Method]:
        return {name: m for rec in self._working() for name, m in rec.methods.items()}

    def method(self, name: str) -> Method:
        methods = self.methods()
        if name not in methods:
            raise FieldError("method", f"unknown method '{name}' (available: {', '.join(sorted(methods)) or 'none'})")
        return methods[name]

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
        if record.status == "disabled":
            raise NSTError(f"plugin '{name}' is disabled by {DISABLE_ENV}")
        if record.status != "ok":
            raise NSTError(f"plugin '{name}' could not be loaded: {record.error}")

    def resolve_options(self, active: list[str], given: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Validated option values (defaults filled in) for the ACTIVE plugins; GIVEN may only name those."""
        if not isinstance(given, dict):
            raise UsageError(f"options must be a dict {{plugin: {{key: value}}}}, got {given!r}")
        specs = self.options()
        for plugin, values in given.items():
            if plugin not in active:
                self.check_plugin(plugin)
                raise UsageError(f"options given for plugin '{plugin}', which is not taking part (add --plugin {plugin})")
            if not isinstance(values, dict):
                raise UsageError(f"options for plugin '{plugin}' must be a dict of option values, got {values!r}")
            known = specs.get(plugin, {})
            for key in values:
                if key not in known:
                    listing = ", ".join(sorted(known)) or "none"
                    raise UsageError(f"plugin '{plugin}' has no option '{key}' (its options: {listing})")
        return {plugin: {key: opt.parse(f"{plugin}.{key}", given.get(plugin, {}).get(key, opt.default))
                         for key, opt in specs.get(plugin, {}).items()} for plugin in active}

    def run_hooks(self, active: list[str], options: dict[str, dict[str, Any]] | None = None) -> "RunHooks":
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


class RunHooks:
    """The run hooks, called one plugin at a time for the plugins taking part, in registration order;
    each implementation may take `options` (its own validated options)."""

    def __init__(self, pm: pluggy.PluginManager, active: list[str], options: dict[str, dict[str, Any]]) -> None:
        self._pm, self._active, self._options = pm, set(active), options
        self._cache: dict[str, list] = {}

    def name_of(self, plugin: object) -> str:
        name = self._pm.get_name(plugin)
        if name is None:
            raise NSTError(f"{plugin!r} is not a registered plugin")
        return name

    def _impls(self, hook: str) -> list:
        if hook not in self._cache:
            self._cache[hook] = [i for i in getattr(self._pm.hook, hook).get_hookimpls() if i.plugin_name in self._active]
        return self._cache[hook]

    def _call(self, impl, hook: str, **kwargs: Any) -> Any:
        """One plugin's implementation of HOOK with the arguments it asks for; a failure names plugin and hook."""
        kwargs["options"] = self._options.get(impl.plugin_name, {})
        return guarded(impl.plugin_name, hook, impl.function, *[kwargs[a] for a in impl.argnames])

    def _each(self, hook: str, **kwargs: Any):
        """(plugin name, result) of HOOK for each plugin taking part."""
        for impl in self._impls(hook):
            yield impl.plugin_name, self._call(impl, hook, **kwargs)

    def method(self, method: Method, ctx) -> torch.Tensor:
        return guarded(method.plugin, f"method '{method.name}'", method.run, ctx)

    def prepare(self, ctx) -> dict[str, Any]:
        guides: dict[str, Any] = {}
        for plugin, result in self._each("nst_prepare", ctx=ctx):
            if result is not None and not isinstance(result, dict):
                raise NSTError(f"plugin '{plugin}': nst_prepare must return a dict or None, got {type(result).__name__}")
            guides.update(result or {})
        return guides

    def losses(self, ctx, encoder) -> list[LossTerm]:
        """Every plugin's terms, each marked with its plugin (source) and guarded like the hook itself."""
        terms = []
        for plugin, result in self._each("nst_losses", ctx=ctx, encoder=encoder):
            for term in result or []:
                if not isinstance(term, LossTerm):
                    raise NSTError(f"plugin '{plugin}': nst_losses must return LossTerm objects, got {type(term).__name__}")
                fn = term.fn
                terms.append(replace(term, source=plugin, fn=lambda f, x, fn=fn, p=plugin: guarded(p, "nst_losses", fn, f, x)))
        return terms

    def schedule(self, ctx):
        return next((r for _, r in self._each("nst_schedule", ctx=ctx) if r is not None), None)

    def train_network(self, ctx, config):
        nets = [(plugin, net) for plugin, net in self._each("nst_train_network", ctx=ctx, config=config) if net is not None]
        if len(nets) > 1:
            raise UsageError(f"plugins {', '.join(sorted(repr(p) for p, _ in nets))} each bring their own network to train; use one")
        return nets[0][1] if nets else None

    def network_inputs(self, ctx, net) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for _, result in self._each("nst_network_inputs", ctx=ctx, net=net):
            inputs.update(result or {})
        return inputs

    def on_step(self, ctx, step: int, image, losses: dict[str, float]) -> None:
        for _ in self._each("nst_on_step", ctx=ctx, step=step, image=image, losses=losses):
            pass

    def postprocess(self, ctx, image):
        for impl in self._impls("nst_postprocess"):
            result = self._call(impl, "nst_postprocess", ctx=ctx, image=image)
            if result is not None:
                image = result
        return image

    def finish(self, ctx, result, error: BaseException | None) -> None:
        """Every plugin's nst_finish, even when one fails; a failure is raised after all ran (or only noted
        when the run already failed)."""
        failure = None
        for impl in self._impls("nst_finish"):
            try:
                self._call(impl, "nst_finish", ctx=ctx, result=result, error=error)
            except Exception as exc:
                if error is not None:
                    ctx.note(str(exc))
                failure = failure or exc
        if failure is not None and error is None:
            raise failure
