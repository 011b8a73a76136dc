"""A plugin's failure as the user sees it: one line naming the plugin and where it failed."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nst.errors import NSTError

PASS_THROUGH = (KeyboardInterrupt, MemoryError, torch.cuda.OutOfMemoryError, NSTError)


def first_line(exc: BaseException) -> str:
    """'TypeName: the first line of its message' (or the type name alone)."""
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
