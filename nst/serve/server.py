"""What `nst serve` does: check the address and token, bind the socket, print the URL, run uvicorn."""
from __future__ import annotations

import os
import secrets
import socket
import threading
import webbrowser
from pathlib import Path

from nst.errors import NSTError, UsageError, printable

LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_HOST_HEADERS = ["127.0.0.1", "localhost", "[::1]"]
MIN_TOKEN = 16


def default_data() -> Path:
    """The studio's folder under the user's cache: $XDG_CACHE_HOME/nst/studio (~/.cache/nst/studio)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nst" / "studio"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to HOST:PORT and listening (PORT 0: any free port); one clear line when it cannot."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"--host: cannot use address '{host}' ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; try another --port" if exc.errno in (98, 48, 10048) else ""
        raise NSTError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    return sock


def serve(host: str, port: int, device: str, data: Path | None, token: str | None, open_page: bool,
          max_upload_mb: float, max_megapixels: float) -> None:
    """Run the studio until Ctrl-C. Anything but a loopback address needs a token (one is made up and
    printed when none is given)."""
    try:
        import uvicorn

        from nst.serve.app import create_app
        from nst.serve.forms import Limits
    except ImportError as exc:
        raise NSTError(f"nst serve needs the web extra ({exc.name} is missing): pip install 'nst-suite[web]'") from None
    if token is not None and (len(token) < MIN_TOKEN or not token.isprintable() or " " in token):
        raise UsageError(f"--token must be at least {MIN_TOKEN} printable characters without spaces")
    if not 0 < max_upload_mb <= 1024 or not 0 < max_megapixels <= 1000:
        raise UsageError("--max-upload-mb must be in (0, 1024] and --max-megapixels in (0, 1000]")
    loopback = host in LOOPBACK
    if token is None and not loopback:
        token = secrets.token_urlsafe(24)
    data = Path(data) if data is not None else default_data()
    limits = Limits(upload_bytes=int(max_upload_mb * 1e6), pixels=int(max_megapixels * 1e6))
    app = create_app(data, device, token, limits=limits, allowed_hosts=LOOPBACK_HOST_HEADERS if loopback else None)
    sock = listen(host, port)
    shown = f"[{host}]" if ":" in host else ("localhost" if host == "localhost" else host)
    if host in ("0.0.0.0", "::"):
        shown = socket.gethostname()
    url = f"http://{shown}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
    print(f"nst studio: {url}\n  data in {data}; device {device}; Ctrl-C stops", flush=True)
    for note in app.state.load_notes:
        print(printable(f"note: {note}"), flush=True)
    if open_page:
        threading.Timer(0.5, webbrowser.open, [url]).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then raises it again: stopping is the normal end
        pass
    print("nst studio stopped", flush=True)
