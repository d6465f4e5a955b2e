"""Joint-space operations of registration: the body's joint layout, steps on it, joint limits.

A pose is a qpos vector; a step is a tangent vector of size nv (a free root's
rotation turns in its local frame), so the Levenberg-Marquardt solver in
``registration.stac`` works on bodies with and without a free root alike.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import mujoco
import numpy as np

from mimic_mjx.bodies.layout import JointLayout
from mimic_mjx.errors import BindingError, KeypointError
from mimic_mjx.quaternions import quat_exp, quat_mul


def registration_layout(model: mujoco.MjModel) -> JointLayout:
    """The model's JointLayout; bodies registration cannot fit raise KeypointError."""
    try:
        return JointLayout.from_model(model)
    except BindingError as exc:
        raise KeypointError(f"cannot register this body: {exc}") from None


def retract(layout: JointLayout, q, delta):
    """q (+) delta: positions add, the root quaternion turns in its local frame."""
    out = q.at[layout.hinge_qpos].add(delta[layout.hinge_dof])
    if layout.free_root:
        out = out.at[0:3].add(delta[0:3])
        quat = quat_mul(q[3:7], quat_exp(delta[3:6]))
        out = out.at[3:7].set(quat / jnp.linalg.norm(quat))
    return out


def project(layout: JointLayout, q):
    """q with its hinges clipped into their joint limits."""
    return q.at[layout.hinge_qpos].set(jnp.clip(q[layout.hinge_qpos], layout.lo, layout.hi))


def inside_margin(layout: JointLayout, margin: float) -> JointLayout:
    """The layout with its limited hinges' ranges shrunk by ``margin`` (<= a tenth of the range) at both ends."""
    m = np.minimum(margin, 0.1 * (layout.hi - layout.lo))
    m = np.where(np.isfinite(m), m, 0.0)
    return dataclasses.replace(layout, lo=layout.lo + m, hi=layout.hi - m)
