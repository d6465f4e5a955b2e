"""Safe file access: atomic output files, output locations checked first, input files checked before reading.

A write goes to a temporary file beside the target and replaces it only once
everything is known to be on disk, so a full disk, a quota or a read-only
folder leaves the previous file intact and raises ``OutputError``. HDF5 needs
extra care: the library can lose write errors at close and leave a file that
opens but reads back zeros, so HDF5 outputs are read back before the rename.

Every command that writes calls ``require_writable_dir`` or
``require_writable_file`` on its output before any long work, so a bad
``--out`` costs seconds, not a finished computation. Every reader goes through
``require_regular_file`` (a named pipe would block it forever) and reads text
with ``read_text`` (bytes that are not UTF-8 text are a one-line error).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from pathlib import Path

from mimic_mjx.errors import OutputError

_HDF5_SUFFIXES = (".h5", ".hdf5", ".nwb")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_ALLOWED = (errno.EROFS, errno.EACCES, errno.EPERM)


def _errno_of(exc: BaseException) -> int | None:
    if getattr(exc, "errno", None):
        return exc.errno
    # h5py raises OSError without errno; HDF5 puts it in the text ("errno = 28").
    m = re.search(r"errno = (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _output_error(path: Path, exc: BaseException) -> OutputError:
    code = _errno_of(exc)
    reason = os.strerror(code) if code else " ".join(str(exc).split()) or type(exc).__name__
    if code in _NO_SPACE:
        hint = "free space or choose another path"
    elif code in _NOT_ALLOWED:
        hint = "choose a folder you can write to"
    else:
        hint = "check the path and the disk"
    kept = "the previous file is unchanged" if path.exists() else "nothing was written"
    return OutputError(f"could not write {path}: {reason}; {kept}; {hint}")


def _prepare_folder(path: Path) -> None:
    for parent in (path.parent, *path.parent.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"could not write {path}: {parent} is a file, not a folder; choose another path")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(path, exc) from None
    if path.is_dir():
        raise OutputError(f"could not write {path}: it is a folder; give a file name")


def _fsync(path: str | Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_back_hdf5(tmp: Path, path: Path) -> None:
    """Read every dataset of a just-written HDF5 file: truncation or lost writes fail here."""
    import h5py
    import numpy as np

    def visit(_name, obj):
        if not isinstance(obj, h5py.Dataset) or obj.shape is None or obj.size == 0:
            return
        if obj.chunks is not None:
            for sl in obj.iter_chunks():
                obj[sl]
        elif obj.ndim == 0:
            obj[()]
        else:  # bounded memory for large contiguous datasets
            step = max(1, (1 << 24) // max(1, int(np.prod(obj.shape[1:])) * obj.dtype.itemsize))
            for start in range(0, obj.shape[0], step):
                obj[start : start + step]

    try:
        with h5py.File(tmp, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        # ValueError/RuntimeError/KeyError: h5py's words for a damaged file.
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise OutputError(
            f"could not write {path}: the written file does not read back ({' '.join(str(exc).split())}); "
            f"{kept}; check that the disk has space and works"
        ) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it into place once it is safely written.

    Any OSError (disk full, quota, read-only, permission) becomes an ``OutputError``
    naming ``path``; the temporary file is removed and a previous file at ``path``
    is left as it was.
    """
    path = Path(path)
    _prepare_folder(path)
    try:
        # Keep the extension last: some writers (e.g. video) choose the format by it.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _output_error(path, exc) from None
    try:
        yield Path(tmp)
        _fsync(tmp)
        if path.suffix.lower() in _HDF5_SUFFIXES:
            _read_back_hdf5(Path(tmp), path)
        # mkstemp creates files readable by their owner alone; outputs get the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OutputError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # h5py reports some failed writes as RuntimeError, with the errno only in its text.
        if isinstance(exc, RuntimeError) and _errno_of(exc) is None:
            raise
        raise _output_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename is done; a folder that cannot be synced (some network filesystems) is no reason to fail.
    with contextlib.suppress(OSError):
        _fsync(path.parent, directory=True)


@contextlib.contextmanager
def atomic_hdf5(path: str | os.PathLike):
    """Yield an ``h5py.File`` built in memory; write it to ``path`` as ``atomic_path`` does.

    HDF5 itself then never sees a failed write: HDF5 2.0 can crash (segfault)
    closing a file whose writes failed, which no error handling can catch. Costs
    the file's size in memory. Prefer this to ``atomic_path`` for HDF5 outputs.
    """
    import io

    import h5py

    # Inside atomic_path: the folder is checked first, and an error while building is reported as a write's.
    with atomic_path(path) as tmp:
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            yield f
        with open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def require_regular_file(path: str | os.PathLike, error: type[Exception], what: str = "file") -> Path:
    """``path`` as a Path if it is a regular file (after symlinks); else ``error`` saying what it is.

    Checked before opening: opening a named pipe blocks until a writer appears,
    and a device or socket is no data file.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot open {what} {path}: {os.strerror(exc.errno) if exc.errno else exc}") from None
    if stat.S_ISDIR(mode):
        raise error(f"{path} is a folder; pass the {what} inside it")
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a device or socket"
        raise error(f"{path} is not a regular file ({kind}); pass a {what} on disk")
    if not os.access(path, os.R_OK):
        raise error(f"cannot open {what} {path}: permission denied")
    return path


def read_text(path: str | os.PathLike, error: type[Exception], what: str = "file") -> str:
    """The UTF-8 text of a regular file at ``path``; ``error`` when it is missing, not a file, or not text.

    Binary data (NUL bytes, or bytes that are not UTF-8) is refused with the
    offset of the first bad byte, instead of a UnicodeDecodeError traceback.
    """
    path = require_regular_file(path, error, what)
    return decode_text(read_bytes(path, error, what), path, error, what)


def read_bytes(
    path: str | os.PathLike,
    error: type[Exception],
    what: str = "file",
    max_bytes: int | None = None,
    too_large_for: str = "",
) -> bytes:
    """The bytes of a regular file; ``error`` when it is missing, not a file, unreadable or over ``max_bytes``."""
    path = require_regular_file(path, error, what)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {os.strerror(exc.errno) if exc.errno else exc}") from None
    if max_bytes is not None and len(raw) > max_bytes:
        kind = too_large_for or f"a {what}"
        raise error(f"{path} is {len(raw)} bytes, far too large for {kind}; is it the right file?")
    return raw


def decode_text(raw: bytes, path: str | os.PathLike, error: type[Exception], what: str = "file") -> str:
    """``raw`` as UTF-8 text (a byte-order mark dropped); ``error`` naming the first byte that is not text."""
    nul = raw.find(b"\x00")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start if nul < 0 else min(nul, exc.start)
        raise error(f"{path} is not a text (UTF-8) {what}: byte {at} is binary data; is it the right file?") from None
    if nul >= 0:  # valid UTF-8, but no text file holds NUL: an image, an archive, a damaged copy
        raise error(f"{path} is not a text (UTF-8) {what}: byte {nul} is binary data; is it the right file?")
    return text


def read_jsonl(path: str | os.PathLike, error: type[Exception], what: str = "log") -> tuple[list[dict], int]:
    """The JSON objects of a JSON-lines file, and how many lines were damaged (skipped).

    A log is appended to while a run lives, so a line half-written at a crash,
    or bytes damaged on disk, cost that line only: it is skipped and counted
    (not valid UTF-8, not JSON, not an object), never fatal. A missing file is
    ``([], 0)``; a path that is not a regular file is ``error``.
    """
    import json

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return [], 0
    path = require_regular_file(path, error, what)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {os.strerror(exc.errno) if exc.errno else exc}") from None
    records, damaged = [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
        else:
            damaged += 1
    return records, damaged


def open_hdf5(path: str | os.PathLike, error: type[Exception], what: str = "HDF5 file"):
    """An ``h5py.File`` open for reading; ``error`` when ``path`` is not a regular file or not HDF5."""
    import h5py

    path = require_regular_file(path, error, what)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise error(f"cannot read {path} as HDF5 ({reason}); is it a {what}?") from None


def _existing_ancestor(path: Path, flag: str) -> Path:
    """The nearest folder above ``path`` that exists; OutputError if a file stands in the way."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
            return parent
    return Path(".")


def _probe_write(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a file in ``folder``: the only test a read-only mount, ACLs or quotas cannot fool."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mimic-write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = "free space or choose another path" if exc.errno in _NO_SPACE else "choose a folder you can write to"
        raise OutputError(f"{flag} {path}: cannot write in {folder} ({reason}); {hint}") from None


def require_writable_dir(path: str | os.PathLike, flag: str = "--out", *, create: bool = False) -> Path:
    """``path`` as a Path if it is, or can become, a folder this process can write in; else OutputError.

    Commands call it on their output folder before any long work. ``create``
    also makes the folder (with its parents). ``flag`` names the option in the
    message, e.g. "--run-dir".
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(f"{flag} {path} is a file, not a folder; give a folder (it is made if missing)")
        folder = path
    else:
        folder = _existing_ancestor(path, flag)
    _probe_write(folder, path, flag)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _output_error(path, exc) from None
    return path


def require_writable_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a Path if a file can be written there (replacing a file that is there); else OutputError.

    Commands call it on their output file before any long work.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name inside it")
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise OutputError(f"{flag} {path} exists and is not a regular file (a pipe or device); give a file name")
    folder = path.parent if path.parent.is_dir() else _existing_ancestor(path, flag)
    _probe_write(folder, path, flag)
    return path
