"""Synthetic reaching clips: deterministic, inside joint ranges, smooth, consistent with the model."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies.registry import get_body
from mimic_mjx.data.clips import Clip, finite_difference_velocity, read_clips, write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import BodyError, ClipError


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return get_body("mouse_forelimb").compile()


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    return make_reaching_clips(8, seed=0)


def test_shapes_and_names(clips, model):
    assert [c.name for c in clips] == [f"reach_{i:03d}" for i in range(8)]
    for c in clips:
        assert c.body == "mouse_forelimb" and c.fps == 200.0
        assert c.joint_names == ("sh_elv", "sh_extension", "sh_rotation", "elbow_joint")
        assert c.qpos.shape == c.qvel.shape == (100, 4)
        assert c.body_names == tuple(model.body(b).name for b in range(model.nbody))
        assert c.xpos.shape == (100, model.nbody, 3) and c.xquat.shape == (100, model.nbody, 4)
        assert c.keypoint_names == ("Shoulder", "Elbow", "Wrist")
        assert c.keypoints.shape == (100, 3, 3)
        np.testing.assert_array_equal(c.marker_offsets, np.zeros((3, 3)))
        c.validate()


def test_deterministic_per_seed(clips):
    again = make_reaching_clips(8, seed=0)
    for a, b in zip(clips, again, strict=True):
        for field in ("qpos", "qvel", "xpos", "xquat", "keypoints"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_differs_across_seeds(clips):
    other = make_reaching_clips(8, seed=1)
    assert not np.allclose(np.stack([c.qpos for c in clips]), np.stack([c.qpos for c in other]))
    # ... and clips within one seed differ from each other.
    assert not np.allclose(clips[0].qpos, clips[1].qpos)


def test_reach_timing(clips):
    movements = set()
    for c in clips:
        moving = np.flatnonzero(np.abs(c.qvel).max(axis=1) > 1e-6)
        assert moving[-1] < 0.9 * c.num_frames  # ends at rest
        # Each movement lasts at least 0.15 s: no moving stretch shorter than that.
        breaks = np.flatnonzero(np.diff(moving) > 1)
        starts = np.r_[moving[0], moving[breaks + 1]]
        ends = np.r_[moving[breaks], moving[-1]]
        assert np.all((ends - starts + 2) / c.fps >= 0.15 - 1e-9)
        movements.add(len(starts))
    assert movements == {1, 2}  # reaches that hold, and reaches that return to rest


def test_within_joint_ranges_and_moves(clips, model):
    lo, hi = model.jnt_range[:, 0], model.jnt_range[:, 1]
    margin = 0.1 * (hi - lo)
    for c in clips:
        assert np.all(c.qpos >= lo + margin - 1e-6) and np.all(c.qpos <= hi - margin + 1e-6)
        excursion = np.abs(c.qpos - c.qpos[0]).max(axis=0)
        assert np.all(excursion <= 0.8 + 1e-6)
        assert excursion.max() > 0.05  # it actually reaches somewhere
    # All clips start from the same rest pose.
    np.testing.assert_array_equal(np.stack([c.qpos[0] for c in clips]), np.repeat(clips[0].qpos[:1], 8, 0))


def test_smooth(clips):
    for c in clips:
        assert np.all(np.isfinite(c.qvel))
        np.testing.assert_allclose(c.qvel[0], 0.0, atol=1e-6)
        np.testing.assert_allclose(c.qvel[-1], 0.0, atol=1e-6)
        assert np.abs(c.qvel).max() < 30.0  # rad/s; the real reaches peak near 50
        # Minimum-jerk: acceleration is continuous, so it changes little from one
        # frame to the next. For a reach of duration d sampled every h seconds the
        # largest step is about 10.4 h/d of the peak acceleration (0.35 for the
        # shortest, 0.15 s reach at 200 Hz); a jump in acceleration would give ~1.
        accel = np.diff(c.qvel, axis=0) * c.fps
        assert np.abs(np.diff(accel, axis=0)).max() < 0.45 * np.abs(accel).max() + 1e-6


def test_qvel_matches_finite_differences(clips):
    # Central differences of a quintic have error h^2/6 * q''' (h = 5 ms): a few
    # percent of the peak speed at most for these reaches.
    for c in clips:
        fd = finite_difference_velocity(c.qpos, c.fps)
        peak = np.abs(c.qvel).max()
        np.testing.assert_allclose(fd[1:-1], c.qvel[1:-1], atol=0.05 * peak + 1e-4)


def test_body_poses_match_forward_kinematics(clips, model):
    data = mujoco.MjData(model)
    wrist = model.body("wrist_body").id
    for c in clips[:3]:
        for k in (0, 30, 60, 99):
            data.qpos[:] = c.qpos[k]
            mujoco.mj_kinematics(model, data)
            np.testing.assert_allclose(c.xpos[k, wrist], data.xpos[wrist], atol=1e-6)
            np.testing.assert_allclose(c.xquat[k, wrist], data.xquat[wrist], atol=1e-5)
            np.testing.assert_allclose(c.keypoints[k, 2], data.xpos[wrist], atol=1e-6)
            np.testing.assert_allclose(c.keypoints[k, 0], data.xpos[model.body("scapula").id], atol=1e-6)


def test_options(model):
    (short,) = make_reaching_clips(1, seed=3, fps=50.0, num_frames=30)
    assert short.fps == 50.0 and short.qpos.shape == (30, 4)
    np.testing.assert_allclose(short.qvel[[0, -1]], 0.0, atol=1e-6)
    assert make_reaching_clips(0, seed=0) == []
    (tiny,) = make_reaching_clips(1, seed=0, num_frames=2)
    assert tiny.num_frames == 2


def test_bad_arguments():
    with pytest.raises(ClipError, match="at least 2 frames"):
        make_reaching_clips(1, seed=0, num_frames=1)
    with pytest.raises(ClipError, match="frame rate"):
        make_reaching_clips(1, seed=0, fps=0.0)
    with pytest.raises(BodyError, match="unknown body"):
        make_reaching_clips(1, seed=0, body="octopus")


def test_round_trips_through_the_clip_format(tmp_path, clips):
    write_clips(tmp_path / "synthetic.h5", clips[:2])
    back = read_clips(tmp_path / "synthetic.h5")
    for a, b in zip(back, clips[:2], strict=True):
        assert a.name == b.name and a.body_names == b.body_names
        np.testing.assert_array_equal(a.qvel, b.qvel)
        np.testing.assert_array_equal(a.xquat, b.xquat)
