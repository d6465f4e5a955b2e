"""Headless videos of a body following keypoints (OSMesa or EGL, set by MUJOCO_GL)."""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.data.atomic import atomic_path
from mimic_mjx.errors import MimicError

KEYPOINT_RGBA = np.array([1.0, 0.2, 0.2, 1.0], np.float32)  # data: red
MARKER_RGBA = np.array([0.2, 0.9, 0.2, 1.0], np.float32)  # fitted markers: green


def _add_sphere(scene, pos, radius, rgba):
    if scene.ngeom >= scene.maxgeom:
        return
    mujoco.mjv_initGeom(
        scene.geoms[scene.ngeom],
        mujoco.mjtGeom.mjGEOM_SPHERE,
        np.array([radius, 0, 0]),
        np.asarray(pos, np.float64),
        np.eye(3).ravel(),
        rgba,
    )
    scene.ngeom += 1


def render_keypoint_fit(
    model: mujoco.MjModel,
    qpos: np.ndarray,
    keypoints: np.ndarray,
    markers: np.ndarray,
    out_path: str | os.PathLike,
    fps: float,
    *,
    width: int = 480,
    height: int = 360,
    max_frames: int | None = None,
) -> Path:
    """Write an MP4 of the fitted body with keypoints (red) and fitted markers (green)."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise MimicError("rendering needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg") from None
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as exc:  # no GL: say how to get one
        raise MimicError(
            f"cannot create an offscreen OpenGL context with MUJOCO_GL="
            f"{os.environ.get('MUJOCO_GL', '')!r} ({exc}); install OSMesa "
            f"(apt-get install libosmesa6) or run on a machine with EGL"
        ) from None
    data = mujoco.MjData(model)
    extent = float(np.nanmax(np.ptp(keypoints.reshape(-1, 3)[np.isfinite(keypoints.reshape(-1, 3)).all(1)], 0)))
    radius = max(extent * 0.025, 1e-4)
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.distance = 2.5 * extent
    cam.elevation, cam.azimuth = -25.0, 135.0
    out_path = Path(out_path)
    n = qpos.shape[0] if max_frames is None else min(max_frames, qpos.shape[0])
    with atomic_path(out_path) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=8)
        try:
            for t in range(n):
                data.qpos[:] = qpos[t]
                mujoco.mj_kinematics(model, data)
                centre = np.nanmean(keypoints[t], axis=0)
                cam.lookat[:] = centre if np.isfinite(centre).all() else data.xpos[1]
                renderer.update_scene(data, cam)
                for k in range(keypoints.shape[1]):
                    if np.isfinite(keypoints[t, k]).all():
                        _add_sphere(renderer.scene, keypoints[t, k], radius, KEYPOINT_RGBA)
                    _add_sphere(renderer.scene, markers[t, k], radius * 0.8, MARKER_RGBA)
                writer.append_data(renderer.render())
        finally:
            writer.close()
            renderer.close()
    return out_path
