"""Proprioception: the body's own state as the controller's decoder reads it (``prop_obs``).

One pure function shared by every task on a body (imitation and the
reference-free tasks of ``environments.tasks``), so a decoder trained by
imitation reads exactly the same vector, in the same order and units, when it
is reused on a new task.
"""

from __future__ import annotations

import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.quaternions import heading_matrix, quat_to_mat

#: The root pose of a fixed-base body: at the origin, unrotated.
FIXED_ROOT = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


def root_pose(qpos, has_root: bool):
    """Root position and orientation (7,): the free joint's, or the origin for a fixed base."""
    return qpos[:7] if has_root else jnp.asarray(FIXED_ROOT)


def actuator_force_scale(model: mujoco.MjModel) -> np.ndarray:
    """What actuator forces are divided by in ``proprioception``: muscles' peak isometric forces, else 1.

    The imitation task computes the same from the body's unperturbed model (``ImitationEnv``).
    """
    is_muscle = model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_MUSCLE)
    peak = np.abs(model.actuator_gainprm[:, 2])
    return np.where(is_muscle & (peak > 0), peak, 1.0)


def proprioception(phys, hinge_q, hinge_v, body_ids, has_root: bool, force_scale, prev_ctrl):
    """The proprioceptive observation of one physics state (``environments.physics.Physics``).

    Joint angles and velocities (``hinge_q``/``hinge_v`` index qpos/qvel);
    for a free root its height (mm), gravity direction and velocities in the
    root's own frame; muscle activations, actuator forces over ``force_scale``,
    the previous controls, and the tracked bodies (``body_ids``) relative to
    the root in the heading frame (mm).
    """
    root = root_pose(phys.qpos, has_root)
    to_local = heading_matrix(root[3:7]).T if has_root else jnp.eye(3)
    rel_body = (phys.xpos[body_ids] - root[None, :3]) @ to_local.T * 1e3
    parts = [phys.qpos[hinge_q], phys.qvel[hinge_v]]
    if has_root:
        rot = quat_to_mat(root[3:7])
        # Height, gravity direction and velocities in the root's own frame: all
        # independent of where the body is and which way it faces.
        parts += [root[2:3] * 1e3, rot.T @ jnp.array([0.0, 0.0, -1.0]), rot.T @ phys.qvel[:3], phys.qvel[3:6]]
    parts += [phys.act, phys.actuator_force / force_scale, prev_ctrl, rel_body.ravel()]
    return jnp.concatenate(parts)
