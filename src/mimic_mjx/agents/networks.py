"""Encoder-decoder "intention" network with a Gaussian latent bottleneck.

The encoder sees only the reference look-ahead and proposes a latent intention;
the decoder turns that intention plus proprioception into muscle excitations,
as in the published imitation controllers. A separate value network sees both.
Each hidden layer's activation is recorded with ``sow`` so evaluation can read
the network's activity.

The decoder is an MLP (``agent.decoder: mlp``), or a recurrent cell (``lstm``,
``gru``) reading [latent, proprioception] whose output the ``decoder_layers``
MLP maps to the action. Its state is one array per environment,
``(..., state_size)``: ``[cell, hidden]`` for an LSTM, ``hidden`` for a GRU,
empty (size 0) for the MLP, zeros at an episode's first step. Every decoder
parameter, the cell's included, lives under ``params["decoder"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mimic_mjx.errors import MimicError

#: flax cells of the recurrent decoders, by ``agent.decoder``.
CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}
# Parameter names that tell the cells apart in a stored decoder (flax's own names).
_CELL_MARKS = {"lstm": "ii", "gru": "ir"}


def _dense_stack(module: nn.Module, x, layers, out: int, prefix: str, final_scale: float):
    """Swish layers then a linear output, created in (and sown by) ``module``: their parameters are its own."""
    for i, width in enumerate(layers):
        x = nn.swish(nn.Dense(width, kernel_init=nn.initializers.lecun_uniform(), name=f"dense_{i}")(x))
        module.sow("intermediates", f"{prefix}_{i}", x)
    return nn.Dense(out, kernel_init=nn.initializers.variance_scaling(final_scale, "fan_in", "uniform"), name="out")(x)


class MLP(nn.Module):
    layers: Sequence[int]
    out: int
    name_prefix: str = "layer"
    final_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        return _dense_stack(self, x, self.layers, self.out, self.name_prefix, self.final_scale)


def state_size(kind: str, size: int) -> int:
    """Length of the decoder state of a decoder ``kind`` with ``size`` units (0: stateless)."""
    return {"mlp": 0, "gru": size, "lstm": 2 * size}[kind]


class RecurrentDecoder(nn.Module):
    """One step of a recurrent cell, then the decoder MLP on its output; records ``decoder_hidden`` (and
    ``decoder_cell``) as layers."""

    kind: str  # "lstm" | "gru"
    size: int
    layers: Sequence[int]
    out: int
    final_scale: float = 0.01

    @nn.compact
    def __call__(self, x, state):
        cell = CELLS[self.kind](self.size, name="cell")
        carry = tuple(jnp.split(state, 2, axis=-1)) if self.kind == "lstm" else state  # flax's (c, h) / h
        carry, hidden = cell(carry, x)
        self.sow("intermediates", "decoder_hidden", hidden)
        if self.kind == "lstm":
            self.sow("intermediates", "decoder_cell", carry[0])
            new_state = jnp.concatenate(carry, axis=-1)
        else:
            new_state = carry
        return _dense_stack(self, hidden, self.layers, self.out, "decoder", self.final_scale), new_state


class IntentionAgent(nn.Module):
    encoder_layers: Sequence[int]
    decoder_layers: Sequence[int]
    value_layers: Sequence[int]
    latent_dim: int
    action_size: int
    init_log_std: float
    decoder_kind: str = "mlp"
    recurrent_size: int = 0

    @property
    def state_size(self) -> int:
        return state_size(self.decoder_kind, self.recurrent_size)

    def setup(self):
        self.encoder = MLP(self.encoder_layers, 2 * self.latent_dim, "encoder")
        if self.decoder_kind == "mlp":
            self.decoder = MLP(self.decoder_layers, self.action_size, "decoder", final_scale=0.01)
        else:
            self.decoder = RecurrentDecoder(
                self.decoder_kind, self.recurrent_size, self.decoder_layers, self.action_size
            )
        self.value_net = MLP(self.value_layers, 1, "value")
        self.log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_size,))

    def encode(self, ref_obs):
        out = self.encoder(ref_obs)
        mean, log_var = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_var, -10.0, 4.0)

    def decode(self, latent, prop_obs, state):
        """(action mean, action log-std, the decoder state after this step) from the state before it."""
        x = jnp.concatenate([latent, prop_obs], axis=-1)
        if self.decoder_kind == "mlp":
            mean = self.decoder(x)  # stateless: the (empty) state passes through
        else:
            mean, state = self.decoder(x, state)
        return mean, jnp.broadcast_to(self.log_std, mean.shape), state

    def value(self, ref_obs, prop_obs):
        return self.value_net(jnp.concatenate([ref_obs, prop_obs], axis=-1))[..., 0]

    def __call__(self, ref_obs, prop_obs, eps):
        """Full forward pass with latent noise ``eps``; used to initialise parameters."""
        mean, log_var = self.encode(ref_obs)
        latent = mean + jnp.exp(0.5 * log_var) * eps
        state = jnp.zeros(prop_obs.shape[:-1] + (self.state_size,))
        return self.decode(latent, prop_obs, state), self.value(ref_obs, prop_obs)


def gaussian_log_prob(x, mean, log_std):
    return jnp.sum(-0.5 * jnp.square((x - mean) / jnp.exp(log_std)) - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def gaussian_entropy(log_std):
    return jnp.sum(log_std + 0.5 * math.log(2 * math.pi * math.e), axis=-1)


def kl_to_ar1_prior(mean, log_var, prev_latent, first, alpha):
    """KL( N(mean, exp(log_var)) || AR(1) prior ), summed over latent dimensions.

    The prior is N(alpha * z_{t-1}, 1 - alpha^2) within an episode and N(0, 1)
    at its first step, so its stationary distribution is N(0, 1).
    """
    prior_mean = jnp.where(first[..., None], 0.0, alpha * prev_latent)
    prior_var = jnp.where(first[..., None], 1.0, 1.0 - alpha**2)
    var = jnp.exp(log_var)
    kl = 0.5 * (jnp.log(prior_var) - log_var + (var + jnp.square(mean - prior_mean)) / prior_var - 1.0)
    return jnp.sum(kl, axis=-1)


def make_agent(agent_cfg, action_size: int) -> IntentionAgent:
    return IntentionAgent(
        encoder_layers=tuple(agent_cfg.encoder_layers),
        decoder_layers=tuple(agent_cfg.decoder_layers),
        value_layers=tuple(agent_cfg.value_layers),
        latent_dim=agent_cfg.latent_dim,
        action_size=action_size,
        init_log_std=agent_cfg.init_log_std,
        decoder_kind=agent_cfg.decoder,
        recurrent_size=agent_cfg.recurrent_size if agent_cfg.decoder != "mlp" else 0,
    )


def init_params(agent: IntentionAgent, key, ref_size: int, prop_size: int, latent_dim: int):
    return agent.init(key, jnp.zeros((1, ref_size)), jnp.zeros((1, prop_size)), jnp.zeros((1, latent_dim)))["params"]


def zero_state(agent: IntentionAgent, batch_shape=()) -> jax.Array:
    """The decoder state at an episode's first step: zeros of shape ``batch_shape + (state_size,)``."""
    return jnp.zeros(tuple(batch_shape) + (agent.state_size,), jnp.float32)


def describe_decoder(decoder_params) -> str:
    """What a ``params["decoder"]`` tree is, in words: e.g. ``lstm(128) -> MLP [256, 256]``."""
    dense = sorted((k for k in decoder_params if k.startswith("dense_")), key=lambda k: int(k.split("_")[1]))
    mlp = f"MLP {[int(np.shape(decoder_params[k]['kernel'])[1]) for k in dense]}"
    cell = decoder_params.get("cell")
    if cell is None:
        return mlp
    kind = next((k for k, mark in _CELL_MARKS.items() if mark in cell), "recurrent")
    units = int(np.shape(next(iter(jax.tree.leaves(cell))))[-1])
    return f"{kind}({units}) -> {mlp}"


def param_shapes(tree) -> dict:
    """Tree path -> shape of a parameter tree (arrays, ShapeDtypeStructs or checkpoint metadata)."""
    return {jax.tree_util.keystr(p): tuple(np.shape(x)) for p, x in _leaves(tree)}


def decoder_mismatch(have, want) -> str | None:
    """None when two ``params["decoder"]`` trees have the same shapes, else what each is, in words."""
    if param_shapes(have) == param_shapes(want):
        return None
    return f"holds a decoder {describe_decoder(have)}, but the config builds {describe_decoder(want)}"


def check_decoder_params(
    agent: IntentionAgent, params: dict, ref_size: int, prop_size: int, what: str, error=MimicError
) -> None:
    """An ``error`` naming both shapes when ``params`` (of ``what``, e.g. a checkpoint) are not the network
    ``agent`` builds, instead of a traceback deep inside flax."""
    want = jax.eval_shape(lambda: init_params(agent, jax.random.PRNGKey(0), ref_size, prop_size, agent.latent_dim))
    if param_shapes(want) == param_shapes(params):
        return
    mismatch = decoder_mismatch(params["decoder"], want["decoder"]) if "decoder" in params else None
    if mismatch:
        raise error(f"{what} {mismatch}; use the agent settings it was trained with")
    diff = sorted(set(param_shapes(want).items()) ^ set(param_shapes(params).items()))[:4]
    raise error(
        f"{what} does not hold the network the config builds (parameters differing: "
        f"{', '.join(f'{k} {v}' for k, v in diff)}); use the agent settings it was trained with"
    )


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]
