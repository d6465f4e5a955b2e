"""JointLayout, the one velocity function and the quaternion helpers."""

from __future__ import annotations

import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.layout import (
    QPOS_SIZE,
    QVEL_OF_QPOS,
    QVEL_SIZE,
    JointLayout,
    joint_blocks,
    joint_qpos_dims,
    reference_velocities,
)
from mimic_mjx.errors import BindingError, ClipError, KeypointError
from mimic_mjx.quaternions import mat_to_quat, quat_exp, quat_log, quat_log_between, quat_mul, quat_rotate, quat_to_mat
from mimic_mjx.registration.joints import registration_layout

FREE_ROOT = (
    "<mujoco><compiler angle='radian' autolimits='true'/><worldbody>"
    "<body name='torso'><freejoint name='root'/><geom size='.1'/>"
    "<body><joint name='a' type='hinge' range='-1 2'/><geom size='.1'/>"
    "<body><joint name='b' type='hinge'/><geom size='.1'/></body></body></body></worldbody></mujoco>"
)
BALL = (
    "<mujoco><worldbody><body><joint name='hip' type='ball'/><geom size='.1'/>"
    "<body><joint name='knee' type='hinge'/><geom size='.1'/></body></body></worldbody></mujoco>"
)


def _unit(q):
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def test_forelimb_layout_has_no_free_root():
    model = get_body("mouse_forelimb").compile()
    lay = JointLayout.from_model(model)
    assert not lay.free_root
    assert lay.joint_names == ("sh_elv", "sh_extension", "sh_rotation", "elbow_joint")
    assert lay.num_joints == 4 and lay.nq == lay.nv == 4
    np.testing.assert_array_equal(lay.hinge_qpos, [0, 1, 2, 3])
    np.testing.assert_array_equal(lay.hinge_dof, [0, 1, 2, 3])
    np.testing.assert_allclose(lay.lo, model.jnt_range[:, 0])
    np.testing.assert_allclose(lay.hi, model.jnt_range[:, 1])
    assert joint_qpos_dims(model) == (1, 1, 1, 1)


def test_free_root_layout():
    model = mujoco.MjModel.from_xml_string(FREE_ROOT)
    lay = JointLayout.from_model(model)
    assert lay.free_root
    assert lay.joint_names == ("a", "b")
    np.testing.assert_array_equal(lay.hinge_qpos, [7, 8])
    np.testing.assert_array_equal(lay.hinge_dof, [6, 7])
    assert (lay.nq, lay.nv) == (9, 8)
    np.testing.assert_array_equal(lay.lo, [-1.0, -np.inf])
    np.testing.assert_array_equal(lay.hi, [2.0, np.inf])
    assert joint_qpos_dims(model) == (7, 1, 1)
    qadr, vadr = joint_blocks(model, ["b", "root"])
    np.testing.assert_array_equal(qadr, [8, 0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(vadr, [7, 0, 1, 2, 3, 4, 5])
    with pytest.raises(BindingError, match="joint 'c' is not in the body model"):
        joint_blocks(model, ["c"])
    assert all(QVEL_OF_QPOS[QPOS_SIZE[t]] == QVEL_SIZE[t] for t in QPOS_SIZE)


def test_ball_joint_is_rejected():
    model = mujoco.MjModel.from_xml_string(BALL)
    with pytest.raises(BindingError, match=r"1 ball joint"):
        JointLayout.from_model(model)
    with pytest.raises(KeypointError, match="cannot register this body"):  # registration's own error type
        registration_layout(model)
    assert joint_qpos_dims(model) == (4, 1)  # the columns are still known


def test_velocity_of_a_spinning_root_and_a_hinge_ramp():
    model = mujoco.MjModel.from_xml_string(FREE_ROOT)
    lay = JointLayout.from_model(model)
    T, fps, rate = 25, 50.0, 2.0  # 2 rad/s about z
    t = np.arange(T) / fps
    qpos = np.zeros((T, model.nq))
    qpos[:, 0] = 0.3 * t  # 0.3 m/s along x
    qpos[:, 3], qpos[:, 6] = np.cos(rate * t / 2), np.sin(rate * t / 2)
    qpos[:, 7] = -0.5 + 1.5 * t  # hinge ramps: 1.5 rad/s
    qpos[:, 8] = 0.2 - 0.7 * t
    v = reference_velocities(qpos, fps, lay)
    assert v.shape == (T, model.nv) and v.dtype == np.float64
    np.testing.assert_allclose(v[:, 3:6], np.tile([0.0, 0.0, rate], (T, 1)), atol=1e-9)
    np.testing.assert_allclose(v[:, 0:3], np.tile([0.3, 0.0, 0.0], (T, 1)), atol=1e-9)
    np.testing.assert_allclose(v[:, 6], 1.5, rtol=1e-12)
    np.testing.assert_allclose(v[:, 7], -0.7, rtol=1e-12)
    # The same as MuJoCo's own position difference in the middle of the clip.
    expected = np.zeros(model.nv)
    mujoco.mj_differentiatePos(model, expected, 2 / fps, qpos[9], qpos[11])
    np.testing.assert_allclose(v[10], expected, atol=1e-9)


def test_velocity_without_layout_is_a_plain_gradient():
    rng = np.random.default_rng(0)
    qpos = rng.normal(size=(12, 4)).astype(np.float32)
    v = reference_velocities(qpos, 20.0)
    np.testing.assert_array_equal(v, np.gradient(qpos.astype(np.float64), 1 / 20.0, axis=0))
    lay = JointLayout.from_model(get_body("mouse_forelimb").compile())
    np.testing.assert_array_equal(reference_velocities(qpos, 20.0, lay), v)  # hinges only: the same


def test_velocity_input_checks():
    with pytest.raises(ClipError, match=r"from 1 frame\(s\) of qpos; a clip needs at least 2"):
        reference_velocities(np.zeros((1, 3)), 10.0)
    with pytest.raises(ClipError, match="frame rate must be a positive"):
        reference_velocities(np.zeros((5, 3)), 0.0)
    with pytest.raises(ClipError, match="frame rate must be a positive"):
        reference_velocities(np.zeros((5, 3)), float("nan"))
    lay = JointLayout.from_model(mujoco.MjModel.from_xml_string(FREE_ROOT))
    with pytest.raises(ClipError, match=r"expected \(frames, 9\)"):
        reference_velocities(np.zeros((5, 4)), 10.0, lay)


def test_quat_exp_log_round_trip():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(50, 3))
    v *= rng.uniform(0.0, 3.0, (50, 1)) / np.linalg.norm(v, axis=1, keepdims=True)  # angles below pi
    v[0] = 0.0
    v[1] = [1e-8, 0.0, -2e-8]
    q = quat_exp(v)
    assert isinstance(q, np.ndarray) and q.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(quat_log(q), v, atol=1e-9)
    np.testing.assert_allclose(quat_log(-q), v, atol=1e-9)  # q and -q: the same rotation
    # Between two rotations, in the first one's frame: qb = qa * exp(d).
    qa = _unit(rng.normal(size=(50, 4)))
    np.testing.assert_allclose(quat_log_between(qa, quat_mul(qa, q)), v, atol=1e-9)
    # JAX in, JAX out, with the same values.
    qj = quat_exp(jnp.asarray(v, jnp.float32))
    assert not isinstance(qj, np.ndarray)
    np.testing.assert_allclose(np.asarray(qj), q, atol=1e-6)


def test_mat_to_quat_inverts_quat_to_mat():
    rng = np.random.default_rng(2)
    q = _unit(rng.normal(size=(30, 4)))
    R = quat_to_mat(q)
    assert isinstance(R, np.ndarray)
    back = mat_to_quat(R)
    back *= np.sign(np.sum(back * q, axis=1, keepdims=True))  # q and -q: the same rotation
    np.testing.assert_allclose(back, q, atol=1e-12)
    np.testing.assert_allclose(mat_to_quat(np.eye(3)), [1.0, 0.0, 0.0, 0.0], atol=1e-15)
    # quat_rotate agrees with the matrix and with MuJoCo.
    v = rng.normal(size=(30, 3))
    np.testing.assert_allclose(quat_rotate(q, v), np.einsum("tij,tj->ti", R, v), atol=1e-12)
    res = np.zeros(3)
    mujoco.mju_rotVecQuat(res, v[0], q[0])
    np.testing.assert_array_equal(quat_rotate(q[0], v[0]), res)
