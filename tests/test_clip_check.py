"""Clip checks: peak joint speeds/accelerations against body bounds, `mimic clips check`, trainer warnings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from conftest import mouse_arm_files
from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.layout import reference_velocities
from mimic_mjx.cli.main import main
from mimic_mjx.data.check import (
    ROOT_ANGULAR,
    check_clip,
    clip_layout,
    clip_speed_warnings,
    format_ranges,
    frame_ranges,
    joint_speeds_and_accels,
)
from mimic_mjx.data.clips import Clip, write_clips
from mimic_mjx.data.synthetic import make_reaching_clips


def _with_jump(clip: Clip, joint: str, frame: int, radians: float) -> Clip:
    """The clip with ``joint`` stepped by ``radians`` from ``frame`` on (qvel re-derived)."""
    qpos = clip.qpos.copy()
    qpos[frame:, clip.joint_names.index(joint)] += radians
    return dataclasses.replace(clip, name=f"{clip.name}-jump", qpos=qpos, qvel=reference_velocities(qpos, clip.fps))


@pytest.fixture(scope="module")
def reach():
    return make_reaching_clips(1, seed=3)[0]  # 100 frames at 200 Hz


def test_every_body_has_bounds():
    for name in ("mouse_forelimb", "rat", "fruitfly"):
        body = get_body(name)
        assert body.max_joint_speed_rad_s > 0 and body.max_joint_accel_rad_s2 > 0


def test_frame_ranges():
    mask = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], bool)
    assert frame_ranges(mask) == ((1, 2), (4, 4), (7, 9))
    assert frame_ranges(np.zeros(5, bool)) == ()
    assert format_ranges(((1, 2), (4, 4), (7, 9))) == "1-2, 4, 7-9"
    assert format_ranges(tuple((i, i) for i in range(0, 20, 2)), limit=3) == "0, 2, 4, (+7 more)"


def test_smooth_reach_is_within_bounds(reach):
    check = check_clip(reach)
    assert (check.max_speed, check.max_accel) == (80.0, 5000.0)  # the forelimb's bounds
    assert [j.joint for j in check.joints] == list(reach.joint_names)
    assert not check.exceeding
    assert clip_speed_warnings([reach], "mouse_forelimb") == []


def test_injected_90_degree_jump_is_reported_with_its_frames(reach):
    bad = _with_jump(reach, "sh_rotation", 50, np.pi / 2)
    check = check_clip(bad)
    (joint,) = check.exceeding
    assert joint.joint == "sh_rotation"
    # Central differences spread the step over frames 49 and 50: (pi/2) / (2/200 s) = 157 rad/s.
    assert joint.speed_frames == ((49, 50),)
    assert joint.peak_speed == pytest.approx(np.pi / 2 * 100, rel=0.05)
    assert joint.peak_speed_frame in (49, 50)
    assert all(48 <= a <= b <= 51 for a, b in joint.accel_frames)
    line, torque = clip_speed_warnings([reach, bad], "mouse_forelimb")
    assert torque.startswith(f"clip '{bad.name}': the muscles of mouse_forelimb cannot produce its joint torques")
    assert line.startswith(f"clip '{bad.name}', joint sh_rotation: speed 157 rad/s > 80 rad/s at frames 49-50")
    assert "acceleration" in line and "rad/s^2 > 5000 rad/s^2" in line
    # Bounds given explicitly override the body's.
    assert not check_clip(bad, max_speed=200.0, max_accel=1e6).exceeding


def test_frames_on_a_range_limit_are_reported_not_counted_as_exceeding(reach, tmp_path, capsys):
    assert not any(j.limit_frames for j in check_clip(reach).joints)
    lo, hi = get_body("mouse_forelimb").compile().jnt_range[0]  # sh_elv
    qpos = reach.qpos.copy()
    qpos[10:21, 0] = hi
    qpos[40:43, 0] = lo + 0.005  # within the tolerance
    held = dataclasses.replace(reach, name="held", qpos=qpos, qvel=reference_velocities(qpos, reach.fps))
    check = check_clip(held, max_speed=1e6, max_accel=1e9)
    sh_elv = check.joints[0]
    assert sh_elv.joint == "sh_elv" and sh_elv.limit_frames == ((10, 20), (40, 42))
    assert not check.exceeding and all(not j.limit_frames for j in check.joints[1:])
    # A clip of a body mimic does not know has no ranges to check.
    assert not any(j.limit_frames for j in check_clip(dataclasses.replace(held, body="unknown_body")).joints)
    path = tmp_path / "held.h5"
    write_clips(path, [held])
    assert main(["clips", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(limit 10-20, 40-42)" in out and "1 of 1 clip(s) hold a joint on its range limit" in out
    assert main(["clips", "check", str(path), "--json"]) == 0
    joints = json.loads(capsys.readouterr().out)["clips"][0]["joints"]
    assert joints[0]["limit_frames"] == [[10, 20], [40, 42]]


def test_frames_the_muscles_cannot_drive_are_reported(reach):
    model = get_body("mouse_forelimb").compile()
    check = check_clip(reach, model=model)
    assert check.torque_checked and check.torque_frames == ()
    # The elbow straightening by 90 degrees within a frame (~160 rad/s, inside its range): the
    # shortening extensors lose their force at such speeds.
    bad = _with_jump(reach, "elbow_joint", 40, -np.pi / 2)
    check = check_clip(bad, max_speed=1e4, max_accel=1e9, model=model)
    assert not check.exceeding  # within the (raised) speed bounds, yet not drivable
    assert check.torque_frames and all(38 <= a <= b <= 41 for a, b in check.torque_frames)
    assert check.to_dict()["torque_frames"] == [list(r) for r in check.torque_frames]
    (line,) = clip_speed_warnings([reach, bad], "mouse_forelimb")[-1:]
    assert line.startswith(f"clip '{bad.name}': the muscles of mouse_forelimb cannot produce") and "frames 3" in line
    # Without a model (or for a body it does not match) nothing is judged.
    assert not check_clip(bad).torque_checked


def test_free_root_clip_checks_hinges_and_root_angular_speed():
    # A free-root layout by hand: root (7 columns) then one hinge, turning at 3 rad/s about z.
    T, fps = 40, 50.0
    qpos = np.zeros((T, 8))
    angle = 3.0 * np.arange(T) / fps
    qpos[:, 3], qpos[:, 6] = np.cos(angle / 2), np.sin(angle / 2)
    qpos[:, 7] = np.sin(np.arange(T) / 40)  # at most 1.25 rad/s
    rooted = Clip(
        name="spin",
        body="rat",
        fps=fps,
        joint_names=("root", "hinge"),
        joint_qpos_dims=(7, 1),
        qpos=qpos,
        qvel=np.zeros((T, 7)),
    ).validate()
    layout = clip_layout(rooted)
    assert layout.free_root and layout.joint_names == ("hinge",) and (layout.nq, layout.nv) == (8, 7)
    names, vel, acc = joint_speeds_and_accels(rooted.qpos, rooted.fps, layout)
    assert names == ("hinge", ROOT_ANGULAR)
    np.testing.assert_allclose(vel[:, 1], 3.0, rtol=1e-6)
    assert np.abs(acc[:, 1]).max() < 1e-6
    check = check_clip(rooted, max_speed=2.0)
    assert [j.joint for j in check.exceeding] == [ROOT_ANGULAR]
    assert check.exceeding[0].speed_frames == ((0, T - 1),)
    assert not check.torque_checked  # a free root is driven by contacts, not muscles


def test_cli_clips_check_text_and_json(tmp_path, capsys, reach):
    path = tmp_path / "clips.h5"
    write_clips(path, [reach, _with_jump(reach, "elbow_joint", 30, -np.pi / 2)])
    assert main(["clips", "check", str(path)]) == 0  # a report: exceeding is not a failure
    out = capsys.readouterr().out
    assert (
        "elbow_joint" in out
        and "speed 29-30" in out
        and out.rstrip().endswith("(speeds in rad/s, accelerations in rad/s^2)")
    )
    assert "1 of 2 clip(s) exceed a bound" in out
    assert "frames the muscles cannot drive (torques from inverse dynamics): none" in out
    assert "1 of 2 clip(s) ask for joint torques the body's muscles cannot produce" in out
    assert main(["clips", "check", str(path), "--json", "--max-speed", "500", "--max-accel", "1e6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips_exceeding"] == 0 and len(report["clips"]) == 2
    jumped = report["clips"][1]
    assert jumped["max_speed"] == 500.0
    elbow = next(j for j in jumped["joints"] if j["joint"] == "elbow_joint")
    assert elbow["peak_speed"] > 150 and elbow["speed_frames"] == []


def test_cli_clips_check_errors_are_one_line(tmp_path, capsys, reach):
    assert main(["clips", "check", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mimic clips: error: clip file not found: {tmp_path / 'missing.h5'}"
    path = tmp_path / "clips.h5"
    write_clips(path, [reach])
    assert main(["clips", "check", str(path), "--max-speed", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mimic clips: error: --max-speed must be a positive number, got 0.0"


@pytest.mark.needs_data
def test_shipped_forelimb_clips_show_the_swings(capsys):
    files = [p for p in mouse_arm_files() if p.stem == "trial25_ik"]
    if not files:
        pytest.skip("trial25_ik.h5 not in ../shared/data/mouse_arm")
    assert main(["clips", "check", str(files[0]), "--json"]) == 0
    (clip,) = json.loads(capsys.readouterr().out)["clips"]
    over = {j["joint"]: j for j in clip["joints"] if j["speed_frames"]}
    # sh_rotation turns ~90 deg in 3 frames at the singular pose (see docs/registration.md).
    assert "sh_rotation" in over and over["sh_rotation"]["peak_speed"] > 120
    assert "elbow_joint" not in over and "sh_extension" not in over
