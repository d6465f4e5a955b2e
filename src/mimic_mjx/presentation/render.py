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
from mimic_mjx.presentation import scene as S

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


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def draw_caption(frame: np.ndarray, text: str, *, bottom: bool = False) -> np.ndarray:
    """``frame`` with ``text`` in white on a dark band at its top (or bottom) left, shrunk to fit small frames."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = max(9, frame.shape[0] // 20)
    font = _font(size)
    while size > 6 and draw.textbbox((4, 3), text, font=font)[2] > frame.shape[1] - 4:
        size -= 1
        font = _font(size)
    right, height = draw.textbbox((4, 3), text, font=font)[2:]
    top = frame.shape[0] - height - 6 if bottom else 0
    draw.rectangle((0, top, right + 4, top + height + 3), fill=(0, 0, 0))
    draw.text((4, top + 3), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


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
    slowmo: float | None = None,
) -> Path:
    """Write an MP4 of the fitted body with keypoints (red) and fitted markers (green).

    Framed like ``mimic render`` (``presentation/scene.py``): the camera fits
    what the body sweeps, a body without a floor stands over a grid, and a
    recording shorter than a few seconds plays slowed (``slowmo``; default
    automatic), saying so at the bottom of each frame.
    """
    n = qpos.shape[0] if max_frames is None else min(max_frames, qpos.shape[0])
    points, radii = S.swept_points(model, qpos[:n])
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.elevation, cam.azimuth = -25.0, 135.0
    centre, cam.distance, size = S.fit_view(
        points, radii, cam.azimuth, cam.elevation, model.vis.global_.fovy, width / height
    )
    cam.distance *= 1.1  # keypoints off the body reach a little further
    S.brighten(model, cam.distance)
    world, world_r = S.swept_points(model, qpos[:n], relative=False)
    floor = None if S.has_floor(model) else (float((world[:, 2] - world_r).min() - 0.05 * size), S.grid_spacing(size))
    root = S.root_body(model)
    radius = 0.02 * size
    slowmo = S.auto_slowmo(n / fps) if slowmo is None else slowmo
    times, rate = S.frame_times(fps, n, slowmo)
    label = S.speed_label(slowmo)
    renderer = open_renderer(model, width, height)
    data = mujoco.MjData(model)
    out_path = Path(out_path)
    try:
        with mp4_writer(out_path, rate) as writer:
            for pos in times:
                t, a = int(pos), pos - int(pos)
                u = min(t + 1, n - 1)
                data.qpos[:] = S.interpolate_qpos(model, qpos[t], qpos[u], a)
                mujoco.mj_kinematics(model, data)
                cam.lookat[:] = centre + (0.0 if root is None else data.xpos[root])
                renderer.update_scene(data, cam)
                if floor is not None:
                    S.add_floor(renderer.scene, world.mean(axis=0)[:2], *floor)
                # Between frames (slow motion) points move on straight lines; one missing at either end is not drawn.
                for k in range(keypoints.shape[1]):
                    kp = keypoints[t, k] + a * (keypoints[u, k] - keypoints[t, k])
                    if np.isfinite(kp).all():
                        add_sphere(renderer.scene, kp, radius, KEYPOINT_RGBA)
                    add_sphere(
                        renderer.scene, markers[t, k] + a * (markers[u, k] - markers[t, k]), radius * 0.8, MARKER_RGBA
                    )
                image = renderer.render()
                writer.append_data(draw_caption(image, label, bottom=True) if slowmo != 1 else image)
    finally:
        renderer.close()
    return out_path
