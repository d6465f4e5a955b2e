"""PPO's ratio starts at exactly 1: the loss sees observations as the rollout acted on them.

The stored log-probabilities were computed with the observation statistics of
the rollout. If the statistics absorb the batch before the loss, the first
minibatch's policy already differs from the one that acted (approx KL above 2 in
the demo, on updates whose batch moved a near-constant observation's mean by
many of its tiny standard deviations).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.training.experiment import build_env
from mimic_mjx.training.losses import compute_ppo_loss
from mimic_mjx.training.ppo import PPOTrainer


@pytest.fixture(scope="module")
def trainer():
    d = tiny_config_dict()
    d["env"] = {"backend": "native"}
    # One epoch of one minibatch: the logged ratio is the one before any gradient step.
    d["ppo"].update(update_epochs=1, num_minibatches=1)
    cfg = config_lib.from_dict(d)
    return PPOTrainer(cfg, build_env(cfg, make_reaching_clips(3, seed=7, num_frames=30)), mesh=None)


def test_first_minibatch_ratio_is_one_on_every_update(trainer):
    state = trainer.init(jax.random.PRNGKey(0))
    before = float(state.policy.prop_stats.count)  # read now: update donates the state
    for _ in range(4):
        counts = float(state.policy.prop_stats.count)
        state, m = trainer.update(state)
        assert float(m["policy/approx_kl"]) < 1e-6
        assert float(m["policy/clip_fraction"]) == 0.0
        # The batch still enters the statistics (after learning), for the next rollout.
        assert float(state.policy.prop_stats.count) == counts + trainer.steps_per_update
    assert float(state.policy.prop_stats.count) > before


def test_clip_fraction_counts_ratios_outside_the_clip_range(trainer):
    """Shifted statistics move the ratios: the fraction is the share outside [0.8, 1.2]."""
    state = trainer.init(jax.random.PRNGKey(1))
    traj = jax.jit(trainer._rollout)(state, jax.random.PRNGKey(2))[3]
    n = trainer.steps_per_update
    batch = jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), traj._replace(metrics={}))
    pol = state.policy
    kwargs = dict(clip_epsilon=0.2, value_cost=0.5, entropy_cost=0.0, kl_weight=0.0, ar1_alpha=0.0)
    adv = jnp.linspace(-1.0, 1.0, n)
    args = (pol.params, trainer.agent, pol.ref_stats)
    _, same = compute_ppo_loss(*args, pol.prop_stats, batch, adv, adv, **kwargs)
    assert float(same["policy/clip_fraction"]) == 0.0 and float(same["policy/approx_kl"]) < 1e-6
    shifted = RunningStats(pol.prop_stats.count, pol.prop_stats.mean + 3 * pol.prop_stats.std, pol.prop_stats.m2)
    _, moved = compute_ppo_loss(*args, shifted, batch, adv, adv, **kwargs)
    assert 0.0 < float(moved["policy/clip_fraction"]) <= 1.0
    assert float(moved["policy/approx_kl"]) > 0.0
    assert np.isfinite(float(moved["policy/approx_kl"]))


def test_median_leaves_out_weighted_rows():
    from mimic_mjx.training.losses import _median

    x = jnp.array([0.1, 0.2, 50.0, 0.3, 1e6])
    assert float(_median(x)) == pytest.approx(0.3)
    # The left-out rows (weight 0) would otherwise move it: one outlier left in, one left out.
    assert float(_median(x, jnp.array([1.0, 1.0, 1.0, 1.0, 0.0]))) == pytest.approx(0.25)
