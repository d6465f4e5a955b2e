"""Running observation normalisation (mean and variance merged batch by batch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    count: jax.Array
    mean: jax.Array
    m2: jax.Array  # sum of squared deviations

    @classmethod
    def create(cls, size: int) -> RunningStats:
        return cls(count=jnp.zeros(()), mean=jnp.zeros(size), m2=jnp.zeros(size))

    def update(self, batch: jax.Array, valid: jax.Array | None = None) -> RunningStats:
        """Merge a batch (..., size) with Chan et al.'s parallel formula.

        ``valid`` (the batch's leading shape, bool): merge only those rows
        (e.g. transitions holding non-finite numbers are left out); while every
        row is valid the result is the plain merge's, to the bit.
        """
        if valid is not None:
            return jax.lax.cond(jnp.all(valid), lambda: self.update(batch), lambda: self._update_masked(batch, valid))
        batch = batch.reshape(-1, batch.shape[-1])
        n = batch.shape[0]
        b_mean = jnp.mean(batch, axis=0)
        b_m2 = jnp.sum(jnp.square(batch - b_mean), axis=0)
        total = self.count + n
        delta = b_mean - self.mean
        mean = self.mean + delta * n / total
        m2 = self.m2 + b_m2 + jnp.square(delta) * self.count * n / total
        return RunningStats(count=total, mean=mean, m2=m2)

    def _update_masked(self, batch: jax.Array, valid: jax.Array) -> RunningStats:
        x = batch.reshape(-1, batch.shape[-1])
        w = valid.reshape(-1, 1).astype(x.dtype)
        x = jnp.where(w > 0, x, 0.0)
        n = jnp.sum(w)
        b_mean = jnp.sum(x * w, axis=0) / jnp.maximum(n, 1.0)
        b_m2 = jnp.sum(jnp.square(x - b_mean) * w, axis=0)
        total = self.count + n
        delta = b_mean - self.mean
        mean = self.mean + delta * n / jnp.maximum(total, 1.0)
        m2 = self.m2 + b_m2 + jnp.square(delta) * self.count * n / jnp.maximum(total, 1.0)
        return RunningStats(count=total, mean=mean, m2=m2)

    @property
    def std(self) -> jax.Array:
        var = self.m2 / jnp.maximum(self.count, 1.0)
        return jnp.sqrt(jnp.maximum(var, 1e-8))

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        return jnp.clip((x - self.mean) / self.std, -clip, clip)
