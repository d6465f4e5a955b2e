"""PPO's losses as pure functions over arrays: GAE, the clipped surrogate, the full minibatch loss.

Every hyperparameter is an argument, so each piece is tested on its own
(tests/test_functions.py) and the trainer (``training.ppo``) only wires them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mimic_mjx.agents.networks import gaussian_entropy, gaussian_log_prob, kl_to_ar1_prior
from mimic_mjx.agents.policy import PolicyParams, network_outputs


class Transition(NamedTuple):
    ref_obs: jax.Array
    prop_obs: jax.Array
    eps: jax.Array
    prev_latent: jax.Array
    # The decoder's state the action was taken with (before the step; size 0 for the MLP decoder):
    # the loss recomputes log-probabilities from it, one step of the cell, no backpropagation through time.
    decoder_state: jax.Array
    first: jax.Array
    action: jax.Array
    log_prob: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    metrics: dict  # the environment's record of the transition


def compute_gae(rewards, values, bootstrap, terminated, truncated, discount, lam):
    """GAE over (T, B) arrays with auto-reset episodes.

    ``values[t]`` is the value of the observation at step t; the step after t's
    observation is ``values[t+1]`` (or ``bootstrap`` at the end). Terminated
    steps do not bootstrap; truncated steps carry no learning signal because the
    next observation already belongs to the next episode (as in Brax).
    """
    next_values = jnp.concatenate([values[1:], bootstrap[None]], axis=0)
    done = jnp.maximum(terminated, truncated)
    deltas = (rewards + discount * (1.0 - terminated) * next_values - values) * (1.0 - truncated)

    def back(acc, xs):
        delta, d = xs
        acc = delta + discount * lam * (1.0 - d) * acc
        return acc, acc

    _, adv = jax.lax.scan(back, jnp.zeros_like(bootstrap), (deltas, done), reverse=True)
    return adv, adv + values


def _mean(x, weights=None):
    if weights is None:
        return jnp.mean(x)
    return jnp.sum(x * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _median(x, weights=None):
    return jnp.median(x) if weights is None else jnp.nanmedian(jnp.where(weights > 0, x, jnp.nan))


def clipped_surrogate_loss(ratio, advantages, clip_epsilon, weights=None):
    """PPO's clipped policy objective, as a loss: -mean(min(r A, clip(r, 1-e, 1+e) A))."""
    clipped = jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
    return -_mean(jnp.minimum(ratio * advantages, clipped * advantages), weights)


def compute_ppo_loss(
    params,
    agent,
    ref_stats,
    prop_stats,
    batch: Transition,
    advantages,
    returns,
    *,
    clip_epsilon,
    value_cost,
    entropy_cost,
    kl_weight,
    ar1_alpha,
    weights=None,
):
    """PPO loss of a minibatch plus the latent KL to the AR(1) prior; returns (loss, info).

    Pure: every hyperparameter is an argument. Advantages are normalised per
    minibatch. ``weights`` (0/1 per transition) leave transitions out; they
    must still hold finite numbers, since a NaN times zero is NaN.
    """
    pp = PolicyParams(params, ref_stats, prop_stats)
    out = network_outputs(agent, pp, batch.ref_obs, batch.prop_obs, batch.eps, batch.decoder_state)
    log_prob = gaussian_log_prob(batch.action, out["action_mean"], out["action_log_std"])
    ratio = jnp.exp(log_prob - batch.log_prob)
    if weights is None:
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    else:
        m = _mean(advantages, weights)
        adv = (advantages - m) / (jnp.sqrt(_mean(jnp.square(advantages - m), weights)) + 1e-8)
    pg_loss = clipped_surrogate_loss(ratio, adv, clip_epsilon, weights)
    v_loss = 0.5 * _mean(jnp.square(out["value"] - returns), weights)
    entropy = _mean(gaussian_entropy(out["action_log_std"]), weights)
    kl_each = kl_to_ar1_prior(out["latent_mean"], out["latent_log_var"], batch.prev_latent, batch.first, ar1_alpha)
    kl = _mean(kl_each, weights)
    kl_each_action = (ratio - 1) - jnp.log(ratio)
    loss = pg_loss + value_cost * v_loss - entropy_cost * entropy + kl_weight * kl
    return loss, {
        "loss/policy": pg_loss,
        "loss/value": v_loss,
        "loss/latent_kl": kl,
        "policy/entropy": entropy,
        "policy/approx_kl": _mean(kl_each_action, weights),
        # The mean is carried by a few transitions whose probability moved by orders of magnitude
        # (tail actions the policy moved towards); the median is the typical transition's change.
        "policy/approx_kl_median": _median(kl_each_action, weights),
        # Share of transitions whose ratio left [1 - e, 1 + e]: their policy gradient is cut.
        "policy/clip_fraction": _mean((jnp.abs(ratio - 1.0) > clip_epsilon).astype(jnp.float32), weights),
    }


def kl_weight_at(env_steps, kl_weight, ramp_steps):
    """The latent KL weight, ramped linearly from 0 over ``ramp_steps`` environment steps."""
    if not ramp_steps:
        return jnp.asarray(kl_weight, jnp.float32)
    return kl_weight * jnp.clip(env_steps / ramp_steps, 0.0, 1.0)
