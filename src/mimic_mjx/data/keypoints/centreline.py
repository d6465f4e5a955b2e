"""Worm-tracker centrelines ("skeletons"): Tierpsy Tracker HDF5 files and plain .npy arrays.

A worm tracker films the plate from above and writes, per frame, a midline of
evenly spaced points from head to tail, in 2-D. Tierpsy Tracker's features
files (``*_featuresN.hdf5``) hold them as ``/coordinates/skeletons`` of shape
(rows, points, 2), usually 49 points, in micrometres, NaN where the worm was
not skeletonised. Each row belongs to a (worm, timestamp) pair of the
``/timeseries_data`` table (``/features_timeseries`` in older files); the frame
rate (``fps``, else ``expected_fps``) and the length unit (``xy_units``) are
attributes of ``/trajectories_data`` and the other tables. A plain ``.npy``
array (frames, points, 2 or 3) records neither rate nor unit.

The points are named after the worm body's centreline map of 49 points,
``cl00`` (head tip) to ``cl48`` (tail tip): P evenly spaced points land on
every (48 / (P - 1))-th of them, so P must be one more than a divisor of 48.
2-D points get z = 0 and the recording is marked planar: registration lifts
each point to its marker's height in the body's rest pose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimic_mjx.data.keypoints.common import _decode_attr, _numeric, _open_h5, _positive_fps, _Raw, _warn
from mimic_mjx.errors import KeypointError

CENTRELINE_POINTS = 49  # the worm body's centreline map: cl00 (head tip) .. cl48 (tail tip)
_SPAN = CENTRELINE_POINTS - 1
VALID_COUNTS = tuple(d + 1 for d in range(1, _SPAN + 1) if _SPAN % d == 0)  # 2, 3, 4, 5, 7, 9, 13, 17, 25, 49
_SKELETONS = "coordinates/skeletons"
# Tierpsy tables that index the skeleton rows (featuresN, then the older features files) ...
_ROW_TABLES = ("timeseries_data", "features_timeseries")
# ... and where it records the frame rate and length unit, first match wins.
_META_PLACES = ("trajectories_data", "timeseries_data", "features_timeseries", _SKELETONS, "coordinates", "/")


def centreline_names(count: int) -> tuple[str, ...] | None:
    """Names of ``count`` evenly spaced head-to-tail points on the 49-point map, or None if they miss it."""
    if count < 2 or _SPAN % (count - 1):
        return None
    step = _SPAN // (count - 1)
    return tuple(f"cl{k * step:02d}" for k in range(count))


def _names_error(path: Path, count: int) -> str:
    return (
        f"{path}: holds {count} centreline points per frame, but the worm's centreline map has "
        f"{CENTRELINE_POINTS} points (cl00 head tip .. cl48 tail tip) and evenly spaced points only land on "
        f"it in counts of {', '.join(map(str, VALID_COUNTS))}; resample the centreline to "
        f"{CENTRELINE_POINTS} points, or name the points with names= (--names)"
    )


def _centreline_raw(positions: np.ndarray, path: Path, what: str, **extra) -> _Raw:
    """A _Raw of (frames, P, 2|3) points: 2-D lifted to z = 0 and marked planar, named on the centreline map."""
    if positions.ndim != 3 or positions.shape[2] not in (2, 3):
        raise KeypointError(
            f"{path}: centreline points have shape {positions.shape}; expected (frames, points, 2) or "
            f"(frames, points, 3)"
        )
    planar = positions.shape[2] == 2
    if planar:
        positions = np.concatenate([positions, np.zeros(positions.shape[:2] + (1,))], axis=2)
        positions[np.isnan(positions[..., :2]).any(axis=2)] = np.nan
    count = positions.shape[1]
    names = centreline_names(count)
    edges = tuple((k, k + 1) for k in range(count - 1))
    return _Raw(
        positions=positions,
        what=what,
        edges=edges,
        default_unit="um",
        fallback_names=None if names is None else (names, edges),
        names_error=None if names is not None else _names_error(path, count),
        planar=planar,
        **extra,
    )


def _read_centreline_npy(path: Path) -> _Raw:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:  # pickled objects, or not an array at all
        raise KeypointError(
            f"{path}: not a plain numeric .npy array ({' '.join(str(exc).split())}); save the centreline "
            f"points with numpy.save as a (frames, points, 2 or 3) float array"
        ) from None
    return _centreline_raw(_numeric(array, path, "the array"), path, ".npy centreline arrays")


def _meta(f, key: str):
    """The first ``key`` attribute (or top-level dataset) among the places Tierpsy writes metadata."""
    for place in _META_PLACES:
        if place in f and key in f[place].attrs:
            return f[place].attrs[key]
    if key in f and getattr(f[key], "shape", None) in ((), (1,)):
        return np.asarray(f[key][()]).ravel()[0]
    return None


def _tierpsy_fps(f) -> float | None:
    time_units = _meta(f, "time_units")
    if time_units is not None and _decode_attr(time_units).strip().lower() == "frames":
        return None  # analysed without a frame rate: its fps attribute counts frames, not seconds
    for key in ("fps", "expected_fps"):
        value = _meta(f, key)
        if value is not None and _positive_fps(np.asarray(value).ravel()[0]) is not None:
            return _positive_fps(np.asarray(value).ravel()[0])
    return None


def _rows_table(f, rows: int, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(worm index, timestamp) of each skeleton row, from a Tierpsy table that has one row per skeleton."""
    if rows == 0:
        return None
    for name in _ROW_TABLES:
        table = f.get(name)
        fields = getattr(getattr(table, "dtype", None), "names", None) or ()
        if "worm_index" in fields and "timestamp" in fields and table.shape == (rows,):
            worm = _numeric(table["worm_index"], path, f"'{name}/worm_index'")
            stamp = _numeric(table["timestamp"], path, f"'{name}/timestamp'")
            if np.isfinite(worm).all() and np.isfinite(stamp).all():
                return worm.astype(np.int64), stamp.astype(np.int64)
            _warn(f"{path}: '{name}' has missing worm indices or timestamps; reading the skeleton rows as frames")
    return None


def _one_worm(skeletons: np.ndarray, worm: np.ndarray, stamp: np.ndarray, path: Path) -> np.ndarray:
    """The skeletons of one worm, placed at their timestamps (gaps NaN)."""
    found = ~np.isnan(skeletons).all(axis=(1, 2))
    worms, counts = np.unique(worm, return_counts=True)
    if len(worms) > 1:
        skeletonised = [int(found[worm == w].sum()) for w in worms]
        pick = worms[int(np.argmax(skeletonised))]
        _warn(
            f"{path}: holds {len(worms)} worms; reading worm {pick}, the one with the most skeletons "
            f"({max(skeletonised)} frames)"
        )
    else:
        pick = worms[0]
    mine = worm == pick
    stamp = stamp[mine] - stamp[mine].min()
    if len(np.unique(stamp)) != len(stamp):
        raise KeypointError(
            f"{path}: worm {pick} has several skeletons at the same timestamp; the file's "
            f"timeseries table is damaged (re-run Tierpsy's features step)"
        )
    out = np.full((int(stamp.max()) + 1,) + skeletons.shape[1:], np.nan)
    out[stamp] = skeletons[mine]
    return out


def _read_worm_skeleton(path: Path) -> _Raw:
    if path.suffix.lower() == ".npy":
        return _read_centreline_npy(path)
    with _open_h5(path) as f:
        if _SKELETONS not in f:
            raise KeypointError(
                f"{path}: no '/{_SKELETONS}' dataset; expected a worm-tracker features file (Tierpsy "
                f"*_featuresN.hdf5) with centreline points (it holds {list(f.keys())})"
            )
        skeletons = _numeric(f[_SKELETONS][()], path, f"'/{_SKELETONS}'")
        if skeletons.ndim == 3:
            rows = _rows_table(f, skeletons.shape[0], path)
            if rows is not None:
                skeletons = _one_worm(skeletons, *rows, path)
        unit = _meta(f, "xy_units")
        fps = _tierpsy_fps(f)
    return _centreline_raw(
        skeletons,
        path,
        "Tierpsy skeleton files",
        file_unit=None if unit is None else _decode_attr(unit),
        fps=fps,
    )
