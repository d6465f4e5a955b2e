"""Reward terms of the tracking task: one small function per term.

A step's reward is a dict of named terms, each ``weight * f(step)`` with its
weight and scale from ``RewardConfig``; the reward is their sum and every term
is logged on its own as ``reward/<name>``. Adding a term = one function here
plus one field of ``RewardConfig`` with the same name.

Tracking terms are Gaussian kernels ``exp(-err^2 / scale^2)`` of errors in
physical units (so a scale reads as "the error at which the reward drops to
1/e"); cost terms are negative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mimic_mjx.config import RewardConfig


class Errors(NamedTuple):
    """Tracking errors of one step, SI units."""

    root_pos: jax.Array  # () m
    root_angle: jax.Array  # () rad
    joint: jax.Array  # (nj,) rad
    joint_vel: jax.Array  # (nj,) rad/s
    body: jax.Array  # (nb,) m
    ee: jax.Array  # (n_ee,) m
    keypoint: jax.Array = np.zeros(0, np.float32)  # (K,) m, markers to recorded keypoints (0 where missing)
    keypoint_valid: jax.Array = np.zeros(0, np.float32)  # (K,) 1 where the keypoint was recorded


def rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def masked_mean(x, valid):
    """Mean of ``x`` over entries where ``valid`` is 1 (0 when there are none)."""
    return jnp.sum(x * valid) / jnp.maximum(jnp.sum(valid), 1.0)


class StepQuantities(NamedTuple):
    """What the reward terms of one control step may look at."""

    err: Errors
    ctrl: jax.Array  # (nu,) controls applied this step
    prev_ctrl: jax.Array  # (nu,) controls of the previous step
    power: jax.Array  # (nu,) actuator power, W


def _kernel(sq_err, scale):
    return jnp.exp(-sq_err / scale**2)


def joint(q: StepQuantities, c) -> jax.Array:
    return _kernel(jnp.mean(jnp.square(q.err.joint)), c.scale_rad)


def joint_vel(q: StepQuantities, c) -> jax.Array:
    return _kernel(jnp.mean(jnp.square(q.err.joint_vel)), c.scale_rad_s)


def body(q: StepQuantities, c) -> jax.Array:
    return _kernel(jnp.mean(jnp.square(q.err.body)), c.scale_m)


def end_effector(q: StepQuantities, c) -> jax.Array:
    return _kernel(jnp.mean(jnp.square(q.err.ee)), c.scale_m)


def keypoint(q: StepQuantities, c) -> jax.Array:
    # No reward where nothing was recorded: a clip without keypoints must not earn it for free.
    seen = jnp.minimum(jnp.sum(q.err.keypoint_valid), 1.0)
    return seen * _kernel(masked_mean(jnp.square(q.err.keypoint), q.err.keypoint_valid), c.scale_m)


def root_pos(q: StepQuantities, c) -> jax.Array:
    return _kernel(jnp.square(q.err.root_pos), c.scale_m)


def root_angle(q: StepQuantities, c) -> jax.Array:
    return _kernel(jnp.square(q.err.root_angle), c.scale_rad)


def ctrl(q: StepQuantities, c) -> jax.Array:
    return -jnp.mean(jnp.square(q.ctrl))


def ctrl_change(q: StepQuantities, c) -> jax.Array:
    return -jnp.mean(jnp.square(q.ctrl - q.prev_ctrl))


def energy(q: StepQuantities, c) -> jax.Array:
    return -jnp.sum(jnp.abs(q.power))


TERMS: dict[str, Callable[[StepQuantities, object], jax.Array]] = {
    "joint": joint,
    "joint_vel": joint_vel,
    "body": body,
    "end_effector": end_effector,
    "keypoint": keypoint,
    "root_pos": root_pos,
    "root_angle": root_angle,
    "ctrl": ctrl,
    "ctrl_change": ctrl_change,
    "energy": energy,
}
#: Terms that only exist for bodies with a free root.
ROOT_TERMS = ("root_pos", "root_angle")


def reward_terms(cfg: RewardConfig, q: StepQuantities, has_root: bool = True) -> dict[str, jax.Array]:
    """Weighted reward terms of one step; their sum is the reward.

    Terms with weight 0 (and root terms of fixed-base bodies) are 0 without
    being computed: the weights are Python numbers, known when compiling.
    """
    out = {}
    for name, term_cfg in cfg.terms().items():
        if term_cfg.weight == 0 or (name in ROOT_TERMS and not has_root):
            out[name] = jnp.zeros(())
        else:
            out[name] = term_cfg.weight * TERMS[name](q, term_cfg)
    return out
