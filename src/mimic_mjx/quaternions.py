"""Quaternion and heading helpers, in MuJoCo's (w, x, y, z) order.

Every helper but ``mat_to_quat`` works on NumPy and JAX arrays alike: it
computes in JAX (``jax.numpy``) when any input is a JAX array, tracers under
``jit``/``vmap`` included, and in NumPy otherwise, so the same function serves
the jit-compiled task and registration and the NumPy code that builds body
models. Unit quaternions are assumed unless a helper says otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np


def _xp(*arrays):
    """The array namespace of the inputs: JAX if any is a JAX array, else NumPy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def quat_mul(a, b):
    """Hamilton product a * b (apply b, then a)."""
    xp = _xp(a, b)
    a, b = xp.asarray(a), xp.asarray(b)
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return xp.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_conj(q):
    xp = _xp(q)
    return xp.asarray(q) * xp.asarray([1.0, -1.0, -1.0, -1.0])


def quat_to_mat(q):
    """Rotation matrices (..., 3, 3) of quaternions (..., 4), normalised first."""
    xp = _xp(q)
    q = xp.asarray(q)
    q = q / xp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return xp.stack(
        [
            xp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            xp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            xp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def mat_to_quat(R) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4), NumPy only (MuJoCo's mju_mat2Quat)."""
    R = np.asarray(R, np.float64)
    out = np.empty(R.shape[:-2] + (4,))
    flat_R, flat_q = R.reshape(-1, 3, 3), out.reshape(-1, 4)
    for i in range(flat_R.shape[0]):
        mujoco.mju_mat2Quat(flat_q[i], flat_R[i].ravel())
    return out


def quat_rotate(q, v):
    """The vector(s) ``v`` (..., 3) rotated by ``q`` (..., 4), as MuJoCo's mju_rotVecQuat."""
    xp = _xp(q, v)
    q, v = xp.asarray(q), xp.asarray(v)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    t = xp.stack(
        [
            w * v[..., 0] + y * v[..., 2] - z * v[..., 1],  # w v + u x v, u = (x, y, z)
            w * v[..., 1] + z * v[..., 0] - x * v[..., 2],
            w * v[..., 2] + x * v[..., 1] - y * v[..., 0],
        ],
        axis=-1,
    )
    return v + 2 * xp.cross(q[..., 1:], t)


def quat_angle(q):
    """Rotation angle (rad, in [0, pi]) of a unit quaternion."""
    xp = _xp(q)
    q = xp.asarray(q)
    v = xp.linalg.norm(q[..., 1:], axis=-1)
    return 2.0 * xp.arctan2(v, xp.abs(q[..., 0]))


def quat_exp(v):
    """Quaternion of the rotation vector ``v`` (..., 3) (differentiable at 0)."""
    xp = _xp(v)
    v = xp.asarray(v)
    theta2 = xp.sum(v * v, axis=-1, keepdims=True)
    theta = xp.sqrt(theta2 + 1e-24)
    half = 0.5 * theta
    scale = xp.where(theta2 > 1e-12, xp.sin(half) / theta, 0.5 - theta2 / 48.0)
    return xp.concatenate([xp.cos(half), v * scale], axis=-1)


def quat_log(q):
    """Rotation vector (..., 3) of a unit quaternion, the short way round (inverse of ``quat_exp``)."""
    xp = _xp(q)
    q = xp.asarray(q)
    w, v = q[..., :1], q[..., 1:]
    sign = xp.where(w < 0, -1.0, 1.0)  # shortest way round
    w, v = w * sign, v * sign
    s = xp.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * xp.arctan2(s, w)
    return xp.where(s > 1e-12, v / xp.maximum(s, 1e-12) * angle, 2.0 * v)


def quat_log_between(qa, qb):
    """Rotation vector taking qa to qb, in qa's local frame (MuJoCo's mju_subQuat)."""
    xp = _xp(qa, qb)
    qa, qb = xp.asarray(qa), xp.asarray(qb)
    w1, v1 = qa[..., :1], -qa[..., 1:]
    w2, v2 = qb[..., :1], qb[..., 1:]
    w = w1 * w2 - xp.sum(v1 * v2, axis=-1, keepdims=True)
    v = w1 * v2 + w2 * v1 + xp.cross(v1, v2)
    return quat_log(xp.concatenate([w, v], axis=-1))


def heading_matrix(quat):
    """Rotation about z by the yaw of the body's forward (x) axis."""
    xp = _xp(quat)
    fwd = quat_to_mat(quat)[..., :, 0]
    yaw = xp.arctan2(fwd[..., 1], fwd[..., 0])
    c, s = xp.cos(yaw), xp.sin(yaw)
    zero, one = xp.zeros_like(c), xp.ones_like(c)
    return xp.stack([xp.stack([c, -s, zero], -1), xp.stack([s, c, zero], -1), xp.stack([zero, zero, one], -1)], -2)
