"""Where a body's joints live in qpos and qvel: one answer for every stage.

The tracking task, registration and clip binding all need to know whether a
model has a free root, where its other joints sit in ``qpos``/``qvel`` and how
many columns each joint takes. They ask ``JointLayout`` rather than working it
out again, so a body with an unusual tree fails in one place with one message.
``reference_velocities`` is the one way joint velocities are derived from
joint positions (clips without stored qvel, registration output).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import mujoco
import numpy as np

from mimic_mjx.errors import BindingError, ClipError
from mimic_mjx.quaternions import quat_log_between

_FREE, _BALL = int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL)
_HINGE, _SLIDE = int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)

#: qpos and qvel columns of each joint type.
QPOS_SIZE = {_FREE: 7, _BALL: 4, _HINGE: 1, _SLIDE: 1}
QVEL_SIZE = {_FREE: 6, _BALL: 3, _HINGE: 1, _SLIDE: 1}
#: qvel columns of a joint given its qpos columns (what clip files record).
QVEL_OF_QPOS = {7: 6, 4: 3, 1: 1}


@dataclasses.dataclass(frozen=True, eq=False)
class JointLayout:
    """A model's free root (if any) and its scalar (hinge/slide) joints.

    ``hinge_*`` index arrays cover every joint except the free root, in qpos
    order; they stay NumPy so jit-compiled code bakes them in as constants.
    """

    free_root: bool
    joint_names: tuple[str, ...]  # every joint but the free root, in qpos order
    hinge_qpos: np.ndarray  # (nj,) qpos address of each
    hinge_dof: np.ndarray  # (nj,) qvel address of each
    lo: np.ndarray  # (nj,) lower limit (-inf where unlimited)
    hi: np.ndarray  # (nj,) upper limit (+inf where unlimited)
    nq: int
    nv: int

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> JointLayout:
        types = np.asarray(model.jnt_type)
        free = np.nonzero(types == _FREE)[0]
        ball = np.nonzero(types == _BALL)[0]
        if len(ball) or len(free) > 1 or (len(free) == 1 and (free[0] != 0 or model.jnt_qposadr[0] != 0)):
            raise BindingError(
                f"bodies must have hinge/slide joints and at most one free root joint, the model's first "
                f"(found {len(free)} free and {len(ball)} ball joint(s)); rebuild the model accordingly"
            )
        others = np.nonzero(types != _FREE)[0]
        limited = model.jnt_limited[others].astype(bool)
        return cls(
            free_root=len(free) == 1,
            joint_names=tuple(model.joint(int(j)).name for j in others),
            hinge_qpos=np.asarray(model.jnt_qposadr[others], np.int64),
            hinge_dof=np.asarray(model.jnt_dofadr[others], np.int64),
            lo=np.where(limited, model.jnt_range[others, 0], -np.inf),
            hi=np.where(limited, model.jnt_range[others, 1], np.inf),
            nq=int(model.nq),
            nv=int(model.nv),
        )

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


def joint_qpos_dims(model: mujoco.MjModel) -> tuple[int, ...]:
    """qpos columns of every joint of the model, in joint order."""
    return tuple(QPOS_SIZE[int(t)] for t in model.jnt_type)


def joint_blocks(model: mujoco.MjModel, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """qpos and qvel addresses of the named joints, each joint's columns in order."""
    qadr, vadr = [], []
    for n in names:
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n)
        if j < 0:
            raise BindingError(f"joint '{n}' is not in the body model")
        t = int(model.jnt_type[j])
        qadr += range(model.jnt_qposadr[j], model.jnt_qposadr[j] + QPOS_SIZE[t])
        vadr += range(model.jnt_dofadr[j], model.jnt_dofadr[j] + QVEL_SIZE[t])
    return np.asarray(qadr, int), np.asarray(vadr, int)


def reference_velocities(qpos: np.ndarray, fps: float, layout: JointLayout | None = None) -> np.ndarray:
    """Joint velocities (T, nv), float64, by central differences at ``fps`` (one-sided at the ends).

    Without a layout every qpos column is differentiated as is (hinge/slide
    joints only: qvel columns are qpos columns). With one, the hinges' columns
    go to their dofs and a free root's quaternion gives its angular velocity
    in the root's local frame through the log map (MuJoCo's convention); its
    position is differentiated like the hinges. Raises ClipError for fewer
    than 2 frames or a frame rate that is not a positive number.
    """
    qpos = np.asarray(qpos)
    if qpos.ndim == 0 or qpos.shape[0] < 2:
        raise ClipError(
            f"cannot derive velocities from {qpos.shape[0] if qpos.ndim else 0} frame(s) of qpos; "
            f"a clip needs at least 2 frames"
        )
    if not np.isfinite(fps) or fps <= 0:
        raise ClipError(f"frame rate must be a positive number of frames per second, got {fps}")
    qpos = np.asarray(qpos, np.float64)
    dt = 1.0 / fps
    if layout is None:
        return np.gradient(qpos, dt, axis=0)
    if qpos.ndim != 2 or qpos.shape[1] != layout.nq:
        raise ClipError(f"qpos has shape {qpos.shape}, expected (frames, {layout.nq}) for the body's joints")
    T = qpos.shape[0]
    qvel = np.zeros((T, layout.nv))
    qvel[:, layout.hinge_dof] = np.gradient(qpos[:, layout.hinge_qpos], dt, axis=0)
    if layout.free_root:
        qvel[:, 0:3] = np.gradient(qpos[:, 0:3], dt, axis=0)
        prev = np.concatenate([qpos[:1, 3:7], qpos[:-2, 3:7], qpos[-2:-1, 3:7]])
        nxt = np.concatenate([qpos[1:2, 3:7], qpos[2:, 3:7], qpos[-1:, 3:7]])
        span = np.full((T, 1), 2.0 * dt)
        span[0] = span[-1] = dt
        qvel[:, 3:6] = quat_log_between(prev, nxt) / span
    return qvel
