"""Non-finite numbers in a batch end the episode, stay out of the loss, and never reach the parameters."""

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
from mimic_mjx.training.ppo import NonFiniteError, PPOTrainer, check_nonfinite


@pytest.fixture(scope="module")
def clips():
    return make_reaching_clips(3, seed=7, num_frames=30)


def _trainer(clips, **ppo):
    d = tiny_config_dict()
    d["env"] = {"backend": "native"}  # compiles in seconds
    d["ppo"].update(ppo)
    cfg = config_lib.from_dict(d)
    return PPOTrainer(cfg, build_env(cfg, clips), mesh=None)


def _poison_env0(trainer):
    """Environment 0 returns a NaN reward and observation on the second step of each of its episodes."""
    step = trainer._vstep

    def vstep(state, action, *shared):
        nxt = step(state, action, *shared)
        hit = (jnp.arange(state.steps.shape[0]) == 0) & (state.steps == 1)
        nan = lambda x: jnp.where(hit.reshape(hit.shape + (1,) * (x.ndim - 1)), jnp.nan, x)
        return nxt.replace(reward=nan(nxt.reward), ref_obs=nan(nxt.ref_obs), prop_obs=nan(nxt.prop_obs))

    trainer._vstep = vstep  # read when the rollout is traced


def _finite(tree):
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def test_nonfinite_transition_ends_the_episode_and_is_left_out(clips):
    tr = _trainer(clips)
    _poison_env0(tr)
    state = tr.init(jax.random.PRNGKey(0))
    traj = jax.jit(tr._rollout)(state, jax.random.PRNGKey(1))[3]
    bad = ~np.isfinite(np.asarray(traj.reward))
    assert bad[:, 0].any() and not bad[:, 1:].any()  # only environment 0 was poisoned
    t = int(np.flatnonzero(bad[:, 0])[0])
    assert traj.terminated[t, 0] == 1.0 and traj.metrics["episode/unstable"][t, 0] == 1.0
    if t + 1 < traj.first.shape[0]:
        assert bool(traj.first[t + 1, 0])  # a fresh episode, from a finite observation
        assert np.isfinite(np.asarray(traj.ref_obs[t + 1, 0])).all()
    assert _finite(traj.metrics)  # the logs stay readable

    records = []
    for _ in range(3):
        state, m = tr.update(state)
        records.append({k: float(v) for k, v in m.items()})
    assert _finite(state.policy) and _finite(state.opt_state) and _finite(state.env_state.ref_obs)
    assert sum(r["train/nonfinite_transitions"] for r in records) > 0
    assert all(r["train/skipped_minibatches"] == 0 and r["train/nonfinite_updates"] == 0 for r in records)
    assert all(np.isfinite(r["loss/policy"]) and np.isfinite(r["loss/value"]) for r in records)
    assert max(r["episode/unstable"] for r in records) > 0


def test_clean_run_counts_nothing(clips):
    tr = _trainer(clips)
    state = tr.init(jax.random.PRNGKey(0))
    state, m = tr.update(state)
    assert float(m["train/nonfinite_transitions"]) == 0 and float(m["train/skipped_minibatches"]) == 0
    assert float(m["episode/unstable"]) == 0


def test_absurd_learning_rate_skips_updates_then_stops(clips):
    tr = _trainer(clips, learning_rate=float("inf"))
    state = tr.init(jax.random.PRNGKey(0))
    before = jax.device_get(state.policy.params)
    n_mb = tr.cfg.ppo.num_minibatches * tr.cfg.ppo.update_epochs
    state, m = tr.update(state)
    assert float(m["train/skipped_minibatches"]) == n_mb and float(m["train/nonfinite_updates"]) == 1
    check_nonfinite(m, limit=2, learning_rate=tr.cfg.ppo.learning_rate)  # not yet
    state, m = tr.update(state)
    assert float(m["train/nonfinite_updates"]) == 2
    with pytest.raises(
        NonFiniteError, match=r"in 2 consecutive updates \(learning rate inf\?\); lower ppo.learning_rate"
    ):
        check_nonfinite(m, limit=2, learning_rate=tr.cfg.ppo.learning_rate)
    after = jax.device_get(state.policy.params)
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(x, y)  # every step was skipped: nothing changed
    assert _finite(state.opt_state)


def test_masked_stats_update_ignores_left_out_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5, 3)).astype(np.float32)
    valid = np.ones((6, 5), bool)
    valid[2, 1] = valid[4, 4] = False
    poisoned = x.copy()
    poisoned[~valid] = np.nan
    s0 = RunningStats.create(3).update(jnp.asarray(rng.normal(size=(4, 3)), jnp.float32))
    got = s0.update(jnp.asarray(poisoned), jnp.asarray(valid))
    want = s0.update(jnp.asarray(x[valid]))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    none = s0.update(jnp.asarray(poisoned), jnp.zeros((6, 5), bool))
    for a, b in zip(jax.tree.leaves(none), jax.tree.leaves(s0), strict=True):
        np.testing.assert_allclose(a, b)
