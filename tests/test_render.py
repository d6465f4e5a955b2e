"""`mimic render`: rollout videos with a reference ghost, for the forelimb, the rat and the fly; bad input."""

from __future__ import annotations

import argparse
import json

import mujoco
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx.bodies import get_body
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import MimicError
from mimic_mjx.presentation import scene as S
from mimic_mjx.presentation import video
from mimic_mjx.presentation.render import open_renderer

W, H = 160, 120


def _model(body: str) -> mujoco.MjModel:
    return get_body(body).compile_trainable()


@pytest.fixture(scope="module")
def gl():
    """Skip where no offscreen OpenGL context can be made (no OSMesa, no EGL)."""
    try:
        open_renderer(_model("mouse_forelimb"), 16, 16).close()
    except MimicError as exc:
        pytest.skip(f"no offscreen OpenGL backend here, cannot render: {exc}")


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.abs(a.astype(int) - b.astype(int)) > 8).any(axis=-1)


def _posed_apart(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """The default pose and a reference whose joints (past a free root) are bent by 0.3 rad."""
    q = model.qpos0.copy()
    ref = q.copy()
    first = 7 if model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE else 0
    ref[first:] += 0.3
    return q, ref


def _ghost_shows(model: mujoco.MjModel, camera: str | None = None) -> None:
    q, ref = _posed_apart(model)
    with video.GhostPainter(model, W, H, camera=camera) as painter:
        alone = painter.frame(q)
        with_ghost = painter.frame(q, ref)
        again = painter.frame(q)
    assert with_ghost.shape == (H, W, 3) and with_ghost.dtype == np.uint8
    np.testing.assert_array_equal(alone, again)  # nothing of the ghost lingers
    changed = _changed(alone, with_ghost)
    assert changed.mean() > 0.002, f"camera {camera}: the ghost changed {changed.sum()} pixels"
    # The ghost is blue and translucent: where it shows, blue gains on red.
    gain = with_ghost[changed].astype(int) - alone[changed].astype(int)
    assert gain[:, 2].mean() > gain[:, 0].mean()


def test_forelimb_ghost_keypoints_markers_and_lost_tint(gl):
    model = _model("mouse_forelimb")
    clip = make_reaching_clips(1, seed=0, num_frames=40)[0]
    q, ref, kp = clip.qpos[0], clip.qpos[30], clip.keypoints[30]
    with video.GhostPainter(model, W, H) as painter:
        plain = painter.frame(q)
        ghost = painter.frame(q, ref)
        spheres = painter.frame(q, keypoints=kp, markers=kp + 0.002)
        lost = painter.frame(q, lost=True)
        captioned = painter.frame(q, caption="t 0.215 s  joint 3.2 deg")
    assert _changed(plain, ghost).sum() > 20
    assert _changed(plain, spheres).sum() > 5
    red = _changed(plain, lost)
    assert red.sum() > 20 and (lost[red][:, 0].astype(int) - lost[red][:, 2]).mean() > 50
    assert _changed(plain, captioned)[: H // 5].sum() > 20 and not _changed(plain, captioned)[H // 2 :].any()


def _ghost_outside_the_body(painter: video.GhostPainter, q: np.ndarray) -> float:
    """Fraction of the pixels the ghost changes that lie outside the body's own silhouette."""
    body = painter.frame(q)
    silhouette = _body_pixels(painter, q)  # not "not black": the floor fills the background
    changed = _changed(body, painter.frame(q, q))
    assert changed.sum() > 10
    return float((changed & ~silhouette).sum() / changed.sum())


def test_ghost_offset_moves_the_ghost_beside_the_body(gl):
    model = _model("mouse_forelimb")
    q, _ = _posed_apart(model)
    with video.GhostPainter(model, W, H) as over:
        assert _ghost_outside_the_body(over, q) < 0.3
    with video.GhostPainter(model, W, H, ghost_offset=(0, 0.015, 0)) as beside:
        assert _ghost_outside_the_body(beside, q) > 0.7


def test_rat_frame_with_ghost(gl):
    model = _model("rat")
    _ghost_shows(model)
    _ghost_shows(model, camera="side")


@pytest.mark.slow
def test_fly_frame_with_ghost(gl):
    model = _model("fruitfly")
    _ghost_shows(model)
    _ghost_shows(model, camera="track1")


def test_frame_rate_keeps_real_time_at_60_fps_or_less():
    times, fps = S.frame_times(200.0, 19)
    assert (fps, times.tolist()) == (50.0, [0, 4, 8, 12, 16])
    times, fps = S.frame_times(200.0, 19, slowmo=4)
    assert (fps, times.tolist()) == (50.0, list(range(19)))
    assert S.frame_times(30.0, 10)[1] == 30.0 and S.frame_times(60.0, 10)[1] == 60.0
    times, fps = S.frame_times(500.0, 10)
    stride = times[1] - times[0]
    assert stride == 9 and fps <= 60 and fps * stride == pytest.approx(500.0)


def test_short_clips_default_to_slow_motion_with_frames_in_between():
    """The reported case: a 0.5-s reach at 50 control steps/s was 25 frames, over before anyone saw it."""
    slowmo = S.auto_slowmo(25 / 50.0)
    assert slowmo == 6 and S.speed_label(slowmo) == "slow motion x6"
    times, fps = S.frame_times(50.0, 25, slowmo)
    assert fps == 25.0 and len(times) == 73 and len(times) / fps >= 2.9  # 3 frames per control step
    np.testing.assert_allclose(times[:4], [0, 1 / 3, 2 / 3, 1])
    assert S.auto_slowmo(3.0) == 1 and S.auto_slowmo(40.0) == 1 and S.speed_label(1) == "real time"


def test_poses_between_steps():
    arm = _model("mouse_forelimb")
    q0, q1 = arm.qpos0.copy(), arm.qpos0 + 0.4
    np.testing.assert_allclose(S.interpolate_qpos(arm, q0, q1, 0.25), q0 + 0.1)
    rat = _model("rat")
    q0, q1 = rat.qpos0.copy(), rat.qpos0.copy()
    q1[:7] = [0.1, 0.2, 0.3, np.cos(0.5), 0, 0, np.sin(0.5)]  # moved and turned 1 rad about z
    half = S.interpolate_qpos(rat, q0, q1, 0.5)
    np.testing.assert_allclose(half[:3], q0[:3] + 0.5 * (q1[:3] - q0[:3]))
    np.testing.assert_allclose(half[3:7], [np.cos(0.25), 0, 0, np.sin(0.25)], atol=1e-12)  # halfway on the sphere


def _worm(length: float) -> mujoco.MjModel:
    """A chain of five capsules ``length`` long, without a floor: the same shape at any scale."""
    r, seg = length / 40, length / 5
    geom = f'<geom type="capsule" fromto="0 0 0 {seg} 0 0" size="{r}" rgba="0.8 0.5 0.3 1"/>'
    xml = f'<body name="b0" pos="0 0 {2 * r}"><joint name="j0" axis="0 0 1"/>{geom}'
    for i in range(1, 5):
        xml += f'<body name="b{i}" pos="{seg} 0 0"><joint name="j{i}" axis="0 0 1"/>{geom}'
    return mujoco.MjModel.from_xml_string(
        f'<mujoco><compiler boundmass="1e-6" boundinertia="1e-12"/><worldbody>{xml}{"</body>" * 5}</worldbody></mujoco>'
    )


def _body_pixels(painter: video.GhostPainter, q) -> np.ndarray:
    """Where the body's own geoms are in the frame (segmentation rendering)."""
    painter.frame(q)  # aims the camera
    painter.renderer.update_scene(painter.sim, painter.camera, painter.option)
    painter.renderer.enable_segmentation_rendering()
    try:
        seg = painter.renderer.render()
    finally:
        painter.renderer.disable_segmentation_rendering()
    ids = np.flatnonzero(painter.model.geom_bodyid > 0)
    return (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & np.isin(seg[..., 0], ids)


def test_camera_fits_the_sweep_from_a_millimetre_worm_to_a_metre(gl):
    """The distance comes from the body's extent over the clip: the frame looks the same at any scale."""
    t = np.linspace(0, 1, 40)[:, None]
    poses = 0.6 * np.sin(2 * np.pi * t + np.arange(5)[None])
    frames, covers = [], []
    for length in (1e-3, 1.0):
        with video.GhostPainter(_worm(length), W, H, poses=poses) as painter:
            assert painter.floor is not None and painter.floor[1] == pytest.approx(0.2 * length)  # grid: a round length
            swept = np.any([_body_pixels(painter, q) for q in poses[::4]], axis=0)
            frames.append(painter.frame(poses[10], poses[30]))
        rows, cols = np.flatnonzero(swept.any(1)), np.flatnonzero(swept.any(0))
        covers.append(max((rows[-1] - rows[0]) / H, (cols[-1] - cols[0]) / W))
        assert 0 < rows[0] and rows[-1] < H - 1 and 0 < cols[0] and cols[-1] < W - 1  # nothing cut off
    assert min(covers) > 0.6, covers  # the sweep spans most of the frame
    assert np.mean(_changed(*frames)) < 0.01  # the same picture at both scales


def test_scene_has_a_floor_light_and_a_visible_ghost(gl):
    model = _model("mouse_forelimb")
    clip = make_reaching_clips(1, seed=0, num_frames=60)[0]
    with video.GhostPainter(model, W, H, poses=clip.qpos) as painter:
        assert painter.floor is not None  # the forelimb model has none: one is drawn
        plain = painter.frame(clip.qpos[10])
        ghost = painter.frame(clip.qpos[10], clip.qpos[50])
        labelled = painter.frame(clip.qpos[10], label="slow motion x6")
    assert (plain.max(axis=-1) < 10).mean() < 0.5  # mostly floor, not black background
    shows = _changed(plain, ghost)
    assert shows.mean() > 0.01  # the ghost is seen against the floor
    assert not _changed(plain, labelled)[: H // 2].any() and _changed(plain, labelled)[-H // 8 :].sum() > 20


def test_frozen_body_after_tracking_is_lost():
    qpos = np.array([[1.0], [2.0], [np.nan], [np.nan]])
    tracked = np.array([True, True, False, False])
    np.testing.assert_array_equal(video._frozen(qpos, tracked, np.array([0.0]))[:, 0], [1, 2, 2, 2])
    lost_at_once = video._frozen(qpos, np.zeros(4, bool), np.array([7.0]))
    np.testing.assert_array_equal(lost_at_once[:, 0], [7, 7, 7, 7])
    assert "LOST" in video._caption(0.3, np.nan, {}, np.nan, 0.25)
    text = video._caption(0.215, 3.21, video._effector_errors(["wrist_body"], np.array([0.00041])), np.nan, None)
    assert text == "t 0.215 s  joint 3.2 deg  wrist 0.41 mm"


# Bad input: one line each, saying what to do.


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    ("kwargs", "expect"),
    [
        ({"slowmo": 0}, "--slowmo must be a positive"),
        ({"slowmo": -2}, "--slowmo must be a positive"),
        ({"width": 0}, "must be positive numbers of pixels"),
        ({"height": -1}, "must be positive numbers of pixels"),
        ({"fps": 0}, "fps must be a positive"),
    ],
)
def test_bad_numbers(tmp_path, kwargs, expect):
    clips = make_reaching_clips(1, seed=0, num_frames=20)
    with pytest.raises(MimicError, match=expect) as exc:
        video.render_rollout(tmp_path / "no_run", clips, clips[0].name, tmp_path / "v.mp4", **kwargs)
    _one_line(exc)
    assert not list(tmp_path.iterdir())


def test_unknown_clip_lists_the_clips(tmp_path):
    clips = make_reaching_clips(2, seed=0, num_frames=20)
    with pytest.raises(MimicError, match="no clip named 'reach_9'") as exc:
        video.render_rollout(tmp_path / "no_run", clips, "reach_9", tmp_path / "v.mp4")
    assert "reach_000, reach_001" in _one_line(exc)


def test_unknown_camera_lists_the_cameras():
    with pytest.raises(MimicError, match="unknown camera 'front'") as exc:
        video.resolve_camera(_model("rat"), "front")
    msg = _one_line(exc)
    assert "back, side, side_alt, top, egocentric" in msg and "--azimuth/--elevation/--distance" in msg
    with pytest.raises(MimicError, match="cameras: none"):
        video.resolve_camera(_model("mouse_forelimb"), "side")
    with pytest.raises(MimicError, match="aim the free camera"):
        video.resolve_camera(_model("rat"), "side", azimuth=90)
    with pytest.raises(MimicError, match="--distance must be a positive"):
        video.resolve_camera(_model("rat"), distance=0)


def test_no_opengl_says_what_to_install(monkeypatch):
    def no_gl(*args, **kwargs):
        raise RuntimeError("OSMesa:\n cannot create context")

    monkeypatch.setattr(mujoco, "Renderer", no_gl)
    with pytest.raises(MimicError, match="no OpenGL backend") as exc:
        video.GhostPainter(_model("mouse_forelimb"), W, H)
    msg = _one_line(exc)
    assert "apt-get install libosmesa6" in msg and "EGL" in msg and "MUJOCO_GL" in msg


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mimic")
    video.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_without_clips_asks_for_them(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tiny_config_dict()))
    args = _parse(["render", str(run), "--clip", "reach_000", "--out", str(tmp_path / "v.mp4")])
    assert args.func is video.run and args.slowmo is None and args.ghost_offset == (0.0, 0.0, 0.0)
    with pytest.raises(MimicError, match="pass --clips") as exc:
        video.run(args)
    _one_line(exc)


# End to end: a tiny trained forelimb controller.


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mimic_mjx import config as config_lib
    from mimic_mjx.data.clips import write_clips
    from mimic_mjx.training.trainer import train

    root = tmp_path_factory.mktemp("render")
    clips = make_reaching_clips(2, seed=4, num_frames=20)
    write_clips(root / "clips.h5", clips)
    train(config_lib.from_dict(tiny_config_dict()), root / "run", clips, log=lambda m: None)
    return root, clips


def _frames(path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [frame for frame in reader.iter_data()]  # list(reader) reads its length as infinite


@pytest.mark.slow
def test_render_rollout_writes_a_real_time_video(gl, trained, tmp_path):
    root, clips = trained
    lines = []
    out = tmp_path / "reach.mp4"
    result = video.render_rollout(
        root / "run", clips, clips[1].name, out, width=W, height=H, slowmo=1, log=lines.append
    )
    # 19 control steps at 200 Hz: every 4th drawn, at 50 fps.
    assert result["frames"] == 5 and result["fps"] == 50.0 and result["seconds"] == pytest.approx(0.1)
    assert result["path"] == str(out) and result["camera"].startswith("free")
    frames = _frames(out)
    assert len(frames) == 5 and frames[0].shape == (H, W, 3)
    assert any("one step in 4, at 50 fps, to keep real time" in line for line in lines)
    assert any("100%" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reach.mp4"]  # written atomically


@pytest.mark.slow
def test_render_rollout_of_a_short_clip_is_slow_motion_by_default(gl, trained, tmp_path):
    root, clips = trained
    lines = []
    result = video.render_rollout(
        root / "run", clips, clips[0].name, tmp_path / "v.mp4", width=W, height=H, log=lines.append
    )
    # 19 control steps at 200 Hz last 0.095 s: slowed 32 times, 4 frames per step at 25 fps.
    assert result["slowmo"] == 32 and result["fps"] == 25.0 and result["frames"] == 73
    assert result["seconds"] >= 2.9 and any("slow motion x32" in line for line in lines)
    frames = _frames(tmp_path / "v.mp4")
    assert len(frames) == 73 and frames[0][-H // 8 :, :20].mean() < frames[0][H // 2 : -H // 4].mean()  # the label


@pytest.mark.slow
def test_cli_render_slow_motion_with_ghost_beside(gl, trained, tmp_path, capsys):
    root, clips = trained
    out = tmp_path / "slow.mp4"
    args = _parse(
        ["render", str(root / "run"), "--clip", clips[0].name, "--clips", str(root / "clips.h5"), "--out", str(out)]
        + ["--slowmo", "4", "--width", str(W), "--height", str(H), "--ghost-offset", "0", "0.02", "0"]
    )
    assert args.func(args) == 0
    assert "19 frames at 50 fps" in capsys.readouterr().out
    frames = _frames(out)
    assert len(frames) == 19 and frames[0].shape == (H, W, 3)
    # Frame 0: body and ghost start at the same pose, so the offset ghost shows beside the body.
    assert frames[0][H // 4 :].std() > 1
