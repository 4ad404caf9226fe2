"""Writing output files safely: check first, write atomically, never clobber special files.

Every command that writes a file goes through this module:

* :func:`check_output` is called *before* any work, so an output that cannot be written (a
  missing permission, a read-only file system such as ``/sys``, a path under a regular file, a
  directory given where a file is expected) fails in a moment with a one-line
  :class:`OutputError` instead of after minutes of sampling.
* :func:`open_output` writes a regular file atomically: the data goes to a hidden temporary
  file next to the target (the target of a symlink, so the link itself survives), is flushed
  to disk and renamed over the target only when the ``with`` block finishes without an
  exception; on any exception, ``KeyboardInterrupt`` included, the temporary file is removed.
  Special files (``/dev/null``, a FIFO, a socket) are opened directly and streamed to, never
  replaced, and ``-`` means standard output.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import InputError

__all__ = ["OutputError", "check_output", "open_output", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_figure", "STDOUT"]

STDOUT = "-"
"""The output name that means standard output."""


class OutputError(InputError):
    """An output path that cannot be written; the message is one line naming the reason."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _probe_directory(directory: Path, shown: str | Path) -> None:
    """Create and remove a file in ``directory``: the only test that is right on read-only
    and pseudo file systems (``/proc``, ``/sys``) and for every user, root included."""
    probe = directory / f".qdiff-probe-{secrets.token_hex(6)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise OutputError(
            f"cannot write {shown}: cannot create files in {directory} ({_reason(exc)})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _check_creatable(path: Path, shown: str | Path) -> None:
    """A path that does not exist yet can be created (with its missing parent folders)."""
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {shown}: {ancestor} is not a directory")
    _probe_directory(ancestor, shown)


def check_output(path: str | Path, kind: str = "file") -> None:
    """Raise :class:`OutputError` unless ``path`` can be written as a ``kind`` (``"file"`` or
    ``"dir"``); creates nothing that outlives the call."""
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    if str(path) == STDOUT:
        if kind == "dir":
            raise OutputError("cannot write a folder of outputs to standard output ('-')")
        return
    if str(path) == "":
        raise OutputError("the output path is empty")
    target = Path(os.path.realpath(path))
    if not target.exists():
        _check_creatable(target, path)
        return
    mode = target.stat().st_mode
    if kind == "dir":
        if not stat.S_ISDIR(mode):
            raise OutputError(f"cannot write into {path}: it is not a directory")
        _probe_directory(target, path)
    elif stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: it is a directory")
    elif not os.access(target, os.W_OK):
        raise OutputError(f"cannot write {path}: permission denied")
    elif stat.S_ISREG(mode):
        _probe_directory(target.parent, path)


def _file_mode(mode: str) -> tuple[bool, dict]:
    if mode not in ("w", "wb"):
        raise ValueError(f"open_output supports modes 'w' and 'wb', got {mode!r}")
    binary = mode == "wb"
    return binary, ({} if binary else {"encoding": "utf-8"})


def _open_temporary(target: Path, mode: str, options: dict) -> tuple[Path, IO]:
    """A new hidden file next to ``target``, created with the usual permissions (umask)."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        return tmp, os.fdopen(fd, mode, **options)


@contextmanager
def _stream(fh: IO, close: bool) -> Iterator[IO]:
    try:
        yield fh
    finally:
        if close:
            fh.close()
        else:
            fh.flush()


@contextmanager
def open_output(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing (``mode`` ``"w"`` or ``"wb"``) as described in the module
    docstring; yields the file object."""
    binary, options = _file_mode(mode)
    if str(path) == STDOUT:
        with _stream(sys.stdout.buffer if binary else sys.stdout, close=False) as fh:
            yield fh
        return
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        if target.is_dir():
            raise OutputError(f"cannot write {path}: it is a directory")
        try:
            special = open(target, mode, **options)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
        with _stream(special, close=True) as fh:
            yield fh
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp, fh = _open_temporary(target, mode, options)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`open_output`."""
    with open_output(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`open_output`."""
    with open_output(path, "w") as fh:
        fh.write(text)


def atomic_write_figure(path: str | Path, fig, dpi: int = 100) -> None:
    """Save the matplotlib figure ``fig`` to ``path`` through :func:`open_output`, in the format
    its suffix names (PNG without one); the figure stays open."""
    kind = Path(str(path)).suffix.lstrip(".").lower() or "png"
    with open_output(path, "wb") as fh:
        fig.savefig(fh, format=kind, dpi=dpi)
