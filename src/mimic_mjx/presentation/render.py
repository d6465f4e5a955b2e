"""Headless rendering (OSMesa or EGL, set by MUJOCO_GL): shared helpers and videos of keypoint fits."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx import gl
from mimic_mjx.errors import MimicError
from mimic_mjx.files import atomic_path

KEYPOINT_RGBA = np.array([1.0, 0.2, 0.2, 1.0], np.float32)  # data: red
MARKER_RGBA = np.array([0.2, 0.9, 0.2, 1.0], np.float32)  # fitted markers: green


GL_HELP = gl.HELP


def add_sphere(scene: mujoco.MjvScene, pos, radius: float, rgba) -> None:
    """Append a sphere to ``scene``; silently skipped once the scene is full (a video, not a record)."""
    if scene.ngeom >= scene.maxgeom:
        return
    mujoco.mjv_initGeom(
        scene.geoms[scene.ngeom],
        mujoco.mjtGeom.mjGEOM_SPHERE,
        np.array([radius, 0, 0]),
        np.asarray(pos, np.float64),
        np.eye(3).ravel(),
        np.asarray(rgba, np.float32),
    )
    scene.ngeom += 1


def open_renderer(model: mujoco.MjModel, width: int, height: int, max_geom: int = 10000) -> mujoco.Renderer:
    """An offscreen renderer of ``width`` x ``height``; a MimicError saying how to get OpenGL when none works.

    Grows the model's offscreen buffer when the frame is larger than it (a
    visual setting only: simulation is unchanged).
    """
    if width < 1 or height < 1:
        raise MimicError(f"frame size must be positive, got {width}x{height} pixels")
    if gl.PROBLEM:  # found before mujoco was imported (mimic_mjx/gl.py): no context can be made
        raise MimicError(f"cannot render: {gl.PROBLEM}; {GL_HELP}")
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), int(width))
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), int(height))
    try:
        return mujoco.Renderer(model, int(height), int(width), max_geom=max_geom)
    except Exception as exc:  # no GL: say how to get one
        reason = " ".join(str(exc).split())
        raise MimicError(
            f"no OpenGL backend for offscreen rendering (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}: "
            f"{reason}); {GL_HELP}"
        ) from None


def require_renderer() -> None:
    """Make and drop a small renderer: a command that renders at its end checks for OpenGL at its start."""
    open_renderer(mujoco.MjModel.from_xml_string("<mujoco><worldbody/></mujoco>"), 16, 16).close()


@contextlib.contextmanager
def mp4_writer(out_path: str | os.PathLike, fps: float):
    """An imageio writer of an H.264 MP4 that appears at ``out_path`` only once complete."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (imageio finds ffmpeg through it)
    except ImportError:
        raise MimicError("rendering needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg") from None
    with atomic_path(out_path) as tmp:
        # Block size 2: any even frame size is kept as asked (H.264's 4:2:0 needs even sides).
        writer = imageio.get_writer(
            tmp, format="FFMPEG", fps=float(fps), codec="libx264", macro_block_size=2, ffmpeg_log_level="error"
        )
        try:
            with warnings.catch_warnings():
                # JAX warns at every fork; imageio starts ffmpeg by fork + exec at once, which is safe.
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                yield writer
        finally:
            writer.close()


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
    renderer = open_renderer(model, width, height)
    data = mujoco.MjData(model)
    extent = float(np.nanmax(np.ptp(keypoints.reshape(-1, 3)[np.isfinite(keypoints.reshape(-1, 3)).all(1)], 0)))
    radius = max(extent * 0.025, 1e-4)
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.distance = 2.5 * extent
    cam.elevation, cam.azimuth = -25.0, 135.0
    out_path = Path(out_path)
    n = qpos.shape[0] if max_frames is None else min(max_frames, qpos.shape[0])
    try:
        with mp4_writer(out_path, fps) as writer:
            for t in range(n):
                data.qpos[:] = qpos[t]
                mujoco.mj_kinematics(model, data)
                centre = np.nanmean(keypoints[t], axis=0)
                cam.lookat[:] = centre if np.isfinite(centre).all() else data.xpos[1]
                renderer.update_scene(data, cam)
                for k in range(keypoints.shape[1]):
                    if np.isfinite(keypoints[t, k]).all():
                        add_sphere(renderer.scene, keypoints[t, k], radius, KEYPOINT_RGBA)
                    add_sphere(renderer.scene, markers[t, k], radius * 0.8, MARKER_RGBA)
                writer.append_data(renderer.render())
    finally:
        renderer.close()
    return out_path
