"""A body's rest pose with its keypoint markers, as one PNG (``mimic bodies check``)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.files import atomic_path
from mimic_mjx.presentation.render import MARKER_RGBA, add_sphere, open_renderer


def render_rest_pose(
    model: mujoco.MjModel, markers: np.ndarray, out_path: str | os.PathLike, *, width: int = 640, height: int = 480
) -> Path:
    """Write the model at qpos0 with green spheres at ``markers`` (K, 3); MimicError when nothing can render."""
    import imageio.v2 as imageio

    # Half-transparent body: markers usually sit inside the geoms they ride on.
    model = copy.deepcopy(model)
    solid = model.geom_type != mujoco.mjtGeom.mjGEOM_PLANE
    model.geom_rgba[solid, 3] *= 0.45
    model.mat_rgba[:, 3] *= 0.45
    model.skin_rgba[:, 3] *= 0.45
    model.vis.headlight.ambient[:] = 0.4  # many MJCFs carry no light of their own
    model.vis.headlight.diffuse[:] = 0.8
    renderer = open_renderer(model, width, height)
    try:
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        points = np.concatenate([data.xpos[1:], markers.reshape(-1, 3)])
        centre = 0.5 * (points.min(0) + points.max(0))
        # The body's own size sets the view (and the marker size): a worm and a rat both fill the frame.
        size = float(np.max(np.ptp(points, axis=0))) or float(model.stat.extent)
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = centre
        cam.distance = 1.7 * size
        cam.elevation, cam.azimuth = -25.0, 135.0
        renderer.update_scene(data, cam)
        for p in markers.reshape(-1, 3):
            add_sphere(renderer.scene, p, max(0.025 * size, 1e-6), MARKER_RGBA)
        frame = renderer.render()
    finally:
        renderer.close()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        imageio.imwrite(tmp, frame, format="png")
    return out_path
