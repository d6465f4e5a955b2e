"""``read_keypoints``: picks the reader for a file's format, then settles names, unit and rate.

Kept apart from the readers so that adding a lab format means one new module
plus one line in ``_READERS`` (and ``FORMATS``/``_EXTENSIONS``), nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mimic_mjx.data.keypoints.centreline import _read_worm_skeleton
from mimic_mjx.data.keypoints.common import Keypoints, _check_fps_range, _ntype, _one_line, _open_h5, _warn
from mimic_mjx.data.keypoints.dannce import _read_dannce
from mimic_mjx.data.keypoints.mouse_arm import _read_mouse_arm_h5
from mimic_mjx.data.keypoints.nwb import _read_nwb
from mimic_mjx.data.keypoints.resolve import (
    _PER_METRE,
    UNIT_SCALE,
    _canonical_unit,
    _confidence,
    _resolve_fps,
    _resolve_names,
    _resolve_units,
)
from mimic_mjx.data.keypoints.sleap import _read_sleap_h5, _read_slp
from mimic_mjx.data.keypoints.tabular import _read_csv
from mimic_mjx.errors import KeypointError
from mimic_mjx.files import require_regular_file

FORMATS = ("dannce", "nwb", "sleap_h5", "slp", "csv", "mouse_arm_h5", "worm_skeleton")
_EXTENSIONS = {".mat": "dannce", ".nwb": "nwb", ".slp": "slp", ".csv": "csv", ".npy": "worm_skeleton"}
_HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")

_READERS = {
    "dannce": _read_dannce,
    "nwb": _read_nwb,
    "sleap_h5": _read_sleap_h5,
    "slp": _read_slp,
    "csv": _read_csv,
    "mouse_arm_h5": _read_mouse_arm_h5,
    "worm_skeleton": _read_worm_skeleton,
}


def _detect_format(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext not in _HDF5_EXTENSIONS:
        raise KeypointError(
            f"{path}: unknown keypoint file type '{ext or path.name}'. mimic-mjx reads "
            f".mat (DANNCE), .nwb (ndx-pose), .h5 (SLEAP/sleap-anipose, mouse-arm registration or "
            f"Tierpsy worm skeletons), .slp, .csv (Anipose, DeepLabCut) and .npy (worm centrelines); pass format= "
            f"(one of {list(FORMATS)}) if the extension is misleading"
        )
    with _open_h5(path) as f:
        if "kp_data" in f:
            return "mouse_arm_h5"
        if "tracks" in f:
            return "sleap_h5"
        if "coordinates/skeletons" in f:  # Tierpsy Tracker's features files
            return "worm_skeleton"
        if "pred" in f:  # a MATLAB v7.3 file under another name
            return "dannce"
        if _ntype(f) == "NWBFile":
            return "nwb"
        if "df_with_missing" in f:
            raise KeypointError(
                f"{path}: a DeepLabCut pandas HDF5 file; pass the .csv DeepLabCut writes beside "
                f"it (or export one with pandas: pd.read_hdf(path).to_csv(...))"
            )
        raise KeypointError(
            f"{path}: an HDF5 file with none of the datasets mimic-mjx reads ('tracks' for "
            f"SLEAP, 'kp_data' for registration files, 'pred' for DANNCE, 'coordinates/skeletons' "
            f"for Tierpsy worm skeletons); it holds "
            f"{list(f.keys())}"
        )


def _check_arguments(format, units, fps) -> tuple[str | None, str | None, float | None]:
    if format is not None and format not in FORMATS:
        raise KeypointError(f"unknown keypoint format '{format}'; choose one of {list(FORMATS)}")
    if units is not None:
        canonical = _canonical_unit(units)
        if canonical is None:
            raise KeypointError(f"unknown length unit '{units}'; choose one of {list(UNIT_SCALE)}")
        units = canonical
    if fps is not None:
        try:
            fps = float(fps)
        except (TypeError, ValueError):
            raise KeypointError(f"frame rate must be a number of frames per second, got {fps!r}") from None
        if not np.isfinite(fps) or fps <= 0:
            raise KeypointError(f"frame rate must be a positive number of frames per second, got {fps}")
        _check_fps_range(fps, "fps")
    return format, units, fps


def read_keypoints(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    units: str | None = None,
    fps: float | None = None,
    names: Sequence[str] | None = None,
    skeleton: str | os.PathLike | None = None,
) -> Keypoints:
    """Read a 3D keypoint recording as metres.

    ``format`` is one of FORMATS (default: from the extension and contents).
    ``units`` ('m', 'cm', 'mm', 'um') and ``fps`` override what the file says;
    ``names`` (a list, or one comma-separated string) renames the file's
    keypoints by position; ``skeleton`` (a .mat
    with ``joint_names`` and ``joints_idx``) supplies names and edges, and
    reorders named keypoints to its order. A DANNCE file with 23 keypoints and
    no names is read as the rat23 skeleton (mimic_mjx.bodies.skeletons). Worm
    centrelines (format 'worm_skeleton') are named on the worm's 49-point map
    cl00..cl48; 2-D ones come back with z = 0 and ``planar`` set.
    """
    path = require_regular_file(path, KeypointError, "keypoint file")
    format, units, fps = _check_arguments(format, units, fps)
    fmt = format
    try:
        fmt = format or _detect_format(path)
        raw = _READERS[fmt](path)
    except KeypointError:
        raise
    except Exception as exc:  # h5py, scipy, sleap-io and csv each have their own words for a damaged file
        raise KeypointError(
            f"cannot read {path} as '{fmt or 'keypoint'}' keypoints ({type(exc).__name__}: {_one_line(exc)}); "
            f"check the file, or pass format= (one of {list(FORMATS)})"
        ) from exc
    rate = _resolve_fps(raw, path, fps)  # first: a missing rate is fatal, so warn about nothing else before
    kp_names, edges = _resolve_names(raw, path, names, skeleton)
    unit = _resolve_units(raw, path, units)
    positions = np.array(raw.positions, dtype=np.float64) / _PER_METRE[unit]
    missing = np.isnan(positions).any(axis=2)
    positions[missing] = np.nan  # a point with any missing coordinate is missing
    kp = Keypoints(
        positions=positions,
        names=tuple(kp_names),
        fps=rate,
        confidence=_confidence(raw, missing, path),
        source=f"{fmt}:{path}",
        edges=tuple(edges),
        input_units=unit,
        planar=raw.planar,
    ).validate()
    empty = int(missing.all(axis=1).sum())
    if empty:
        _warn(f"{path}: {empty} of {kp.num_frames} frames have no keypoints (all NaN); registration skips them")
    return kp
