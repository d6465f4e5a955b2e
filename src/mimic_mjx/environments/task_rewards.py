"""Reward terms of the tasks without reference kinematics: one small function per term.

Each task names the terms it uses (``TaskEnv.reward_names``); a step's reward
is their sum, each ``weight * f(step)`` with its weight from
``task.reward.<name>`` (config/task.py), and each is logged on its own as
``reward/<name>``. Every quantity with a unit is divided by the body's size
(an arm's reach, a body's length) or by a power built from it, so the same
weights mean the same thing for a 1 g forelimb and a 300 g rat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mimic_mjx.config import TaskRewardConfig


class TaskQuantities(NamedTuple):
    """What the reward terms of one control step may look at (SI units)."""

    distance: jax.Array  # () m from the goal after the step
    prev_distance: jax.Array  # () m from the goal before it
    within: jax.Array  # () 1 inside the success region
    upright: jax.Array  # () cosine of the root's tilt from its standing orientation (1: fixed base)
    ctrl: jax.Array  # (nu,) controls applied this step
    power: jax.Array  # (nu,) actuator power, W
    size: float  # the body's size, m (reach of an arm, length of a free body)
    goal_scale: float  # the goal's own length, m (bowl_escape: the rim radius)
    power_scale: float  # m g sqrt(g size), W: a power natural to the body
    dt: float  # control step, s


def reach(q: TaskQuantities, c) -> jax.Array:
    return jnp.exp(-jnp.square(q.distance / (c.scale * q.size)))


def hold(q: TaskQuantities, c) -> jax.Array:
    return q.within


def progress(q: TaskQuantities, c) -> jax.Array:
    # Speed towards the goal in body lengths per second: a body walking straight at
    # one length per second earns 1 per step, whatever its size.
    return (q.prev_distance - q.distance) / (q.size * q.dt)


def escape(q: TaskQuantities, c) -> jax.Array:
    # Linear in the distance from the centre up to the rim, as dm_control's rodent escape.
    return jnp.clip(1.0 - q.distance / q.goal_scale, 0.0, 1.0)


def upright(q: TaskQuantities, c) -> jax.Array:
    return jnp.maximum(q.upright, 0.0)


def ctrl(q: TaskQuantities, c) -> jax.Array:
    return -jnp.mean(jnp.square(q.ctrl))


def energy(q: TaskQuantities, c) -> jax.Array:
    return -jnp.sum(jnp.abs(q.power)) / q.power_scale


TERMS: dict[str, Callable[[TaskQuantities, object], jax.Array]] = {
    "reach": reach,
    "hold": hold,
    "progress": progress,
    "escape": escape,
    "upright": upright,
    "ctrl": ctrl,
    "energy": energy,
}


def task_reward_terms(cfg: TaskRewardConfig, names: Sequence[str], q: TaskQuantities) -> dict[str, jax.Array]:
    """Weighted terms ``names`` of one step; their sum is the reward (weight 0: 0, not computed)."""
    terms = cfg.terms()
    out = {}
    for name in names:
        w = terms[name].weight
        out[name] = jnp.zeros(()) if w == 0 else w * TERMS[name](q, terms[name])
    return out
