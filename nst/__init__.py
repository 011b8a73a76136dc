"""nst: neural style transfer with a plugin host.

Python API: ``nst.stylize(content, styles, **settings) -> PIL.Image``, ``nst.run(...) -> Result`` and
``nst.train(style, data, output, ...) -> TrainResult`` (fast feed-forward networks); plugin authors use
``nst.hookimpl`` and the types re-exported here (see docs/plugins.md). Names load on first use, so
``import nst`` (and the ``nst`` command's start) stays quick. docs/architecture.md draws the layers.
"""
from importlib import import_module

from nst.version import __version__

_EXPORTS = {
    "stylize": "nst.api", "run": "nst.api", "Result": "nst.api", "train": "nst.api", "TrainResult": "nst.api",
    "Settings": "nst.settings", "TrainSettings": "nst.settings",
    "hookimpl": "nst.contract.hookspecs", "RunContext": "nst.contract.context", "Scale": "nst.contract.context",
    "ScaleState": "nst.contract.context", "TrainBatch": "nst.contract.context", "Method": "nst.contract.context",
    "PluginHost": "nst.host", "default_host": "nst.host",
    "LossTerm": "nst.core.losses", "WeightSource": "nst.core.weights",
    "NSTError": "nst.errors", "UsageError": "nst.errors", "FieldError": "nst.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst' has no attribute {name!r}")
