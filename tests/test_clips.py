"""Clip format: round trip, the registration-output layout, validation errors, atomic writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import MOUSE_ARM
from mimic_mjx import files as atomic_mod
from mimic_mjx.data.clips import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Clip,
    finite_difference_velocity,
    read_clip_files,
    read_clips,
    write_clips,
)
from mimic_mjx.errors import ClipError, MimicError

JOINTS = ("sh_elv", "sh_extension", "sh_rotation", "elbow_joint")
BODIES = ("world", "humerus", "wrist_body")
KEYPOINTS = ("Shoulder", "Elbow", "Wrist")


def real_trial(name: str = "trial01_ik.h5") -> Path:
    path = MOUSE_ARM / name
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected ../shared/data/mouse_arm beside the project)")
    return path


def make_clip(name: str = "a", frames: int = 20, seed: int = 0, **changes) -> Clip:
    rng = np.random.default_rng(seed)
    qpos = rng.normal(size=(frames, len(JOINTS))).astype(np.float32)
    quat = rng.normal(size=(frames, len(BODIES), 4))
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    clip = Clip(
        name=name,
        body="mouse_forelimb",
        fps=100.0,
        joint_names=JOINTS,
        qpos=qpos,
        qvel=finite_difference_velocity(qpos, 100.0),
        body_names=BODIES,
        xpos=rng.normal(size=(frames, len(BODIES), 3)).astype(np.float32) * 1e-3,
        xquat=quat.astype(np.float32),
        keypoint_names=KEYPOINTS,
        keypoints=rng.normal(size=(frames, len(KEYPOINTS), 3)).astype(np.float32) * 1e-3,
        marker_offsets=rng.normal(size=(len(KEYPOINTS), 3)).astype(np.float32) * 1e-3,
    )
    return dataclasses.replace(clip, **changes)


def write_registration_file(path: Path, qpos: np.ndarray) -> Path:
    """A minimal file in the stac-mjx registration-output layout."""
    with h5py.File(path, "w") as f:
        f["qpos"] = qpos
        f["names_qpos"] = np.array([j.encode() for j in JOINTS])
    return path


def assert_same_clip(a: Clip, b: Clip) -> None:
    assert (a.name, a.body, a.fps, a.joint_names) == (b.name, b.body, b.fps, b.joint_names)
    assert (a.body_names, a.keypoint_names) == (b.body_names, b.keypoint_names)
    for field in ("qpos", "qvel", "xpos", "xquat", "keypoints", "marker_offsets"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype == np.float32, field
            np.testing.assert_array_equal(x, y, err_msg=field)


# --- our format ---------------------------------------------------------------


def test_round_trip(tmp_path):
    clips = [make_clip("b", frames=20, seed=1), make_clip("a", frames=7, seed=2, fps=50.0)]
    path = tmp_path / "clips.h5"
    write_clips(path, clips)
    back = read_clips(path)
    assert [c.name for c in back] == ["a", "b"]  # read in name order
    for got, want in zip(back, sorted(clips, key=lambda c: c.name), strict=True):
        assert_same_clip(got, want)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert (f.attrs["length_unit"], f.attrs["angle_unit"]) == ("m", "rad")
        assert f["clips/a"].attrs["fps"] == 50.0


def test_round_trip_without_optional_arrays(tmp_path):
    bare = make_clip(
        "bare", body_names=(), xpos=None, xquat=None, keypoint_names=(), keypoints=None, marker_offsets=None
    )
    write_clips(tmp_path / "bare.h5", [bare])
    (back,) = read_clips(tmp_path / "bare.h5")
    assert_same_clip(back, bare)


def test_missing_qvel_is_derived_at_the_clip_frame_rate(tmp_path):
    clip = make_clip(fps=40.0)
    path = tmp_path / "c.h5"
    write_clips(path, [clip])
    with h5py.File(path, "a") as f:
        del f["clips/a/qvel"]
    (back,) = read_clips(path)
    np.testing.assert_array_equal(back.qvel, finite_difference_velocity(clip.qpos, 40.0))


# --- registration-output layout (real data) ---------------------------------------


@pytest.mark.needs_data
def test_read_real_registration_file():
    path = real_trial()
    (clip,) = read_clips(path)
    assert clip.name == "trial01_ik"
    assert clip.body == "mouse_forelimb"
    assert clip.fps == 200.0
    assert clip.joint_names == JOINTS
    assert clip.qpos.shape == (100, 4) and clip.qpos.dtype == np.float32
    np.testing.assert_array_equal(clip.qvel, finite_difference_velocity(clip.qpos, 200.0))
    assert clip.keypoint_names == KEYPOINTS
    assert clip.keypoints.shape == (100, 3, 3)
    assert clip.marker_offsets.shape == (3, 3)
    assert clip.body_names[0] == "world" and clip.body_names[-1] == "wrist_body"
    assert clip.xpos.shape == (100, 9, 3) and clip.xquat.shape == (100, 9, 4)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(clip.qpos, f["qpos"][()])
        np.testing.assert_array_equal(clip.keypoints.reshape(100, 9), f["kp_data"][()])
        # The stored velocities saturate at 20 rad/s; ours do not.
        assert np.abs(f["qvel"][()]).max() <= 20.0 < np.abs(clip.qvel).max()


@pytest.mark.needs_data
def test_fps_and_body_override_for_registration_files():
    (clip,) = read_clips(real_trial(), fps=100.0, body="my_arm")
    assert clip.fps == 100.0 and clip.body == "my_arm"
    np.testing.assert_array_equal(clip.qvel, finite_difference_velocity(clip.qpos, 100.0))
    (at_200,) = read_clips(real_trial())
    np.testing.assert_allclose(clip.qvel, at_200.qvel / 2, rtol=1e-6, atol=1e-6)


@pytest.mark.needs_data
def test_read_clip_files_makes_names_unique(tmp_path):
    path = real_trial()
    clips = read_clip_files([path, path, path])
    names = [c.name for c in clips]
    assert names[0] == "trial01_ik"
    assert len(set(names)) == 3
    # The names must survive our own format (no HDF5 path separators).
    write_clips(tmp_path / "all.h5", clips)
    assert sorted(c.name for c in read_clips(tmp_path / "all.h5")) == sorted(names)


def test_read_clip_files_native_files(tmp_path):
    write_clips(tmp_path / "x.h5", [make_clip("a"), make_clip("b")])
    write_clips(tmp_path / "y.h5", [make_clip("a", seed=5)])
    names = [c.name for c in read_clip_files([tmp_path / "x.h5", tmp_path / "y.h5"])]
    assert len(set(names)) == 3 and names[:2] == ["a", "b"]
    assert "y" in names[2]  # says where the renamed clip came from


def test_read_clip_files_needs_files():
    with pytest.raises(ClipError, match="no clip files"):
        read_clip_files([])


# --- bad inputs -------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ClipError, match="not found") as info:
        read_clips(tmp_path / "nope.h5")
    assert "nope.h5" in str(info.value)


def test_folder(tmp_path):
    with pytest.raises(ClipError, match="is a folder.*h5"):
        read_clips(tmp_path)


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("qpos: [1, 2, 3]\n")
    with pytest.raises(ClipError, match="cannot read .* as HDF5"):
        read_clips(path)


def test_hdf5_but_not_a_clip_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 3))
    with pytest.raises(ClipError, match="not a clip file.*format='mimic-mjx-clips'.*qpos"):
        read_clips(path)


def test_native_file_missing_a_dataset(tmp_path):
    path = tmp_path / "c.h5"
    write_clips(path, [make_clip()])
    with h5py.File(path, "a") as f:
        del f["clips/a/qpos"]
    with pytest.raises(ClipError, match="missing dataset or attribute .*qpos"):
        read_clips(path)


def test_native_file_without_clips(tmp_path):
    path = tmp_path / "c.h5"
    write_clips(path, [make_clip()])
    with h5py.File(path, "a") as f:
        del f["clips/a"]
    with pytest.raises(ClipError, match="holds no clips"):
        read_clips(path)


def test_newer_format_version(tmp_path):
    path = tmp_path / "c.h5"
    write_clips(path, [make_clip()])
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ClipError, match="newer .* upgrade mimic-mjx"):
        read_clips(path)


def test_nan_in_qpos():
    qpos = make_clip().qpos.copy()
    qpos[3, 1] = np.nan
    qpos[5, 2] = np.nan
    with pytest.raises(ClipError, match=r"clip 'a': qpos holds 2 NaN/infinite value\(s\), first at frame 3"):
        make_clip(qpos=qpos).validate()


def test_nan_in_qpos_of_a_registration_file(tmp_path):
    qpos = np.zeros((10, 4), np.float32)
    qpos[4, 0] = np.nan
    path = write_registration_file(tmp_path / "trial_nan.h5", qpos)
    with pytest.raises(ClipError, match="trial_nan.h5.*qpos holds .*NaN.*frame 4"):
        read_clips(path)


def test_inf_in_qvel(tmp_path):
    qvel = make_clip().qvel.copy()
    qvel[0, 0] = np.inf
    with pytest.raises(ClipError, match="qvel holds 1 NaN/infinite value.*frame 0"):
        write_clips(tmp_path / "c.h5", [make_clip(qvel=qvel)])
    assert not (tmp_path / "c.h5").exists()


def test_wrong_qpos_shape():
    qpos = np.zeros((20, 3), np.float32)
    with pytest.raises(ClipError, match=r"qpos has shape \(20, 3\), expected \(frames, 4\)"):
        make_clip(qpos=qpos, qvel=qpos).validate()


def test_wrong_qvel_and_body_array_shapes():
    clip = make_clip()
    with pytest.raises(ClipError, match="qvel has shape"):
        dataclasses.replace(clip, qvel=clip.qvel[:-1]).validate()
    with pytest.raises(ClipError, match=r"xpos has shape .* expected \(20, 3, 3\)"):
        dataclasses.replace(clip, xpos=clip.xpos[:, :2]).validate()
    with pytest.raises(ClipError, match=r"keypoints have shape"):
        dataclasses.replace(clip, keypoints=clip.keypoints[..., :2]).validate()


def test_bad_frame_rate():
    with pytest.raises(ClipError, match="frame rate must be a positive"):
        make_clip(fps=0.0).validate()


def test_one_frame_clip(tmp_path):
    clip = make_clip(frames=2)
    one = dataclasses.replace(
        clip,
        qpos=clip.qpos[:1],
        qvel=clip.qvel[:1],
        xpos=clip.xpos[:1],
        xquat=clip.xquat[:1],
        keypoints=clip.keypoints[:1],
    )
    with pytest.raises(ClipError, match=r"has 1 frame\(s\); a clip needs at least 2"):
        one.validate()
    # Reading one frame must fail the same way, not while deriving velocities.
    path = write_registration_file(tmp_path / "short.h5", np.zeros((1, 4), np.float32))
    with pytest.raises(ClipError, match="short.h5.*1 frame.*at least 2"):
        read_clips(path)


def test_zero_fps_override(tmp_path):
    path = write_registration_file(tmp_path / "r.h5", np.zeros((10, 4), np.float32))
    with pytest.raises(ClipError, match="frame rate must be a positive"):
        read_clips(path, fps=0.0)


def test_duplicate_clip_names_on_write(tmp_path):
    with pytest.raises(ClipError, match="two clips are named 'a'"):
        write_clips(tmp_path / "c.h5", [make_clip("a"), make_clip("b"), make_clip("a", seed=3)])


def test_mixed_bodies_on_write(tmp_path):
    with pytest.raises(ClipError, match="body 'rat'.*different bodies to different files"):
        write_clips(tmp_path / "c.h5", [make_clip("a"), make_clip("b", body="rat")])


def test_mixed_joint_names_on_write(tmp_path):
    other = make_clip("b", joint_names=tuple(reversed(JOINTS)))
    with pytest.raises(ClipError, match="with joints"):
        write_clips(tmp_path / "c.h5", [make_clip("a"), other])


def test_mixed_body_and_keypoint_names_on_write(tmp_path):
    with pytest.raises(ClipError, match="different body names"):
        write_clips(tmp_path / "c.h5", [make_clip("a"), make_clip("b", body_names=tuple(reversed(BODIES)))])
    with pytest.raises(ClipError, match="different keypoint names"):
        write_clips(tmp_path / "c.h5", [make_clip("a"), make_clip("b", keypoint_names=tuple(reversed(KEYPOINTS)))])


@pytest.mark.parametrize("name", ["x/y", "", "."])
def test_unstorable_clip_names(tmp_path, name):
    with pytest.raises(ClipError, match="cannot be stored in HDF5"):
        write_clips(tmp_path / "c.h5", [make_clip(name)])


def test_no_clips_to_write(tmp_path):
    with pytest.raises(ClipError, match="no clips"):
        write_clips(tmp_path / "c.h5", [])


def test_clip_errors_are_user_errors():
    assert issubclass(ClipError, MimicError)


# --- atomic writes ----------------------------------------------------------------


def test_failed_write_leaves_existing_file_unchanged(tmp_path):
    path = tmp_path / "clips.h5"
    write_clips(path, [make_clip("old")])
    before = path.read_bytes()
    # Fails after clips 'a' and 'b' are already in the (temporary) file.
    with pytest.raises(ClipError, match="two clips are named"):
        write_clips(path, [make_clip("a"), make_clip("b"), make_clip("a")])
    assert path.read_bytes() == before
    assert [c.name for c in read_clips(path)] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips.h5"]  # no temp files left


def test_crash_midway_leaves_no_file(tmp_path, monkeypatch):
    real_create = h5py.Group.create_dataset
    calls = []

    def failing_create(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 6:
            raise OSError("disk full (simulated)")
        return real_create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create)
    path = tmp_path / "sub" / "clips.h5"
    with pytest.raises(OSError, match="disk full"):
        write_clips(path, [make_clip("a"), make_clip("b")])
    assert len(calls) == 6
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_write_goes_through_atomic_path(tmp_path, monkeypatch):
    used = []
    real = atomic_mod.atomic_path

    def spy(path):
        used.append(Path(path))
        return real(path)

    # write_clips builds the file in memory (atomic_hdf5), which writes it through atomic_path.
    monkeypatch.setattr(atomic_mod, "atomic_path", spy)
    write_clips(tmp_path / "c.h5", [make_clip()])
    assert used == [tmp_path / "c.h5"]
