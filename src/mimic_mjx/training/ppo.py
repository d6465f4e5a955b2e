"""PPO over many parallel environments, one jit-compiled update per call.

An update = roll out ``unroll_length`` steps in every environment
(``_rollout``), then learn from that batch (``_learn``): GAE advantages once,
``update_epochs`` passes of shuffled minibatches, and last the batch enters
the observation statistics the next rollout acts with. The latent intention
is reparameterised with noise ``eps`` that is stored with each transition, so
the new and old policies are compared on the same latent draw.

The two run one after the other, on purpose. Stepping the next batch's
physics while XLA learns from the last one was measured and not adopted: JAX
0.10 on the CPU runs a program holding a host callback synchronously, one
program per device at a time, and never overlaps a callback with the other
operations of its program (benchmarks/overlap_probe.py), so it would need a
second XLA device in the process and a learner one update behind (clipping
around the policy that acted, each batch carrying its observation statistics,
the pending batch checkpointed); and on 2 cores both phases keep both cores
busy most of the time, so it could gain at most the ~15% of core time a
sampled update leaves idle, and nothing where other processes use that time.

Non-finite numbers never reach the parameters: an environment whose reward or
observation is not finite ends its episode, such transitions are left out of
the loss, and a minibatch whose loss, gradients or new parameters are not
finite leaves parameters and optimiser state as they were (counted in the
metrics; ``check_nonfinite`` stops a run that keeps skipping).

A recurrent decoder's state is carried through the rollout (zeros at each
episode's first step) and between updates (``TrainState.decoder_state``); each
transition stores the state its action was taken with, so the loss recomputes
the same log-probabilities (one step of the cell, no backpropagation through
time). The MLP decoder's state is empty and changes nothing.

Transfer runs (``training.transfer``) start from a given policy
(``initial_policy``), keep parameter entries fixed (``frozen``) and the
proprioception statistics too (``freeze_prop_stats``).

With a ``mesh`` (``training.parallel``) the environments are split over its
devices; see there for what stays identical across device counts.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mimic_mjx.agents.networks import check_decoder_params, gaussian_log_prob, init_params, make_agent, zero_state
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.agents.policy import PolicyParams, network_outputs
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.environments.imitation import EnvState, ImitationEnv
from mimic_mjx.environments.metrics import aggregate_metrics
from mimic_mjx.environments.starts import empty_failures, failure_cdf, record_failures
from mimic_mjx.errors import MimicError
from mimic_mjx.training import parallel
from mimic_mjx.training.losses import Transition, compute_gae, compute_ppo_loss, kl_weight_at
from mimic_mjx.training.optimizer import adam_count, check_frozen, keep_frozen, make_optimizer

#: Consecutive updates whose every minibatch was skipped before the run stops.
NONFINITE_LIMIT = 5
_AUTO = "auto"


class NonFiniteError(MimicError):
    """Training keeps producing non-finite losses or gradients."""


def check_nonfinite(metrics: dict, limit: int = NONFINITE_LIMIT, learning_rate: float | None = None) -> None:
    """Raise NonFiniteError once ``limit`` consecutive updates were skipped entirely."""
    n = int(metrics["train/nonfinite_updates"])
    if n >= limit:
        lr = f"learning rate {learning_rate:g}" if learning_rate is not None else "learning rate too high"
        raise NonFiniteError(
            f"training produced non-finite losses or gradients in {n} consecutive updates ({lr}?); "
            "lower ppo.learning_rate or check the clips with `mimic clips check`"
        )


@struct.dataclass
class TrainState:
    policy: PolicyParams  # what inference needs (checkpointed so it reads on its own)
    opt_state: optax.OptState
    env_state: EnvState  # batched over environments
    prev_latent: jax.Array  # (num_envs, latent_dim)
    key: jax.Array
    updates: jax.Array  # int32; environment steps = updates * steps_per_update
    # Consecutive updates in which every minibatch was skipped as non-finite
    # (a checkpoint without it restores zero).
    nonfinite_updates: jax.Array = 0
    # Decayed termination counts per (clip, frame) that episodes may start
    # before (environments.starts; empty, and not stored, when no episode does);
    # a checkpoint without it restores an empty memory.
    failures: jax.Array = 0
    # (num_envs, state_size): the recurrent decoder's state after the last step (empty for the MLP decoder,
    # and then not stored; a checkpoint without it restores zeros).
    decoder_state: jax.Array = 0


def _all_finite(tree):
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _rows_finite(x, lead: int):
    """Per leading index (the first ``lead`` axes): whether every entry is finite (True for none, e.g. an
    MLP decoder's empty state)."""
    return jnp.all(jnp.isfinite(x), axis=tuple(range(lead, x.ndim)))


def _where_rows(ok, a, b):
    return jax.tree.map(lambda x, y: jnp.where(ok.reshape(ok.shape + (1,) * (x.ndim - ok.ndim)), x, y), a, b)


class PPOTrainer:
    """Builds the jit-compiled ``init`` and ``update`` functions for one experiment.

    ``mesh``: split the environments over its devices (``parallel.make_mesh``);
    by default all devices when there are several, None for one device.
    ``initial_policy``: applied to the freshly initialised policy in ``init``
    (e.g. pasting a trained decoder in); its result is the initial policy and
    the optimiser starts from it. ``frozen``: top-level parameter entries
    (e.g. ``("decoder",)``) that are never updated (the loss still
    backpropagates through them). ``freeze_prop_stats``: batches do not update
    the proprioception statistics (the reference statistics still do).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        env: ImitationEnv,
        mesh=_AUTO,
        *,
        initial_policy: Callable[[PolicyParams], PolicyParams] | None = None,
        frozen: tuple[str, ...] = (),
        freeze_prop_stats: bool = False,
    ):
        self.cfg = cfg
        self.env = env
        self.agent = make_agent(cfg.agent, env.action_size)
        p = cfg.ppo
        self.steps_per_update = p.num_envs * p.unroll_length
        self.total_updates = max(1, -(-cfg.train.total_steps // self.steps_per_update))
        self.initial_policy = initial_policy
        self.freeze_prop_stats = bool(freeze_prop_stats)
        self.frozen = check_frozen(frozen, self._param_keys()) if frozen else ()
        # A constant rate stays a number: the optimiser state keeps the layout of earlier checkpoints.
        lr = p.learning_rate if p.learning_rate_end is None else self.learning_rate_schedule
        self.optimizer = make_optimizer(p.max_grad_norm, lr, self.frozen)
        self.mesh = parallel.default_mesh() if isinstance(mesh, str) and mesh == _AUTO else mesh
        if self.mesh is not None:
            parallel.check_divisible(p.num_envs, self.mesh.size)
        self._vreset = parallel.shard_envs(jax.vmap(env.reset), self.mesh)
        # The termination memory is kept only where episodes start from it; its
        # CDF is the same for every environment: not split.
        self._use_failures = cfg.env.failure_start_prob > 0
        self._vstep = parallel.shard_envs(jax.vmap(env.step, in_axes=(0, 0, None)), self.mesh, shared_args=1)
        if self.mesh is None:
            self.state_sharding = None
            self.init = jax.jit(self._init)
            self.update = jax.jit(self._update, donate_argnums=0)
        else:
            self.state_sharding = parallel.state_shardings(jax.eval_shape(self._init, jax.random.PRNGKey(0)), self.mesh)
            rep = parallel.replicated(self.mesh)
            self.init = jax.jit(self._init, in_shardings=rep, out_shardings=self.state_sharding)
            self.update = jax.jit(
                self._update,
                in_shardings=(self.state_sharding,),
                out_shardings=(self.state_sharding, rep),
                donate_argnums=0,
            )

    @property
    def uses_failure_memory(self) -> bool:
        """Whether the training state keeps the termination memory (``env.failure_start_prob`` > 0)."""
        return self._use_failures

    def _param_keys(self) -> set[str]:
        env, a = self.env, self.cfg.agent
        shapes = jax.eval_shape(
            lambda: init_params(self.agent, jax.random.PRNGKey(0), env.ref_obs_size, env.prop_obs_size, a.latent_dim)
        )
        return set(shapes)

    def place(self, state: TrainState) -> TrainState:
        """A host state (a restored checkpoint) laid out on the mesh; needed where devices span processes."""
        return state if self.mesh is None else parallel.place(state, self.state_sharding)

    def _init(self, key) -> TrainState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        env, p, a = self.env, self.cfg.ppo, self.cfg.agent
        params = init_params(self.agent, k_params, env.ref_obs_size, env.prop_obs_size, a.latent_dim)
        env_state = self._vreset(parallel.constrain(jax.random.split(k_env, p.num_envs), self.mesh, 0))
        ref_stats = RunningStats.create(env.ref_obs_size).update(env_state.ref_obs)
        prop_stats = RunningStats.create(env.prop_obs_size).update(env_state.prop_obs)
        policy = PolicyParams(params, ref_stats, prop_stats)
        if self.initial_policy is not None:
            policy = self.initial_policy(policy)
            check_decoder_params(self.agent, policy.params, env.ref_obs_size, env.prop_obs_size, "initial_policy")
        return TrainState(
            policy=policy,
            opt_state=self.optimizer.init(policy.params),
            env_state=env_state,
            prev_latent=jnp.zeros((p.num_envs, a.latent_dim)),
            key=k_run,
            updates=jnp.zeros((), jnp.int32),
            nonfinite_updates=jnp.zeros((), jnp.int32),
            failures=empty_failures(*(env.failure_table_shape if self._use_failures else (0, 0))),
            decoder_state=zero_state(self.agent, (p.num_envs,)),
        )

    # -- rollout -----------------------------------------------------------
    def _end_nonfinite(self, nxt: EnvState) -> EnvState:
        """End (and restart) the episodes whose reward or observation is not finite.

        The environment already ends episodes whose physics blew up; this
        catches non-finite numbers from anywhere else (e.g. absurd clips).
        """
        ok = jnp.isfinite(nxt.reward) & _rows_finite(nxt.ref_obs, 1) & _rows_finite(nxt.prop_obs, 1)

        def restart():
            bad = (~ok).astype(jnp.float32)
            fresh = _where_rows(ok, nxt, self._vreset(nxt.key))
            zeroed = {k: jnp.where(ok, jnp.nan_to_num(v), 0.0) for k, v in nxt.metrics.items()}
            zeroed.update({"episode/terminated": jnp.maximum(nxt.metrics["episode/terminated"], bad)})
            zeroed.update({"episode/unstable": jnp.maximum(nxt.metrics["episode/unstable"], bad)})
            # The transition's reward stays non-finite: the update leaves it out and counts it.
            return fresh.replace(
                reward=nxt.reward,
                terminated=jnp.maximum(nxt.terminated, bad),
                truncated=nxt.truncated * (1.0 - bad),
                metrics=zeroed,
            )

        return jax.lax.cond(jnp.all(ok), lambda: nxt, restart)

    def _rollout(self, ts: TrainState, key):
        """(env_state, prev_latent, decoder_state, trajectory, (clip, frame) each transition ended on)."""
        p, ce = self.cfg.ppo, self.cfg.env.control_every
        cdf = failure_cdf(ts.failures) if self._use_failures else None

        def one_step(carry, k):
            env_state, prev_latent, dec_state = carry
            k_eps, k_act = jax.random.split(k)
            eps = jax.random.normal(k_eps, prev_latent.shape)
            first = env_state.steps == 0
            # An episode's decoder starts from zeros (the environment reset it after the last one ended).
            dec_state = jnp.where(first[:, None], 0.0, dec_state)
            out = network_outputs(self.agent, ts.policy, env_state.ref_obs, env_state.prop_obs, eps, dec_state)
            a_mean, a_log_std = out["action_mean"], out["action_log_std"]
            action = a_mean + jnp.exp(a_log_std) * jax.random.normal(k_act, a_mean.shape)
            log_prob = gaussian_log_prob(action, a_mean, a_log_std)
            nxt = self._end_nonfinite(self._vstep(env_state, action, cdf))
            tr = Transition(
                ref_obs=env_state.ref_obs,
                prop_obs=env_state.prop_obs,
                eps=eps,
                prev_latent=prev_latent,
                decoder_state=dec_state,
                first=first,
                action=action,
                log_prob=log_prob,
                reward=nxt.reward,
                terminated=nxt.terminated,
                truncated=nxt.truncated,
                metrics=nxt.metrics,
            )
            latent = jnp.where(jnp.isfinite(out["latent"]), out["latent"], 0.0)
            new_dec = jnp.where(jnp.isfinite(out["decoder_state"]), out["decoder_state"], 0.0)
            carry = tuple(parallel.constrain(x, self.mesh, 0) for x in (latent, new_dec))
            return (nxt, *carry), (tr, (env_state.clip, env_state.frame + ce))

        keys = jax.random.split(key, p.unroll_length)
        start = (ts.env_state, ts.prev_latent, ts.decoder_state)
        (env_state, prev_latent, dec_state), (traj, ends) = jax.lax.scan(one_step, start, keys)
        return env_state, prev_latent, dec_state, traj, ends

    def learning_rate_schedule(self, sgd_steps):
        """Learning rate after ``sgd_steps`` applied minibatch steps (Adam's own count, so it resumes exactly)."""
        p = self.cfg.ppo
        if p.learning_rate_end is None:
            return jnp.asarray(p.learning_rate, jnp.float32)
        done = sgd_steps / (self.total_updates * p.update_epochs * p.num_minibatches)
        return p.learning_rate + (p.learning_rate_end - p.learning_rate) * jnp.clip(done, 0.0, 1.0)

    def kl_weight(self, updates):
        a = self.cfg.agent
        return kl_weight_at(updates.astype(jnp.float32) * self.steps_per_update, a.kl_weight, a.kl_ramp_steps)

    def _update(self, ts: TrainState):
        key, k_roll, k_perm = jax.random.split(ts.key, 3)
        env_state, prev_latent, dec_state, traj, ends = self._rollout(ts, k_roll)
        traj = parallel.constrain(traj, self.mesh, 1)
        learned = self._learn(ts.policy, ts.opt_state, ts.updates, ts.nonfinite_updates, traj, env_state, k_perm)
        policy, opt_state, nonfinite_updates, metrics = learned
        new = ts.replace(
            policy=policy,
            opt_state=opt_state,
            env_state=env_state,
            prev_latent=prev_latent,
            key=key,
            updates=ts.updates + 1,
            nonfinite_updates=nonfinite_updates,
            decoder_state=dec_state,
            failures=record_failures(ts.failures, *ends, traj.terminated) if self._use_failures else ts.failures,
        )
        return new, metrics

    def _learn(self, pol: PolicyParams, opt_state, updates, nonfinite_updates, traj: Transition, last, k_perm):
        """PPO on one batch ``traj`` that ``pol`` acted in; ``last``: the environment state after it (bootstrap).

        Returns (policy, opt_state, nonfinite_updates, metrics); the policy's
        statistics include the batch (the next rollout acts with them).
        """
        p, a = self.cfg.ppo, self.cfg.agent

        # Transitions holding non-finite numbers are zeroed (a NaN times a zero weight is NaN) and left out.
        batch = traj._replace(metrics={})
        valid = jnp.all(jnp.stack([_rows_finite(x, 2) for x in jax.tree.leaves(batch)]), axis=0)
        batch = _where_rows(valid, batch, jax.tree.map(jnp.zeros_like, batch))

        # Values and the loss normalise observations with the statistics the rollout acted with: the
        # stored log-probabilities belong to them. Updating the statistics first made the first
        # minibatch's ratio differ from 1 before any step (approx KL 0.45 on the demo's first update).
        finite = valid

        values = network_outputs(self.agent, pol, batch.ref_obs, batch.prop_obs, batch.eps, batch.decoder_state)
        values = values["value"]
        batch_shape = last.ref_obs.shape[:-1]
        zero_latent = jnp.zeros(batch_shape + (a.latent_dim,))
        # The value reads no decoder state: any state (zeros) gives the bootstrap value.
        bootstrap = network_outputs(
            self.agent, pol, last.ref_obs, last.prop_obs, zero_latent, zero_state(self.agent, batch_shape)
        )["value"]
        bootstrap = jnp.where(jnp.isfinite(bootstrap), bootstrap, 0.0)
        # A left-out transition carries no learning signal and cuts its episode's return, as a truncation does.
        truncated = jnp.maximum(batch.truncated, 1.0 - valid)
        adv, ret = compute_gae(
            batch.reward * p.reward_scaling, values, bootstrap, batch.terminated, truncated, p.discount, p.gae_lambda
        )
        valid = valid & jnp.isfinite(adv) & jnp.isfinite(ret)
        adv, ret = jnp.where(valid, adv, 0.0), jnp.where(valid, ret, 0.0)

        n = self.steps_per_update
        flat = jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), (batch, adv, ret, valid.astype(jnp.float32)))
        kl_weight = self.kl_weight(updates)
        loss_fn = lambda params, mb: compute_ppo_loss(
            params,
            self.agent,
            pol.ref_stats,
            pol.prop_stats,
            *mb[:3],
            clip_epsilon=p.clip_epsilon,
            value_cost=p.value_cost,
            entropy_cost=p.entropy_cost,
            kl_weight=kl_weight,
            ar1_alpha=a.ar1_alpha,
            weights=mb[3],
        )
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def sgd_epoch(carry, k):
            perm = jax.random.permutation(k, n)
            size = n // p.num_minibatches  # explicit: a size-0 decoder state leaves -1 undetermined
            mbs = jax.tree.map(lambda x: x[perm].reshape((p.num_minibatches, size) + x.shape[1:]), flat)
            mbs = parallel.constrain(mbs, self.mesh, 1)

            def sgd_step(c, mb):
                params, opt_state = c
                (loss, info), grads = grad_fn(params, mb)
                updates, new_opt = self.optimizer.update(grads, opt_state, params)
                new_params = keep_frozen(optax.apply_updates(params, updates), params, self.frozen)
                # A non-finite step (loss, gradients, or parameters after an absurd learning rate) is skipped.
                ok = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
                keep = lambda new, old: jax.tree.map(lambda x, y: jnp.where(ok, x, y), new, old)
                return (keep(new_params, params), keep(new_opt, opt_state)), (info, ok)

            return jax.lax.scan(sgd_step, carry, mbs)

        (params, opt_state), (infos, oks) = jax.lax.scan(
            sgd_epoch, (pol.params, opt_state), jax.random.split(k_perm, p.update_epochs)
        )

        used = jnp.sum(oks)
        metrics = {k: jnp.sum(jnp.where(oks, v, 0.0)) / used for k, v in infos.items()}  # NaN when all skipped
        metrics.update(aggregate_metrics(traj.metrics, jnp.maximum(traj.terminated, traj.truncated)))
        metrics["policy/kl_weight"] = kl_weight
        metrics["policy/learning_rate"] = self.learning_rate_schedule(adam_count(opt_state))
        skipped = oks.size - used
        nonfinite_updates = jnp.where(used == 0, nonfinite_updates + 1, 0).astype(jnp.int32)
        metrics["train/skipped_minibatches"] = skipped.astype(jnp.float32)
        metrics["train/nonfinite_updates"] = nonfinite_updates.astype(jnp.float32)
        metrics["train/nonfinite_transitions"] = jnp.sum(~valid).astype(jnp.float32)
        # The batch enters the statistics after learning: the next rollout acts with them. Frozen
        # proprioception statistics keep a reused decoder's inputs normalised as in its training.
        prop_stats = pol.prop_stats if self.freeze_prop_stats else pol.prop_stats.update(batch.prop_obs, finite)
        new_stats = dict(ref_stats=pol.ref_stats.update(batch.ref_obs, finite), prop_stats=prop_stats)
        return pol.replace(params=params, **new_stats), opt_state, nonfinite_updates, metrics
