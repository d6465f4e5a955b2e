"""Encoder-decoder "intention" network with a Gaussian latent bottleneck.

The encoder sees only the reference look-ahead and proposes a latent intention;
the decoder turns that intention plus proprioception into muscle excitations,
as in the published imitation controllers. A separate value network sees both.
Each hidden layer's activation is recorded with ``sow`` so evaluation can read
the network's activity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    layers: Sequence[int]
    out: int
    name_prefix: str = "layer"
    final_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.layers):
            x = nn.swish(nn.Dense(width, kernel_init=nn.initializers.lecun_uniform(), name=f"dense_{i}")(x))
            self.sow("intermediates", f"{self.name_prefix}_{i}", x)
        return nn.Dense(
            self.out, kernel_init=nn.initializers.variance_scaling(self.final_scale, "fan_in", "uniform"), name="out"
        )(x)


class IntentionAgent(nn.Module):
    encoder_layers: Sequence[int]
    decoder_layers: Sequence[int]
    value_layers: Sequence[int]
    latent_dim: int
    action_size: int
    init_log_std: float

    def setup(self):
        self.encoder = MLP(self.encoder_layers, 2 * self.latent_dim, "encoder")
        self.decoder = MLP(self.decoder_layers, self.action_size, "decoder", final_scale=0.01)
        self.value_net = MLP(self.value_layers, 1, "value")
        self.log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_size,))

    def encode(self, ref_obs):
        out = self.encoder(ref_obs)
        mean, log_var = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_var, -10.0, 4.0)

    def decode(self, latent, prop_obs):
        mean = self.decoder(jnp.concatenate([latent, prop_obs], axis=-1))
        return mean, jnp.broadcast_to(self.log_std, mean.shape)

    def value(self, ref_obs, prop_obs):
        return self.value_net(jnp.concatenate([ref_obs, prop_obs], axis=-1))[..., 0]

    def __call__(self, ref_obs, prop_obs, eps):
        """Full forward pass with latent noise ``eps``; used to initialise parameters."""
        mean, log_var = self.encode(ref_obs)
        latent = mean + jnp.exp(0.5 * log_var) * eps
        return self.decode(latent, prop_obs), self.value(ref_obs, prop_obs)


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
    )


def init_params(agent: IntentionAgent, key, ref_size: int, prop_size: int, latent_dim: int):
    return agent.init(key, jnp.zeros((1, ref_size)), jnp.zeros((1, prop_size)), jnp.zeros((1, latent_dim)))["params"]
