"""What every environment the PPO trainer runs shares, built on its ``reset`` and ``step_no_reset``.

The imitation task and the tasks without references define how an episode
starts and how one control step goes; observation sizes, metric names and the
auto-resetting ``step`` follow from those two the same way for all of them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


class AutoResetEnv:
    """Mixin: sizes read off a traced ``reset`` and a ``step`` that starts a new episode when one ends."""

    @functools.cached_property
    def state_shape(self):
        """Shapes and dtypes of one environment's state, traced (not run) from ``reset``.

        Observation sizes and metric names come from here, i.e. from the
        functions that build them, never from a second formula.
        """
        return jax.eval_shape(self.reset, jax.random.PRNGKey(0))

    @property
    def ref_obs_size(self) -> int:
        return self.state_shape.ref_obs.shape[-1]

    @property
    def prop_obs_size(self) -> int:
        return self.state_shape.prop_obs.shape[-1]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(self.state_shape.metrics)

    def step(self, state, action, failure_cdf=None):
        """Advance one control step, starting a new episode if this one ended (see ``reset``)."""
        nxt = self.step_no_reset(state, action)
        done = (nxt.terminated + nxt.truncated) > 0
        fresh = self.reset(nxt.key, failure_cdf)
        # Keep the transition's outcome; take the state and observation of the new episode.
        merged = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, nxt)
        return merged.replace(
            reward=nxt.reward,
            terminated=nxt.terminated,
            truncated=nxt.truncated,
            metrics=nxt.metrics,
            key=jnp.where(done, fresh.key, jax.random.split(nxt.key)[0]),
        )
