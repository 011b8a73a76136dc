"""Running a feed-forward torch module through onnxruntime on the CPU (several times faster there than torch for
the small convolutions of style networks): exported once per weights, cached on disk, then reused."""
from __future__ import annotations

import hashlib
import inspect
import weakref
from collections.abc import Callable
from pathlib import Path

import torch

from nst.core.files import atomic_path
from nst.core.weights import cache_dir
from nst.errors import NSTError

BACKENDS = ("auto", "torch", "onnx")
ONNX_PRECISION = "fp32 (onnxruntime)"  # what a network run by onnxruntime computes in, whatever --precision says
OPSET = 17


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def pick_backend(name: str, device: torch.device, supported: bool = True) -> str:
    """'torch' or 'onnx' for BACKEND NAME ('auto': onnx on the CPU when onnxruntime is installed and the network
    SUPPORTED it, else torch); one clear error when 'onnx' cannot be honoured."""
    if name == "onnx":
        if device.type != "cpu":
            raise NSTError("backend onnx runs on the CPU; use device cpu or backend torch")
        if not supported:
            raise NSTError("backend onnx: this network (or this run's options: tiles, region masks, --precision bf16) "
                           "needs backend torch")
        if not onnx_available():
            raise NSTError("backend onnx needs onnx and onnxruntime: pip install 'nst-suite[onnx]'")
        return "onnx"
    return "onnx" if name == "auto" and device.type == "cpu" and supported and onnx_available() else "torch"


def weights_key(net: torch.nn.Module, *extra: str) -> str:
    """A digest of NET's class, weights and EXTRA strings: the cache name of its exported graph. Remembered
    while NET's tensors are the same objects, unmodified (a warm run does not hash megabytes again)."""
    state = net.state_dict()
    seen = tuple((t.data_ptr(), t._version) for t in state.values())
    memo = _KEYS.get(net, {})
    if memo.get(extra, (None,))[0] != seen:
        memo[extra] = seen, _digest(net, state, extra)
        _KEYS[net] = memo
    return memo[extra][1]


_KEYS: weakref.WeakKeyDictionary[torch.nn.Module, dict] = weakref.WeakKeyDictionary()


def _digest(net: torch.nn.Module, state: dict, extra: tuple[str, ...]) -> str:
    """sha256 of NET's class, the source file defining it (a changed forward is exported again), the torch
    version, the weights and EXTRA."""
    h = hashlib.sha256(f"{type(net).__module__}.{type(net).__qualname__}|{torch.__version__}|{OPSET}|{'|'.join(extra)}".encode())
    source = inspect.getsourcefile(type(net))
    h.update(Path(source).read_bytes() if source and Path(source).is_file() else b"")
    for name, tensor in state.items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


_SESSIONS: dict[tuple[str, int], object] = {}


def onnx_runner(net: torch.nn.Module, example: tuple[torch.Tensor, ...], names: list[str],
                dynamic: dict[str, dict[int, str]]) -> Callable[..., torch.Tensor]:
    """run(*inputs) -> NET(*inputs) computed by onnxruntime (CPU, float32) on torch's current number of threads
    (nst.core.threads). The graph is exported from EXAMPLE inputs named NAMES (dimensions in DYNAMIC may vary) into
    the cache folder once per weights."""
    import warnings

    import onnxruntime as ort

    key = weights_key(net, *names)
    threads = torch.get_num_threads()
    if (key, threads) not in _SESSIONS:
        path = cache_dir().parent / "nst-onnx" / f"{key}.onnx"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(net.cpu().eval(), example, str(tmp), dynamo=False, opset_version=OPSET,
                                  input_names=names, output_names=["output"], dynamic_axes=dynamic)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # fatal only: a failure reaches the user as one line, not as a raw log line
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            _SESSIONS[key, threads] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:
            path.unlink(missing_ok=True)  # a damaged cache file: exported again next time
            raise NSTError(f"{path}: the cached ONNX graph could not be opened; run again to re-export it") from None
    session = _SESSIONS[key, threads]

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        feed = {n: x.detach().cpu().float().contiguous().numpy() for n, x in zip(names, inputs)}
        return torch.from_numpy(session.run(None, feed)[0])

    return run
