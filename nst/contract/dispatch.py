"""Run hooks, called only for the plugins taking part in a run or a training, in pluggy's order: `tryfirst`
implementations first, then plain ones (the last registered first), then `trylast` ones. Each implementation
may take `options`, its own plugin's validated options; a failure names the plugin and the hook. Hook
wrappers are refused when a plugin registers (see nst.host), since a run hook is called one plugin at a time.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pluggy
import torch

from nst.contract.failures import guarded
from nst.core.losses import LossTerm
from nst.errors import NSTError, UsageError

RUN_HOOKS = ("nst_prepare", "nst_losses", "nst_schedule", "nst_train_network", "nst_network_inputs", "nst_on_step",
             "nst_postprocess", "nst_finish")


def is_wrapper(impl: Any) -> bool:
    """Whether a pluggy HookImpl is a hook wrapper (old or new style)."""
    return bool(getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False))


class RunHooks:
    """The run hooks of the plugins taking part (ACTIVE), one plugin at a time in pluggy's order; CTX arguments
    are the run's nst.RunContext."""

    def __init__(self, pm: pluggy.PluginManager, active: list[str], options: dict[str, dict[str, Any]]) -> None:
        self._pm, self._active, self._options = pm, set(active), options
        self._cache: dict[str, list] = {}

    def name_of(self, plugin: object) -> str:
        name = self._pm.get_name(plugin)
        if name is None:
            raise NSTError(f"{plugin!r} is not a registered plugin")
        return name

    def _impls(self, hook: str) -> list:
        """HOOK's implementations of the plugins taking part, in the order pluggy calls them (it keeps them in
        the reverse of that order)."""
        if hook not in self._cache:
            impls = getattr(self._pm.hook, hook).get_hookimpls()
            self._cache[hook] = [i for i in reversed(impls) if i.plugin_name in self._active and not is_wrapper(i)]
        return self._cache[hook]

    def _call(self, impl, hook: str, **kwargs: Any) -> Any:
        """One plugin's implementation of HOOK with the arguments it asks for; a failure names plugin and hook."""
        kwargs["options"] = self._options.get(impl.plugin_name, {})
        return guarded(impl.plugin_name, hook, impl.function, *[kwargs[a] for a in impl.argnames])

    def _each(self, hook: str, **kwargs: Any):
        """(plugin name, result) of HOOK for each plugin taking part."""
        for impl in self._impls(hook):
            yield impl.plugin_name, self._call(impl, hook, **kwargs)

    def prepare(self, ctx) -> dict[str, Any]:
        guides: dict[str, Any] = {}
        for plugin, result in self._each("nst_prepare", ctx=ctx):
            if result is not None and not isinstance(result, dict):
                raise NSTError(f"plugin '{plugin}': nst_prepare must return a dict or None, got "
                               f"{type(result).__name__}")
            guides.update(result or {})
        return guides

    def losses(self, ctx, encoder) -> list[LossTerm]:
        """Every plugin's terms, each marked with its plugin (source) and guarded like the hook itself."""
        terms = []
        for plugin, result in self._each("nst_losses", ctx=ctx, encoder=encoder):
            for term in result or []:
                if not isinstance(term, LossTerm):
                    raise NSTError(f"plugin '{plugin}': nst_losses must return LossTerm objects, got "
                                   f"{type(term).__name__}")
                fn = term.fn
                terms.append(replace(term, source=plugin, fn=lambda f, x, fn=fn, p=plugin: guarded(p, "nst_losses", fn, f, x)))
        return terms

    def schedule(self, ctx):
        return next((r for _, r in self._each("nst_schedule", ctx=ctx) if r is not None), None)

    def train_network(self, ctx, settings):
        """The one network a plugin brings to train (None when none does); two are an error."""
        nets = [(plugin, net) for plugin, net in self._each("nst_train_network", ctx=ctx, settings=settings,
                                                             config=settings) if net is not None]
        if len(nets) > 1:
            raise UsageError(f"plugins {', '.join(sorted(repr(p) for p, _ in nets))} each bring their own network to "
                             "train; use one")
        return nets[0][1] if nets else None

    def network_inputs(self, ctx, net) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for _, result in self._each("nst_network_inputs", ctx=ctx, net=net):
            inputs.update(result or {})
        return inputs

    def on_step(self, ctx, step: int, image, losses: dict[str, float]) -> None:
        for _ in self._each("nst_on_step", ctx=ctx, step=step, image=image, losses=losses):
            pass

    def postprocess(self, ctx, image: torch.Tensor) -> torch.Tensor:
        """Each plugin's nst_postprocess in turn, each given the previous one's result, which must be a finite
        (1, 3, H, W) image."""
        for impl in self._impls("nst_postprocess"):
            result = self._call(impl, "nst_postprocess", ctx=ctx, image=image)
            if result is None:
                continue
            if not isinstance(result, torch.Tensor) or result.dim() != 4 or result.shape[:2] != (1, 3) \
                    or result.shape[2] * result.shape[3] == 0:
                got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
                raise NSTError(f"plugin '{impl.plugin_name}': nst_postprocess returned {got}, not a (1, 3, H, W) image")
            if not torch.isfinite(result).all():
                raise NSTError(f"plugin '{impl.plugin_name}': nst_postprocess returned NaN or inf pixels")
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
