"""Mouse-arm registration files (``kp_data`` in metres, as in ../shared/data/mouse_arm).

These HDF5 files record keypoints and names but no frame rate; they come from
200 Hz data, so that rate is the reader's default.
"""

from __future__ import annotations

from pathlib import Path

from mimic_mjx.data.clips import REGISTRATION_LAYOUT_DEFAULT_FPS
from mimic_mjx.data.keypoints.common import _as_names, _numeric, _open_h5, _Raw
from mimic_mjx.errors import KeypointError

# The mouse-arm registration files record no frame rate; they come from 200 Hz data.
MOUSE_ARM_DEFAULT_FPS = REGISTRATION_LAYOUT_DEFAULT_FPS


def _read_mouse_arm_h5(path: Path) -> _Raw:
    with _open_h5(path) as f:
        if "kp_data" not in f:
            raise KeypointError(
                f"{path}: no 'kp_data' dataset; expected a registration file with 'kp_data' "
                f"(frames, 3 x keypoints) and 'kp_names'"
            )
        kp = _numeric(f["kp_data"][()], path, "'kp_data'")
        names = _as_names(f["kp_names"][()]) if "kp_names" in f else None
    if kp.ndim == 3 and kp.shape[2] == 3:
        positions = kp
    elif kp.ndim == 2 and kp.shape[1] % 3 == 0:
        positions = kp.reshape(kp.shape[0], kp.shape[1] // 3, 3)  # keypoint-major: x0 y0 z0 x1 ...
    else:
        raise KeypointError(f"{path}: 'kp_data' has shape {kp.shape}; expected (frames, 3 x keypoints)")
    if names is not None and len(names) != positions.shape[1]:
        raise KeypointError(
            f"{path}: 'kp_names' lists {len(names)} names but 'kp_data' holds {positions.shape[1]} keypoints"
        )
    return _Raw(
        positions=positions, what="mouse-arm registration files", names=names, file_unit="m", fps=MOUSE_ARM_DEFAULT_FPS
    )
