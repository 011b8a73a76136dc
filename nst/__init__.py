"""nst: neural style transfer with a plugin host.

Python API: ``nst.stylize(content, styles, **options) -> PIL.Image``, ``nst.run(...) -> Result`` and
``nst.train(style, data, output, **options) -> TrainResult`` (Johnson fast networks);
plugin authors use ``nst.hookimpl`` and the types re-exported here (see docs/plugins.md).
"""
from importlib.metadata import PackageNotFoundError, version

from nst.api import Result, run, stylize
from nst.context import Method, RunContext, Scale, ScaleState
from nst.core.losses import LossTerm
from nst.core.weights import WeightSource
from nst.errors import NSTError, UsageError
from nst.plugins.manager import PluginHost, hookimpl
from nst.training import TrainResult, train

try:
    __version__ = version("nst-suite")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["stylize", "run", "Result", "train", "TrainResult", "hookimpl", "LossTerm", "WeightSource", "RunContext", "Scale",
           "ScaleState", "Method", "PluginHost", "NSTError", "UsageError", "__version__"]
