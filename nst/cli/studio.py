"""`nst serve`: start the studio (nst.serve)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but 127.0.0.1, localhost or ::1 needs a "
                                           "token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).", min=0, max=65535)] = 8000,
    device: Annotated[str, typer.Option(help="Where jobs run, one at a time: auto, cpu, cuda or cuda:N.")] = "auto",
    data: Annotated[Optional[Path], typer.Option(help="Folder for jobs, uploads and results, kept across restarts. "
                                                      "[default: ~/.cache/nst/studio]", show_default=False)] = None,
    token: Annotated[Optional[str], typer.Option(help="Secret every API call must carry (header X-NST-Token, or "
                                                      "?token= in the printed URL). Made up and printed when --host is "
                                                      "not loopback.", show_default=False)] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload per image, in MB.")] = 25.0,
    max_megapixels: Annotated[float, typer.Option(help="Largest upload per image, in megapixels.")] = 50.0,
) -> None:
    """Start the studio: a local web page to stylise with live preview, a loss plot and a gallery.

    The page and its HTTP API (docs/http-api.md) need the web extra: pip install 'nst-suite[web]'.
    """
    from nst.serve.server import serve as run_studio

    run_studio(host, port, device, data, token, open_page, max_upload_mb, max_megapixels)
