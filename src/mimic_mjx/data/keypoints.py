"""3D keypoint recordings: readers for DANNCE, NWB (ndx-pose), SLEAP, Anipose and DeepLabCut.

Every reader returns a ``Keypoints`` in metres with NaN where a keypoint is
missing. Pose-tracking files are messy about units and frame rates (many
record neither, some record wrong ones), so ``read_keypoints`` takes ``units``
and ``fps`` overrides and refuses to guess a frame rate: a wrong rate silently
changes every velocity the controller learns. ``check_plausible_size`` catches
the most common unit mistake (millimetres read as metres) once the body is known.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from mimic_mjx.data.clips import REGISTRATION_LAYOUT_DEFAULT_FPS
from mimic_mjx.data.skeletons import RAT23_EDGES, RAT23_NAMES
from mimic_mjx.errors import KeypointError

FORMATS = ("dannce", "nwb", "sleap_h5", "slp", "csv", "mouse_arm_h5")
UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001}  # metres per unit
_PER_METRE = {"m": 1.0, "cm": 100.0, "mm": 1000.0}  # divide by these: exact for values/1000
_UNIT_WORDS = {"m": "metres", "cm": "centimetres", "mm": "millimetres"}
_UNIT_ALIASES = {
    "m": "m", "meter": "m", "meters": "m", "metre": "m", "metres": "m",
    "cm": "cm", "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm",
    "mm": "mm", "millimeter": "mm", "millimeters": "mm", "millimetre": "mm", "millimetres": "mm",
}
_EXTENSIONS = {".mat": "dannce", ".nwb": "nwb", ".slp": "slp", ".csv": "csv"}
_HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf")
# The mouse-arm registration files record no frame rate; they come from 200 Hz data.
MOUSE_ARM_DEFAULT_FPS = REGISTRATION_LAYOUT_DEFAULT_FPS
# Frames sampled when measuring a recording's extent: enough for a stable median,
# few enough that all keypoint pairs of a 100-marker recording fit in memory.
_EXTENT_SAMPLE_FRAMES = 500


class KeypointWarning(UserWarning):
    """Something about a keypoint file was assumed or repaired; the data is still usable."""


def _warn(message: str) -> None:
    # Point the warning at the code that called into this module (stacklevel=2
    # from a public function), not at the helper several frames down.
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename == __file__:
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

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_keypoints(self) -> int:
        return int(self.positions.shape[1])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def validate(self) -> "Keypoints":
        """Check shapes, names, rate and values; raise KeypointError naming the problem."""
        where = self.source or "keypoints"
        pos = self.positions
        if not isinstance(pos, np.ndarray) or pos.ndim != 3 or pos.shape[2] != 3:
            raise KeypointError(f"{where}: positions have shape {np.shape(pos)}, expected (frames, keypoints, 3)")
        T, K = pos.shape[:2]
        if T == 0 or K == 0:
            raise KeypointError(f"{where}: holds {T} frame(s) of {K} keypoint(s); nothing to use")
        if len(self.names) != K:
            raise KeypointError(f"{where}: {len(self.names)} keypoint names for {K} keypoints; "
                                f"give one name per keypoint")
        if any(not isinstance(n, str) or not n for n in self.names):
            raise KeypointError(f"{where}: keypoint names must be non-empty strings, got {list(self.names)}")
        if len(set(self.names)) != K:
            repeated = sorted({n for n in self.names if self.names.count(n) > 1})
            raise KeypointError(f"{where}: keypoint names repeat: {repeated}; each keypoint needs its own name")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise KeypointError(f"{where}: frame rate must be a positive number of frames per second, "
                                f"got {self.fps}")
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
            raise KeypointError(f"{where}: {int(inf.sum())} infinite coordinate(s), first at frame {t} "
                                f"keypoint '{self.names[k]}'; mark missing values as NaN instead")
        missing = np.isnan(pos).any(axis=2)
        if missing.all():
            raise KeypointError(f"{where}: holds no keypoint positions: every value is NaN (missing). "
                                f"Check that tracking/triangulation succeeded for this recording.")
        never = [self.names[k] for k in np.nonzero(missing.all(axis=0))[0]]
        if never:
            raise KeypointError(f"{where}: keypoint(s) {never} are missing (NaN) in every frame. Re-run tracking "
                                f"for them, or drop their columns/series from the file.")
        return self

    def subset(self, names: Sequence[str]) -> "Keypoints":
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
        return dataclasses.replace(self, positions=self.positions[:, idx].copy(), names=tuple(names),
                                   confidence=self.confidence[:, idx].copy(), edges=edges).validate()


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


def _canonical_unit(unit) -> str | None:
    if isinstance(unit, bytes):
        unit = unit.decode(errors="replace")
    return _UNIT_ALIASES.get(str(unit).strip().lower())


def _as_names(value) -> tuple[str, ...]:
    """Strings from HDF5/MATLAB string arrays (bytes, str, or MATLAB cells of 1x1 char arrays)."""
    out = []
    for item in np.asarray(value, dtype=object).ravel():
        while isinstance(item, np.ndarray):  # a MATLAB cell wraps each string in its own array
            item = item.ravel()[0] if item.size else ""
        out.append((item.decode() if isinstance(item, bytes) else str(item)).strip())
    return tuple(out)


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise KeypointError(f"cannot read {path} as HDF5 ({exc}); is it the right file?") from None


def _positive_fps(fps) -> float | None:
    """A frame rate stored in a file, or None if it is unusable."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return None
    return fps if np.isfinite(fps) and fps > 0 else None


# ---------------------------------------------------------------------------
# MATLAB files (DANNCE predictions and skeletons): v5 via scipy, v7.3 via h5py.


def _h5_mat_value(f: h5py.File, ds: h5py.Dataset):
    cls = ds.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    arr = ds[()]
    if cls == "cell":
        # Cells are arrays of references; MATLAB stores arrays column-major, so transpose.
        return np.array([_h5_mat_value(f, f[ref]) for ref in np.asarray(arr).T.ravel()], dtype=object)
    if cls == "char":
        return "".join(chr(int(c)) for c in np.asarray(arr).T.ravel())
    arr = np.asarray(arr)
    return arr.T if arr.ndim > 1 else arr  # v7.3 arrays come transposed (column-major)


def _load_mat(path: Path, keys: Sequence[str]) -> tuple[dict, list[str]]:
    """The requested variables found in a .mat file, and the names of all its variables."""
    if h5py.is_hdf5(path):  # MATLAB v7.3
        with _open_h5(path) as f:
            present = [k for k in f.keys() if not k.startswith("#")]
            return {k: _h5_mat_value(f, f[k]) for k in keys if k in f}, present
    import scipy.io

    present = [name for name, _, _ in scipy.io.whosmat(path)]
    wanted = [k for k in keys if k in present]
    data = scipy.io.loadmat(path, variable_names=wanted) if wanted else {}
    return {k: data[k] for k in wanted}, present


def read_skeleton(path: str | os.PathLike) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """Names and 0-based edges from a skeleton .mat (``joint_names``, 1-based ``joints_idx``)."""
    path = Path(path)
    if not path.is_file():
        raise KeypointError(f"skeleton file not found: {path}")
    try:
        data, present = _load_mat(path, ("joint_names", "joints_idx"))
    except (OSError, ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise KeypointError(f"cannot read skeleton {path} as a MATLAB file ({exc}); pass a .mat with "
                            f"'joint_names' and 'joints_idx'") from None
    if "joint_names" not in data:
        raise KeypointError(f"skeleton {path} has no 'joint_names' (it holds {present}); a skeleton .mat needs "
                            f"'joint_names' (keypoint names) and optionally 'joints_idx' (edges)")
    names = _as_names(data["joint_names"])
    edges: tuple[tuple[int, int], ...] = ()
    if "joints_idx" in data:
        idx = np.asarray(data["joints_idx"])
        if idx.size:
            if idx.ndim != 2 or idx.shape[1] != 2:
                raise KeypointError(f"skeleton {path}: 'joints_idx' has shape {idx.shape}, expected (edges, 2)")
            # MATLAB indices are 1-based; a file that uses 0 was written 0-based.
            idx = idx.astype(int) - (0 if idx.min() == 0 else 1)
            if idx.min() < 0 or idx.max() >= len(names):
                raise KeypointError(f"skeleton {path}: 'joints_idx' refers to keypoints outside its "
                                    f"{len(names)} joint names")
            edges = tuple((int(a), int(b)) for a, b in idx)
    return names, edges


def _dannce_layout(pred: np.ndarray, path: Path) -> np.ndarray:
    """(frames, 3, K) or (frames, K, 3) -> (frames, K, 3)."""
    if pred.ndim == 4 and pred.shape[1] == 1:  # (frames, 1 animal, 3, K)
        pred = pred[:, 0]
    if pred.ndim != 3 or 3 not in pred.shape[1:]:
        raise KeypointError(f"{path}: 'pred' has shape {pred.shape}; expected DANNCE predictions "
                            f"(frames, 3, keypoints) or (frames, keypoints, 3)")
    if pred.shape[1] == 3 and pred.shape[2] == 3:
        _warn(f"{path}: 'pred' has shape {pred.shape}; reading it as DANNCE's (frames, 3 xyz, 3 keypoints)")
    if pred.shape[1] == 3:
        return np.ascontiguousarray(pred.transpose(0, 2, 1))
    return pred


def _read_dannce(path: Path) -> _Raw:
    data, present = _load_mat(path, ("pred", "p_max", "joint_names"))
    if "pred" not in data:
        hint = (" This looks like a skeleton file: pass it as skeleton= (--skeleton) with the predictions file."
                if "joint_names" in present else "")
        raise KeypointError(f"{path}: no 'pred' variable (DANNCE 3D predictions); the file holds {present}.{hint}")
    pred = _dannce_layout(np.asarray(data["pred"], dtype=np.float64), path)
    T, K = pred.shape[:2]
    confidence = None
    if "p_max" in data:  # DANNCE's per-keypoint peak probability
        p_max = np.asarray(data["p_max"], dtype=np.float64)
        if p_max.shape == (T, K):
            confidence = p_max
        else:
            _warn(f"{path}: ignoring 'p_max' of shape {p_max.shape} (expected ({T}, {K})); confidence set to 1")
    names = _as_names(data["joint_names"]) if "joint_names" in data else None
    return _Raw(positions=pred, what="DANNCE .mat files", confidence=confidence, names=names,
                default_unit="mm", warn_default_unit=False,  # DANNCE works in millimetres
                fallback_names=(RAT23_NAMES, RAT23_EDGES) if K == len(RAT23_NAMES) else None)


# ---------------------------------------------------------------------------
# NWB with ndx-pose. Read as plain HDF5: pynwb with ndx-pose >= 0.2 cannot
# construct files written by ndx-pose 0.1 with an empty edge list (such as the
# DANNCE rat file), and the layout is simple and stable across versions.


def _ntype(obj) -> str:
    t = obj.attrs.get("neurodata_type", "")
    return t.decode() if isinstance(t, bytes) else str(t)


def _children(group: h5py.Group) -> list[tuple[str, object]]:
    out = []
    for key in group:
        try:
            out.append((key, group[key]))
        except (KeyError, OSError):  # a dangling link: nothing to read there
            continue
    return out


def _nwb_skeleton(container: h5py.Group) -> tuple[tuple[str, ...], np.ndarray]:
    """Node names and edges: ndx-pose < 0.2 stores them on the container, later versions link a Skeleton."""
    for key, child in _children(container):
        if isinstance(child, h5py.Group) and _ntype(child) == "Skeleton" and "nodes" in child:
            edges = child["edges"][()] if "edges" in child else np.zeros((0, 2), int)
            return _as_names(child["nodes"][()]), np.asarray(edges)
    if "nodes" in container:
        edges = container["edges"][()] if "edges" in container else np.zeros((0, 2), int)
        return _as_names(container["nodes"][()]), np.asarray(edges)
    return (), np.zeros((0, 2), int)


def _nwb_fps(series: h5py.Group) -> float | None:
    if "starting_time" in series:
        return _positive_fps(series["starting_time"].attrs.get("rate"))
    if "timestamps" in series:
        t = np.asarray(series["timestamps"][()], dtype=np.float64)
        step = float(np.median(np.diff(t))) if t.size >= 2 else 0.0
        if step > 0:  # rounded: timestamps carry float noise, no camera rate needs 1e-6 Hz
            return _positive_fps(round(1.0 / step, 6))
    return None


def _read_nwb(path: Path) -> _Raw:
    with _open_h5(path) as f:
        containers: list[h5py.Group] = []
        f.visititems(lambda name, obj: containers.append(obj) if isinstance(obj, h5py.Group) and _ntype(obj) in
                     ("PoseEstimation", "MultiCameraPoseEstimation") else None)
        found = []
        for c in containers:
            series = [(k, s) for k, s in _children(c)
                      if isinstance(s, h5py.Group) and _ntype(s) == "PoseEstimationSeries" and "data" in s]
            if series:
                dims = {s["data"].shape[1] if s["data"].ndim == 2 else None for _, s in series}
                found.append((c, series, dims))
        if not found:
            raise KeypointError(f"{path}: no ndx-pose PoseEstimation with PoseEstimationSeries found; mimic-mjx "
                                f"reads 3D keypoints stored with the ndx-pose extension (processing/behavior)")
        three_d = [x for x in found if x[2] == {3}]
        if not three_d:
            raise KeypointError(f"{path}: its pose estimates are 2D (x, y per camera view), but mimic-mjx needs "
                                f"3D keypoints (x, y, z). Triangulate the camera views first (e.g. with anipose "
                                f"or sleap-anipose) and pass the 3D result.")
        # The series of a MultiCameraPoseEstimation are the triangulated 3D ones.
        three_d.sort(key=lambda x: _ntype(x[0]) != "MultiCameraPoseEstimation")
        if len(three_d) > 1:
            _warn(f"{path}: holds {len(three_d)} 3D pose estimations "
                  f"({[x[0].name for x in three_d]}); reading the first, {three_d[0][0].name}")
        container, series, _ = three_d[0]
        return _nwb_series(path, container, series)


def _nwb_series(path: Path, container: h5py.Group, series: list) -> _Raw:
    nodes, node_edges = _nwb_skeleton(container)
    keys = [k for k, _ in series]
    edges: tuple[tuple[int, int], ...] = ()
    if nodes and set(keys) <= set(nodes):  # the skeleton's order, not HDF5's alphabetical one
        by_name = dict(series)
        series = [(n, by_name[n]) for n in nodes if n in by_name]
        new_index = {nodes.index(k): i for i, (k, _) in enumerate(series)}
        edges = tuple((new_index[int(a)], new_index[int(b)]) for a, b in np.asarray(node_edges).reshape(-1, 2)
                      if int(a) in new_index and int(b) in new_index)
    lengths = {s["data"].shape[0] for _, s in series}
    if len(lengths) != 1:
        raise KeypointError(f"{path}: its PoseEstimationSeries have different lengths {sorted(lengths)}; "
                            f"all keypoints must share the same frames")
    units = {_decode_attr(s["data"].attrs.get("unit", "")) for _, s in series}
    if len(units) != 1:
        raise KeypointError(f"{path}: its PoseEstimationSeries use different units {sorted(units)}; "
                            f"mimic-mjx needs one length unit for all keypoints")
    positions, confidence = [], []
    for _, s in series:
        d = s["data"]
        # NWB stores values such that value_in_unit = data * conversion + offset.
        conversion = float(d.attrs.get("conversion", 1.0))
        offset = float(d.attrs.get("offset", 0.0))
        positions.append(np.asarray(d[()], dtype=np.float64) * conversion + offset)
        c = np.asarray(s["confidence"][()], dtype=np.float64) if "confidence" in s else None
        confidence.append(c if c is not None and c.shape == (d.shape[0],) else np.ones(d.shape[0]))
    return _Raw(positions=np.stack(positions, axis=1), what="its PoseEstimationSeries",
                confidence=np.stack(confidence, axis=1), names=tuple(k for k, _ in series), edges=edges,
                file_unit=units.pop() or None, fps=_nwb_fps(series[0][1]))


def _decode_attr(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------
# SLEAP analysis HDF5 and sleap-anipose points3d.h5.


def _sleap_tracks(tracks: np.ndarray, path: Path) -> tuple[np.ndarray, int, bool]:
    """tracks -> ((frames, tracks, K, 3), number of tracks, whether it came transposed)."""
    two_d = KeypointError(f"{path}: 'tracks' has shape {tracks.shape}: 2D keypoints (x, y), as in a SLEAP "
                          f"analysis file. mimic-mjx needs 3D keypoints: triangulate the camera views first "
                          f"(e.g. sleap-anipose) and pass its points3d.h5.")
    if tracks.ndim == 3:  # (frames, K, xyz)
        if tracks.shape[2] == 2:
            raise two_d
        if tracks.shape[2] == 3:
            return tracks[:, None], 1, False
    elif tracks.ndim == 4:
        if tracks.shape[3] == 3:  # sleap-anipose: (frames, tracks, K, xyz)
            return tracks, tracks.shape[1], False
        if tracks.shape[3] == 2 or tracks.shape[1] == 2:
            raise two_d
        if tracks.shape[1] == 3:  # SLEAP analysis layout, stored transposed: (tracks, xyz, K, frames)
            return tracks.transpose(3, 0, 2, 1), tracks.shape[0], True
    raise KeypointError(f"{path}: 'tracks' has shape {tracks.shape}; expected (frames, tracks, keypoints, 3) "
                        f"or (frames, keypoints, 3)")


def _read_sleap_h5(path: Path) -> _Raw:
    with _open_h5(path) as f:
        if "tracks" not in f:
            raise KeypointError(f"{path}: no 'tracks' dataset; expected a SLEAP/sleap-anipose HDF5 file "
                                f"(it holds {list(f.keys())})")
        tracks, n_tracks, transposed = _sleap_tracks(np.asarray(f["tracks"][()], dtype=np.float64), path)
        if n_tracks > 1:
            _warn(f"{path}: holds {n_tracks} tracks (animals); reading the first one")
        positions = tracks[:, 0]
        T, K = positions.shape[:2]
        names = _as_names(f["node_names"][()]) if "node_names" in f else None
        edges = ()
        if "edge_inds" in f and f["edge_inds"].size:
            edges = tuple((int(a), int(b)) for a, b in np.asarray(f["edge_inds"][()]).reshape(-1, 2))
        confidence = None
        for key in ("point_scores", "scores"):
            if key not in f:
                continue
            s = np.asarray(f[key][()], dtype=np.float64)
            if transposed and s.ndim == 3:  # (tracks, K, frames)
                s = s.transpose(2, 0, 1)
            if s.ndim == 3 and s.shape[0] == T and s.shape[2] == K:
                s = s[:, 0]
            if s.shape == (T, K):
                confidence = s
                break
            _warn(f"{path}: ignoring '{key}' of shape {s.shape} (expected ({T}, {K}) per track)")
    return _Raw(positions=positions, what="SLEAP HDF5 files", confidence=confidence, names=names, edges=edges)


# ---------------------------------------------------------------------------
# SLEAP .slp: 2D labels, plus triangulated 3D instances in sleap-io >= 0.6 sessions.


def _read_slp(path: Path) -> _Raw:
    try:
        import sleap_io
    except ImportError:
        raise KeypointError(f"reading {path} needs sleap-io: pip install sleap-io") from None
    labels = sleap_io.load_slp(str(path), open_videos=False)
    sessions = []
    for session in labels.sessions:
        found = {}
        multi = False
        for frame_idx, group in session.frame_groups.items():
            with_3d = [ig.instance_3d for ig in group.instance_groups if ig.instance_3d is not None]
            multi |= len(with_3d) > 1
            if with_3d:
                found[int(frame_idx)] = with_3d[0]
        if found:
            sessions.append((found, multi))
    if not sessions:
        raise KeypointError(f"{path}: this .slp file holds 2D keypoints (x, y per camera view) and no triangulated "
                            f"3D points; mimic-mjx needs 3D keypoints. Triangulate first (e.g. sleap-anipose) and "
                            f"pass its 3D output (points3d.h5).")
    found, multi = sessions[0]
    if len(sessions) > 1:
        _warn(f"{path}: holds {len(sessions)} recording sessions with 3D points; reading the first")
    if multi:
        _warn(f"{path}: some frames hold several 3D instances (animals); reading the first of each frame")
    first, last = min(found), max(found)
    skeleton = next(iter(found.values())).skeleton
    K = len(skeleton.nodes)
    positions = np.full((last - first + 1, K, 3), np.nan)
    confidence = np.zeros((last - first + 1, K))
    for frame_idx, inst in found.items():
        positions[frame_idx - first] = inst.numpy()
        scores = getattr(inst, "point_scores", None)
        confidence[frame_idx - first] = 1.0 if scores is None else np.asarray(scores, dtype=np.float64)
    fps = labels.videos[0].fps if labels.videos else None
    return _Raw(positions=positions, what=".slp files", confidence=confidence,
                names=tuple(skeleton.node_names), edges=tuple((int(a), int(b)) for a, b in skeleton.edge_inds),
                fps=_positive_fps(fps))


# ---------------------------------------------------------------------------
# CSV: Anipose 3D output and DeepLabCut 3D output.


def _float_table(rows: list[list[str]], path: Path, first_line: int) -> np.ndarray:
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
        raise KeypointError(f"{path}: line {first_line + bad} has {len(rows[bad])} values, but line "
                            f"{first_line} has {len(rows[0])}; the CSV table is ragged")
    try:
        return np.array([[v.strip() or "nan" for v in r] for r in rows]).astype(np.float64)
    except ValueError as exc:
        raise KeypointError(f"{path}: a value is not a number ({exc}); keypoint CSV cells must be numbers "
                            f"or empty") from None


def _read_csv(path: Path) -> _Raw:
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    if not rows:
        raise KeypointError(f"{path}: the CSV file is empty")
    if rows[0][0].strip().lower() == "scorer":
        return _read_dlc_csv(path, rows)
    return _read_anipose_csv(path, rows)


def _read_anipose_csv(path: Path, rows: list[list[str]]) -> _Raw:
    header = [c.strip() for c in rows[0]]
    names = [c[:-2] for c in header if c.endswith("_x")]
    if not names:
        raise KeypointError(f"{path}: not a keypoint CSV mimic-mjx knows: expected Anipose 3D columns "
                            f"'<keypoint>_x, _y, _z' or a DeepLabCut CSV whose first cell is 'scorer'")
    flat = [n for n in names if f"{n}_z" not in header]
    if flat:
        raise KeypointError(f"{path}: keypoint(s) {flat} have no '_z' column: 2D keypoints. mimic-mjx needs 3D "
                            f"keypoints: triangulate first (e.g. anipose triangulate)")
    missing_y = [n for n in names if f"{n}_y" not in header]
    if missing_y:
        raise KeypointError(f"{path}: keypoint(s) {missing_y} have '_x' and '_z' but no '_y' column")
    table = _float_table(rows[1:], path, first_line=2)
    col = {c: i for i, c in enumerate(header)}
    positions = np.stack([table[:, [col[f"{n}_x"], col[f"{n}_y"], col[f"{n}_z"]]] for n in names], axis=1)
    has_score = all(f"{n}_score" in col for n in names)
    confidence = np.stack([table[:, col[f"{n}_score"]] for n in names], axis=1) if has_score else None
    if "fnum" in col:  # Anipose frame numbers: place rows on them so dropped frames stay gaps
        positions, confidence = _by_frame_number(table[:, col["fnum"]], positions, confidence, path)
    return _Raw(positions=positions, what="Anipose CSV files", confidence=confidence, names=tuple(names))


def _by_frame_number(fnum: np.ndarray, positions: np.ndarray, confidence, path: Path):
    if not np.isfinite(fnum).all() or (fnum != np.round(fnum)).any():
        raise KeypointError(f"{path}: the 'fnum' column must hold whole frame numbers")
    frames = fnum.astype(int) - int(fnum.min())
    if len(np.unique(frames)) != len(frames):
        raise KeypointError(f"{path}: frame numbers in 'fnum' repeat; expected one row per frame")
    T = int(frames.max()) + 1
    placed = np.full((T,) + positions.shape[1:], np.nan)
    placed[frames] = positions
    placed_conf = None
    if confidence is not None:
        placed_conf = np.zeros((T, positions.shape[1]))
        placed_conf[frames] = confidence
    return placed, placed_conf


def _read_dlc_csv(path: Path, rows: list[list[str]]) -> _Raw:
    labels = {}
    n_header = 0
    for r in rows[:5]:
        key = r[0].strip().lower()
        if key not in ("scorer", "individuals", "bodyparts", "coords"):
            break
        labels[key] = [c.strip() for c in r]
        n_header += 1
    if "bodyparts" not in labels or "coords" not in labels:
        raise KeypointError(f"{path}: a DeepLabCut CSV needs header rows 'scorer', 'bodyparts' and 'coords'; "
                            f"found {list(labels)}")
    coords = labels["coords"]
    width = len(coords)
    individuals = labels.get("individuals", [""] * width)
    columns: dict[tuple[str, str], dict[str, int]] = {}  # (individual, bodypart) -> coord -> column
    for j in range(1, width):
        if coords[j]:
            key = (individuals[j] if j < len(individuals) else "", labels["bodyparts"][j])
            columns.setdefault(key, {})[coords[j].lower()] = j
    if not columns:
        raise KeypointError(f"{path}: the DeepLabCut 'coords' row names no x/y/z columns")
    flat = [bp for (_, bp), c in columns.items() if "z" not in c]
    if flat:
        raise KeypointError(f"{path}: DeepLabCut keypoint(s) {flat} have no 'z' coordinate: 2D output. mimic-mjx "
                            f"needs 3D keypoints: triangulate first (DeepLabCut 3D or anipose)")
    animals = list(dict.fromkeys(ind for ind, _ in columns))
    if len(animals) > 1:
        _warn(f"{path}: holds {len(animals)} individuals {animals}; reading the first, '{animals[0]}'")
    parts = [(bp, c) for (ind, bp), c in columns.items() if ind == animals[0]]
    incomplete = [bp for bp, c in parts if not {"x", "y"} <= set(c)]
    if incomplete:
        raise KeypointError(f"{path}: DeepLabCut keypoint(s) {incomplete} lack an x or y column")
    table = _float_table([r[:width] + [""] * (width - len(r)) for r in rows[n_header:]], path, n_header + 1)
    positions = np.stack([table[:, [c["x"], c["y"], c["z"]]] for _, c in parts], axis=1)
    has_likelihood = all("likelihood" in c for _, c in parts)
    confidence = np.stack([table[:, c["likelihood"]] for _, c in parts], axis=1) if has_likelihood else None
    return _Raw(positions=positions, what="DeepLabCut CSV files", confidence=confidence,
                names=tuple(bp for bp, _ in parts))


# ---------------------------------------------------------------------------
# Mouse-arm registration files (kp_data in metres, as in ../shared/data/mouse_arm).


def _read_mouse_arm_h5(path: Path) -> _Raw:
    with _open_h5(path) as f:
        if "kp_data" not in f:
            raise KeypointError(f"{path}: no 'kp_data' dataset; expected a registration file with 'kp_data' "
                                f"(frames, 3 x keypoints) and 'kp_names'")
        kp = np.asarray(f["kp_data"][()], dtype=np.float64)
        names = _as_names(f["kp_names"][()]) if "kp_names" in f else None
    if kp.ndim == 3 and kp.shape[2] == 3:
        positions = kp
    elif kp.ndim == 2 and kp.shape[1] % 3 == 0:
        positions = kp.reshape(kp.shape[0], kp.shape[1] // 3, 3)  # keypoint-major: x0 y0 z0 x1 ...
    else:
        raise KeypointError(f"{path}: 'kp_data' has shape {kp.shape}; expected (frames, 3 x keypoints)")
    if names is not None and len(names) != positions.shape[1]:
        raise KeypointError(f"{path}: 'kp_names' lists {len(names)} names but 'kp_data' holds "
                            f"{positions.shape[1]} keypoints")
    return _Raw(positions=positions, what="mouse-arm registration files", names=names,
                file_unit="m", fps=MOUSE_ARM_DEFAULT_FPS)


_READERS = {
    "dannce": _read_dannce,
    "nwb": _read_nwb,
    "sleap_h5": _read_sleap_h5,
    "slp": _read_slp,
    "csv": _read_csv,
    "mouse_arm_h5": _read_mouse_arm_h5,
}


# ---------------------------------------------------------------------------
# Settling format, names, units and frame rate.


def _detect_format(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext not in _HDF5_EXTENSIONS:
        raise KeypointError(f"{path}: unknown keypoint file type '{ext or path.name}'. mimic-mjx reads "
                            f".mat (DANNCE), .nwb (ndx-pose), .h5 (SLEAP/sleap-anipose or mouse-arm "
                            f"registration), .slp and .csv (Anipose, DeepLabCut); pass format= "
                            f"(one of {list(FORMATS)}) if the extension is misleading")
    with _open_h5(path) as f:
        if "kp_data" in f:
            return "mouse_arm_h5"
        if "tracks" in f:
            return "sleap_h5"
        if "pred" in f:  # a MATLAB v7.3 file under another name
            return "dannce"
        if _ntype(f) == "NWBFile":
            return "nwb"
        if "df_with_missing" in f:
            raise KeypointError(f"{path}: a DeepLabCut pandas HDF5 file; pass the .csv DeepLabCut writes beside "
                                f"it (or export one with pandas: pd.read_hdf(path).to_csv(...))")
        raise KeypointError(f"{path}: an HDF5 file with none of the datasets mimic-mjx reads ('tracks' for "
                            f"SLEAP, 'kp_data' for registration files, 'pred' for DANNCE); it holds "
                            f"{list(f.keys())}")


def _resolve_names(raw: _Raw, path: Path, names, skeleton) -> tuple[tuple[str, ...], tuple]:
    """Final names and edges; may reorder raw's keypoints to a skeleton's order."""
    K = raw.positions.shape[1]
    file_names, edges = raw.names, raw.edges
    if names is not None:
        names = tuple(n.strip() for n in names.split(",")) if isinstance(names, str) else tuple(map(str, names))
        if len(names) != K:
            raise KeypointError(f"{path}: {len(names)} keypoint names given for the file's {K} keypoints; give "
                                f"one name per keypoint, in the file's order")
        if file_names and names != file_names and sorted(names) == sorted(file_names):
            raise KeypointError(f"{path}: the names given are the file's own names in another order, but names "
                                f"rename keypoints by position (so they would be swapped). To reorder, read "
                                f"without names and use Keypoints.subset({list(names)})")
        file_names = names
    if skeleton is not None:
        sk_names, sk_edges = read_skeleton(skeleton)
        if len(sk_names) != K:
            raise KeypointError(f"{path}: the skeleton {skeleton} names {len(sk_names)} keypoints but the file "
                                f"holds {K}; pass the skeleton this recording was tracked with")
        if file_names and sorted(file_names) != sorted(sk_names):
            raise KeypointError(f"{path}: its keypoints {list(file_names)} are not the skeleton's "
                                f"{list(sk_names)}; pass a matching skeleton, or names= to rename them")
        if file_names:  # the same keypoints: put them in the skeleton's order
            perm = [file_names.index(n) for n in sk_names]
            raw.positions = raw.positions[:, perm]
            if raw.confidence is not None:
                raw.confidence = raw.confidence[:, perm]
        return sk_names, sk_edges
    if file_names:
        return tuple(file_names), edges
    if raw.fallback_names is not None:
        return raw.fallback_names
    _warn(f"{path}: the file names none of its {K} keypoints; calling them kp0..kp{K - 1}. Pass names= or "
          f"skeleton= (--skeleton) to name them")
    return tuple(f"kp{k}" for k in range(K)), edges


def _resolve_units(raw: _Raw, path: Path, units: str | None) -> str:
    file_unit = raw.file_unit.strip() if raw.file_unit else None
    canonical = _canonical_unit(file_unit) if file_unit else None
    if units is not None:
        if canonical and canonical != units:
            _warn(f"{path}: the file says its unit is '{file_unit}', overridden by units='{units}'")
        return units
    if canonical:
        return canonical
    if file_unit:
        raise KeypointError(f"{path}: the file gives its unit as '{file_unit}', not a length unit (metres, "
                            f"centimetres or millimetres). If the values are lengths, pass their unit "
                            f"(e.g. units='mm', --units mm)")
    if raw.warn_default_unit:
        _warn(f"{path}: {raw.what} record no length unit; assuming {_UNIT_WORDS[raw.default_unit]}. Pass "
              f"units= (--units m/cm/mm) to say otherwise")
    return raw.default_unit


def _resolve_fps(raw: _Raw, path: Path, fps: float | None) -> float:
    if fps is not None:
        return fps
    if raw.fps is not None:
        return float(raw.fps)
    raise KeypointError(f"{path}: {raw.what} record no frame rate; pass the recording's frame rate "
                        f"(e.g. fps=50, --fps 50)")


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
    return format, units, fps


def _confidence(raw: _Raw, missing: np.ndarray, path: Path) -> np.ndarray:
    if raw.confidence is None:
        conf = np.ones(missing.shape)
    else:
        conf = np.nan_to_num(np.asarray(raw.confidence, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if conf.min(initial=0.0) < -1e-6 or conf.max(initial=0.0) > 1 + 1e-6:
            _warn(f"{path}: confidence values span [{conf.min():.3g}, {conf.max():.3g}]; clipped to [0, 1]")
        conf = np.clip(conf, 0.0, 1.0)
    conf[missing] = 0.0
    return conf


def read_keypoints(path: str | os.PathLike, *, format: str | None = None, units: str | None = None,
                   fps: float | None = None, names: Sequence[str] | None = None,
                   skeleton: str | os.PathLike | None = None) -> Keypoints:
    """Read a 3D keypoint recording as metres.

    ``format`` is one of FORMATS (default: from the extension and contents).
    ``units`` ('m', 'cm', 'mm') and ``fps`` override what the file says;
    ``names`` (a list, or one comma-separated string) renames the file's
    keypoints by position; ``skeleton`` (a .mat
    with ``joint_names`` and ``joints_idx``) supplies names and edges, and
    reorders named keypoints to its order. A DANNCE file with 23 keypoints and
    no names is read as the rat23 skeleton (mimic_mjx.data.skeletons).
    """
    path = Path(path)
    if not path.exists():
        raise KeypointError(f"keypoint file not found: {path}")
    if path.is_dir():
        raise KeypointError(f"{path} is a folder; pass the keypoint file inside it")
    format, units, fps = _check_arguments(format, units, fps)
    fmt = format or _detect_format(path)
    try:
        raw = _READERS[fmt](path)
    except KeypointError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, NotImplementedError,
            csv.Error) as exc:  # the libraries' own errors for a malformed file
        raise KeypointError(f"cannot read {path} as '{fmt}' keypoints ({type(exc).__name__}: {exc}); check the "
                            f"file, or pass format= (one of {list(FORMATS)})") from exc
    rate = _resolve_fps(raw, path, fps)  # first: a missing rate is fatal, so warn about nothing else before
    kp_names, edges = _resolve_names(raw, path, names, skeleton)
    unit = _resolve_units(raw, path, units)
    positions = np.array(raw.positions, dtype=np.float64) / _PER_METRE[unit]
    missing = np.isnan(positions).any(axis=2)
    positions[missing] = np.nan  # a point with any missing coordinate is missing
    kp = Keypoints(positions=positions, names=tuple(kp_names), fps=rate,
                   confidence=_confidence(raw, missing, path), source=f"{fmt}:{path}",
                   edges=tuple(edges), input_units=unit).validate()
    empty = int(missing.all(axis=1).sum())
    if empty:
        _warn(f"{path}: {empty} of {kp.num_frames} frames have no keypoints (all NaN); registration skips them")
    return kp


# ---------------------------------------------------------------------------
# Plausibility of the recording's size, once the body is known.


def body_extent(kp: Keypoints) -> float:
    """Median over frames of the largest distance between two keypoints (m); NaN if never measurable."""
    pos = kp.positions
    frames = np.unique(np.linspace(0, pos.shape[0] - 1, min(pos.shape[0], _EXTENT_SAMPLE_FRAMES)).astype(int))
    i, j = np.triu_indices(pos.shape[1], k=1)  # each pair of distinct keypoints once
    if i.size == 0:
        return float("nan")
    dist = np.linalg.norm(pos[frames][:, i] - pos[frames][:, j], axis=-1)
    widest = np.where(np.isnan(dist), -np.inf, dist).max(axis=1)
    widest = widest[np.isfinite(widest)]  # frames with fewer than two keypoints measure nothing
    return float(np.median(widest)) if widest.size else float("nan")


def check_plausible_size(kp: Keypoints, expected_extent_m: float, *, body: str = "the body",
                         tolerance: float = 30.0) -> float:
    """Raise KeypointError if the keypoints' extent is off from the body's by more than ``tolerance``x.

    Returns the measured extent (m). A factor of 10-1000 off almost always
    means a wrong length unit, so the message suggests the unit that fits.
    """
    if not np.isfinite(expected_extent_m) or expected_extent_m <= 0:
        raise ValueError(f"expected_extent_m must be a positive length in metres, got {expected_extent_m}")
    extent = body_extent(kp)
    if not np.isfinite(extent) or extent <= 0:
        return extent  # one keypoint per frame: nothing to compare
    ratio = extent / expected_extent_m
    if 1.0 / tolerance <= ratio <= tolerance:
        return extent
    read_as = kp.input_units if kp.input_units in UNIT_SCALE else "m"
    raw_extent = extent / UNIT_SCALE[read_as]
    best = min(UNIT_SCALE, key=lambda u: abs(np.log(raw_extent * UNIT_SCALE[u] / expected_extent_m)))
    how = "larger" if ratio > 1 else "smaller"
    factor = ratio if ratio > 1 else 1.0 / ratio
    if best != read_as and 1.0 / tolerance <= raw_extent * UNIT_SCALE[best] / expected_extent_m <= tolerance:
        advice = (f"The length unit is probably wrong: the values were read as {_UNIT_WORDS[read_as]} but look "
                  f"like {_UNIT_WORDS[best]}; pass units='{best}' (--units {best})")
    else:
        advice = "No length unit explains this; check the file's units and that it records this body"
    raise KeypointError(f"{kp.source}: the keypoints span about {extent:.3g} m, but {body} spans about "
                        f"{expected_extent_m:.3g} m ({factor:.0f}x {how}). {advice}.")
