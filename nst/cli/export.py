"""`nst export`: a trained style network as an ONNX file."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nst.errors import NSTError, UsageError, printable


def export(
    model: Annotated[Path, typer.Argument(help="A model file from `nst train`.", show_default=False)],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (input 'image', output 'stylised', (B, 3, H, "
                                                      "W) in 0..1, any size).", show_default=False)],
    opset: Annotated[int, typer.Option(help="ONNX opset (9 to 20).")] = 17,
) -> None:
    """Export a trained style network to ONNX, for onnxruntime and other runtimes."""
    from nst.core.files import Outputs
    from nst.core.johnson import export_onnx, load_model
    from nst.host import default_host

    if not 9 <= opset <= 20:
        raise UsageError(f"--opset must be between 9 and 20, got {opset}")
    outputs = Outputs([model])
    outputs.reserve(onnx)
    net, info = load_model(model, default_host().architectures())
    try:
        import onnx as _onnx  # noqa: F401  (torch's exporter needs it; say so instead of its own error)
    except ImportError:
        raise NSTError("ONNX export needs the onnx package: pip install 'nst-suite[onnx]'") from None
    try:
        export_onnx(net, onnx, opset)
    except NSTError:
        raise
    except Exception as exc:  # torch's exporter raises its own types (OnnxExporterError, ...)
        raise NSTError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    typer.echo(printable(f"wrote {onnx} (style {info.get('style', '?')}, opset {opset})"))
