"""What inference needs, and nothing of training: the policy object.

A trained controller is the network definition (``IntentionAgent``), its
parameters and the observation normalisers. ``network_outputs`` is the one
forward pass that PPO's loss, the rollout and every analysis share;
``make_inference_fn`` turns it into an action function, deterministic (latent
and action means) or stochastic. ``load_policy(run_dir)`` reads a run's
inference part without building a trainer or any environment.

A recurrent decoder (``agent.decoder: lstm | gru``) carries a state from step
to step: every caller passes the state before the step (zeros at an episode's
first step: ``Policy.initial_state``) and keeps ``extras["decoder_state"]``,
the state after it, for the next step. The MLP's state is empty (size 0), and
may be left out.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import struct

from mimic_mjx.agents.networks import IntentionAgent, check_decoder_params, make_agent, zero_state
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.errors import RunDirError

if TYPE_CHECKING:
    from mimic_mjx.bodies import BodyModel


@struct.dataclass
class PolicyParams:
    """The arrays of a controller: network parameters and observation statistics."""

    params: dict
    ref_stats: RunningStats
    prop_stats: RunningStats


def _state_or_zeros(agent: IntentionAgent, decoder_state, batch_shape):
    if decoder_state is not None:
        return decoder_state
    if agent.state_size:
        # A recurrent decoder fed zeros at every step would silently act as at each episode's start.
        raise ValueError(
            f"the {agent.decoder_kind} decoder needs its state: pass decoder_state (zeros at an episode's first "
            "step, Policy.initial_state) and carry extras['decoder_state'] to the next step"
        )
    return zero_state(agent, batch_shape)


def network_outputs(
    agent: IntentionAgent,
    pp: PolicyParams,
    ref_obs,
    prop_obs,
    eps,
    decoder_state=None,
    record_layers: bool = False,
    latent_offset=None,
) -> dict:
    """Forward pass with latent noise ``eps`` (zeros: the latent mean) from the decoder state ``decoder_state``.

    Returns latent mean / log-variance / sample, action mean / log-std, the
    value and ``decoder_state``, the decoder's state after this step; with
    ``record_layers`` also ``layers``, every hidden layer's activation (and a
    recurrent decoder's new ``decoder_hidden``, ``decoder_cell``).
    ``latent_offset`` is added to the latent the decoder receives (virtual
    experiments: noise injected into the intention). ``decoder_state`` may be
    None only for the (stateless) MLP decoder.
    """
    decoder_state = _state_or_zeros(agent, decoder_state, prop_obs.shape[:-1])
    ref_n, prop_n = pp.ref_stats.normalize(ref_obs), pp.prop_stats.normalize(prop_obs)
    variables = {"params": pp.params}
    mutable = ["intermediates"] if record_layers else False
    enc = agent.apply(variables, ref_n, method=agent.encode, mutable=mutable)
    (z_mean, z_log_var), enc_layers = enc if record_layers else (enc, None)
    latent = z_mean + jnp.exp(0.5 * z_log_var) * eps
    if latent_offset is not None:
        latent = latent + latent_offset
    dec = agent.apply(variables, latent, prop_n, decoder_state, method=agent.decode, mutable=mutable)
    (a_mean, a_log_std, new_state), dec_layers = dec if record_layers else (dec, None)
    out = {
        "latent_mean": z_mean,
        "latent_log_var": z_log_var,
        "latent": latent,
        "action_mean": a_mean,
        "action_log_std": a_log_std,
        "value": agent.apply(variables, ref_n, prop_n, method=agent.value),
        "decoder_state": new_state,
    }
    if record_layers:
        out["layers"] = {**_flatten(enc_layers), **_flatten(dec_layers)}
    return out


def _flatten(mutables) -> dict:
    return {name: v[0] for vals in mutables["intermediates"].values() for name, v in vals.items()}


def make_inference_fn(
    agent: IntentionAgent, deterministic: bool = True, record_layers: bool = False, latent_noise_std: float = 0.0
) -> Callable:
    """``act(pp, ref_obs, prop_obs, key=None, decoder_state=None) -> (action, extras)``, pure and jit-able.

    Deterministic: latent mean, action mean. Stochastic: a latent sample and
    an action sample from the policy's Gaussians. ``latent_noise_std`` > 0
    adds Gaussian noise of that size to the latent (a virtual experiment; then
    ``key`` is needed even when deterministic). ``decoder_state``: the
    decoder's state before this step (required for a recurrent decoder; zeros
    at an episode's first step). ``extras`` holds the latent mean and
    log-variance, the latent used, ``decoder_state`` (the state after this
    step, for the next) and, with ``record_layers``, every hidden layer's activation.
    """

    def act(pp: PolicyParams, ref_obs, prop_obs, key=None, decoder_state=None):
        shape = ref_obs.shape[:-1] + (agent.latent_dim,)
        offset = None
        if latent_noise_std > 0:
            key, k_noise = jax.random.split(key)
            offset = latent_noise_std * jax.random.normal(k_noise, shape)
        if deterministic:
            eps = jnp.zeros(shape)
        else:
            key, k_eps = jax.random.split(key)
            eps = jax.random.normal(k_eps, shape)
        out = network_outputs(agent, pp, ref_obs, prop_obs, eps, decoder_state, record_layers, offset)
        action = out["action_mean"]
        if not deterministic:
            action = action + jnp.exp(out["action_log_std"]) * jax.random.normal(key, action.shape)
        extras = {k: out[k] for k in ("latent_mean", "latent_log_var", "latent", "decoder_state")}
        if record_layers:
            extras["layers"] = out["layers"]
        return action, extras

    return act


@dataclasses.dataclass(frozen=True)
class Policy:
    """A trained controller, ready to act: load it with :func:`load_policy`."""

    agent: IntentionAgent
    params: PolicyParams
    config: ExperimentConfig  # the experiment it was trained in (body, task, network)
    ref_obs_size: int
    prop_obs_size: int
    action_size: int
    update: int  # PPO updates it was trained for
    run_dir: Path | None = None
    # The body it was trained on, as its run folder stores it (training/runbody.py); None: the body
    # ``config.env.body`` names (a run from before bodies were stored, or a policy made in code).
    body: BodyModel | None = None

    def inference_fn(
        self, deterministic: bool = True, record_layers: bool = False, latent_noise_std: float = 0.0
    ) -> Callable:
        return make_inference_fn(self.agent, deterministic, record_layers, latent_noise_std)

    @property
    def decoder_state_size(self) -> int:
        """Length of the decoder state (0: the stateless MLP decoder)."""
        return int(self.agent.state_size)

    def initial_state(self, batch_shape=()) -> jax.Array:
        """The decoder state at an episode's first step (zeros), for ``batch_shape`` observations."""
        return zero_state(self.agent, batch_shape)

    def act(self, ref_obs, prop_obs, key=None, deterministic: bool = True, decoder_state=None):
        """Actions (unbounded; the task squashes them into the control range) and extras.

        ``decoder_state``: a recurrent decoder's state before this step
        (``initial_state`` at an episode's first step); the state after it is
        ``extras["decoder_state"]``.
        """
        if not deterministic and key is None:
            raise ValueError("a stochastic policy needs a PRNG key")
        fn = _jitted_inference_fn(self.agent, deterministic)
        state = None if decoder_state is None else jnp.asarray(decoder_state, jnp.float32)
        key = jax.random.PRNGKey(0) if key is None else key
        return fn(self.params, jnp.asarray(ref_obs), jnp.asarray(prop_obs), key, state)


@functools.cache
def _jitted_inference_fn(agent: IntentionAgent, deterministic: bool) -> Callable:
    # One compiled function per network and mode: a fresh closure per call would recompile every time.
    return jax.jit(make_inference_fn(agent, deterministic))


def make_policy(
    cfg: ExperimentConfig,
    params: PolicyParams,
    ref_obs_size: int,
    prop_obs_size: int,
    action_size: int,
    update: int,
    run_dir: Path | None = None,
    body: BodyModel | None = None,
) -> Policy:
    agent = make_agent(cfg.agent, action_size)
    if params is not None:
        # Parameters of another network (a config.json edited or copied after training) must not meet flax
        # as a shape error deep in the first forward pass.
        what = f"the checkpoint of {run_dir}" if run_dir is not None else "the policy's parameters"
        check_decoder_params(agent, params.params, ref_obs_size, prop_obs_size, what, RunDirError)
    return Policy(
        agent=agent,
        params=params,
        config=cfg,
        ref_obs_size=ref_obs_size,
        prop_obs_size=prop_obs_size,
        action_size=action_size,
        update=update,
        run_dir=run_dir,
        body=body,
    )
