"""The built-in stick insect (bodies/stick_insect*.py, files/stick_insect.*) and its walking clips (data/walking.py)."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies import stick_insect as si
from mimic_mjx.bodies import stick_insect_anatomy as anat
from mimic_mjx.data import walking
from mimic_mjx.errors import ClipError

TIP_RADIUS = anat.RADII["tarsus"]


@pytest.fixture(scope="module")
def body():
    return get_body("stick_insect")


@pytest.fixture(scope="module")
def model(body):
    return body.compile_trainable()


# -- the model -----------------------------------------------------------------------------------


def test_leg_segments_and_masses_follow_the_table(body):
    m = body.compile()
    for leg in anat.LEGS:
        n = int(leg[1])
        lengths = anat.LENGTHS[n]
        # Each segment's child sits at the segment's length along its x axis.
        for parent, child in (("coxa", "femur"), ("femur", "tibia"), ("tibia", "tarsus")):
            np.testing.assert_allclose(m.body(f"{child}_{leg}").pos, [lengths[parent], 0, 0], atol=1e-9)
        np.testing.assert_allclose(m.site(f"tip_{leg}").pos, [lengths["tarsus"], 0, 0], atol=1e-9)
        for seg in anat.SEGMENT_NAMES:
            assert m.body(f"{seg}_{leg}").mass[0] == pytest.approx(anat.segment_mass(seg, n), rel=1e-4)
        leg_mass = sum(m.body(f"{s}_{leg}").mass[0] for s in anat.SEGMENT_NAMES)
        assert leg_mass == pytest.approx(anat.leg_mass(n), rel=1e-4) and 10e-6 < leg_mass < 20e-6
    # Table values (mm, mg) of the docstring.
    assert anat.LENGTHS[1]["femur"] == 0.015 and anat.LENGTHS[2]["tibia"] == 0.011
    assert anat.leg_mass(1) == pytest.approx(16.9e-6, abs=0.05e-6)
    total = float(m.body_subtreemass[0])
    assert total == pytest.approx(anat.total_mass(), rel=1e-4) and 0.8e-3 <= total <= 1.0e-3  # 0.8-1 g
    d = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d)
    mujoco.mj_comPos(m, d)
    com_x = d.subtree_com[m.body("thorax").id][0] - d.xpos[m.body("thorax").id][0]
    assert -0.012 < com_x < 0.0  # between the middle (x = 0) and hind (-12 mm) coxae
    for b in range(1, m.nbody):  # every moving body compiles with a real mass and inertia
        assert m.body_mass[b] > 0 and m.body_inertia[b].min() > 1e-15
    rest = dict(zip(body.keypoint_map.names, _markers(m, body, m.qpos0)[0], strict=True))
    length = rest["head_tip"][0] - rest["abdomen_tip"][0]
    assert length == pytest.approx(anat.BODY_LENGTH, abs=1e-6) and 0.07 <= length <= 0.08


def test_joints_are_18_hinges_with_the_literature_ranges(body):
    m = body.compile()
    assert m.nq == 25 and m.nv == 24 and m.joint(0).name == "root" and m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
    names = [m.joint(j).name for j in range(1, m.njnt)]
    assert names == [f"{j}_{leg}" for leg in anat.LEGS for j in anat.JOINTS]
    for leg in anat.LEGS:
        stand = anat.standing_angles(leg)
        zero = {"tc": stand.protraction, "ctr": stand.elevation, "fti": stand.femur_tibia}
        for j in anat.JOINTS:
            lo, hi = m.joint(f"{j}_{leg}").range
            assert lo < 0 < hi  # the standing posture is inside
            anatomical = np.degrees(np.array([lo, hi]) + zero[j])
            np.testing.assert_allclose(anatomical, anat.RANGES_DEG[int(leg[1])][j], atol=1e-3)


def test_18_position_servos_strong_enough_to_stand(model):
    assert model.nu == 18
    weight = anat.body_weight()
    for a in range(model.nu):
        joint = model.actuator_trnid[a, 0]
        assert model.actuator(a).name == model.joint(joint).name
        assert model.actuator_biastype[a] == mujoco.mjtBias.mjBIAS_AFFINE and model.actuator_biasprm[a, 1] < 0
        np.testing.assert_allclose(model.actuator_ctrlrange[a], model.jnt_range[joint])
        # A leg alone can hold a third of the insect at 2 cm (a tripod stance leg's lever).
        assert model.actuator_forcerange[a, 1] > weight / 3 * 0.02


def test_contacts_are_tarsi_against_the_floor_only(body, model):
    for m in (body.compile(), model):
        colliding = {m.geom(g).name for g in range(m.ngeom) if m.geom_contype[g] or m.geom_conaffinity[g]}
        assert colliding == {"floor", *(f"tarsus_{leg}" for leg in anat.LEGS)}
    d = mujoco.MjData(model)
    d.qpos[:] = model.qpos0
    d.qpos[2] -= 0.0002  # pressed into the floor
    mujoco.mj_forward(model, d)
    pairs = {tuple(sorted((model.geom(c.geom1).name, model.geom(c.geom2).name))) for c in d.contact[: d.ncon]}
    assert pairs == {("floor", f"tarsus_{leg}") for leg in anat.LEGS}


def _tips(m, d):
    return np.array([d.site_xpos[m.site(f"tip_{leg}").id] for leg in anat.LEGS])


def test_spawn_pose_stands_with_tarsi_touching_the_floor(model):
    d = mujoco.MjData(model)
    mujoco.mj_kinematics(model, d)
    np.testing.assert_allclose(_tips(model, d)[:, 2], TIP_RADIUS, atol=1e-7)  # capsule ends just touch
    assert model.qpos0[2] == pytest.approx(anat.STANDING_HEIGHT + 0.0005)
    np.testing.assert_allclose(model.qpos0[7:], 0.0)


def _assert_stood(qpos0, qpos, tips0, tips):
    assert qpos[2] > qpos0[2] - 0.0015, f"root sank {1e3 * (qpos0[2] - qpos[2]):.2f} mm"
    tilt = 2 * math.degrees(math.acos(min(1.0, abs(float(qpos[3])))))
    assert tilt < 3.0, f"thorax tilted {tilt:.2f} deg"
    assert np.abs(tips - tips0).max() < 0.0015, "tarsi moved"


def test_standing_insect_is_stable_for_1s_passive_native(model):
    d = mujoco.MjData(model)
    mujoco.mj_forward(model, d)
    tips0 = _tips(model, d)
    for _ in range(int(round(1.0 / model.opt.timestep))):
        mujoco.mj_step(model, d)  # zero controls: the servos hold the standing zero pose
    _assert_stood(model.qpos0, d.qpos, tips0, _tips(model, d))
    assert np.abs(d.qvel).max() < 1e-3 and d.ncon >= 6


def test_standing_insect_is_stable_for_1s_passive_mjx(model):
    import jax
    from mujoco import mjx

    mx = mjx.put_model(model)
    steps = int(round(1.0 / model.opt.timestep))
    dx = jax.jit(lambda d: jax.lax.fori_loop(0, steps, lambda _, d: mjx.step(mx, d), d))(mjx.make_data(mx))
    d = mujoco.MjData(model)
    mujoco.mj_forward(model, d)
    tips0 = _tips(model, d)
    d.qpos[:] = np.asarray(dx.qpos)
    mujoco.mj_kinematics(model, d)
    _assert_stood(model.qpos0, d.qpos, tips0, _tips(model, d))


def test_bang_bang_controls_from_walking_frames_do_not_diverge(model):
    """What a fresh policy does: controls at their limits, switched every 20 ms, from walking frames."""
    rng = np.random.default_rng(0)
    lo, hi = model.actuator_ctrlrange.T
    substeps = int(round(0.02 / model.opt.timestep))
    for clip in walking.make_walking_clips(3, 5, duration_s=1.0):
        for start in (0, 15, 30, 45):
            d = mujoco.MjData(model)
            d.qpos[:], d.qvel[:] = clip.qpos[start], clip.qvel[start]
            for _ in range(20):
                d.ctrl[:] = np.where(rng.uniform(size=model.nu) < 0.5, lo, hi)
                for _ in range(substeps):
                    mujoco.mj_step(model, d)
            assert d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number == 0, (clip.name, start)
            assert np.isfinite(d.qpos).all()


def test_shipped_xml_is_what_the_module_writes():
    assert si.XML_FILE.read_text() == si.xml(), "run `python -m mimic_mjx.bodies.stick_insect --write`"


def test_body_file_settings(body, model):
    assert body.name == "stick_insect" and len(body.keypoint_map.names) == 35
    assert set(body.end_effectors) == {f"tarsus_{leg}" for leg in anat.LEGS}
    assert model.opt.timestep == si.TIMESTEP and model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    cfg = body.default_config()
    assert cfg.env.substeps == 40 and cfg.env.backend == "native" and cfg.termination.max_ee_error_m < 0.01


# -- the walking generator -----------------------------------------------------------------------


def _markers(m, body, qpos):
    """(T, K, 3) keypoint-map markers by forward kinematics."""
    d = mujoco.MjData(m)
    qpos = np.atleast_2d(qpos)
    out = np.zeros((len(qpos), len(body.keypoint_map.names), 3))
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        for k, (b, off) in enumerate(body.keypoint_map.keypoints.values()):
            i = m.body(b).id
            out[t, k] = d.xpos[i] + d.xmat[i].reshape(3, 3) @ np.asarray(off)
    return out


def _tip_tracks(clip):
    idx = [clip.keypoint_names.index(f"{leg}_tip") for leg in anat.LEGS]
    return clip.keypoints[:, idx].astype(np.float64)  # (T, 6, 3)


def _swing_onsets(clip) -> dict[str, np.ndarray]:
    """Per leg, the times (s) its tarsus leaves the floor."""
    lifted = _tip_tracks(clip)[:, :, 2] > TIP_RADIUS + 1e-4
    t = np.arange(len(lifted)) / clip.fps
    return {leg: t[1:][lifted[1:, k] & ~lifted[:-1, k]] for k, leg in enumerate(anat.LEGS)}


def _phases(clip, f):
    onsets = _swing_onsets(clip)
    return {leg: np.mod(on[0] * f, 1.0) for leg, on in onsets.items()}


def _phase_diff(a, b):
    return abs((a - b + 0.5) % 1.0 - 0.5)


FPS = 200.0


def test_tripod_groups_in_phase_and_in_antiphase():
    v = 0.07
    (clip,) = walking.make_walking_clips(1, 0, speed=v, duration_s=1.2, fps=FPS)
    assert clip.name.startswith("walk_tripod")
    f = walking.default_step_frequency(v)
    p = _phases(clip, f)
    tol = 1.5 / FPS * f
    for group in (("L1", "R2", "L3"), ("R1", "L2", "R3")):
        assert all(_phase_diff(p[group[0]], p[leg]) < tol for leg in group)
    assert _phase_diff(p["L1"], p["R1"]) == pytest.approx(0.5, abs=tol)


def test_tetrapod_and_wave_phase_offsets():
    for v, gait, offsets in ((0.035, "tetrapod", walking.SWING_ONSETS["tetrapod"]),
                             (0.015, "wave", walking.SWING_ONSETS["wave"])):  # fmt: skip
        (clip,) = walking.make_walking_clips(1, 1, speed=v, duration_s=2.2, fps=FPS)
        assert clip.name.startswith(f"walk_{gait}")
        f = walking.default_step_frequency(v)
        p = _phases(clip, f)
        for leg in anat.LEGS:
            want = (offsets[leg] - offsets["L3"]) % 1.0
            assert _phase_diff(p[leg] - p["L3"], want) < 1.5 / FPS * f, (gait, leg)
    # Tetrapod: back-to-front waves, 1/3 between ipsilateral neighbours.
    on = walking.SWING_ONSETS["tetrapod"]
    for side in "LR":
        assert (on[f"{side}2"] - on[f"{side}3"]) % 1 == pytest.approx(1 / 3)
        assert (on[f"{side}1"] - on[f"{side}2"]) % 1 == pytest.approx(1 / 3)


@pytest.mark.parametrize("speed,freq", [(0.03, None), (0.06, 2.0), (0.08, None)])
def test_duty_factor_step_frequency_speed_and_stance_as_requested(speed, freq):
    (clip,) = walking.make_walking_clips(1, 2, speed=speed, step_frequency_hz=freq, duration_s=2.0, fps=FPS)
    f = freq or walking.default_step_frequency(speed)
    beta = walking.duty_factor(f)
    tips = _tip_tracks(clip)
    on_floor = np.abs(tips[:, :, 2] - TIP_RADIUS) < 1e-6
    assert on_floor.mean() == pytest.approx(beta, abs=0.03)
    periods = np.concatenate([np.diff(on) for on in _swing_onsets(clip).values()])
    assert periods.size and np.allclose(1.0 / periods, f, rtol=0.03)
    # The thorax moves at the speed, level, at the standing height.
    slope = np.polyfit(np.arange(len(clip.qpos)) / clip.fps, clip.qpos[:, 0], 1)[0]
    assert slope == pytest.approx(speed, rel=1e-3)
    np.testing.assert_allclose(clip.qpos[:, 2], clip.qpos[0, 2], atol=1e-6)
    # Stance tarsi stay put in the world frame (between consecutive frames on the floor: under
    # 10 um, the first frame of a swing, which starts with the stance's velocity, included).
    still = on_floor[1:] & on_floor[:-1]
    slip = np.linalg.norm(np.diff(tips[:, :, :2], axis=0), axis=-1)[still]
    assert slip.max() < 1e-5
    # Swing lifts the tarsus clear of the floor.
    assert tips[:, :, 2].max() > TIP_RADIUS + 0.8 * walking.SWING_HEIGHT_M


def test_keypoint_map_resolves_and_generated_keypoints_sit_on_it(body):
    m = body.compile()
    clips = walking.make_walking_clips(2, 3, duration_s=0.5)
    for clip in clips:
        assert clip.body == "stick_insect" and clip.body_hash == body.body_hash()
        assert clip.keypoint_names == body.keypoint_map.names
        np.testing.assert_allclose(clip.keypoints, _markers(m, body, clip.qpos), atol=2e-6)
        # The tips are where the generator asked the legs to be (inverse kinematics is exact).
        tips = _tip_tracks(clip)
        assert np.abs(tips[:, :, 2] - TIP_RADIUS).min() < 1e-6
    for name, (b, _) in body.keypoint_map.keypoints.items():
        assert m.body(b).id >= 1, name


def test_joint_speeds_within_the_body_file_bounds(body):
    v, a = walking.max_joint_speeds()
    assert v < body.max_joint_speed_rad_s and a < body.max_joint_accel_rad_s2


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"speed": 0.5}, "0.01-0.1 m/s"),
        ({"speed": -0.01}, "walking speed"),
        ({"speed": 0.03, "step_frequency_hz": 9.0}, "0.4-3.125 Hz"),
        ({"speed": 0.1, "step_frequency_hz": 0.5}, "stance amplitude"),
        ({"speed": 0.03, "gait": "gallop"}, "tripod, tetrapod, wave"),
        ({"speed": float("nan")}, "walking speed"),
    ],
)
def test_out_of_range_parameters_raise_naming_the_range(kwargs, words):
    with pytest.raises(ClipError, match=words.replace("(", r"\(")):
        walking.make_walking_clips(1, 0, duration_s=0.2, **kwargs)


def test_heldout_sets_are_physiological_and_outside_training():
    lo, hi = walking.TRAINING_SPEEDS_M_S
    for params in walking.HELDOUT:
        v, f, gait = walking.check_gait(params["speed"], params.get("step_frequency_hz"), params.get("gait"))
        off_default = not math.isclose(f, walking.default_step_frequency(v))
        assert not lo <= v <= hi or off_default
        (clip,) = walking.make_walking_clips(1, 0, duration_s=0.3, **params)
        assert clip.name.startswith(f"walk_{gait}")


def test_gait_by_speed():
    assert [walking.gait_for_speed(v) for v in (0.012, 0.03, 0.09)] == ["wave", "tetrapod", "tripod"]
    assert walking.duty_factor(walking.default_step_frequency(0.01)) > 0.85
    assert walking.duty_factor(walking.default_step_frequency(0.1)) == pytest.approx(0.5)


# -- training ------------------------------------------------------------------------------------


def test_short_training_then_evaluate(tmp_path):
    from conftest import tiny_config_dict
    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.evaluate import evaluate
    from mimic_mjx.training.trainer import train

    clips = walking.make_walking_clips(2, 4, duration_s=0.5)
    values = tiny_config_dict()
    values["env"] = {"body": "stick_insect", "backend": "native", "native_threads": 1, "substeps": 40}
    cfg = config_lib.from_dict(values)
    train(cfg, tmp_path / "run", clips, log=lambda m: None)
    summary = evaluate(tmp_path / "run", clips, tmp_path / "eval")
    fractions = [c["fraction_tracked"] for c in summary["clips"]]
    assert len(fractions) == 2 and all(0.0 <= x <= 1.0 for x in fractions)
