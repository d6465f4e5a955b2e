"""DANNCE predictions and skeletons: MATLAB .mat files, v5 via scipy, v7.3 via h5py.

DANNCE writes ``pred`` (frames, 3, keypoints) in millimetres and optionally
``p_max`` (confidence) and ``joint_names``; skeleton files (``rat23_skeleton.mat``)
hold ``joint_names`` and 1-based ``joints_idx``. A 23-keypoint file without
names is the rat23 skeleton (mimic_mjx.bodies.skeletons).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from mimic_mjx.bodies.skeletons import RAT23_EDGES, RAT23_NAMES
from mimic_mjx.data.keypoints.common import _as_names, _numeric, _open_h5, _Raw, _warn
from mimic_mjx.errors import KeypointError
from mimic_mjx.files import require_regular_file


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
            present = [k for k in f if not k.startswith("#")]
            return {k: _h5_mat_value(f, f[k]) for k in keys if k in f}, present
    import scipy.io

    present = [name for name, _, _ in scipy.io.whosmat(path)]
    wanted = [k for k in keys if k in present]
    data = scipy.io.loadmat(path, variable_names=wanted) if wanted else {}
    return {k: data[k] for k in wanted}, present


def read_skeleton(path: str | os.PathLike) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """Names and 0-based edges from a skeleton .mat (``joint_names``, 1-based ``joints_idx``)."""
    path = require_regular_file(path, KeypointError, "skeleton file")
    try:
        data, present = _load_mat(path, ("joint_names", "joints_idx"))
    except KeypointError:
        raise
    except Exception as exc:  # scipy and h5py have many words for a damaged .mat (MatReadError, OSError, ...)
        raise KeypointError(
            f"cannot read skeleton {path} as a MATLAB file ({' '.join(str(exc).split()) or type(exc).__name__}); "
            "pass a .mat with 'joint_names' and 'joints_idx'"
        ) from None
    if "joint_names" not in data:
        raise KeypointError(
            f"skeleton {path} has no 'joint_names' (it holds {present}); a skeleton .mat needs "
            f"'joint_names' (keypoint names) and optionally 'joints_idx' (edges)"
        )
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
                raise KeypointError(
                    f"skeleton {path}: 'joints_idx' refers to keypoints outside its {len(names)} joint names"
                )
            edges = tuple((int(a), int(b)) for a, b in idx)
    return names, edges


def _dannce_layout(pred: np.ndarray, path: Path) -> np.ndarray:
    """(frames, 3, K) or (frames, K, 3) -> (frames, K, 3)."""
    if pred.ndim == 4 and pred.shape[1] == 1:  # (frames, 1 animal, 3, K)
        pred = pred[:, 0]
    if pred.ndim != 3 or 3 not in pred.shape[1:]:
        raise KeypointError(
            f"{path}: 'pred' has shape {pred.shape}; expected DANNCE predictions "
            f"(frames, 3, keypoints) or (frames, keypoints, 3)"
        )
    if pred.shape[1] == 3 and pred.shape[2] == 3:
        _warn(f"{path}: 'pred' has shape {pred.shape}; reading it as DANNCE's (frames, 3 xyz, 3 keypoints)")
    if pred.shape[1] == 3:
        return np.ascontiguousarray(pred.transpose(0, 2, 1))
    return pred


def _read_dannce(path: Path) -> _Raw:
    data, present = _load_mat(path, ("pred", "p_max", "joint_names"))
    if "pred" not in data:
        hint = (
            " This looks like a skeleton file: pass it as skeleton= (--skeleton) with the predictions file."
            if "joint_names" in present
            else ""
        )
        raise KeypointError(f"{path}: no 'pred' variable (DANNCE 3D predictions); the file holds {present}.{hint}")
    pred = _dannce_layout(_numeric(data["pred"], path, "'pred'"), path)
    T, K = pred.shape[:2]
    confidence = None
    if "p_max" in data:  # DANNCE's per-keypoint peak probability
        p_max = _numeric(data["p_max"], path, "'p_max'")
        if p_max.shape == (T, K):
            confidence = p_max
        else:
            _warn(f"{path}: ignoring 'p_max' of shape {p_max.shape} (expected ({T}, {K})); confidence set to 1")
    names = _as_names(data["joint_names"]) if "joint_names" in data else None
    return _Raw(
        positions=pred,
        what="DANNCE .mat files",
        confidence=confidence,
        names=names,
        default_unit="mm",
        warn_default_unit=False,  # DANNCE works in millimetres
        fallback_names=(RAT23_NAMES, RAT23_EDGES) if K == len(RAT23_NAMES) else None,
    )
