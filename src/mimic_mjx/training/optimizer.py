"""PPO's optimiser, and parameters it must leave alone (``PPOTrainer(frozen=...)``).

Adam with global-norm gradient clipping. Frozen parameters (top-level entries
of the network parameters, e.g. ``("decoder",)`` for a transfer run that
reuses a trained decoder) are split off with ``optax.multi_transform``: they
get zero updates and no Adam moments, and the clipping norm is that of the
trained parameters' gradients alone (a frozen decoder's gradients must not
shrink the encoder's steps). The loss still backpropagates through them.
"""

from __future__ import annotations

import jax
import optax

from mimic_mjx.errors import ConfigError

_TRAIN, _FROZEN = "train", "frozen"


def make_optimizer(max_grad_norm: float, learning_rate, frozen: tuple[str, ...] = ()):
    """Clip by global norm then Adam; with ``frozen``, those top-level parameter entries are never updated.

    Without ``frozen`` the optimiser (and so its state's layout in checkpoints) is what it always was.
    """
    base = optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))
    if not frozen:
        return base
    frozen = frozenset(frozen)

    def labels(params):
        return {k: jax.tree.map(lambda _, k=k: _FROZEN if k in frozen else _TRAIN, v) for k, v in params.items()}

    return optax.multi_transform({_TRAIN: base, _FROZEN: optax.set_to_zero()}, labels)


def adam_count(opt_state):
    """Adam's own step count (applied minibatch steps), whichever optimiser ``make_optimizer`` built."""
    if hasattr(opt_state, "inner_states"):  # multi_transform: the trained partition's (masked) chain
        opt_state = opt_state.inner_states[_TRAIN].inner_state
    return opt_state[1][0].count  # chain(clip, adam): Adam's state


def check_frozen(frozen, param_keys) -> tuple[str, ...]:
    """``frozen`` as a tuple of top-level parameter names; a ConfigError for a name the network lacks."""
    frozen = (frozen,) if isinstance(frozen, str) else tuple(frozen)
    unknown = [k for k in frozen if k not in param_keys]
    if unknown:
        raise ConfigError(
            f"cannot freeze {', '.join(map(repr, unknown))}: the network's top-level parameters are "
            f"{', '.join(sorted(param_keys))}"
        )
    return frozen


def keep_frozen(new_params: dict, old_params: dict, frozen: tuple[str, ...]) -> dict:
    """``new_params`` with the frozen entries exactly as they were (x + 0.0 turns -0.0 into +0.0)."""
    return {**new_params, **{k: old_params[k] for k in frozen}} if frozen else new_params
