"""Quaternion and heading helpers over JAX arrays (MuJoCo's w, x, y, z order)."""

from __future__ import annotations

import jax.numpy as jnp


def quat_mul(a, b):
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return jnp.stack([aw * bw - ax * bx - ay * by - az * bz,
                      aw * bx + ax * bw + ay * bz - az * by,
                      aw * by - ax * bz + ay * bw + az * bx,
                      aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_conj(q):
    return q * jnp.array([1.0, -1.0, -1.0, -1.0])


def quat_to_mat(q):
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack([
        jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def quat_angle(q):
    """Rotation angle (rad, in [0, pi]) of a unit quaternion."""
    v = jnp.linalg.norm(q[..., 1:], axis=-1)
    return 2.0 * jnp.arctan2(v, jnp.abs(q[..., 0]))


def heading_matrix(quat):
    """Rotation about z by the yaw of the body's forward (x) axis."""
    fwd = quat_to_mat(quat)[..., :, 0]
    yaw = jnp.arctan2(fwd[..., 1], fwd[..., 0])
    c, s = jnp.cos(yaw), jnp.sin(yaw)
    zero, one = jnp.zeros_like(c), jnp.ones_like(c)
    return jnp.stack([jnp.stack([c, -s, zero], -1), jnp.stack([s, c, zero], -1),
                      jnp.stack([zero, zero, one], -1)], -2)
