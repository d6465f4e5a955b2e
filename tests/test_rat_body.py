"""The rat body (dm_control's rodent) and the per-body keypoint mappings."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import available_bodies, get_body, rat
from mimic_mjx.bodies.keypoint_maps import KEYPOINT_MAPS, ROOT_KEYPOINT, TRUNK_KEYPOINTS, get_keypoint_map
from mimic_mjx.bodies.mjcf import FLOOR
from mimic_mjx.bodies.skeletons import RAT23_NAMES
from mimic_mjx.errors import BodyError

SKELETON = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rodent" / "rat23_skeleton.mat"


@pytest.fixture(scope="module")
def model():
    return get_body("rat").compile()


@pytest.fixture(scope="module")
def raw_model():
    return rat.load_raw_spec().compile()


def _body_names(m):
    return {m.body(b).name for b in range(m.nbody)}


def test_rat_is_registered_with_names_that_exist(model):
    assert "rat" in available_bodies()
    body = get_body("rat")
    names = _body_names(model)
    assert set(body.end_effectors) <= names
    assert body.keypoint_bodies == body.keypoint_map.keypoint_bodies() and body.keypoint_map.body == "rat"
    assert get_body("mouse_forelimb").keypoint_bodies == get_keypoint_map("mouse_forelimb").keypoint_bodies()
    assert get_body("rat").compile() is model  # compiled once, then cached


def test_rat_structure(model):
    assert (model.nq, model.nv, model.nu) == (74, 73, 38)
    types = model.jnt_type
    assert types[0] == mujoco.mjtJoint.mjJNT_FREE
    assert model.joint(0).name == rat.ROOT_JOINT
    assert model.body(model.jnt_bodyid[0]).name == rat.ROOT_BODY
    assert np.sum(types == mujoco.mjtJoint.mjJNT_FREE) == 1
    assert np.sum(types == mujoco.mjtJoint.mjJNT_HINGE) == rat.N_HINGES == 67
    floor = model.geom(FLOOR)
    assert floor.type[0] == mujoco.mjtGeom.mjGEOM_PLANE and model.geom_bodyid[floor.id] == 0
    assert model.geom_pos[floor.id][2] == 0.0


def test_raw_dm_control_rodent_has_no_root_and_no_floor(raw_model):
    assert (raw_model.nq, raw_model.nv, raw_model.nu) == (67, 67, 38)
    assert np.all(raw_model.jnt_type == mujoco.mjtJoint.mjJNT_HINGE)
    assert not np.any(raw_model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE)


def test_joint_ranges_and_actuators_preserved(model, raw_model):
    for j in range(raw_model.njnt):
        name = raw_model.joint(j).name
        np.testing.assert_array_equal(model.joint(name).range, raw_model.jnt_range[j], err_msg=name)
        assert model.jnt_limited[model.joint(name).id] == raw_model.jnt_limited[j]
    for a in range(raw_model.nu):
        name = raw_model.actuator(a).name
        act = model.actuator(name)
        np.testing.assert_array_equal(act.gainprm, raw_model.actuator_gainprm[a])
        np.testing.assert_array_equal(act.biasprm, raw_model.actuator_biasprm[a])
        np.testing.assert_array_equal(act.forcerange, raw_model.actuator_forcerange[a])


def test_scale_scales_lengths_and_masses():
    base = rat.build_spec(1.0).compile()
    s = 0.8
    small = rat.build_spec(s).compile()

    def shin(m):  # knee site to ankle site, in the zero pose
        d = mujoco.MjData(m)
        mujoco.mj_kinematics(m, d)
        return np.linalg.norm(d.site_xpos[m.site("knee_L").id] - d.site_xpos[m.site("ankle_L").id])

    assert shin(base) == pytest.approx(0.0394, abs=1e-3)  # dm_control's rodent as authored
    assert shin(small) == pytest.approx(s * shin(base), rel=1e-9)
    np.testing.assert_allclose(small.geom_size, base.geom_size * np.where(base.geom_type[:, None] == 0, 1, s))
    np.testing.assert_allclose(small.jnt_pos, base.jnt_pos * s)
    assert small.body_subtreemass[1] == pytest.approx(s**3 * base.body_subtreemass[1], rel=1e-9)
    np.testing.assert_allclose(small.body_inertia, s**5 * base.body_inertia, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(small.jnt_range, base.jnt_range)
    np.testing.assert_allclose(small.skin_vert, base.skin_vert * s, rtol=1e-6)
    assert 0.33 < base.body_subtreemass[1] < 0.35  # kg
    assert get_body("rat").description.startswith("Rat: dm_control's rodent scaled by 0.9")
    with pytest.raises(BodyError, match="positive"):
        rat.build_spec(0.0)


def _rat23_names() -> list[str]:
    if SKELETON.is_file():
        from scipy.io import loadmat

        names = [str(np.squeeze(n)) for n in np.ravel(loadmat(SKELETON)["joint_names"])]
        assert names == list(RAT23_NAMES)  # the shipped list matches the real file
        return names
    return list(RAT23_NAMES)


def test_rat23_keypoints_all_mapped_to_existing_bodies(model):
    names = _rat23_names()
    kmap = get_body("rat").keypoint_map
    assert list(kmap.names) == names and len(names) == 23
    bodies = _body_names(model)
    for kp, (body, offset) in kmap.keypoints.items():
        assert body in bodies, (kp, body)
        assert len(offset) == 3 and np.all(np.abs(offset) < 0.05)
    assert set(kmap.trunk_keypoints) <= set(names) and kmap.root_keypoint in kmap.trunk_keypoints
    # Offsets are for the rat as registered: stac-mjx's (unscaled) offset times the scale.
    assert kmap.offsets()["KneeL"] == pytest.approx(
        tuple(0.9 * c for c in (0.01542264534586861, 0.01747899805865108, -0.02570440890978101))
    )
    # ... which puts KneeL on the knee joint centre (lower_leg_L's origin).
    np.testing.assert_allclose(kmap.offsets()["KneeL"], model.body("lower_leg_L").pos, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(kmap.offsets()["AnkleL"]) / 0.9, rat.build_spec(1.0).compile().body("foot_L").pos, atol=1e-12
    )


@pytest.mark.needs_data
def test_real_skeleton_names_when_present():
    if not SKELETON.is_file():
        pytest.skip(f"real data not found at {SKELETON} (expected ../shared/data beside the project)")
    assert set(_rat23_names()) == set(get_body("rat").keypoint_map.names)


def test_forelimb_map():
    kmap = get_keypoint_map("mouse_forelimb")
    assert kmap.keypoint_bodies() == {"Shoulder": "scapula", "Elbow": "elbow", "Wrist": "wrist_body"}
    assert all(off == (0.0, 0.0, 0.0) for off in kmap.offsets().values())
    assert kmap.root_keypoint == "Shoulder" and kmap.trunk_keypoints == ("Shoulder",)
    bodies = _body_names(get_body("mouse_forelimb").compile())
    assert set(kmap.keypoint_bodies().values()) <= bodies
    assert set(KEYPOINT_MAPS) == set(TRUNK_KEYPOINTS) == set(ROOT_KEYPOINT)


def test_unknown_body_has_no_keypoint_map():
    with pytest.raises(BodyError, match="bodies built in code with one: mouse_forelimb; body files"):
        get_keypoint_map("cat")


def test_rat_steps_without_nan(model):
    data = mujoco.MjData(model)
    mujoco.mj_resetData(model, data)
    for _ in range(100):
        mujoco.mj_step(model, data)
    assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))
    assert data.qpos[2] > 0.02  # the torso is still above the floor
