"""The metrics record of a transition: one mapping from the environment step to the logs.

Every transition carries ``EnvState.metrics``; PPO's rollout keeps it,
``aggregate_metrics`` summarises it per update, and the progress line,
metrics.jsonl, TensorBoard and evaluation read the same names. A new metric
is one entry in ``step_metrics``.
"""

from __future__ import annotations

import jax.numpy as jnp

from mimic_mjx.environments.rewards import Errors, masked_mean

#: How the metrics record of a transition is named. Errors are in display
#: units; ``episode/*`` entries describe the episode a transition ended (they
#: are averaged over ended episodes, everything else over steps).
ERROR_METRICS = (
    "error/joint_deg",
    "error/joint_vel_rad_s",
    "error/ee_mm",
    "error/body_mm",
    "error/root_mm",
    "error/root_angle_deg",
    "error/keypoint_mm",
)
EPISODE_METRICS = ("episode/length", "episode/terminated", "episode/unstable")


def _rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def step_metrics(err: Errors, terms: dict, reward, steps, terminated, unstable) -> dict:
    """The metrics record of one transition (scalars)."""
    m = {f"reward/{k}": v for k, v in terms.items()}
    m["reward/total"] = reward
    m.update(
        {
            "error/joint_deg": jnp.rad2deg(_rms(err.joint)),
            "error/joint_vel_rad_s": _rms(err.joint_vel),
            "error/ee_mm": 1e3 * jnp.mean(err.ee),
            "error/body_mm": 1e3 * jnp.mean(err.body),
            "error/root_mm": 1e3 * err.root_pos,
            "error/root_angle_deg": jnp.rad2deg(err.root_angle),
            "error/keypoint_mm": 1e3 * masked_mean(err.keypoint, err.keypoint_valid),
            "episode/length": steps.astype(jnp.float32),
            "episode/terminated": terminated,
            "episode/unstable": unstable,
        }
    )
    return m


def aggregate_metrics(metrics: dict, done) -> dict:
    """Summarise transitions' records (arrays of any leading shape) into scalars.

    ``episode/*`` entries are averaged over the transitions that ended an
    episode (``done``), everything else over all transitions; ``episode/count``
    is the number of episodes that ended.
    """
    ends = jnp.sum(done)
    out = {}
    for k, v in metrics.items():
        if k.startswith("episode/"):
            out[k] = jnp.sum(v * done) / jnp.maximum(ends, 1.0)
        else:
            out[k] = jnp.mean(v)
    out["episode/count"] = ends
    return out
