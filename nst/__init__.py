"""nst: neural style transfer with a plugin host.

Python API: ``nst.stylize(content, styles, **options) -> PIL.Image``, ``nst.run(...) -> Result`` and
``nst.train(style, data, output, ...) -> TrainResult`` (fast feed-forward networks); plugin authors use
``nst.hookimpl`` and the types re-exported here (see docs/plugins.md). Names load on first use, so
``import nst`` (and the ``nst`` command's start) stays quick.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nst-suite")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    "stylize": "nst.api", "run": "nst.api", "Result": "nst.api",
    "train": "nst.training", "TrainResult": "nst.training", "TrainSettings": "nst.training",
    "hookimpl": "nst.hookspecs", "LossTerm": "nst.core.losses", "WeightSource": "nst.core.weights",
    "RunContext": "nst.context", "Scale": "nst.context", "ScaleState": "nst.context", "TrainBatch": "nst.context",
    "Method": "nst.context", "PluginHost": "nst.host", "default_host": "nst.host", "Settings": "nst.settings",
    "NSTError": "nst.errors", "UsageError": "nst.errors", "FieldError": "nst.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nst' has no attribute {name!r}")
