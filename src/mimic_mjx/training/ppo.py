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

from mimic_mjx.agents.networks import (gaussian_entropy, gaussian_log_prob, init_params, kl_to_ar1_prior,
                                       make_agent)
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.environments.imitation import EnvState, ImitationEnv


@struct.dataclass
class TrainState:
    params: dict
    opt_state: optax.OptState
    ref_stats: RunningStats
    prop_stats: RunningStats
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
    joint_error: jax.Array
    ee_error: jax.Array
    body_error: jax.Array
    root_error: jax.Array
    unstable: jax.Array


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

    # -- policy ------------------------------------------------------------
    def policy_outputs(self, params, ref_stats, prop_stats, ref_obs, prop_obs, eps):
        ref_n = ref_stats.normalize(ref_obs)
        prop_n = prop_stats.normalize(prop_obs)
        z_mean, z_log_var = self.agent.apply({"params": params}, ref_n, method=self.agent.encode)
        latent = z_mean + jnp.exp(0.5 * z_log_var) * eps
        a_mean, a_log_std = self.agent.apply({"params": params}, latent, prop_n, method=self.agent.decode)
        value = self.agent.apply({"params": params}, ref_n, prop_n, method=self.agent.value)
        return z_mean, z_log_var, latent, a_mean, a_log_std, value

    def _init(self, key) -> TrainState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        env, p, a = self.env, self.cfg.ppo, self.cfg.agent
        params = init_params(self.agent, k_params, env.ref_obs_size, env.prop_obs_size, a.latent_dim)
        env_state = self._vreset(jax.random.split(k_env, p.num_envs))
        ref_stats = RunningStats.create(env.ref_obs_size).update(env_state.ref_obs)
        prop_stats = RunningStats.create(env.prop_obs_size).update(env_state.prop_obs)
        return TrainState(params=params, opt_state=self.optimizer.init(params), ref_stats=ref_stats,
                          prop_stats=prop_stats, env_state=env_state,
                          prev_latent=jnp.zeros((p.num_envs, a.latent_dim)), key=k_run,
                          updates=jnp.zeros((), jnp.int32))

    # -- rollout -----------------------------------------------------------
    def _rollout(self, ts: TrainState, key):
        p, a = self.cfg.ppo, self.cfg.agent

        def one_step(carry, k):
            env_state, prev_latent = carry
            k_eps, k_act = jax.random.split(k)
            eps = jax.random.normal(k_eps, prev_latent.shape)
            _, _, latent, a_mean, a_log_std, _ = self.policy_outputs(
                ts.params, ts.ref_stats, ts.prop_stats, env_state.ref_obs, env_state.prop_obs, eps)
            action = a_mean + jnp.exp(a_log_std) * jax.random.normal(k_act, a_mean.shape)
            log_prob = gaussian_log_prob(action, a_mean, a_log_std)
            first = env_state.steps == 0
            nxt = self._vstep(env_state, action)
            tr = Transition(ref_obs=env_state.ref_obs, prop_obs=env_state.prop_obs, eps=eps,
                            prev_latent=prev_latent, first=first, action=action, log_prob=log_prob,
                            reward=nxt.reward, terminated=nxt.terminated, truncated=nxt.truncated,
                            joint_error=nxt.joint_error, ee_error=nxt.ee_error, body_error=nxt.body_error,
                            root_error=nxt.root_error, unstable=nxt.unstable)
            return (nxt, latent), tr

        keys = jax.random.split(key, p.unroll_length)
        (env_state, prev_latent), traj = jax.lax.scan(one_step, (ts.env_state, ts.prev_latent), keys)
        return env_state, prev_latent, traj

    # -- loss --------------------------------------------------------------
    def _loss(self, params, ts: TrainState, mb, kl_weight):
        p, a = self.cfg.ppo, self.cfg.agent
        tr, adv, ret = mb
        z_mean, z_log_var, _, a_mean, a_log_std, value = self.policy_outputs(
            params, ts.ref_stats, ts.prop_stats, tr.ref_obs, tr.prop_obs, tr.eps)
        log_prob = gaussian_log_prob(tr.action, a_mean, a_log_std)
        ratio = jnp.exp(log_prob - tr.log_prob)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - p.clip_epsilon, 1 + p.clip_epsilon) * adv))
        v_loss = 0.5 * jnp.mean(jnp.square(value - ret))
        entropy = jnp.mean(gaussian_entropy(a_log_std))
        kl = jnp.mean(kl_to_ar1_prior(z_mean, z_log_var, tr.prev_latent, tr.first, a.ar1_alpha))
        loss = pg_loss + p.value_cost * v_loss - p.entropy_cost * entropy + kl_weight * kl
        return loss, {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy, "latent_kl": kl,
                      "approx_kl": jnp.mean((ratio - 1) - jnp.log(ratio))}

    def kl_weight(self, updates):
        a = self.cfg.agent
        env_steps = updates.astype(jnp.float32) * self.steps_per_update
        ramp = jnp.clip(env_steps / max(a.kl_ramp_steps, 1), 0.0, 1.0) if a.kl_ramp_steps else 1.0
        return a.kl_weight * ramp

    def _update(self, ts: TrainState):
        p = self.cfg.ppo
        key, k_roll, k_perm = jax.random.split(ts.key, 3)
        env_state, prev_latent, traj = self._rollout(ts, k_roll)

        ref_stats = ts.ref_stats.update(traj.ref_obs)
        prop_stats = ts.prop_stats.update(traj.prop_obs)
        ts = ts.replace(ref_stats=ref_stats, prop_stats=prop_stats)

        values = self.policy_outputs(ts.params, ref_stats, prop_stats, traj.ref_obs, traj.prop_obs, traj.eps)[-1]
        boot_eps = jnp.zeros_like(prev_latent)
        bootstrap = self.policy_outputs(ts.params, ref_stats, prop_stats, env_state.ref_obs,
                                        env_state.prop_obs, boot_eps)[-1]
        rewards = traj.reward * p.reward_scaling
        adv, ret = compute_gae(rewards, values, bootstrap, traj.terminated, traj.truncated,
                               p.discount, p.gae_lambda)

        n = self.steps_per_update
        flat = jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), (traj, adv, ret))
        kl_weight = self.kl_weight(ts.updates)
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)

        def sgd_epoch(carry, k):
            params, opt_state = carry
            perm = jax.random.permutation(k, n)
            mbs = jax.tree.map(lambda x: x[perm].reshape((p.num_minibatches, -1) + x.shape[1:]), flat)

            def sgd_step(c, mb):
                params, opt_state = c
                (_, info), grads = grad_fn(params, ts, mb, kl_weight)
                updates, opt_state = self.optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), info

            (params, opt_state), infos = jax.lax.scan(sgd_step, (params, opt_state), mbs)
            return (params, opt_state), infos

        (params, opt_state), infos = jax.lax.scan(
            sgd_epoch, (ts.params, ts.opt_state), jax.random.split(k_perm, p.update_epochs))

        ends = jnp.sum(traj.terminated + traj.truncated)
        metrics = {k: jnp.mean(v) for k, v in infos.items()}
        metrics.update({
            "reward": jnp.mean(traj.reward),
            "joint_error_deg": jnp.rad2deg(jnp.mean(traj.joint_error)),
            "ee_error_mm": 1e3 * jnp.mean(traj.ee_error),
            "body_error_mm": 1e3 * jnp.mean(traj.body_error),
            "root_error_mm": 1e3 * jnp.mean(traj.root_error),
            "episodes_ended": ends,
            "termination_fraction": jnp.sum(traj.terminated) / jnp.maximum(ends, 1.0),
            "unstable_episodes": jnp.sum(traj.unstable),
            "kl_weight": kl_weight,
        })
        new = ts.replace(params=params, opt_state=opt_state, env_state=env_state, prev_latent=prev_latent,
                         key=key, updates=ts.updates + 1)
        return new, metrics
