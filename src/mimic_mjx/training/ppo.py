"""PPO over many parallel environments, one jit-compiled update per call.

An update = roll out ``unroll_length`` steps in every environment, update the
observation statistics, compute GAE advantages once, then run
``update_epochs`` passes of shuffled minibatches. The latent intention is
reparameterised with noise ``eps`` that is stored with each transition, so the
new and old policies are compared on the same latent draw.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mimic_mjx.agents.networks import gaussian_entropy, gaussian_log_prob, init_params, kl_to_ar1_prior, make_agent
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.agents.policy import PolicyParams, network_outputs
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.environments.imitation import EnvState, ImitationEnv
from mimic_mjx.environments.metrics import aggregate_metrics


@struct.dataclass
class TrainState:
    policy: PolicyParams  # what inference needs (checkpointed so it reads on its own)
    opt_state: optax.OptState
    env_state: EnvState  # batched over environments
    prev_latent: jax.Array  # (num_envs, latent_dim)
    key: jax.Array
    updates: jax.Array  # int32; environment steps = updates * steps_per_update


class Transition(NamedTuple):
    ref_obs: jax.Array
    prop_obs: jax.Array
    eps: jax.Array
    prev_latent: jax.Array
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


def clipped_surrogate_loss(ratio, advantages, clip_epsilon):
    """PPO's clipped policy objective, as a loss: -mean(min(r A, clip(r, 1-e, 1+e) A))."""
    clipped = jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
    return -jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))


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
):
    """PPO loss of a minibatch plus the latent KL to the AR(1) prior; returns (loss, info).

    Pure: every hyperparameter is an argument. Advantages are normalised per minibatch.
    """
    out = network_outputs(agent, PolicyParams(params, ref_stats, prop_stats), batch.ref_obs, batch.prop_obs, batch.eps)
    log_prob = gaussian_log_prob(batch.action, out["action_mean"], out["action_log_std"])
    ratio = jnp.exp(log_prob - batch.log_prob)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = clipped_surrogate_loss(ratio, adv, clip_epsilon)
    v_loss = 0.5 * jnp.mean(jnp.square(out["value"] - returns))
    entropy = jnp.mean(gaussian_entropy(out["action_log_std"]))
    kl = jnp.mean(kl_to_ar1_prior(out["latent_mean"], out["latent_log_var"], batch.prev_latent, batch.first, ar1_alpha))
    loss = pg_loss + value_cost * v_loss - entropy_cost * entropy + kl_weight * kl
    return loss, {
        "loss/policy": pg_loss,
        "loss/value": v_loss,
        "loss/latent_kl": kl,
        "policy/entropy": entropy,
        "policy/approx_kl": jnp.mean((ratio - 1) - jnp.log(ratio)),
    }


def kl_weight_at(env_steps, kl_weight, ramp_steps):
    """The latent KL weight, ramped linearly from 0 over ``ramp_steps`` environment steps."""
    if not ramp_steps:
        return jnp.asarray(kl_weight, jnp.float32)
    return kl_weight * jnp.clip(env_steps / ramp_steps, 0.0, 1.0)


class PPOTrainer:
    """Builds the jit-compiled ``init`` and ``update`` functions for one experiment."""

    def __init__(self, cfg: ExperimentConfig, env: ImitationEnv):
        self.cfg = cfg
        self.env = env
        self.agent = make_agent(cfg.agent, env.action_size)
        p = cfg.ppo
        self.optimizer = optax.chain(optax.clip_by_global_norm(p.max_grad_norm), optax.adam(p.learning_rate))
        self.steps_per_update = p.num_envs * p.unroll_length
        self._vreset = jax.vmap(env.reset)
        self._vstep = jax.vmap(env.step)
        self.init = jax.jit(self._init)
        self.update = jax.jit(self._update, donate_argnums=0)

    def _init(self, key) -> TrainState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        env, p, a = self.env, self.cfg.ppo, self.cfg.agent
        params = init_params(self.agent, k_params, env.ref_obs_size, env.prop_obs_size, a.latent_dim)
        env_state = self._vreset(jax.random.split(k_env, p.num_envs))
        ref_stats = RunningStats.create(env.ref_obs_size).update(env_state.ref_obs)
        prop_stats = RunningStats.create(env.prop_obs_size).update(env_state.prop_obs)
        return TrainState(
            policy=PolicyParams(params, ref_stats, prop_stats),
            opt_state=self.optimizer.init(params),
            env_state=env_state,
            prev_latent=jnp.zeros((p.num_envs, a.latent_dim)),
            key=k_run,
            updates=jnp.zeros((), jnp.int32),
        )

    # -- rollout -----------------------------------------------------------
    def _rollout(self, ts: TrainState, key):
        p = self.cfg.ppo

        def one_step(carry, k):
            env_state, prev_latent = carry
            k_eps, k_act = jax.random.split(k)
            eps = jax.random.normal(k_eps, prev_latent.shape)
            out = network_outputs(self.agent, ts.policy, env_state.ref_obs, env_state.prop_obs, eps)
            a_mean, a_log_std = out["action_mean"], out["action_log_std"]
            action = a_mean + jnp.exp(a_log_std) * jax.random.normal(k_act, a_mean.shape)
            log_prob = gaussian_log_prob(action, a_mean, a_log_std)
            first = env_state.steps == 0
            nxt = self._vstep(env_state, action)
            tr = Transition(
                ref_obs=env_state.ref_obs,
                prop_obs=env_state.prop_obs,
                eps=eps,
                prev_latent=prev_latent,
                first=first,
                action=action,
                log_prob=log_prob,
                reward=nxt.reward,
                terminated=nxt.terminated,
                truncated=nxt.truncated,
                metrics=nxt.metrics,
            )
            return (nxt, out["latent"]), tr

        keys = jax.random.split(key, p.unroll_length)
        (env_state, prev_latent), traj = jax.lax.scan(one_step, (ts.env_state, ts.prev_latent), keys)
        return env_state, prev_latent, traj

    def kl_weight(self, updates):
        a = self.cfg.agent
        return kl_weight_at(updates.astype(jnp.float32) * self.steps_per_update, a.kl_weight, a.kl_ramp_steps)

    def _update(self, ts: TrainState):
        p, a = self.cfg.ppo, self.cfg.agent
        key, k_roll, k_perm = jax.random.split(ts.key, 3)
        env_state, prev_latent, traj = self._rollout(ts, k_roll)

        pol = ts.policy
        pol = pol.replace(ref_stats=pol.ref_stats.update(traj.ref_obs), prop_stats=pol.prop_stats.update(traj.prop_obs))

        values = network_outputs(self.agent, pol, traj.ref_obs, traj.prop_obs, traj.eps)["value"]
        bootstrap = network_outputs(
            self.agent, pol, env_state.ref_obs, env_state.prop_obs, jnp.zeros_like(prev_latent)
        )["value"]
        adv, ret = compute_gae(
            traj.reward * p.reward_scaling, values, bootstrap, traj.terminated, traj.truncated, p.discount, p.gae_lambda
        )

        n = self.steps_per_update
        batch = traj._replace(metrics={})
        flat = jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), (batch, adv, ret))
        kl_weight = self.kl_weight(ts.updates)
        loss_fn = lambda params, mb: compute_ppo_loss(
            params,
            self.agent,
            pol.ref_stats,
            pol.prop_stats,
            *mb,
            clip_epsilon=p.clip_epsilon,
            value_cost=p.value_cost,
            entropy_cost=p.entropy_cost,
            kl_weight=kl_weight,
            ar1_alpha=a.ar1_alpha,
        )
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def sgd_epoch(carry, k):
            perm = jax.random.permutation(k, n)
            mbs = jax.tree.map(lambda x: x[perm].reshape((p.num_minibatches, -1) + x.shape[1:]), flat)

            def sgd_step(c, mb):
                params, opt_state = c
                (_, info), grads = grad_fn(params, mb)
                updates, opt_state = self.optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), info

            return jax.lax.scan(sgd_step, carry, mbs)

        (params, opt_state), infos = jax.lax.scan(
            sgd_epoch, (pol.params, ts.opt_state), jax.random.split(k_perm, p.update_epochs)
        )

        metrics = {k: jnp.mean(v) for k, v in infos.items()}
        metrics.update(aggregate_metrics(traj.metrics, jnp.maximum(traj.terminated, traj.truncated)))
        metrics["policy/kl_weight"] = kl_weight
        new = ts.replace(
            policy=pol.replace(params=params),
            opt_state=opt_state,
            env_state=env_state,
            prev_latent=prev_latent,
            key=key,
            updates=ts.updates + 1,
        )
        return new, metrics
