"""The learning rate's linear decay over a run (``ppo.learning_rate_end``)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.config import ConfigError
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.training.experiment import build_env
from mimic_mjx.training.ppo import PPOTrainer


def _trainer(**ppo):
    d = tiny_config_dict()  # 3 updates x 1 epoch x 2 minibatches = 6 Adam steps
    d["ppo"].update(ppo)
    cfg = config_lib.from_dict(d)
    return PPOTrainer(cfg, build_env(cfg, make_reaching_clips(3, seed=7, num_frames=30)))


def test_rate_falls_linearly_to_its_end_over_the_run():
    tr = _trainer(learning_rate=1e-3, learning_rate_end=1e-4)
    assert tr.total_updates == 3
    np.testing.assert_allclose(float(tr.learning_rate_schedule(0)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(tr.learning_rate_schedule(3)), 5.5e-4, rtol=1e-6)
    np.testing.assert_allclose(float(tr.learning_rate_schedule(6)), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(float(tr.learning_rate_schedule(60)), 1e-4, rtol=1e-6)  # resumed past the end
    state, logged = tr.init(jax.random.PRNGKey(0)), []
    for _ in range(3):
        state, m = tr.update(state)
        logged.append(float(m["policy/learning_rate"]))
    np.testing.assert_allclose(logged, [7e-4, 4e-4, 1e-4], rtol=1e-5)


def test_constant_rate_keeps_the_optimiser_state_of_earlier_checkpoints():
    const, decayed = _trainer(), _trainer(learning_rate_end=1e-4)
    k = jax.random.PRNGKey(0)
    n_const = len(jax.tree.leaves(jax.eval_shape(const.init, k).opt_state))
    n_decay = len(jax.tree.leaves(jax.eval_shape(decayed.init, k).opt_state))
    assert n_decay == n_const + 1  # only the schedule's own step count is added
    state, m = const.update(const.init(k))
    assert float(m["policy/learning_rate"]) == pytest.approx(3e-4)


@pytest.mark.parametrize("end", [-1e-4, 1e-3])
def test_end_outside_zero_to_the_rate_is_named(end):
    with pytest.raises(ConfigError, match=r"ppo.learning_rate_end must be in \[0, ppo.learning_rate"):
        config_lib.from_dict({**tiny_config_dict(), "ppo": {"learning_rate": 3e-4, "learning_rate_end": end}})
