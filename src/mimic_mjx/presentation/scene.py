"""What a video shows and when: framing to the body's extent, a floor with a grid, light, slow motion.

Everything scales with the body: the camera's distance comes from the extent
the body sweeps over the clip (a 1-mm worm and a 1-m rat fill the frame
alike), the grid's spacing is a round length near a fifth of that extent,
and the clipping planes follow the camera. A clip shorter than a few seconds
plays in slow motion, with frames in between control steps, so that a
0.5-s reach is seen rather than flashed.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from mimic_mjx.errors import MimicError

MIN_VIDEO_S = 3.0  # a shorter clip is slowed down to last about this long
MIN_FPS = 24.0  # below this, poses are interpolated between control steps
FILL = 0.85  # fraction of the frame's shorter side the body's sweep spans
FLOOR_RGBA = np.array([0.82, 0.82, 0.80, 1.0], np.float32)
GRID_RGBA = np.array([0.55, 0.55, 0.55, 1.0], np.float32)


def auto_slowmo(seconds: float, min_seconds: float = MIN_VIDEO_S) -> float:
    """The whole-number slow-down that makes a clip of ``seconds`` last at least ``min_seconds`` (1: long enough)."""
    if not seconds > 0 or seconds >= min_seconds:
        return 1.0
    return float(math.ceil(min_seconds / seconds - 1e-9))


def speed_label(slowmo: float) -> str:
    return "real time" if slowmo == 1 else f"slow motion x{slowmo:g}" if slowmo > 1 else f"fast x{1 / slowmo:.3g}"


def frame_times(control_rate: float, steps: int, slowmo: float = 1.0, max_fps: float = 60.0, min_fps: float = MIN_FPS):
    """Control-step positions to draw (fractions in between when slowed below ``min_fps``) and the video's rate.

    Real time / ``slowmo`` is kept: above ``max_fps`` every k-th step is drawn
    and the rate divided by k; below ``min_fps`` each step interval gets k
    frames and the rate is multiplied by k.
    """
    natural = control_rate / slowmo
    if natural >= min_fps or steps < 2:
        stride = max(1, math.ceil(natural / max_fps - 1e-9))
        return np.arange(0, steps, stride, dtype=float), natural / stride
    per_step = math.ceil(min_fps / natural - 1e-9)
    return np.arange((steps - 1) * per_step + 1) / per_step, natural * per_step


def interpolate_qpos(model: mujoco.MjModel, q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """The pose ``alpha`` of the way from ``q0`` to ``q1`` (quaternions of free and ball joints turn on the sphere)."""
    q0 = np.asarray(q0, np.float64)
    if alpha <= 0:
        return q0.copy()
    v = np.zeros(model.nv)
    mujoco.mj_differentiatePos(model, v, 1.0, q0, np.asarray(q1, np.float64))
    q = q0.copy()
    mujoco.mj_integratePos(model, q, v, float(alpha))
    return q


def pose(model: mujoco.MjModel, data: mujoco.MjData, qpos) -> None:
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    # Tracking cameras follow the centre of mass; camera poses come from mj_camlight.
    mujoco.mj_comPos(model, data)
    mujoco.mj_camlight(model, data)


def _size_and_centre(model: mujoco.MjModel) -> tuple[float, np.ndarray]:
    """The body's size (m) and centre at its default pose: where a free camera looks, and from how far."""
    data = mujoco.MjData(model)
    pose(model, data, model.qpos0)
    moving = model.geom_bodyid > 0
    xpos = data.geom_xpos[moving] if moving.any() else data.xpos[1:]
    reach = float(model.geom_rbound[moving].max()) if moving.any() else 0.0
    size = float(np.ptp(xpos, axis=0).max()) + 2 * reach
    return max(size, 1e-9), xpos.mean(axis=0)


def resolve_camera(
    model: mujoco.MjModel,
    camera: str | None = None,
    azimuth: float | None = None,
    elevation: float | None = None,
    distance: float | None = None,
) -> tuple[mujoco.MjvCamera, str]:
    """The camera to render with and a description of it: a model camera by name, else a free one."""
    cam = mujoco.MjvCamera()
    if camera is not None:
        names = [model.camera(i).name for i in range(model.ncam)]
        if camera not in names:
            have = ", ".join(names) if names else "none"
            raise MimicError(
                f"unknown camera {camera!r}; this body's cameras: {have}; or leave --camera out and "
                f"aim a free camera with --azimuth/--elevation/--distance"
            )
        if (azimuth, elevation, distance) != (None, None, None):
            raise MimicError("--azimuth/--elevation/--distance aim the free camera; leave them out with --camera")
        cam.type, cam.fixedcamid = mujoco.mjtCamera.mjCAMERA_FIXED, names.index(camera)
        return cam, camera
    if distance is not None and not distance > 0:
        raise MimicError(f"--distance must be a positive number of metres, got {distance}")
    size, _ = _size_and_centre(model)
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.azimuth = 135.0 if azimuth is None else float(azimuth)
    cam.elevation = -20.0 if elevation is None else float(elevation)
    cam.distance = 1.5 * size if distance is None else float(distance)
    return cam, f"free (azimuth {cam.azimuth:g}, elevation {cam.elevation:g}, distance {cam.distance:.3g} m)"


def root_body(model: mujoco.MjModel) -> int | None:
    """The body carrying a free joint (a body that moves about the scene), or None for a fixed base."""
    free = np.flatnonzero(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE)
    return int(model.jnt_bodyid[free[0]]) if free.size else None


def _moving_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Visible geoms of bodies that move (not the world's floor or walls)."""
    visible = (model.geom_rgba[:, 3] > 0) & (model.geom_group < 3)
    moving = (model.geom_bodyid > 0) & visible
    return np.flatnonzero(moving if moving.any() else model.geom_bodyid > 0)


def swept_points(
    model: mujoco.MjModel, poses: np.ndarray, *, relative: bool = True, max_poses: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    """Geom centres (P, 3) and bounding radii (P,) over ``poses``; relative to the root for a free body.

    A free body is followed by the camera, so what must fit is its extent
    about its root; a fixed base stays put, so its whole sweep must fit.
    ``relative=False``: world positions whatever the body.
    """
    data = mujoco.MjData(model)
    geoms = _moving_geoms(model)
    root = root_body(model) if relative else None
    picks = np.unique(np.linspace(0, len(poses) - 1, min(len(poses), max_poses)).round().astype(int))
    points = []
    for i in picks:
        data.qpos[:] = poses[i]
        mujoco.mj_kinematics(model, data)
        xyz = data.geom_xpos[geoms] if geoms.size else data.xpos[1:]
        points.append(xyz - (data.xpos[root] if root is not None else 0.0))
    radii = model.geom_rbound[geoms] if geoms.size else np.zeros(model.nbody - 1)
    return np.concatenate(points), np.tile(radii, len(picks))


def camera_axes(azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward, right and up unit vectors of MuJoCo's free camera at these angles (degrees)."""
    a, e = math.radians(azimuth), math.radians(elevation)
    forward = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    up = np.array([-math.sin(e) * math.cos(a), -math.sin(e) * math.sin(a), math.cos(e)])
    return forward, np.cross(forward, up), up


def fit_view(
    points: np.ndarray, radii: np.ndarray, azimuth: float, elevation: float, fovy_deg: float, aspect: float
) -> tuple[np.ndarray, float, float]:
    """(look-at point, distance, extent) at which spheres at ``points`` fill ``FILL`` of the frame.

    The look-at point centres the spheres' projection; the distance is the
    smallest at which each sphere, at its own depth, lies inside the field of
    view scaled by FILL (perspective: nearer spheres look larger).
    """
    forward, right, up = camera_axes(azimuth, elevation)
    x, y = points @ right, points @ up
    extent_x = (x - radii).min(), (x + radii).max()
    extent_y = (y - radii).min(), (y + radii).max()
    centre = points.mean(axis=0)
    centre += (sum(extent_x) / 2 - centre @ right) * right + (sum(extent_y) / 2 - centre @ up) * up
    rel = points - centre
    tan_y = math.tan(math.radians(fovy_deg) / 2) * FILL
    tan_x = tan_y * aspect
    need = np.maximum((np.abs(rel @ right) + radii) / tan_x, (np.abs(rel @ up) + radii) / tan_y) - rel @ forward
    size = float(max(np.ptp(points, axis=0).max() + 2 * radii.max(), 1e-9))
    return centre, float(max(need.max(), 1e-9)), size


def grid_spacing(size: float) -> float:
    """A round length (1, 2 or 5 x 10^k m) near a fifth of ``size``."""
    target = size / 5
    exponent = math.floor(math.log10(target))
    return min((m * 10.0**exponent for m in (1, 2, 5, 10)), key=lambda s: abs(math.log(s / target)))


def has_floor(model: mujoco.MjModel) -> bool:
    return bool(np.any((model.geom_bodyid == 0) & (model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE)))


def add_box(scene: mujoco.MjvScene, centre, half, rgba) -> None:
    if scene.ngeom >= scene.maxgeom:
        return
    mujoco.mjv_initGeom(
        scene.geoms[scene.ngeom],
        mujoco.mjtGeom.mjGEOM_BOX,
        np.asarray(half, np.float64),
        np.asarray(centre, np.float64),
        np.eye(3).ravel(),
        np.asarray(rgba, np.float32),
    )
    scene.ngeom += 1


def add_floor(scene: mujoco.MjvScene, centre_xy, z: float, spacing: float, lines: int = 10) -> None:
    """A light floor at height ``z`` with a darker grid of ``spacing`` around ``centre_xy``."""
    half = spacing * lines / 2
    cx, cy = (np.round(np.asarray(centre_xy, float) / spacing) * spacing)[:2]
    thick = spacing * 0.01
    add_box(scene, (cx, cy, z - thick), (half * 4, half * 4, thick), FLOOR_RGBA)  # reaches the horizon
    for k in range(lines + 1):
        offset = -half + k * spacing
        add_box(scene, (cx + offset, cy, z + thick), (thick * 2, half, thick), GRID_RGBA)
        add_box(scene, (cx, cy + offset, z + thick), (half, thick * 2, thick), GRID_RGBA)


def brighten(model: mujoco.MjModel, distance: float | None = None) -> None:
    """Light enough to see the translucent ghost, and clipping planes that suit the camera's distance.

    Visual settings of ``model`` only: simulation is unchanged. MuJoCo's
    clipping planes are relative to ``stat.extent``, which for some bodies (the
    fly) is far from the body's size: a near plane of 1 cm would cut a fly seen
    from 1 cm away.
    """
    light = model.vis.headlight
    light.ambient = np.maximum(light.ambient, 0.35)
    light.diffuse = np.maximum(light.diffuse, 0.6)
    if distance is None:  # a camera of the model: its author chose the planes
        return
    extent = float(model.stat.extent) or 1.0
    # Near enough not to cut the body, far enough for the floor's horizon, no wider (depth precision).
    model.vis.map.znear = 0.02 * distance / extent
    model.vis.map.zfar = 100 * distance / extent
