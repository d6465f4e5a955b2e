"""Reference clips from generated joint trajectories (motion generators of bodies without recordings).

A generator (the worm's undulations, the stick insect's gaits) produces joint
angles and a root trajectory; ``clip_from_qpos`` turns them into a clip the
way registration would: body poses by MuJoCo forward kinematics of the body's
registration model, one keypoint per entry of the body's keypoint map (its
marker on its body at the map's offset), joint velocities by differences
(the free root's through its quaternion), the body's hash recorded.

``check_parameter`` is the one way generators refuse a parameter outside the
range the animal shows: the message names the parameter, the value, the
range, its unit and where the range comes from.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from mimic_mjx.bodies.layout import JointLayout, joint_qpos_dims, reference_velocities
from mimic_mjx.bodies.model import BodyModel
from mimic_mjx.bodies.registry import get_body
from mimic_mjx.data.clips import Clip
from mimic_mjx.errors import ClipError


def check_parameter(what: str, value: float, lo: float, hi: float, unit: str, source: str) -> float:
    """``value`` as a float if ``lo <= value <= hi``, else a ClipError that says the range and its source."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ClipError(f"{what} must be a number ({unit}), got {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ClipError(
            f"{what} = {value!r} {unit} is outside the physiological range {lo:g}-{hi:g} {unit} ({source}); "
            f"choose a value inside it"
        )
    return v


def clip_from_qpos(
    body: BodyModel | str,
    name: str,
    qpos: np.ndarray,
    fps: float,
    *,
    qvel: np.ndarray | None = None,
    keypoint_noise_m: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Clip:
    """A validated clip of ``body`` following ``qpos`` (frames, nq) at ``fps``.

    Keypoints are the markers of the body's keypoint map (none if it has no
    map), plus Gaussian noise of ``keypoint_noise_m`` per axis where asked
    (what a tracker adds). ``qvel`` defaults to differences of ``qpos``.
    """
    body_model = get_body(body) if isinstance(body, str) else body
    model = body_model.compile()
    qpos = np.asarray(qpos, np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise ClipError(
            f"qpos has shape {qpos.shape}, expected (frames, {model.nq}) for body {body_model.display_name}"
        )
    if not np.isfinite(qpos).all():
        raise ClipError(f"clip {name}: the generated joint angles are not all finite")
    layout = JointLayout.from_model(model)
    if qvel is None:
        qvel = reference_velocities(qpos, fps, layout)
    data = mujoco.MjData(model)
    T = qpos.shape[0]
    xpos = np.empty((T, model.nbody, 3))
    xquat = np.empty((T, model.nbody, 4))
    kmap = body_model.keypoint_map
    kp_names = kmap.names if kmap else ()
    kp_body = [model.body(b).id for b in kmap.keypoint_bodies().values()] if kmap else []
    kp_off = np.array([kmap.offsets()[k] for k in kp_names], np.float64).reshape(len(kp_names), 3)
    keypoints = np.empty((T, len(kp_names), 3))
    for t in range(T):
        data.qpos[:] = qpos[t]
        mujoco.mj_kinematics(model, data)
        xpos[t], xquat[t] = data.xpos, data.xquat
        if kp_names:
            mats = data.xmat[kp_body].reshape(-1, 3, 3)
            keypoints[t] = data.xpos[kp_body] + np.einsum("kij,kj->ki", mats, kp_off)
    if keypoint_noise_m > 0 and kp_names:
        keypoints += (rng or np.random.default_rng(0)).normal(0.0, keypoint_noise_m, keypoints.shape)
    return Clip(
        name=name,
        body=body_model.name,
        fps=float(fps),
        joint_names=tuple(model.joint(j).name for j in range(model.njnt)),
        qpos=qpos.astype(np.float32),
        qvel=np.asarray(qvel, np.float32),
        body_names=tuple(model.body(b).name for b in range(model.nbody)),
        xpos=xpos.astype(np.float32),
        xquat=xquat.astype(np.float32),
        keypoint_names=kp_names,
        keypoints=keypoints.astype(np.float32) if kp_names else None,
        marker_offsets=kp_off.astype(np.float32) if kp_names else None,
        joint_qpos_dims=joint_qpos_dims(model),
        body_hash=body_model.body_hash(),
    ).validate()
