"""Every array of a reference clip checked against the others, where a clip is read or made.

A clip's datasets are stored separately, so a damaged or hand-edited file can
hold offsets for 5 keypoints beside names for 3, or body poses of another
length than the joints. Unchecked, such a clip fails much later, deep in
binding or training, as a NumPy broadcast error. ``check_clip`` states each
expected shape from the clip's names and frame count, and says which dataset
disagrees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mimic_mjx.bodies.layout import QVEL_OF_QPOS
from mimic_mjx.errors import ClipError

# Frame rates outside this range are a unit or typing mistake (ms for s, a missing
# decimal point), and would silently scale every velocity the controller learns.
FPS_RANGE = (1.0, 100_000.0)
# No joint angle (rad) or position (m) in a recording comes near these: larger values are damage.
MAX_MAGNITUDE = 1e4
MAX_SPEED_MAGNITUDE = 1e7  # rad/s or m/s


def _shape(where: str, field: str, arr, expected: tuple[int, ...], meaning: str) -> None:
    shape = tuple(np.shape(arr))
    if shape != expected:
        verb = "have" if field in ("keypoints", "marker_offsets", "keypoint_residuals") else "has"
        raise ClipError(f"{where}: {field} {verb} shape {shape}, expected {expected} ({meaning})")


def _unique(where: str, what: str, names: Sequence[str]) -> None:
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if list(names).count(n) > 1})
        raise ClipError(f"{where}: {what} repeat: {twice}; each must be named once")


def _values(where: str, field: str, arr, *, missing_ok: bool) -> None:
    """Finite (or NaN where ``missing_ok``: keypoints not recorded at a frame) and of plausible size."""
    arr = np.asarray(arr)
    bad = np.isinf(arr) if missing_ok else ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        kind = "infinite" if missing_ok else "NaN/infinite"
        row = "keypoint" if field == "marker_offsets" else "frame"  # offsets are per keypoint, the rest per frame
        raise ClipError(
            f"{where}: {field} holds {int(bad.sum())} {kind} value(s), first at {row} {rows[0]} "
            f"({len(rows)} {row}(s) affected). Re-register or interpolate those frames, or drop this clip."
        )
    limit = MAX_SPEED_MAGNITUDE if field == "qvel" else MAX_MAGNITUDE
    peak = float(np.nanmax(np.abs(arr), initial=0.0))
    if peak > limit:
        raise ClipError(
            f"{where}: {field} reaches {peak:.3g} (SI units), beyond any recorded movement "
            f"(limit {limit:g}); the file is damaged or not in SI units"
        )


def _check_rate_and_joints(clip, where: str) -> tuple[int, int]:
    if not np.isfinite(clip.fps) or clip.fps <= 0:
        raise ClipError(f"{where}: frame rate must be a positive number of frames per second, got {clip.fps}")
    if not FPS_RANGE[0] <= clip.fps <= FPS_RANGE[1]:
        raise ClipError(
            f"{where}: frame rate {clip.fps:g} Hz is implausible; expected {FPS_RANGE[0]:g} to "
            f"{FPS_RANGE[1]:g} frames per second"
        )
    if clip.joint_qpos_dims and (
        len(clip.joint_qpos_dims) != len(clip.joint_names) or any(d not in QVEL_OF_QPOS for d in clip.joint_qpos_dims)
    ):
        raise ClipError(
            f"{where}: joint_qpos_dims {list(clip.joint_qpos_dims)} must give 1, 4 or 7 "
            f"for each of its {len(clip.joint_names)} joints"
        )
    _unique(where, "joint names", clip.joint_names)
    return sum(clip.qpos_dims), sum(clip.qvel_dims)


def check_clip(clip) -> None:
    """Raise ClipError naming the first array of ``clip`` whose shape or values disagree with the rest."""
    where = f"clip '{clip.name}'"
    nq, nv = _check_rate_and_joints(clip, where)
    if np.ndim(clip.qpos) != 2 or np.shape(clip.qpos)[1] != nq:
        raise ClipError(
            f"{where}: qpos has shape {np.shape(clip.qpos)}, expected (frames, {nq}) "
            f"to match its {len(clip.joint_names)} joint names"
        )
    T = int(np.shape(clip.qpos)[0])
    if T < 2:
        raise ClipError(f"{where}: has {T} frame(s); a clip needs at least 2")
    _shape(where, "qvel", clip.qvel, (T, nv), f"frames x velocity columns of its {len(clip.joint_names)} joints")
    nb, K = len(clip.body_names), len(clip.keypoint_names)
    _unique(where, "body names", clip.body_names)
    _unique(where, "keypoint names", clip.keypoint_names)
    if clip.xquat is not None and clip.xpos is None:
        raise ClipError(f"{where}: has body orientations (xquat) but no body positions (xpos); store both or neither")
    per_body = f"frames x its {nb} body names"
    if clip.xpos is not None:
        _shape(where, "xpos", clip.xpos, (T, nb, 3), per_body + " x xyz")
    if clip.xquat is not None:
        _shape(where, "xquat", clip.xquat, (T, nb, 4), per_body + " x wxyz")
    per_kp = f"its {K} keypoint names"
    if clip.keypoints is not None:
        _shape(where, "keypoints", clip.keypoints, (T, K, 3), f"frames x {per_kp} x xyz")
    if clip.marker_offsets is not None:
        _shape(where, "marker_offsets", clip.marker_offsets, (K, 3), f"{per_kp} x xyz")
    if clip.keypoint_residuals is not None:
        _shape(where, "keypoint_residuals", clip.keypoint_residuals, (T, K), f"frames x {per_kp}")
    for field in ("qpos", "qvel", "xpos", "xquat", "marker_offsets"):
        if getattr(clip, field) is not None:
            _values(where, field, getattr(clip, field), missing_ok=False)
    for field in ("keypoints", "keypoint_residuals"):  # NaN marks a keypoint not seen at a frame
        if getattr(clip, field) is not None:
            _values(where, field, getattr(clip, field), missing_ok=True)
