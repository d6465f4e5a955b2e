"""The forelimb model: structure, names, physical sizes, agreement with the registered arm."""

from __future__ import annotations

import h5py
import mujoco
import numpy as np
import pytest

from conftest import MOUSE_ARM, mouse_arm_files
from mimic_mjx.bodies import available_bodies, get_body
from mimic_mjx.bodies.forelimb import JOINT_RANGES_DEG, JOINTS, MUSCLES
from mimic_mjx.errors import BodyError


@pytest.fixture(scope="module")
def model():
    return get_body("mouse_forelimb").compile()


def test_registry_lists_forelimb_and_rejects_unknown():
    assert "mouse_forelimb" in available_bodies()
    with pytest.raises(BodyError, match="unknown body 'cat'.*mouse_forelimb"):
        get_body("cat")


def test_joints_ranges_and_muscles(model):
    assert [model.joint(j).name for j in range(model.njnt)] == list(JOINTS)
    for j, name in enumerate(JOINTS):
        np.testing.assert_allclose(np.rad2deg(model.jnt_range[j]), JOINT_RANGES_DEG[name], atol=1e-9)
    assert [model.actuator(a).name for a in range(model.nu)] == list(MUSCLES)
    assert np.all(model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_MUSCLE))
    assert np.all(model.actuator_trntype == int(mujoco.mjtTrn.mjTRN_TENDON))
    forces = model.actuator_gainprm[:, 2]
    assert forces.min() >= 0.2 and forces.max() <= 1.2
    np.testing.assert_array_equal(model.actuator_ctrlrange, np.tile([0.0, 1.0], (9, 1)))
    assert np.all(model.actuator_lengthrange[:, 1] > model.actuator_lengthrange[:, 0])
    assert 0.8e-3 < model.body_mass.sum() < 1.2e-3  # about 1 g


def test_segment_lengths(model):
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    pos = {n: data.xpos[model.body(n).id] for n in ("humerus", "elbow", "wrist_body")}
    assert np.linalg.norm(pos["elbow"] - pos["humerus"]) == pytest.approx(6.8e-3, abs=0.1e-3)
    assert np.linalg.norm(pos["wrist_body"] - pos["elbow"]) == pytest.approx(7.0e-3, abs=0.4e-3)


@pytest.mark.needs_data
def test_kinematics_reproduce_registered_arm(model):
    data = mujoco.MjData(model)
    worst = 0.0
    for path in mouse_arm_files()[::6]:
        with h5py.File(path) as f:
            qpos, xpos = f["qpos"][()], f["xpos"][()]
            names = [n.decode() for n in f["names_xpos"][()]]
        for t in range(0, len(qpos), 9):
            data.qpos[:] = qpos[t]
            mujoco.mj_kinematics(model, data)
            for k, n in enumerate(names):
                worst = max(worst, np.abs(data.xpos[model.body(n).id] - xpos[t, k]).max())
    assert worst < 1e-6  # below float32 resolution of the files (metres)


def _poses_used():
    """Poses of the real reaches (when present) and of the built-in synthetic reaches."""
    from mimic_mjx.data.synthetic import make_reaching_clips

    poses = [c.qpos[::3] for c in make_reaching_clips(16, seed=0)]
    for path in sorted(MOUSE_ARM.glob("trial*_ik.h5")):
        with h5py.File(path) as f:
            poses.append(f["qpos"][::3])
    return np.concatenate(poses)


def test_every_joint_can_be_pulled_both_ways(model):
    """At every pose the reaches visit, each joint has muscles of both moment-arm signs."""
    data = mujoco.MjData(model)
    for q in _poses_used():
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        moment = np.zeros((model.nu, model.nv))
        mujoco.mju_sparse2dense(
            moment, data.actuator_moment, data.moment_rownnz, data.moment_rowadr, data.moment_colind
        )
        assert np.all((moment > 1e-5).any(axis=0)), q
        assert np.all((moment < -1e-5).any(axis=0)), q


def test_muscles_move_the_arm(model):
    """Each muscle, fully excited alone, moves the arm differently from gravity alone."""

    def settle(ctrl):
        data = mujoco.MjData(model)
        data.qpos[:] = [-0.3, -0.5, 0.3, 0.5]
        data.ctrl[:] = ctrl
        for _ in range(50):
            mujoco.mj_step(model, data)
        assert np.all(np.isfinite(data.qpos))
        return data.qpos.copy()

    passive = settle(np.zeros(model.nu))
    for a in range(model.nu):
        ctrl = np.zeros(model.nu)
        ctrl[a] = 1.0
        assert np.abs(settle(ctrl) - passive).max() > np.deg2rad(2), MUSCLES[a]


@pytest.mark.needs_data
def test_muscles_shorten_fast_enough_for_the_reaches(model):
    """Fibre shortening speeds the reaches need stay well inside the force-velocity curve."""
    data = mujoco.MjData(model)
    from mimic_mjx.data.clips import read_clip_files
    from mimic_mjx.data.synthetic import make_reaching_clips

    clips = make_reaching_clips(8, seed=0) + read_clip_files(mouse_arm_files())
    L0 = np.diff(model.actuator_lengthrange, axis=1)[:, 0] / np.diff(model.actuator_gainprm[:, :2], axis=1)[:, 0]
    vmax = model.actuator_gainprm[:, 6]
    speeds = []
    for c in clips:
        for t in range(0, c.num_frames, 2):
            data.qpos[:], data.qvel[:] = c.qpos[t], c.qvel[t]
            mujoco.mj_forward(model, data)
            speeds.append(np.abs(data.actuator_velocity) / L0)
    assert np.all(np.percentile(speeds, 95, axis=0) < 0.5 * vmax)


def test_muscles_reach_every_torque_direction(model):
    """At every pose the reaches visit, the muscles can push the joints in any combination of
    directions: at least 50 uN m in every direction (the muscles reach several times that
    along most directions; the muscle paths of earlier releases reached nothing at all in some
    directions at a quarter of these poses, so references needing those torques were lost).
    """
    from mimic_mjx.bodies.strength import muscle_torques, weakest_torque

    data = mujoco.MjData(model)
    torques = []
    for q in _poses_used():
        data.qpos[:], data.qvel[:] = q, 0.0
        torques.append(muscle_torques(model, data)[0])
    weakest = weakest_torque(np.array(torques))
    assert weakest.min() > 50e-6, np.rad2deg(_poses_used()[np.argmin(weakest)])
