"""What every keypoint reader shares: the ``Keypoints`` record and the raw reader record.

Readers (one module per lab format) only parse a file into a ``_Raw``: positions
in the file's own unit, plus whatever names, unit and frame rate the file
records. ``resolve`` settles those into a validated ``Keypoints`` in metres, so
that the rules for names, units and frame rates live in one place, not six.
The small HDF5/string helpers several readers need are here as well, and
``_warn``, which points a ``KeypointWarning`` at the caller of this package.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from mimic_mjx.errors import KeypointError

_PACKAGE_DIR = os.path.dirname(__file__)
# Outside this range a frame rate is a typing or unit mistake, and would silently
# scale every velocity learned from the recording.
FPS_RANGE = (1.0, 100_000.0)
# Far beyond any unit mistake (check_plausible_size explains those): coordinates past this, in metres, are damage.
MAX_COORDINATE_M = 1e8


class KeypointWarning(UserWarning):
    """Something about a keypoint file was assumed or repaired; the data is still usable."""


def _warn(message: str) -> None:
    # Point the warning at the code that called into this package (stacklevel=2
    # from a public function), not at the helper several frames down.
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == _PACKAGE_DIR:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, KeypointWarning, stacklevel=level)


@dataclasses.dataclass
class Keypoints:
    """A 3D keypoint recording of one animal. Arrays are float64, lengths in metres."""

    positions: np.ndarray  # (T, K, 3) m, NaN where missing
    names: tuple[str, ...]
    fps: float
    confidence: np.ndarray  # (T, K) in [0, 1], 0 where the position is missing
    source: str
    edges: tuple[tuple[int, int], ...] = ()  # 0-based skeleton edges, if known
    input_units: str = "m"  # the unit the file's values were read in (before conversion to metres)
    planar: bool = False  # 2-D points (x, y seen from above) with z = 0: registration sets each z from the body

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_keypoints(self) -> int:
        return int(self.positions.shape[1])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def validate(self) -> Keypoints:
        """Check shapes, names, rate and values; raise KeypointError naming the problem."""
        where = self.source or "keypoints"
        pos = self.positions
        if not isinstance(pos, np.ndarray) or pos.ndim != 3 or pos.shape[2] != 3:
            raise KeypointError(f"{where}: positions have shape {np.shape(pos)}, expected (frames, keypoints, 3)")
        T, K = pos.shape[:2]
        if T == 0 or K == 0:
            raise KeypointError(f"{where}: holds {T} frame(s) of {K} keypoint(s); nothing to use")
        if T < 2:
            raise KeypointError(f"{where}: holds {T} frame; a recording needs at least 2 frames to show movement")
        if len(self.names) != K:
            raise KeypointError(
                f"{where}: {len(self.names)} keypoint names for {K} keypoints; give one name per keypoint"
            )
        if any(not isinstance(n, str) or not n for n in self.names):
            raise KeypointError(f"{where}: keypoint names must be non-empty strings, got {list(self.names)}")
        if len(set(self.names)) != K:
            repeated = sorted({n for n in self.names if self.names.count(n) > 1})
            raise KeypointError(f"{where}: keypoint names repeat: {repeated}; each keypoint needs its own name")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise KeypointError(f"{where}: frame rate must be a positive number of frames per second, got {self.fps}")
        _check_fps_range(self.fps, where)
        if np.shape(self.confidence) != (T, K):
            raise KeypointError(f"{where}: confidence has shape {np.shape(self.confidence)}, expected ({T}, {K})")
        conf = self.confidence
        if not np.isfinite(conf).all() or conf.min() < 0 or conf.max() > 1:
            raise KeypointError(f"{where}: confidence values must lie in [0, 1]")
        for a, b in self.edges:
            if not (0 <= a < K and 0 <= b < K) or a == b:
                raise KeypointError(f"{where}: skeleton edge ({a}, {b}) does not join two of the {K} keypoints")
        inf = np.isinf(pos)
        if inf.any():
            t, k = np.argwhere(inf)[0][:2]
            raise KeypointError(
                f"{where}: {int(inf.sum())} infinite coordinate(s), first at frame {t} "
                f"keypoint '{self.names[k]}'; mark missing values as NaN instead"
            )
        peak = float(np.nanmax(np.abs(pos), initial=0.0))
        if peak > MAX_COORDINATE_M:
            raise KeypointError(
                f"{where}: coordinates reach {peak:.3g} m, beyond any unit mistake (limit {MAX_COORDINATE_M:g} m); "
                f"the file is damaged or its unit is wrong"
            )
        missing = np.isnan(pos).any(axis=2)
        if missing.all():
            raise KeypointError(
                f"{where}: holds no keypoint positions: every value is NaN (missing). "
                f"Check that tracking/triangulation succeeded for this recording."
            )
        never = [self.names[k] for k in np.nonzero(missing.all(axis=0))[0]]
        if never:
            raise KeypointError(
                f"{where}: keypoint(s) {never} are missing (NaN) in every frame. Re-run tracking "
                f"for them, or drop their columns/series from the file."
            )
        return self

    def subset(self, names: Sequence[str]) -> Keypoints:
        """The named keypoints, in the given order (skeleton edges between them are kept)."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise KeypointError(f"{self.source}: no keypoint(s) {unknown}; it has {list(self.names)}")
        if len(set(names)) != len(names):
            raise KeypointError(f"{self.source}: keypoint names repeat in the subset {names}")
        idx = [self.names.index(n) for n in names]
        new_index = {old: new for new, old in enumerate(idx)}
        edges = tuple((new_index[a], new_index[b]) for a, b in self.edges if a in new_index and b in new_index)
        return dataclasses.replace(
            self,
            positions=self.positions[:, idx].copy(),
            names=tuple(names),
            confidence=self.confidence[:, idx].copy(),
            edges=edges,
        ).validate()


# ---------------------------------------------------------------------------
# What a reader hands back before names, units and frame rate are settled.


@dataclasses.dataclass
class _Raw:
    positions: np.ndarray  # (T, K, 3) in the file's length unit
    what: str  # the kind of file, for messages ("DANNCE .mat files")
    confidence: np.ndarray | None = None  # (T, K)
    names: tuple[str, ...] | None = None
    edges: tuple[tuple[int, int], ...] = ()
    file_unit: str | None = None  # as written in the file ("mm", "pixels"), None if it records none
    default_unit: str = "mm"  # assumed when the file records none
    warn_default_unit: bool = True
    fps: float | None = None
    fallback_names: tuple[tuple[str, ...], tuple[tuple[int, int], ...]] | None = None  # if no names are given
    names_error: str | None = None  # raised instead of naming kp0.. when no names are given
    planar: bool = False  # 2-D points given z = 0 (see Keypoints.planar)


def _as_names(value) -> tuple[str, ...]:
    """Strings from HDF5/MATLAB string arrays (bytes, str, or MATLAB cells of 1x1 char arrays)."""
    out = []
    for item in np.asarray(value, dtype=object).ravel():
        while isinstance(item, np.ndarray):  # a MATLAB cell wraps each string in its own array
            item = item.ravel()[0] if item.size else ""
        out.append((item.decode() if isinstance(item, bytes) else str(item)).strip())
    return tuple(out)


def _check_fps_range(fps: float, where: str) -> None:
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise KeypointError(
            f"{where}: frame rate {fps:g} Hz is implausible; expected {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g} "
            f"frames per second"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _numeric(value, path: Path, what: str) -> np.ndarray:
    """``value`` as float64, refusing text: numbers stored as strings are a broken export, not data."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise KeypointError(f"{path}: {what} holds {arr.dtype} values, expected numbers")
    return arr.astype(np.float64)


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise KeypointError(f"cannot read {path} as HDF5 ({_one_line(exc)}); is it the right file?") from None


def _positive_fps(fps) -> float | None:
    """A frame rate stored in a file, or None if it is unusable."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return None
    return fps if np.isfinite(fps) and fps > 0 else None


def _ntype(obj) -> str:
    t = obj.attrs.get("neurodata_type", "")
    return t.decode() if isinstance(t, bytes) else str(t)


def _decode_attr(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
