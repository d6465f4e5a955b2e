"""Safe file access: atomic output files, and input paths checked before they are opened.

A write goes to a temporary file beside the target and replaces it only once
everything is known to be on disk, so a full disk, a quota or a read-only
folder leaves the previous file intact and raises ``OutputError``. HDF5 needs
extra care: the library can lose write errors at close and leave a file that
opens but reads back zeros, so HDF5 outputs are read back before the rename.
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
