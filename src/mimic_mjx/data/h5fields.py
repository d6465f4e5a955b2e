"""Typed reads of HDF5 datasets and attributes, with a ``ClipError`` naming what is wrong.

Shared by the clip reader (``data.clips``) and the lazy listing (``data.clip_files``).
"""

from __future__ import annotations

import h5py
import numpy as np

from mimic_mjx.errors import ClipError

_MAX_ARRAY_BYTES = 1 << 32


def decode(names) -> tuple[str, ...]:
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(names).ravel())


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def dataset(group, key: str) -> h5py.Dataset:
    obj = group[key]
    if not isinstance(obj, h5py.Dataset):
        raise ClipError(f"'{key}' is a group, expected a dataset")
    if obj.shape is None or obj.size * obj.dtype.itemsize > _MAX_ARRAY_BYTES:
        raise ClipError(f"'{key}' has shape {obj.shape}, too large (or empty) for a clip")
    return obj


def numbers(group, key: str) -> np.ndarray:
    """A numeric dataset as float32; text or compound data is refused, not parsed."""
    ds = dataset(group, key)
    if ds.dtype.kind not in "fiu":
        raise ClipError(f"'{key}' holds {ds.dtype} values, expected numbers")
    return f32(ds[()])


def strings(group, key: str) -> tuple[str, ...]:
    ds = dataset(group, key)
    values = ds[()]
    if ds.dtype.kind not in "SUO" or not all(isinstance(v, (bytes, str)) for v in np.asarray(values).ravel()):
        raise ClipError(f"'{key}' holds {ds.dtype} values, expected names (strings)")
    return decode(values)


def attr_number(value, what: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "fiu":
        raise ClipError(f"{what} must be one number, got {value!r}")
    return float(arr.ravel()[0])


def attr_text(value, what: str) -> str:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        raise ClipError(f"{what} must be text, got {value!r}")
    return value


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
