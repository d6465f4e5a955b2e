"""Reward, observation, latent KL, GAE and normaliser against hand-computed values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mimic_mjx.agents.networks import gaussian_log_prob, kl_to_ar1_prior
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.config import EnvConfig
from mimic_mjx.environments.imitation import reference_observation, tracking_reward
from mimic_mjx.training.ppo import compute_gae


def test_tracking_reward_by_hand():
    cfg = EnvConfig(joint_scale_rad=0.1, ee_scale_m=0.001, joint_weight=1.0, ee_weight=0.5,
                    ctrl_cost=0.2, ctrl_change_cost=0.1, energy_cost=2.0)
    q_err = jnp.array([0.1, -0.1, 0.0, 0.2])  # mean square 0.015 rad^2
    ee_err = jnp.array([0.0005])  # 0.5 mm
    ctrl = jnp.array([0.5, 0.0, 1.0])
    prev = jnp.array([0.5, 0.5, 0.0])
    power = jnp.array([0.01, -0.02, 0.0])  # W
    expected = (1.0 * math.exp(-0.015 / 0.01) + 0.5 * math.exp(-0.25)
                - 0.2 * (1.25 / 3) - 0.1 * (1.25 / 3) - 2.0 * 0.03)
    assert float(tracking_reward(cfg, q_err, ee_err, ctrl, prev, power)) == pytest.approx(expected, rel=1e-5)


def test_perfect_tracking_without_effort_earns_the_weights():
    cfg = EnvConfig(joint_weight=1.0, ee_weight=2.0)
    z = jnp.zeros(4)
    assert float(tracking_reward(cfg, z, jnp.zeros(1), jnp.zeros(3), jnp.zeros(3), jnp.zeros(3))) == pytest.approx(3.0)


def test_reference_observation_by_hand():
    ref_q = jnp.array([[0.1, 0.2], [0.3, 0.4]])  # H=2 frames, 2 joints
    ref_ee = jnp.array([[[0.001, 0.0, 0.0]], [[0.002, 0.0, 0.001]]])  # (H, 1, 3) m
    q = jnp.array([0.1, 0.0])
    ee = jnp.array([[0.001, 0.0, 0.0]])
    obs = reference_observation(ref_q, ref_ee, q, ee)
    np.testing.assert_allclose(obs, [0.0, 0.2, 0.2, 0.4, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0], atol=1e-6)


def test_kl_to_ar1_prior_by_hand():
    alpha = 0.8
    mean, log_var = jnp.array([[0.5]]), jnp.log(jnp.array([[0.25]]))
    prev = jnp.array([[1.0]])
    # Within an episode: prior N(0.8, 0.36).
    kl = 0.5 * (math.log(0.36 / 0.25) + (0.25 + 0.3 ** 2) / 0.36 - 1)
    assert float(kl_to_ar1_prior(mean, log_var, prev, jnp.array([False]), alpha)[0]) == pytest.approx(kl, rel=1e-5)
    # First step: prior N(0, 1).
    kl0 = 0.5 * (math.log(1 / 0.25) + 0.25 + 0.25 - 1)
    assert float(kl_to_ar1_prior(mean, log_var, prev, jnp.array([True]), alpha)[0]) == pytest.approx(kl0, rel=1e-5)


def test_gaussian_log_prob():
    x, m, ls = jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0]), jnp.log(jnp.array([1.0, 2.0]))
    expected = (-0.5 - 0.5 * math.log(2 * math.pi)) + (-math.log(2.0) - 0.5 * math.log(2 * math.pi))
    assert float(gaussian_log_prob(x, m, ls)) == pytest.approx(expected, rel=1e-6)


def _gae_loop(r, v, boot, term, trunc, g, lam):
    T = len(r)
    nxt = np.append(v[1:], boot)
    adv = np.zeros(T)
    acc = 0.0
    for t in reversed(range(T)):
        delta = (r[t] + g * (1 - term[t]) * nxt[t] - v[t]) * (1 - trunc[t])
        acc = delta + g * lam * (1 - max(term[t], trunc[t])) * acc
        adv[t] = acc
    return adv


def test_gae_matches_reference_loop_and_hand_values():
    r = np.array([1.0, 0.5, 2.0, 1.0])
    v = np.array([0.2, 0.4, 0.1, 0.3])
    term = np.array([0.0, 0.0, 1.0, 0.0])
    trunc = np.array([0.0, 0.0, 0.0, 0.0])
    boot = 0.7
    adv, ret = compute_gae(jnp.asarray(r)[:, None], jnp.asarray(v)[:, None], jnp.array([boot]),
                           jnp.asarray(term)[:, None], jnp.asarray(trunc)[:, None], 0.9, 0.8)
    # By hand for the last two steps: step 3 bootstraps, step 2 terminates.
    d3 = 1.0 + 0.9 * 0.7 - 0.3
    d2 = 2.0 - 0.1
    assert float(adv[3, 0]) == pytest.approx(d3, rel=1e-6)
    assert float(adv[2, 0]) == pytest.approx(d2, rel=1e-6)
    np.testing.assert_allclose(adv[:, 0], _gae_loop(r, v, boot, term, trunc, 0.9, 0.8), rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], adv[:, 0] + v, rtol=1e-6)


def test_gae_truncation_gives_no_signal_and_cuts_the_trace():
    r = np.array([1.0, 1.0, 1.0])
    v = np.array([0.5, 0.5, 0.5])
    trunc = np.array([0.0, 1.0, 0.0])
    adv, _ = compute_gae(jnp.asarray(r)[:, None], jnp.asarray(v)[:, None], jnp.array([0.5]),
                         jnp.zeros((3, 1)), jnp.asarray(trunc)[:, None], 0.9, 0.95)
    assert float(adv[1, 0]) == 0.0
    assert float(adv[0, 0]) == pytest.approx(1.0 + 0.9 * 0.5 - 0.5, rel=1e-6)  # no trace through step 1


def test_running_stats_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3, 2, (100, 4)), rng.normal(-1, 0.5, (37, 4))
    s = RunningStats.create(4).update(jnp.asarray(a)).update(jnp.asarray(b))
    both = np.concatenate([a, b])
    np.testing.assert_allclose(s.mean, both.mean(0), rtol=1e-4)
    np.testing.assert_allclose(s.std, both.std(0), rtol=1e-4)
    z = s.normalize(jnp.asarray(both))
    np.testing.assert_allclose(np.asarray(z).mean(0), 0, atol=1e-4)
