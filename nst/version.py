"""The installed version of nst-suite: the one source that `nst --version`, run records, model files,
checkpoints and reports use."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nst-suite")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
