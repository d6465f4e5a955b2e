"""The metrics record of a transition: one mapping from the environment step to the logs.

Every transition carries ``EnvState.metrics``; PPO's rollout keeps it,
``aggregate_metrics`` summarises it per update, and the progress line,
metrics.jsonl, TensorBoard and evaluation read the same names. A new metric
is one entry in ``step_metrics``.
"""

from __future__ import annotations

import jax.numpy as jnp

from mimic_mjx.environments.rewards import Errors, masked_mean, rms


def step_metrics(err: Errors, terms: dict, reward, steps, terminated, unstable) -> dict:
    """The metrics record of one transition (scalars).

    Errors are in display units; ``episode/*`` entries describe the episode the
    transition ended (``aggregate_metrics`` averages them over ended episodes,
    everything else over steps).
    """
    m = {f"reward/{k}": v for k, v in terms.items()}
    m["reward/total"] = reward
    m.update(
        {
            "error/joint_deg": jnp.rad2deg(rms(err.joint)),
            "error/joint_vel_rad_s": rms(err.joint_vel),
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
