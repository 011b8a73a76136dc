"""Reading and writing files safely: inputs checked (a folder or a missing file named as such), atomic writes
(temp file beside the target, then rename), outputs checked before any work (writable, never one of the
command's inputs, never written twice, the overwrite rule), sets of outputs that appear together or not at all,
and the manifest of what nst wrote into a folder.

The overwrite rule (README, "Your files are safe"): a file the user names is replaced, as `cp` does; a file nst
names inside a folder the user gave is written only where no file of that name exists, and with --overwrite
replaced or removed only while the folder's manifest says nst wrote it and it is unchanged since."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nst.errors import NSTError, UsageError

NAME_MAX = 255  # bytes in one file name on common file systems
MANIFEST = ".nst-written.jsonl"  # in a folder nst writes into: one line per file written, {"file": ..., "sha256": ...}
MANIFEST_BYTES = 64 << 20  # a larger manifest is not one nst wrote: none of its entries count
COMPACT_BYTES = 1 << 20  # a manifest grown beyond this is rewritten with one line per file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> Path:
    """A new empty file in PATH's folder, hidden, named so a user sees it belongs to nst."""
    fd, tmp = tempfile.mkstemp(prefix=".nst.", suffix=f".part{path.suffix[:16]}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside PATH; on success it becomes PATH (with the usual permissions),
    on any error it is removed and PATH is left as it was."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike, make_folder: bool = False) -> Path:
    """Fail early (before any work) if PATH cannot be written: missing (unless MAKE_FOLDER: then its
    nearest existing parent must be writable) or read-only folder, PATH a folder, a name too long."""
    path = Path(path)
    if len(path.name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise NSTError(f"{str(path)[:60]}…: file name longer than {NAME_MAX} bytes")
    folder = path.parent if str(path.parent) else Path(".")
    existing = folder
    while make_folder and not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise NSTError(f"{path}: {existing} is a file, not a folder")
    if not existing.is_dir():
        raise NSTError(f"{path}: folder {folder} does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NSTError(f"{path}: folder {existing} is not writable")
    if path.is_dir():
        raise NSTError(f"{path}: is a folder")
    return path


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """PATH when it is a regular file this process can read; otherwise one NSTError saying what it is instead
    (no such file, a broken link, a folder, a device or pipe, no permission). WHAT names the file expected,
    e.g. 'a model file'."""
    path = Path(path)
    if path.is_dir():
        raise NSTError(f"{path}: is a folder, not {what}")
    if not path.exists():
        raise NSTError(f"{path}: no such file" + (" (a link to a missing file)" if path.is_symlink() else ""))
    if not path.is_file():
        raise NSTError(f"{path}: not a regular file (a device, pipe or socket), not {what}")
    if not os.access(path, os.R_OK):
        raise NSTError(f"{path}: cannot be read (permission denied)")
    return path


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether PATH (links resolved) lies in FOLDER or below it (or is FOLDER)."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


class Manifest:
    """What nst wrote into FOLDER: FOLDER/.nst-written.jsonl, one JSON line per file written, {"file": path
    relative to FOLDER, "sha256": its content} (the last line for a file counts). It is data read back: lines
    that are not such entries (damaged, absolute, '..', a link leading out) are ignored, so the files they
    name count as the user's. nst replaces or removes a file in FOLDER only while it owns() it."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST

    def check(self) -> Manifest:
        """Itself, once it is sure the manifest's name holds a manifest or nothing (checked before any work: a link
        there would make nst append to another file)."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise UsageError(f"{self.path}: nst keeps its list of the files it wrote in {self.folder} under this name, "
                             "and this is not such a list; move it away")
        return self

    def entries(self) -> dict[str, str]:
        """{relative path: sha256} of the files nst wrote here (valid lines only)."""
        try:
            if self.path.is_symlink() or not self.path.is_file() or self.path.stat().st_size > MANIFEST_BYTES:
                return {}
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return {}
        found: dict[str, str] = {}
        for line in lines:
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue
            name, digest = (entry.get("file"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
            if (isinstance(name, str) and isinstance(digest, str) and len(digest) == 64 and name and "\0" not in name
                    and not os.path.isabs(name) and ".." not in Path(name).parts and name != MANIFEST):
                found[Path(name).as_posix()] = digest
        return found

    def relative(self, path: str | os.PathLike) -> str | None:
        """PATH relative to the folder ('a/b.png'), or None when it is not a file below it (links resolved)."""
        path = Path(path)
        if not inside(path.parent, self.folder) or path.is_symlink():
            return None
        return Path(os.path.relpath(os.path.realpath(path.parent), os.path.realpath(self.folder)), path.name).as_posix()

    def owns(self, path: str | os.PathLike, entries: dict[str, str] | None = None) -> bool:
        """Whether PATH is a file nst wrote here and nobody changed since."""
        name = self.relative(path)
        entries = self.entries() if entries is None else entries
        if name is None or name not in entries or not Path(path).is_file():
            return False
        try:
            return sha256_file(path) == entries[name]
        except OSError:
            return False

    def record(self, paths: Iterable[str | os.PathLike]) -> None:
        """Add the files PATHS (below the folder), as they are now, to the manifest."""
        added = {}
        for path in paths:
            name = self.relative(path)
            if name is not None and Path(path).is_file():
                added[name] = sha256_file(path)
        if not added:
            return
        if self.path.is_file() and not self.path.is_symlink() and self.path.stat().st_size > COMPACT_BYTES:
            entries = {**self.entries(), **added}
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(json.dumps({"file": k, "sha256": v}) + "\n" for k, v in entries.items()))
            return
        lines = [json.dumps({"file": name, "sha256": digest}, ensure_ascii=True) for name, digest in added.items()]
        try:  # appended, never through a link: the manifest's name in a user's folder could be one
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            raise NSTError(f"{self.path}: cannot record the files nst wrote ({exc.strerror or exc})") from None
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    def remove_written(self) -> list[Path]:
        """Delete every file nst wrote here and nobody changed since, then the folders left empty below FOLDER, then
        the manifest itself when nothing it lists is left; returns the files that were kept (changed since)."""
        entries = self.entries()
        kept = []
        for name in sorted(entries, key=lambda n: -n.count("/")):
            path = self.folder / name
            if self.owns(path, entries):
                path.unlink()
                parent = path.parent
                while parent != self.folder and inside(parent, self.folder) and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
            elif path.exists():
                kept.append(path)
        if not kept:
            self.path.unlink(missing_ok=True)
        return kept

    def strangers(self) -> list[Path]:
        """Files below the folder that nst did not write (or that changed since): the user's."""
        entries = self.entries()
        return [p for p in sorted(self.folder.rglob("*")) if p != self.path and (p.is_file() or p.is_symlink())
                and not self.owns(p, entries)]


def check_replace(path: Path, within: Path, overwrite: bool) -> None:
    """The overwrite rule for PATH, a name nst chose in the folder WITHIN that the user gave: an existing file there
    is replaced only with OVERWRITE, and only when nst wrote it (WITHIN's manifest) and nobody changed it since.
    Checked before any work, with the manifest's own name (a link there would make nst write elsewhere)."""
    manifest = Manifest(within).check()
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise UsageError(f"{path} exists; add --overwrite to replace it")
    if not manifest.owns(path):
        raise UsageError(f"{path} exists and was not written there by nst (or was changed since), so --overwrite "
                         "leaves it alone; move it away or choose another folder")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether A and B name the same file: after resolving symlinks and '..', or as hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class Outputs:
    """The files one command writes. reserve() checks a path before any work; add() queues a file;
    commit() writes every queued file to a temp file beside its target and only then renames them all,
    so a failure leaves none of them (and every earlier file untouched). OVERWRITE: the user's --overwrite
    (see check_replace)."""

    def __init__(self, inputs: Iterable = (), overwrite: bool = False) -> None:
        self.inputs = [Path(p) for p in inputs if isinstance(p, (str, os.PathLike)) and Path(p).is_file()]
        self.overwrite = overwrite
        self.reserved: list[Path] = []
        self.within: dict[Path, Path] = {}  # a path nst named -> the user's folder it is in
        self._queue: list[tuple[Path, Callable[[Path], None]]] = []
        self._folders: list[Path] = []

    def add_inputs(self, paths: Iterable) -> None:
        self.inputs += [Path(p) for p in paths if isinstance(p, (str, os.PathLike)) and Path(p).is_file()]

    def reserve(self, path: str | os.PathLike, make_folder: bool = False, within: str | os.PathLike | None = None) -> Path:
        """PATH, checked: writable (its folder made at commit when MAKE_FOLDER), not an input, not taken. WITHIN:
        the folder the user gave, when nst chose PATH's name in it (the overwrite rule applies; the manifest
        there records it at commit)."""
        path = check_writable(path, make_folder)
        for source in self.inputs:
            if same_file(path, source):
                raise UsageError(f"{path}: is also an input of this command ({source}); choose another output")
        if any(same_file(path, p) for p in self.reserved):
            raise UsageError(f"{path}: would be written twice by this command")
        if within is not None:
            check_replace(path, Path(within), self.overwrite)
            self.within[path] = Path(within)
        self.reserved.append(path)
        if make_folder and not path.parent.exists():
            self._folders.append(path.parent)
        return path

    def add(self, path: str | os.PathLike, write: Callable[[Path], None]) -> None:
        """Queue PATH, written by WRITE(temp_path) at commit (reserved now if it was not)."""
        path = Path(path)
        if not any(p == path for p in self.reserved):
            self.reserve(path)
        self._queue.append((path, write))

    def commit(self) -> list[Path]:
        """Write every queued file (all, or none when one fails: files already swapped in are taken back out
        and earlier files at those paths restored); returns their paths."""
        queue, self._queue = self._queue, []
        temps: list[tuple[Path, Path]] = []
        swapped: list[tuple[Path, Path | None]] = []
        current = None
        try:
            for folder in self._folders:
                folder.mkdir(parents=True, exist_ok=True)
            for current, write in queue:
                temps.append((current, _temp_beside(current)))
                write(temps[-1][1])
                os.chmod(temps[-1][1], 0o666 & ~_umask())
            for current, tmp in temps:
                backup = None
                if current.exists():
                    backup = _temp_beside(current)
                    try:
                        os.replace(current, backup)
                    except OSError:
                        backup.unlink(missing_ok=True)  # no empty .part is left beside a file that stays
                        raise
                swapped.append((current, backup))
                os.replace(tmp, current)
        except Exception as exc:  # a full disk, a vanished folder, a file system refusing the name
            for path, backup in reversed(swapped):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink(missing_ok=True)
            if isinstance(exc, NSTError):
                raise
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise NSTError(f"cannot write {current or 'the outputs'} ({reason}); none of this command's outputs were "
                           "written") from None
        finally:
            for _, tmp in temps:
                tmp.unlink(missing_ok=True)
        for _, backup in swapped:
            if backup is not None:
                backup.unlink(missing_ok=True)
        for folder in dict.fromkeys(self.within[p] for p, _ in queue if p in self.within):
            Manifest(folder).record(p for p, _ in queue if self.within.get(p) == folder)
        return [p for p, _ in queue]
