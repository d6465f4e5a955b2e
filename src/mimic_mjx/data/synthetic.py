"""Synthetic reaching clips from a built-in body, with no external data.

Each clip rests at a typical posture, waits a random delay, makes a
minimum-jerk movement in joint space to a random target, holds it and (in
about half of the clips) moves back to rest. Joint velocities are the
analytic derivative of the minimum-jerk profile; body poses and keypoints come
from MuJoCo forward kinematics of the compiled body, so every clip is exactly
consistent with the model it was made from.
"""

from __future__ import annotations

import mujoco
import numpy as np

from mimic_mjx.bodies.registry import get_body
from mimic_mjx.data.clips import Clip
from mimic_mjx.errors import ClipError

# Rest postures (rad) by body. For the mouse forelimb this sits between the
# first frames and the overall median of the 37 registered reaching trials
# (first-frame median about (-0.20, -0.42, -0.44, 0.92); median over all frames
# about (-0.13, -0.84, 1.15, 0.14)), inside the safety margin of every joint.
REST_POSES = {
    "mouse_forelimb": {"sh_elv": -0.25, "sh_extension": -0.6, "sh_rotation": 0.2, "elbow_joint": 0.6},
}
RANGE_MARGIN = 0.10  # keep targets this fraction of each joint range away from its limits
MAX_REACH_RAD = 0.8  # largest joint excursion from rest
REACH_DURATION_S = (0.15, 0.30)
HOLD_DURATION_S = (0.05, 0.15)
MAX_DELAY_S = 0.10
RETURN_PROBABILITY = 0.5


def minimum_jerk(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-jerk position s(tau) and its derivative ds/dtau for tau in [0, 1] (clipped outside)."""
    t = np.clip(tau, 0.0, 1.0)
    s = t**3 * (10.0 - 15.0 * t + 6.0 * t**2)
    ds = 30.0 * t**2 * (1.0 - t) ** 2
    return s, ds


def _safe_ranges(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(model.njnt, -np.pi)
    hi = np.full(model.njnt, np.pi)
    limited = model.jnt_limited.astype(bool)
    lo[limited], hi[limited] = model.jnt_range[limited, 0], model.jnt_range[limited, 1]
    margin = RANGE_MARGIN * (hi - lo)
    return lo + margin, hi - margin


def _rest_pose(body: str, joint_names: tuple[str, ...], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    known = REST_POSES.get(body, {})
    rest = np.array([known.get(j, 0.0) for j in joint_names])
    return np.clip(rest, lo, hi)


def _timeline(rng: np.random.Generator, budget: float) -> tuple[float, float, float, float, bool]:
    """Delay, reach, hold and return durations (s) and whether the clip returns to rest.

    Durations are drawn from their nominal ranges, each capped so the whole
    timeline fits in ``budget``; a clip returns (with probability
    RETURN_PROBABILITY) only if a shortest reach, hold and return fit. Clips too
    short for even the shortest reach get the shortest timeline scaled down.
    """
    (r_lo, r_hi), (h_lo, h_hi) = REACH_DURATION_S, HOLD_DURATION_S
    returns = bool(rng.uniform() < RETURN_PROBABILITY) and budget >= 2 * r_lo + h_lo
    after_reach = h_lo + r_lo if returns else 0.0  # shortest hold + return still to come

    def capped(lo: float, hi: float, left: float) -> float:
        return float(rng.uniform(lo, max(lo, min(hi, left))))

    delay = capped(0.0, MAX_DELAY_S, budget - r_lo - after_reach)
    reach = capped(r_lo, r_hi, budget - delay - after_reach)
    hold = capped(h_lo, h_hi, budget - delay - reach - r_lo)
    back = capped(r_lo, r_hi, budget - delay - reach - hold)
    total = delay + reach + (hold + back if returns else 0.0)
    if total > budget:  # only for clips shorter than a shortest reach
        scale = budget / total
        delay, reach, hold, back = delay * scale, reach * scale, hold * scale, back * scale
    return delay, reach, hold, back, returns


def make_reaching_clips(
    num_clips: int, seed: int, *, fps: float = 200.0, num_frames: int = 100, body: str = "mouse_forelimb"
) -> list[Clip]:
    """Return ``num_clips`` validated synthetic reaching clips, deterministic for ``seed``.

    Clips are named ``reach_000``, ``reach_001``, ... Each has qpos/qvel of all
    joints, xpos/xquat of every body of the model (world included, as in the
    registration files), and one keypoint per entry of the body's keypoint map
    (for the mouse forelimb: Shoulder, Elbow, Wrist at the bodies scapula,
    elbow, wrist_body) with zero marker offsets.
    """
    if num_clips < 0:
        raise ClipError(f"number of clips must be zero or more, got {num_clips}")
    if num_frames < 2:
        raise ClipError(f"a clip needs at least 2 frames, got num_frames={num_frames}")
    if not np.isfinite(fps) or fps <= 0:
        raise ClipError(f"frame rate must be a positive number of frames per second, got {fps}")
    body_model = get_body(body)
    model = body_model.compile()
    if not np.all(np.isin(model.jnt_type, (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE))):
        raise ClipError(f"synthetic reaches need a body made of hinge and slide joints; '{body}' has others")
    data = mujoco.MjData(model)
    joint_names = tuple(model.joint(j).name for j in range(model.njnt))
    body_names = tuple(model.body(b).name for b in range(model.nbody))
    kp_names = tuple(body_model.keypoint_bodies)
    kp_index = [body_names.index(b) for b in body_model.keypoint_bodies.values()]
    qadr = model.jnt_qposadr  # hinge/slide: one qpos and one qvel per joint, same order

    lo, hi = _safe_ranges(model)
    rest = _rest_pose(body, joint_names, lo, hi)
    target_lo = np.maximum(lo, rest - MAX_REACH_RAD)
    target_hi = np.minimum(hi, rest + MAX_REACH_RAD)
    t = np.arange(num_frames) / fps
    budget = 0.9 * t[-1]  # movements end within 90% of the clip, so every clip ends at rest

    rng = np.random.default_rng(seed)
    clips = []
    for i in range(num_clips):
        target = rng.uniform(target_lo, target_hi)
        delay, reach, hold, back, returns = _timeline(rng, budget)

        s1, ds1 = minimum_jerk((t - delay) / reach)
        qpos = rest + s1[:, None] * (target - rest)
        qvel = (ds1 / reach)[:, None] * (target - rest)
        if returns:
            t2 = delay + reach + hold
            s2, ds2 = minimum_jerk((t - t2) / back)
            qpos += s2[:, None] * (rest - target)
            qvel += (ds2 / back)[:, None] * (rest - target)

        xpos = np.empty((num_frames, model.nbody, 3))
        xquat = np.empty((num_frames, model.nbody, 4))
        for k in range(num_frames):
            data.qpos[qadr] = qpos[k]
            mujoco.mj_kinematics(model, data)
            xpos[k] = data.xpos
            xquat[k] = data.xquat

        clips.append(
            Clip(
                name=f"reach_{i:03d}",
                body=body,
                fps=float(fps),
                joint_names=joint_names,
                qpos=qpos.astype(np.float32),
                qvel=qvel.astype(np.float32),
                body_names=body_names,
                xpos=xpos.astype(np.float32),
                xquat=xquat.astype(np.float32),
                keypoint_names=kp_names,
                keypoints=xpos[:, kp_index].astype(np.float32),
                marker_offsets=np.zeros((len(kp_names), 3), np.float32),
            ).validate()
        )
    return clips


def make_still_clip(body_name: str, *, num_frames: int = 100, fps: float = 50.0) -> Clip:
    """A clip holding a body's default pose: a reference for any body, no data needed.

    Used to measure throughput where no registered clips are at hand; the
    content of the reference does not change the cost of a step.
    """
    from mimic_mjx.bodies import get_body

    model = get_body(body_name).compile_trainable()
    names = tuple(model.joint(j).name for j in range(model.njnt))
    dims = tuple(
        int(model.jnt_qposadr[j + 1] if j + 1 < model.njnt else model.nq) - int(model.jnt_qposadr[j])
        for j in range(model.njnt)
    )
    qpos = np.tile(model.qpos0.astype(np.float32), (num_frames, 1))
    return Clip(
        name=f"{body_name}_still",
        body=body_name,
        fps=float(fps),
        joint_names=names,
        qpos=qpos,
        qvel=np.zeros((num_frames, model.nv), np.float32),
        joint_qpos_dims=dims,
    )
