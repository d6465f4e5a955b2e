"""Reward, observation, latent KL, GAE and normaliser against hand-computed values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mimic_mjx.agents.networks import gaussian_log_prob, kl_to_ar1_prior
from mimic_mjx.agents.normalizer import RunningStats
from mimic_mjx.config import AngleKernel, AngularSpeedKernel, Cost, DistanceKernel, RewardConfig
from mimic_mjx.environments.imitation import reference_observation
from mimic_mjx.environments.rewards import Errors, StepQuantities, reward_terms
from mimic_mjx.quaternions import heading_matrix, quat_angle, quat_conj, quat_mul, quat_to_mat
from mimic_mjx.training.losses import clipped_surrogate_loss, compute_gae, kl_weight_at


def _errors(joint, ee, root_pos=0.0, root_angle=0.0, joint_vel=None, body=None):
    joint = jnp.asarray(joint)
    return Errors(
        root_pos=jnp.asarray(root_pos),
        root_angle=jnp.asarray(root_angle),
        joint=joint,
        joint_vel=jnp.zeros_like(joint) if joint_vel is None else jnp.asarray(joint_vel),
        body=jnp.zeros(1) if body is None else jnp.asarray(body),
        ee=jnp.asarray(ee),
    )


def tracking_reward(cfg, err, ctrl, prev_ctrl, power, has_root=True):
    return sum(reward_terms(cfg, StepQuantities(err, ctrl, prev_ctrl, power), has_root).values())


def test_tracking_reward_by_hand():
    cfg = RewardConfig(
        joint=AngleKernel(1.0, 0.1),
        end_effector=DistanceKernel(0.5, 0.001),
        ctrl=Cost(0.2),
        ctrl_change=Cost(0.1),
        energy=Cost(2.0),
    )
    err = _errors([0.1, -0.1, 0.0, 0.2], [0.0005])  # mean square 0.015 rad^2; 0.5 mm
    ctrl = jnp.array([0.5, 0.0, 1.0])
    prev = jnp.array([0.5, 0.5, 0.0])
    power = jnp.array([0.01, -0.02, 0.0])  # W
    expected = 1.0 * math.exp(-0.015 / 0.01) + 0.5 * math.exp(-0.25) - 0.2 * (1.25 / 3) - 0.1 * (1.25 / 3) - 2.0 * 0.03
    assert float(tracking_reward(cfg, err, ctrl, prev, power)) == pytest.approx(expected, rel=1e-5)


def test_every_kernel_by_hand():
    cfg = RewardConfig(
        joint=AngleKernel(0.0),
        end_effector=DistanceKernel(0.0),
        ctrl=Cost(0.0),
        ctrl_change=Cost(0.0),
        energy=Cost(0.0),
        root_pos=DistanceKernel(1.0, 0.02),
        root_angle=AngleKernel(2.0, 0.5),
        joint_vel=AngularSpeedKernel(0.5, 2.0),
        body=DistanceKernel(3.0, 0.01),
    )
    err = _errors([0.0], [0.0], root_pos=0.01, root_angle=0.25, joint_vel=[1.0, 3.0], body=[0.01, 0.0])
    z = jnp.zeros(2)
    expected = math.exp(-0.25) + 2.0 * math.exp(-0.25) + 0.5 * math.exp(-5.0 / 4.0) + 3.0 * math.exp(-0.5)
    assert float(tracking_reward(cfg, err, z, z, z)) == pytest.approx(expected, rel=1e-5)
    # A fixed-base body has no root: its root kernels do not count.
    no_root = 0.5 * math.exp(-5.0 / 4.0) + 3.0 * math.exp(-0.5)
    assert float(tracking_reward(cfg, err, z, z, z, has_root=False)) == pytest.approx(no_root, rel=1e-5)


def test_perfect_tracking_without_effort_earns_the_weights():
    cfg = RewardConfig(
        joint=AngleKernel(1.0),
        end_effector=DistanceKernel(2.0),
        body=DistanceKernel(0.5),
        root_pos=DistanceKernel(0.25),
    )
    z = jnp.zeros(3)
    assert float(tracking_reward(cfg, _errors(jnp.zeros(4), jnp.zeros(1)), z, z, z)) == pytest.approx(3.75)


def test_reference_observation_by_hand():
    ref_q = jnp.array([[0.1, 0.2], [0.3, 0.4]])  # H=2 frames, 2 joints
    ref_ee = jnp.array([[[0.001, 0.0, 0.0]], [[0.002, 0.0, 0.001]]])  # (H, 1, 3) m
    q = jnp.array([0.1, 0.0])
    ee = jnp.array([[0.001, 0.0, 0.0]])
    obs = reference_observation(ref_q, ref_ee, q, ee)
    # Frame by frame: joint differences (rad), then body differences (mm).
    np.testing.assert_allclose(obs, [0.0, 0.2, 0.0, 0.0, 0.0, 0.2, 0.4, 1.0, 0.0, 1.0], atol=1e-6)


def test_reference_observation_in_the_heading_frame():
    # The body faces +y (yaw 90 deg); a reference 1 cm ahead of it is 10 mm along local x.
    yaw = math.pi / 2
    root = jnp.array([1.0, 2.0, 0.05, math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    ref_root = root[None].at[0, 1].add(0.01)
    heading = heading_matrix(root[3:7])
    obs = reference_observation(
        jnp.zeros((1, 0)),
        jnp.zeros((1, 0, 3)),
        jnp.zeros(0),
        jnp.zeros((0, 3)),
        heading=heading,
        ref_root=ref_root,
        root=root,
    )
    np.testing.assert_allclose(obs, [10.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], atol=1e-4)


def test_quaternion_helpers():
    a = jnp.array([math.cos(0.3), math.sin(0.3), 0.0, 0.0])  # 0.6 rad about x
    b = jnp.array([math.cos(0.2), 0.0, 0.0, math.sin(0.2)])  # 0.4 rad about z
    np.testing.assert_allclose(quat_angle(quat_mul(quat_conj(a), a)), 0.0, atol=1e-6)
    assert float(quat_angle(a)) == pytest.approx(0.6, rel=1e-5)
    assert float(quat_angle(-a)) == pytest.approx(0.6, rel=1e-5)  # q and -q: the same rotation
    np.testing.assert_allclose(quat_to_mat(quat_mul(a, b)), quat_to_mat(a) @ quat_to_mat(b), atol=1e-6)
    np.testing.assert_allclose(heading_matrix(b), quat_to_mat(b), atol=1e-6)  # pure yaw: its own heading


def test_kl_to_ar1_prior_by_hand():
    alpha = 0.8
    mean, log_var = jnp.array([[0.5]]), jnp.log(jnp.array([[0.25]]))
    prev = jnp.array([[1.0]])
    # Within an episode: prior N(0.8, 0.36).
    kl = 0.5 * (math.log(0.36 / 0.25) + (0.25 + 0.3**2) / 0.36 - 1)
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
    adv, ret = compute_gae(
        jnp.asarray(r)[:, None],
        jnp.asarray(v)[:, None],
        jnp.array([boot]),
        jnp.asarray(term)[:, None],
        jnp.asarray(trunc)[:, None],
        0.9,
        0.8,
    )
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
    adv, _ = compute_gae(
        jnp.asarray(r)[:, None],
        jnp.asarray(v)[:, None],
        jnp.array([0.5]),
        jnp.zeros((3, 1)),
        jnp.asarray(trunc)[:, None],
        0.9,
        0.95,
    )
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


def test_clipped_surrogate_by_hand():
    # eps = 0.2. Positive advantages are clipped above 1.2, negative ones below 0.8.
    ratio = jnp.array([1.5, 0.5, 1.1, 0.7, 1.5])
    adv = jnp.array([2.0, 1.0, -1.0, -3.0, -1.0])
    # min(r A, clip(r) A) per sample:
    #   1.5*2=3.0 vs 1.2*2=2.4 -> 2.4      0.5*1=0.5 vs 0.8*1=0.8 -> 0.5
    #   1.1*-1=-1.1 vs 1.1*-1 -> -1.1      0.7*-3=-2.1 vs 0.8*-3=-2.4 -> -2.4
    #   1.5*-1=-1.5 vs 1.2*-1=-1.2 -> -1.5 (a worse ratio is never clipped away)
    expected = -np.mean([2.4, 0.5, -1.1, -2.4, -1.5])
    assert float(clipped_surrogate_loss(ratio, adv, 0.2)) == pytest.approx(expected, rel=1e-6)
    # At ratio 1 the loss is minus the mean advantage, whatever the clip range.
    assert float(clipped_surrogate_loss(jnp.ones(5), adv, 0.01)) == pytest.approx(-float(adv.mean()), rel=1e-6)


def test_kl_weight_ramps_linearly():
    assert float(kl_weight_at(0.0, 1e-3, 100)) == 0.0
    assert float(kl_weight_at(50.0, 1e-3, 100)) == pytest.approx(5e-4)
    assert float(kl_weight_at(500.0, 1e-3, 100)) == pytest.approx(1e-3)
    assert float(kl_weight_at(0.0, 1e-3, 0)) == pytest.approx(1e-3)  # no ramp


def test_every_config_reward_term_has_a_function_and_back():
    from mimic_mjx.environments.rewards import TERMS

    assert set(RewardConfig().terms()) == set(TERMS)
    err = _errors([0.1, 0.2], [0.001])
    z = jnp.zeros(2)
    terms = reward_terms(RewardConfig(), StepQuantities(err, z + 0.5, z, z + 1.0), has_root=False)
    assert set(terms) == set(TERMS)
    assert float(terms["root_pos"]) == 0.0 and float(terms["ctrl"]) == pytest.approx(-0.02 * 0.25)
    assert float(terms["energy"]) == pytest.approx(-0.1 * 2.0)
