"""Writing files safely: atomic writes (temp file beside the target, then rename), outputs checked before
any work (writable, never one of the command's inputs, never written twice), and sets of outputs that
appear together or not at all."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nst.errors import NSTError, UsageError

NAME_MAX = 255  # bytes in one file name on common file systems


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


def input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """PATH, checked to be a file nst can open for reading: else one line saying which of 'no such file',
    'is a folder' or 'not readable' it is (WHAT names the kind of file, e.g. "weights file")."""
    path = Path(path)
    if path.is_dir():
        raise NSTError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise NSTError(f"{path}: no such {what}")
    if not os.access(path, os.R_OK):
        raise NSTError(f"{path}: {what} not readable (permission denied)")
    return path


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
    so a failure leaves none of them (and every earlier file untouched)."""

    def __init__(self, inputs: Iterable = ()) -> None:
        self.inputs = [Path(p) for p in inputs if isinstance(p, (str, os.PathLike)) and Path(p).is_file()]
        self.reserved: list[Path] = []
        self._queue: list[tuple[Path, Callable[[Path], None]]] = []
        self._folders: list[Path] = []

    def add_inputs(self, paths: Iterable) -> None:
        self.inputs += [Path(p) for p in paths if isinstance(p, (str, os.PathLike)) and Path(p).is_file()]

    def reserve(self, path: str | os.PathLike, make_folder: bool = False) -> Path:
        """PATH, checked: writable (its folder made at commit when MAKE_FOLDER), not an input, not taken."""
        path = check_writable(path, make_folder)
        for source in self.inputs:
            if same_file(path, source):
                raise UsageError(f"{path}: is also an input of this command ({source}); choose another output")
        if any(same_file(path, p) for p in self.reserved):
            raise UsageError(f"{path}: would be written twice by this command")
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
                    os.replace(current, backup)
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
        return [p for p, _ in queue]
