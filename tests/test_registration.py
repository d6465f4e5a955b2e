"""Registration (STAC) against synthetic ground truth, output clips, and bad inputs."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from conftest import mouse_arm_files
from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.keypoint_maps import get_keypoint_map
from mimic_mjx.bodies.layout import JointLayout, reference_velocities
from mimic_mjx.cli.main import main
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.clips import read_clips
from mimic_mjx.data.keypoints import Keypoints, KeypointWarning
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import BodyError, KeypointError
from mimic_mjx.registration.joints import inside_margin
from mimic_mjx.registration.register import register, split_clip
from mimic_mjx.registration.stac import StacConfig, StacSolver

ARM = get_body("mouse_forelimb")
ARM_MAP = get_keypoint_map("mouse_forelimb")


def _markers(model, qpos, bodies, offsets):
    data = mujoco.MjData(model)
    out = np.zeros((len(qpos), len(bodies), 3))
    for t, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        for k, (b, o) in enumerate(zip(bodies, offsets, strict=True)):
            i = model.body(b).id
            out[t, k] = data.xpos[i] + data.xmat[i].reshape(3, 3) @ o
    return out


@pytest.fixture(scope="module")
def arm_truth():
    """Poses of synthetic reaches, markers with known offsets, noise and missing values."""
    rng = np.random.default_rng(0)
    qpos = np.concatenate([c.qpos for c in make_reaching_clips(2, seed=11, num_frames=60)]).astype(np.float64)
    names = list(ARM_MAP.names)
    bodies = [ARM_MAP.keypoints[n][0] for n in names]
    offsets = rng.uniform(-3e-4, 3e-4, (3, 3))
    kp = _markers(ARM.compile(), qpos, bodies, offsets) + rng.normal(0, 2e-5, (len(qpos), 3, 3))
    kp[rng.random(kp.shape[:2]) < 0.1] = np.nan
    kp[7] = np.nan  # one frame with no keypoints at all
    return qpos, offsets, kp, names


def _as_keypoints(kp, names, fps=200.0):
    return Keypoints(
        positions=kp,
        names=tuple(names),
        fps=fps,
        confidence=np.where(np.isnan(kp).any(-1), 0.0, 1.0),
        source="synthetic",
    ).validate()


@pytest.mark.slow
def test_recovers_pose_with_known_offsets_despite_noise_and_gaps(arm_truth):
    qpos, offsets, kp, names = arm_truth
    bodies = [ARM_MAP.keypoints[n][0] for n in names]
    solver = StacSolver(ARM.compile(), bodies, offsets, [0], StacConfig(rounds=0))
    res = solver.solve(kp, np.ones(kp.shape[:2]))
    assert np.median(np.rad2deg(np.abs(res.qpos - qpos))) < 0.5
    assert np.nanmedian(res.residuals) < 5e-5  # noise is 0.02 mm per axis
    # Missing keypoints get no residual and never poison the fit; the empty frame follows its neighbours.
    assert np.isnan(res.residuals[7]).all() and np.isfinite(res.qpos).all()
    assert np.isnan(res.residuals[np.isnan(kp).any(-1)]).all()
    assert np.rad2deg(np.abs(res.qpos[7] - qpos[7])).max() < 3.0


def test_recovers_offsets_given_poses(arm_truth):
    qpos, offsets, kp, names = arm_truth
    bodies = [ARM_MAP.keypoints[n][0] for n in names]
    solver = StacSolver(ARM.compile(), bodies, np.zeros((3, 3)), [0], StacConfig(offset_reg=0.001))
    w = np.where(np.isnan(kp).any(-1), 0.0, 1.0)
    np.testing.assert_allclose(solver.fit_offsets(qpos, kp, w), offsets, atol=1e-5)


@pytest.mark.slow
def test_full_stac_from_zero_offsets(arm_truth):
    """Alternating from zero offsets fits the markers; with one keypoint per segment,
    offsets and shoulder angles partly trade off, so the poses are close, not exact."""
    qpos, offsets, kp, names = arm_truth
    with pytest.warns(KeypointWarning, match="1 frame\\(s\\) have no keypoints"):
        reg = register(_as_keypoints(kp, names), "mouse_forelimb", StacConfig(rounds=3), log=lambda m: None)
    assert reg.summary["median_residual_mm"] < 0.05
    assert reg.summary["joint_limit_violations"] == 0
    assert np.median(np.rad2deg(np.abs(reg.result.qpos - qpos))) < 5.0
    assert np.abs(reg.result.offsets - offsets).max() < 1e-3


@pytest.mark.slow
def test_solver_aligns_a_free_root():
    """A small free-floating body, turned and moved: root alignment plus LM recover it."""
    spec = mujoco.MjSpec()
    spec.compiler.degree = False
    torso = spec.worldbody.add_body(name="torso")
    torso.add_freejoint(name="root")
    torso.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=(0.05, 0.02, 0.01))
    limb = torso.add_body(name="limb", pos=(0.05, 0, 0))
    limb.add_joint(name="hinge", type=mujoco.mjtJoint.mjJNT_HINGE, axis=(0, 0, 1), range=(-1.5, 1.5))
    limb.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=(0.005, 0, 0), fromto=(0, 0, 0, 0.04, 0, 0))
    model = spec.compile()
    bodies = ["torso", "torso", "torso", "torso", "limb"]
    offsets = np.array([[0.05, 0.02, 0], [-0.05, 0.02, 0], [0, -0.02, 0.01], [-0.05, -0.02, 0], [0.04, 0, 0]])
    rng = np.random.default_rng(1)
    T = 40
    qpos = np.zeros((T, model.nq))
    qpos[:, 0:3] = rng.normal(0, 0.1, 3) + np.linspace(0, 0.05, T)[:, None]
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    for t in range(T):
        mujoco.mju_axisAngle2Quat(qpos[t, 3:7], axis, 2.0 + 0.01 * t)
    qpos[:, 7] = np.linspace(-0.5, 0.8, T)
    kp = _markers(model, qpos, bodies, offsets)
    solver = StacSolver(model, bodies, offsets, trunk=[0, 1, 2, 3], cfg=StacConfig(rounds=0, lm_iterations=15))
    res = solver.solve(kp, np.ones(kp.shape[:2]))
    assert np.nanmax(res.residuals) < 1e-4
    np.testing.assert_allclose(res.qpos[:, 7], qpos[:, 7], atol=1e-3)
    np.testing.assert_allclose(res.qpos[:, 0:3], qpos[:, 0:3], atol=1e-4)


def test_velocities_match_mujoco_finite_differences():
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><freejoint/><geom size='.1'/><body><joint type='hinge'/>"
        "<geom size='.1'/></body></body></worldbody></mujoco>"
    )
    T, fps = 30, 50.0
    rng = np.random.default_rng(2)
    qpos = np.zeros((T, model.nq))
    qpos[:, 0:3] = np.cumsum(rng.normal(0, 0.01, (T, 3)), axis=0)
    w = np.array([0.3, -0.2, 0.5])  # constant body-frame angular velocity, rad/s
    qpos[0, 3] = 1.0
    for t in range(1, T):
        qpos[t, 3:7] = qpos[t - 1, 3:7]
        mujoco.mju_quatIntegrate(qpos[t, 3:7], w, 1 / fps)
    qpos[:, 7] = np.sin(np.arange(T) / 5)
    v = reference_velocities(qpos, fps, JointLayout.from_model(model))
    np.testing.assert_allclose(v[:, 3:6], np.tile(w, (T, 1)), atol=1e-6)
    expected = np.zeros(model.nv)
    mujoco.mj_differentiatePos(model, expected, 1 / fps, qpos[4], qpos[5])
    np.testing.assert_allclose(v[5, 0:3], (qpos[6, 0:3] - qpos[4, 0:3]) * fps / 2, atol=1e-9)
    np.testing.assert_allclose(v[:, 6], np.gradient(qpos[:, 7], 1 / fps), atol=1e-9)


def test_estimate_scale_recovers_a_known_factor():
    from mimic_mjx.registration.register import estimate_scale

    rng = np.random.default_rng(3)
    origin = rng.normal(size=(20, 3))
    markers = origin[:, None] + rng.normal(0, 0.05, (20, 6, 3))
    kp = origin[:, None] + 1.1 * (markers - origin[:, None])
    w = np.ones((20, 6))
    kp[3, 2] = np.nan
    w[3, 2] = 0.0
    assert estimate_scale(kp, markers, origin, w) == pytest.approx(1.1, rel=1e-9)


def test_bad_inputs(arm_truth):
    qpos, offsets, kp, names = arm_truth
    good = _as_keypoints(kp, names)
    with pytest.raises(BodyError, match="unknown body 'cat'"):
        register(good, "cat", log=lambda m: None)
    with pytest.raises(BodyError, match="body 'fruitfly' has no keypoint mapping"):
        register(good, "fruitfly", log=lambda m: None)
    with pytest.raises(KeypointError, match="cannot be rescaled"):
        register(good, "mouse_forelimb", fit_scale=True, log=lambda m: None)
    renamed = dataclasses.replace(good, names=("Shoulder", "Elbow", "Paw"))
    with pytest.raises(KeypointError, match=r"\['Paw'\] are not in the 'mouse_forelimb' keypoint mapping"):
        register(renamed, "mouse_forelimb", log=lambda m: None)
    in_mm_read_as_m = dataclasses.replace(good, positions=kp * 1000.0)
    with pytest.raises(KeypointError, match="look like millimetres"):
        register(in_mm_read_as_m, "mouse_forelimb", log=lambda m: None)
    # then the size check still applies to what is left
    with pytest.warns(KeypointWarning, match=r"\['Wrist'\] are not in"), pytest.raises(KeypointError):
        register(
            dataclasses.replace(
                good.subset(["Shoulder", "Elbow"]), positions=good.subset(["Shoulder", "Elbow"]).positions * 1e3
            ),
            "mouse_forelimb",
            log=lambda m: None,
        )


@pytest.mark.needs_data
@pytest.mark.slow
def test_cli_register_writes_train_ready_clips(tmp_path, capsys):
    path = mouse_arm_files(1)[0]
    out = tmp_path / "clips.h5"
    assert (
        main(
            [
                "register",
                "--body",
                "mouse_forelimb",
                "--keypoints",
                str(path),
                "--out",
                str(out),
                "--clip-length",
                "40",
                "--rounds",
                "1",
                "--iterations",
                "10",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Wrist" in printed and "joint-limit violations: 0" in printed and "wrote 2 clip(s)" in printed
    clips = read_clips(out)
    assert [c.num_frames for c in clips] == [40, 40]
    assert clips[0].keypoint_residuals.shape == (40, 3) and clips[0].marker_offsets.shape == (3, 3)
    bank = bind_clips(clips, ARM.compile(), ARM.name, ARM.end_effectors, 6, 5)
    assert bank.qpos.shape == (2 * 45, 4)  # two clips of 40 frames and 5 of padding each
    # Bad input through the CLI: one line, exit code 2.
    assert (
        main(
            [
                "register",
                "--body",
                "mouse_forelimb",
                "--keypoints",
                str(path),
                "--units",
                "mm",
                "--out",
                str(tmp_path / "x.h5"),
            ]
        )
        == 2
    )
    assert "look like" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_split_clip_rejects_bad_lengths(arm_truth):
    clip = make_reaching_clips(1, seed=1, num_frames=30)[0]
    assert [c.num_frames for c in split_clip(clip, 10)] == [10, 10, 10]
    with pytest.raises(KeypointError, match="fewer than one clip"):
        split_clip(clip, 31)


def test_render_writes_mp4(tmp_path, arm_truth):
    pytest.importorskip("imageio_ffmpeg")
    from mimic_mjx.errors import MimicError
    from mimic_mjx.presentation.render import render_keypoint_fit

    qpos, offsets, kp, names = arm_truth
    try:
        out = render_keypoint_fit(
            ARM.compile(), qpos[:5], kp[:5], np.nan_to_num(kp[:5]), tmp_path / "fit.mp4", fps=50, width=96, height=64
        )
    except MimicError as exc:
        pytest.skip(f"no offscreen OpenGL here: {exc}")
    assert out.exists() and out.stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp*"))


def _straightening_reach():
    """Keypoints of a reach whose elbow straightens (60 -> -10 deg) while sh_extension passes 15 deg
    beyond its -70 deg limit: the registered arm cannot follow, and near the singular pose its
    shoulder elevation and rotation turn almost about the same axis (the mouse-arm swing)."""
    from mimic_mjx.data.synthetic import minimum_jerk

    T = 60
    tau = np.clip(np.linspace(-0.5, 1.5, T), 0, 1)
    s, _ = minimum_jerk(tau)
    bump = np.sin(np.pi * tau) ** 2
    qpos = np.deg2rad(np.stack([-20 - 25 * bump, -40 - 45 * bump, -20 + 70 * s, 60 - 70 * s], axis=1))
    names = list(ARM_MAP.names)
    bodies = [ARM_MAP.keypoints[n][0] for n in names]
    kp = _markers(ARM.compile(), qpos, bodies, np.zeros((3, 3)))  # kinematics ignore joint limits
    return qpos, kp + np.random.default_rng(0).normal(0, 1e-4, kp.shape), bodies


@pytest.mark.slow
def test_speed_prior_removes_a_swing_at_the_singular_pose():
    qpos, kp, bodies = _straightening_reach()
    fps = 200.0
    truth = np.abs(reference_velocities(qpos, fps)).max(0)[2]  # sh_rotation, about 15 rad/s
    peak, residual = {}, {}
    for name, velocity in (("off", 0.0), ("default", StacConfig().velocity_m_per_rad_s)):
        cfg = StacConfig(rounds=0, velocity_m_per_rad_s=velocity)
        res = StacSolver(ARM.compile(), bodies, np.zeros((3, 3)), [0], cfg).solve(kp, np.ones(kp.shape[:2]), fps=fps)
        peak[name] = np.abs(reference_velocities(res.qpos, fps)).max(0)[2]
        residual[name] = np.median(res.residuals)
    assert peak["off"] > 2.0 * truth  # the fit swings sh_rotation
    assert peak["default"] < 1.6 * truth and peak["default"] < 0.7 * peak["off"]
    assert residual["default"] < 2e-4 and residual["default"] < residual["off"] + 3e-5  # noise: 0.1 mm per axis


def test_limit_margin_shrinks_limited_ranges_only():
    lay = JointLayout.from_model(ARM.compile())
    inner = inside_margin(lay, 0.05)
    np.testing.assert_allclose(inner.lo, lay.lo + 0.05)
    np.testing.assert_allclose(inner.hi, lay.hi - 0.05)
    narrow = dataclasses.replace(lay, lo=np.array([-np.inf, -0.1, 0.0, -1.0]), hi=np.array([np.inf, 0.1, 0.2, 1.0]))
    got = inside_margin(narrow, 0.05)
    # Unlimited joints stay unlimited; a narrow range loses at most a tenth of itself at each end.
    np.testing.assert_allclose(got.lo, [-np.inf, -0.08, 0.02, -0.95])
    np.testing.assert_allclose(got.hi, [np.inf, 0.08, 0.18, 0.95])
    assert inside_margin(lay, 0.0).lo.tolist() == lay.lo.tolist()


@pytest.mark.slow
def test_fit_stays_the_margin_inside_a_limit_the_keypoints_pass():
    """The reach's keypoints take sh_extension 15 deg past its -70 deg limit: the fit holds the
    joint the margin inside it (with margin 0, on the limit itself), never beyond."""
    qpos, kp, bodies = _straightening_reach()
    lo = np.rad2deg(ARM.compile().jnt_range[1, 0])
    low = {}
    for margin in (0.0, StacConfig().limit_margin_rad):
        cfg = StacConfig(rounds=0, limit_margin_rad=margin)
        res = StacSolver(ARM.compile(), bodies, np.zeros((3, 3)), [0], cfg).solve(kp, np.ones(kp.shape[:2]), fps=200.0)
        low[margin] = np.rad2deg(res.qpos[:, 1].min())
    assert low[0.0] == pytest.approx(lo, abs=1e-3)
    assert low[StacConfig().limit_margin_rad] == pytest.approx(lo + np.rad2deg(StacConfig().limit_margin_rad), abs=1e-3)


def test_cli_register_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "none.h5"
    args = ["register", "--body", "mouse_forelimb", "--out", str(tmp_path / "x.h5")]
    assert main([*args, "--keypoints", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mimic register: error:") and str(missing) in err[0]
    assert main([*args, "--keypoints", str(missing), "--velocity-prior", "-1"]) == 2
    assert (
        capsys.readouterr().err.strip() == "mimic register: error: --velocity-prior must be 0 (off) or more, got -1.0"
    )
    with pytest.raises(SystemExit):
        main([*args, "--keypoints", str(missing), "--limit-margin", "-1"])
    assert "--limit-margin" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
