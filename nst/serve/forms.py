"""A studio job request, checked the way `nst run` checks its arguments before anything is queued.

Fields arrive as text under the CLI's names (`size`, `content-weight`, `plugins`, `set` PLUGIN.KEY=VALUE)
and go through the same parsing as the command line, so a bad value gets the CLI's one-line message.
Nothing a request sends becomes a path: encoder weights and models are weight-source names, plugin
options of a file type are refused, and uploads are stored under names the server chooses.
"""
from __future__ import annotations

import io
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from nst.errors import FieldError, NSTError, UsageError
from nst.settings.values import as_typed, parse_sets, split_optional, texts

# Pillow format -> stored suffix; no other decoder is ever reached (EPS and PDF would run external programs)
FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp", "GIF": "gif"}
# settings a job may not choose: the server owns the device and never writes beside a request's path
SERVER_FIELDS = {"device": "the device is chosen when the server starts (nst serve --device)",
                 "save_every": "the studio shows its own previews; snapshots are not written",
                 "config": "config files are read by nst run, not by the studio"}


class TooLarge(UsageError):
    """An upload over the studio's byte or pixel limit (HTTP 413)."""


class NotAnImage(UsageError):
    """An upload that is not an image in a format the studio reads (HTTP 415)."""


@dataclass
class Limits:
    """Upload bytes per file, pixels per image, style images per job and jobs waiting in the queue."""

    upload_bytes: int = 25 << 20
    pixels: int = 50_000_000
    styles: int = 8
    queue: int = 32

    def describe(self) -> dict[str, int]:
        return {"upload_bytes": self.upload_bytes, "pixels": self.pixels, "styles": self.styles, "queue": self.queue}


@dataclass
class JobRequest:
    """What a job runs with, as submitted: core settings by CLI name (text), plugin names, `set` items."""

    fields: dict[str, str] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)

    def run_arguments(self) -> dict[str, Any]:
        """Keyword arguments for nst.run(): settings and options parsed as the CLI parses its flags."""
        return dict(plugins=list(self.plugins), options=parse_sets(self.sets),
                    **texts({k.replace("-", "_"): v for k, v in self.fields.items()}))


def cli_message(exc: NSTError) -> str:
    """EXC's one line as `nst run` prints it (a core setting's FieldError spelled as its flag)."""
    return str(as_typed(exc) if isinstance(exc, FieldError) else exc)


def check_request(fields: dict[str, str], plugins: list[str], sets: list[str], styles: int, host) -> JobRequest:
    """A JobRequest whose settings, method, plugins and plugin options are valid for STYLES style images
    (raises UsageError / NSTError with the CLI's message otherwise)."""
    from nst.api.arguments import blend_weights
    from nst.settings import make_settings

    given = {k.strip(): v.strip() for k, v in fields.items() if v.strip()}
    for key in given:
        reason = SERVER_FIELDS.get(key.replace("-", "_"))
        if reason:
            raise UsageError(f"--{key.replace('_', '-')}: {reason}")
    request = JobRequest(given, [p.strip() for p in plugins if p.strip()], [s for s in sets if s.strip()])
    arguments = request.run_arguments()
    options, names = arguments.pop("options"), arguments.pop("plugins")
    settings = make_settings(arguments)
    sources = host.weights().sources
    if settings.weights not in sources:
        raise FieldError("weights", f"the studio takes a weight source name (known: {', '.join(sorted(sources))}), "
                                    f"got '{settings.weights}'")
    if settings.model is not None and settings.model not in sources:
        raise FieldError("model", f"the studio takes a preset model name (known: {', '.join(sorted(sources))}); "
                                  f"for a trained model file use nst run, got '{settings.model}'")
    method = host.method(settings.method)
    for name in names:
        host.check_plugin(name)
    _refuse_paths(options, host)
    host.resolve_options(list(dict.fromkeys([method.plugin, *names])), options)
    if method.needs_style and not styles:
        raise UsageError(f"method '{method.name}' needs at least one style image")
    blend_weights(settings.style_blend, styles)
    return request


def _refuse_paths(options: dict[str, dict[str, Any]], host) -> None:
    """Options of a file type would make a request name a server file: refused, with the CLI as the way."""
    specs = host.options()
    for plugin, values in options.items():
        for key in values:
            spec = specs.get(plugin, {}).get(key)
            if spec is not None and is_path_type(split_optional(spec.type)[0]):
                raise FieldError(f"{plugin}.{key}", "names a file on the server; set it with nst run, not the studio")


def is_path_type(kind: Any) -> bool:
    return kind is Path or kind == list[Path]


def display_name(filename: str | None, fallback: str) -> str:
    """An upload's file name for messages and listings: its last component, printable, at most 80
    characters (never used as a path)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return (name[:77] + "...") if len(name) > 80 else (name or fallback)


def over(size: float, limit: float, what: str = "limit", unit: str = "MB") -> str:
    """'30.5 MB is over the studio's upload limit of 25.0 MB' (WHAT: 'upload limit'), with as many decimals as it
    takes for the two figures to differ (one byte over is not '25.0 MB is over ... 25.0 MB'). UNIT: MB or Mpx."""
    first = max(1, -math.floor(math.log10(limit / 1e6))) if limit > 0 else 1  # the limit's first figure shows
    digits = next((d for d in range(first, 7) if f"{size / 1e6:.{d}f}" != f"{limit / 1e6:.{d}f}"), 6)
    return f"{size / 1e6:.{digits}f} {unit} is over the studio's {what} of {limit / 1e6:.{digits}f} {unit}"


def store_image(data: bytes, name: str, folder: Path, stem: str, limits: Limits, size: int | None = None) -> str:
    """Check an uploaded image (bytes, pixels, format, a full decode by nst's reader) and write it as
    FOLDER/STEM.SUFFIX; returns that file name. NAME is the upload's display name for messages; SIZE its size in
    bytes when DATA holds only its beginning."""
    import warnings

    from nst.core.images import load_image

    size = max(size or 0, len(data))
    if size > limits.upload_bytes:
        raise TooLarge(f"{name}: {over(size, limits.upload_bytes, 'upload limit')}")
    if not data:
        raise UsageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data), formats=list(FORMATS)) as img:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the studio's own limit follows
            kind, (w, h) = img.format, img.size
    except Image.DecompressionBombError as exc:  # a header claiming more pixels than Pillow will ever decode
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise TooLarge(f"{name}: image of {over(int(pixels.group(1)) if pixels else 1e12, limits.pixels, unit='Mpx')}") \
            from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if too_large(str(exc)):  # Pillow's own limits: text chunks that decompress beyond them
            raise TooLarge(f"{name}: {str(exc)[:80]}, over Pillow's limit for images it reads") from None
        raise NotAnImage(f"{name}: not an image file (or a format Pillow cannot read)") from None
    if w * h > limits.pixels:
        raise TooLarge(f"{name}: image is {w}x{h} ({over(w * h, limits.pixels, unit='Mpx')})")
    path = folder / f"{stem}.{FORMATS[kind]}"
    path.write_bytes(data)
    try:
        load_image(path)
    except NSTError as exc:
        path.unlink(missing_ok=True)
        message = str(exc).replace(str(path), name).replace(path.name, name)
        raise (TooLarge if too_large(message) else UsageError)(message) from None
    return path.name


def too_large(message: str) -> bool:
    """Whether an image reader's MESSAGE says the image is over a limit (nst's or Pillow's)."""
    return any(word in message.lower() for word in ("limit", "too large", "too much memory"))
