"""Muscle strength at a pose: the torques a body's muscles reach, and static optimisation."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.strength import muscle_torques, static_optimisation, weakest_torque


def _sampled_weakest(t, n=200_000, seed=0):
    """Brute force: the smallest support value over many random directions (an upper bound)."""
    u = np.random.default_rng(seed).normal(size=(n, t.shape[0]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return np.maximum(u @ t, 0).sum(-1).min()


def test_weakest_torque_of_simple_muscle_sets():
    # A pair pulling each way per joint: the reachable set is the square [-1, 1]^2, in-radius 1.
    square = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 2.0, -1.0]])
    assert weakest_torque(square) == pytest.approx(1.0)
    # Nothing pulls toward -x: some directions cannot be produced at all.
    one_sided = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -1.0]])
    assert weakest_torque(one_sided) == 0.0
    # Too few muscles to span the joints.
    assert weakest_torque(np.array([[1.0], [1.0]])) == 0.0


def test_weakest_torque_matches_brute_force_in_4d():
    rng = np.random.default_rng(3)
    for _ in range(3):
        t = rng.normal(size=(4, 9))
        exact = weakest_torque(t)
        sampled = _sampled_weakest(t)
        assert exact <= sampled + 1e-9  # sampling can only miss the weakest direction
        assert exact == pytest.approx(sampled, rel=0.1)
    batch = rng.normal(size=(2, 3, 4, 9))
    assert weakest_torque(batch).shape == (2, 3)


def test_static_optimisation_finds_what_the_muscles_can_do():
    model = get_body("mouse_forelimb").compile()
    data = mujoco.MjData(model)
    q = np.tile([[-0.5, -0.6, 0.3, 0.8]], (3, 1))
    v = np.zeros_like(q)
    acc = np.zeros_like(q)
    acc[1] = [50.0, -50.0, 50.0, -50.0]  # a brisk but ordinary acceleration (rad/s^2)
    acc[2] = [5e6, -5e6, 5e6, -5e6]  # far beyond any muscle
    acts, left = static_optimisation(model, q, v, acc)
    assert left[0] < 1e-3 and left[1] < 1e-3 and left[2] > 0.5
    assert np.all((acts >= 0) & (acts <= 1))
    # The activations found produce the torque inverse dynamics asks for.
    data.qpos[:], data.qvel[:], data.qacc[:] = q[1], v[1], acc[1]
    mujoco.mj_inverse(model, data)
    need = data.qfrc_inverse.copy()
    torques, passive = muscle_torques(model, data)
    np.testing.assert_allclose(torques @ acts[1] + passive, need, atol=1e-3 * np.abs(need).max())


def test_only_muscle_driven_fixed_base_bodies_are_judged():
    from mimic_mjx.bodies.strength import actuated_fixed_base

    assert actuated_fixed_base(get_body("mouse_forelimb").compile())
    assert not actuated_fixed_base(get_body("rat").compile())  # a free root, moved by contacts
    motor = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><joint name="h" type="hinge"/><geom size="0.1"/></body></worldbody>'
        '<actuator><motor joint="h" ctrlrange="-1 1"/></actuator></mujoco>'
    )
    assert not actuated_fixed_base(motor)  # signed controls: [0, 1] activations would understate it
