"""Streamed registration: chunks match one piece, resume after a kill or a full disk, gaps, settings, devices."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.keypoint_maps import get_keypoint_map
from mimic_mjx.data.clips import read_clips, write_clips
from mimic_mjx.data.keypoints import Keypoints
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import KeypointError, OutputError
from mimic_mjx.registration.chunks import (
    StreamConfig,
    calibration_windows,
    find_segments,
    plan_chunks,
)
from mimic_mjx.registration.stac import StacConfig
from mimic_mjx.registration.stream import register_stream

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FPS = 200.0
CFG = StacConfig(rounds=1, lm_iterations=15)
SCFG = StreamConfig(chunk_frames=60, overlap_frames=10, calibration_frames=120, calibration_block=40)


def _arm_keypoints(frames: int = 240, seed: int = 0) -> Keypoints:
    """Synthetic reaches of the mouse forelimb seen through its three keypoints, with noise."""
    arm, kmap = get_body("mouse_forelimb"), get_keypoint_map("mouse_forelimb")
    clips = make_reaching_clips(-(-frames // 120), seed=11, num_frames=120)
    qpos = np.concatenate([c.qpos for c in clips])[:frames].astype(np.float64)
    model = arm.compile()
    data = mujoco.MjData(model)
    names = list(kmap.names)
    ids = [model.body(kmap.keypoints[n][0]).id for n in names]
    offsets = np.array([kmap.keypoints[n][1] for n in names])
    kp = np.zeros((frames, len(names), 3))
    for t, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        kp[t] = data.xpos[ids] + np.einsum("kij,kj->ki", data.xmat[ids].reshape(-1, 3, 3), offsets)
    kp += np.random.default_rng(seed).normal(0, 2e-5, kp.shape)
    return Keypoints(
        positions=kp, names=tuple(names), fps=FPS, confidence=np.ones(kp.shape[:2]), source="synthetic/arm"
    ).validate()


def test_segments_chunks_and_sample():
    empty = np.zeros(1000, bool)
    empty[:5] = True  # leading empty frames are trimmed
    empty[300:310] = True  # 0.2 s at 50 Hz: kept, filled in by smoothness
    empty[500:700] = True  # 4 s: a gap
    segments, gaps = find_segments(empty, 50.0, 1.0)
    assert segments == [(5, 500), (700, 1000)] and gaps == [(500, 700)]
    chunks = plan_chunks(segments, 200)
    assert [(c.start, c.end) for c in chunks] == [(5, 170), (170, 335), (335, 500), (700, 850), (850, 1000)]
    assert all(c.end - c.start <= 200 for c in chunks)
    windows = calibration_windows(segments, 200, 50)
    assert sum(b - a for a, b in windows) == 200 and all(b - a == 50 for a, b in windows)
    assert all(any(a >= s and b <= e for s, e in segments) for a, b in windows)  # never across a gap
    with pytest.raises(KeypointError, match="nothing to register"):
        find_segments(np.ones(10, bool), 50.0, 1.0)


@pytest.fixture(scope="module")
def arm_runs(tmp_path_factory):
    """One piece (one chunk) and chunked registrations of the same keypoints."""
    tmp = tmp_path_factory.mktemp("stream")
    kp = _arm_keypoints()
    one = register_stream(
        kp, "mouse_forelimb", tmp / "one.h5", CFG, dataclasses.replace(SCFG, chunk_frames=1000), log=lambda m: None
    )
    logs: list[str] = []
    # Its chunks are kept: the resume tests below continue from them.
    chunked = register_stream(kp, "mouse_forelimb", tmp / "chunked.h5", CFG, SCFG, keep_parts=True, log=logs.append)
    return kp, one, chunked, logs, tmp


def _qpos(path) -> np.ndarray:
    (clip,) = read_clips(path)
    return clip.qpos


def test_chunked_equals_one_piece_without_jumps_at_borders(arm_runs):
    kp, one, chunked, logs, tmp = arm_runs
    assert one.summary["chunks"] == 1 and chunked.summary["chunks"] == 4
    a, b = _qpos(tmp / "one.h5"), _qpos(tmp / "chunked.h5")
    assert not (tmp / "one.h5.parts").exists()  # removed once the clip file is written
    assert a.shape == b.shape == (240, 4)
    assert np.rad2deg(np.abs(a - b)).max() < 0.5, np.rad2deg(np.abs(a - b)).max(axis=0)
    assert chunked.summary["median_residual_mm"] <= one.summary["median_residual_mm"] * 1.02 + 1e-4
    # At the chunk borders the pose steps like anywhere else in the recording.
    step = np.rad2deg(np.abs(np.diff(b, axis=0))).max(axis=1)
    borders = [59, 119, 179]  # step from frame 59 to 60, ...
    assert step[borders].max() <= 1.5 * np.percentile(step, 99) + 0.05
    # Progress with time left, and the file holds the whole recording as one clip.
    assert any("frames/s" in m and "left" in m for m in logs)
    back = read_clips(tmp / "chunked.h5")
    assert len(back) == 1 and back[0].num_frames == 240


def _failing_writer(after: int):
    """write_clips that fails with ENOSPC from the ``after``-th chunk on, like a disk filling up."""
    calls = []

    def write(path, clips):
        calls.append(path)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_clips(path, clips)

    return write


def test_full_disk_keeps_finished_chunks_and_resume_continues(arm_runs):
    kp, _, chunked, _, tmp = arm_runs
    out = tmp / "disk.h5"
    with pytest.raises(OutputError, match=r"could not write chunk .*--resume"):
        register_stream(kp, "mouse_forelimb", out, CFG, SCFG, log=lambda m: None, write=_failing_writer(2))
    parts = sorted((tmp / "disk.h5.parts").glob("chunk-*.h5"))
    assert len(parts) == 2 and not out.exists()
    for p in parts:  # every finished chunk reads back on its own
        (clip,) = read_clips(p)
        assert clip.num_frames == 60 and np.isfinite(clip.qpos).all()
    # Without --resume the unfinished work is not discarded silently.
    with pytest.raises(OutputError, match="--resume"):
        register_stream(kp, "mouse_forelimb", out, CFG, SCFG, log=lambda m: None)
    logs: list[str] = []
    res = register_stream(kp, "mouse_forelimb", out, CFG, SCFG, resume=True, keep_parts=True, log=logs.append)
    assert res.kept == 2 and res.solved == 2
    assert any("kept 2 of 4 finished chunks" in m and "0-120" in m for m in logs), logs
    np.testing.assert_allclose(_qpos(out), _qpos(tmp / "chunked.h5"), atol=1e-5)
    # A finished registration whose chunks were kept resumes to the same file without solving anything,
    # and then (without keep_parts) removes them.
    logs.clear()
    again = register_stream(kp, "mouse_forelimb", out, CFG, SCFG, resume=True, log=logs.append)
    assert again.kept == 4 and again.solved == 0 and again.clips == 1
    assert not (tmp / "disk.h5.parts").exists() and any("removed the chunks" in m for m in logs), logs
    np.testing.assert_allclose(_qpos(out), _qpos(tmp / "chunked.h5"), atol=1e-5)


def test_resume_with_other_settings_names_them(arm_runs):
    kp, _, _, _, tmp = arm_runs
    other = dataclasses.replace(CFG, lm_iterations=10)
    with pytest.raises(KeypointError, match=r"other settings \(.*stac.lm_iterations: 15 -> 10") as e:
        register_stream(kp, "mouse_forelimb", tmp / "chunked.h5", other, SCFG, resume=True, log=lambda m: None)
    assert "stream.chunk_frames" not in str(e.value)
    moved = dataclasses.replace(kp, positions=kp.positions + 1e-4)
    with pytest.raises(KeypointError, match=r"data: "):
        register_stream(moved, "mouse_forelimb", tmp / "chunked.h5", CFG, SCFG, resume=True, log=lambda m: None)


def test_long_gap_splits_into_clips_and_says_where(tmp_path):
    kp = _arm_keypoints()
    pos = kp.positions.copy()
    pos[100:140] = np.nan  # 0.2 s at 200 Hz
    kp = dataclasses.replace(kp, positions=pos)
    logs: list[str] = []
    res = register_stream(
        kp, "mouse_forelimb", tmp_path / "gap.h5", CFG, dataclasses.replace(SCFG, gap_s=0.1), log=logs.append
    )
    back = read_clips(tmp_path / "gap.h5")
    assert res.clips == 2 and [c.num_frames for c in back] == [100, 100]
    assert [c.name for c in back] == ["arm-seg00", "arm-seg01"]
    assert any("gap: no keypoints in frames 100-140" in m and "split" in m for m in logs), logs


def test_clip_length_cuts_segments_and_leaves_short_ones_out(tmp_path):
    kp = _arm_keypoints()
    pos = kp.positions.copy()
    pos[150:190] = np.nan  # a gap: segments 0-150 and 190-240
    kp = dataclasses.replace(kp, positions=pos)
    scfg = dataclasses.replace(SCFG, gap_s=0.1)
    with pytest.raises(KeypointError, match="shorter --clip-length"):  # before any solving
        register_stream(kp, "mouse_forelimb", tmp_path / "x.h5", CFG, scfg, clip_length=200, log=lambda m: None)
    assert not (tmp_path / "x.h5.parts").exists()
    logs: list[str] = []
    res = register_stream(kp, "mouse_forelimb", tmp_path / "cut.h5", CFG, scfg, clip_length=60, log=logs.append)
    back = read_clips(tmp_path / "cut.h5")
    assert res.clips == 2 and [c.name for c in back] == ["arm-seg00-0000", "arm-seg00-0001"]
    assert [c.num_frames for c in back] == [60, 60]
    assert any("frames 190-240" in m and "left out" in m for m in logs), logs
    # The pieces are the segment's frames: the second starts where the first ends.
    whole = register_stream(kp, "mouse_forelimb", tmp_path / "whole.h5", CFG, scfg, log=lambda m: None)
    assert whole.clips == 2
    seg0 = read_clips(tmp_path / "whole.h5", names=["arm-seg00"])[0]
    np.testing.assert_allclose(back[1].qpos, seg0.qpos[60:120], atol=1e-6)


def _cli(args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mimic_mjx.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_cli_resume_says_which_chunks_it_kept_on_two_devices(tmp_path, arm_runs):
    """`mimic register --resume` after a kill, with two CPU devices splitting the chunks."""
    kp, _, chunked, _, _ = arm_runs
    mat = tmp_path / "arm.csv"
    header = ",".join(f"{n}_{a}" for n in kp.names for a in "xyz")
    np.savetxt(mat, kp.positions.reshape(len(kp.positions), -1), delimiter=",", header=header, comments="")
    out = tmp_path / "arm.h5"
    common = ["register", "--body", "mouse_forelimb", "--keypoints", mat, "--units", "m", "--fps", FPS, "--out", out]
    common += ["--rounds", 1, "--iterations", 15, "--chunk-frames", 60, "--overlap-frames", 10]
    common += ["--calibration-frames", 120]
    r = _cli([*common, "--keep-parts"], env={"JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wrote 1 clip(s) from 4 chunk(s)" in r.stdout
    # A kill after two chunks: remove the other two; --resume keeps the first two.
    for p in sorted((tmp_path / "arm.h5.parts").glob("chunk-*.h5"))[2:]:
        p.unlink()
    r = _cli([*common, "--resume"], env={"JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "kept 2 of 4 finished chunks" in r.stderr and "kept 2 finished chunk(s), solved 2" in r.stdout
    (clip,) = read_clips(out)
    assert clip.num_frames == 240 and not (tmp_path / "arm.h5.parts").exists()
    assert np.rad2deg(np.abs(clip.qpos - _qpos(arm_runs[4] / "chunked.h5"))).max() < 0.5


def test_long_recording_script_is_reproducible_and_mirrors_names(tmp_path):
    rat = ROOT.parent / "shared" / "data" / "rodent" / "rat_dannce_1000f.mat"
    if not rat.exists():
        pytest.skip(f"needs {rat} (../shared/data/README.md)")
    script = ROOT / "benchmarks" / "make_long_recording.py"
    outs = [tmp_path / "a.mat", tmp_path / "b.mat"]
    for o in outs:
        r = subprocess.run(
            [sys.executable, script, "--minutes", "0.5", "--seed", "3", "--out", o], capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
    from mimic_mjx.data.keypoints import read_keypoints

    kp, again = (read_keypoints(o, fps=50.0, units="mm") for o in outs)
    np.testing.assert_array_equal(kp.positions, again.positions)  # the .mat header holds a date; the data agree
    assert kp.num_frames == 1500 and kp.names[1:3] == ("EarL", "EarR")
    assert np.isfinite(kp.positions).all()
    # Seams are cross-faded: no keypoint jumps further between frames than in the source recording.
    src = read_keypoints(rat, fps=50.0, units="mm").positions
    top = lambda x: np.linalg.norm(np.diff(x, axis=0), axis=-1).max()
    assert top(kp.positions) <= 1.5 * top(src)
    r = subprocess.run(
        [sys.executable, script, "--minutes", "0.1", "--out", ROOT / "x.mat"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "inside the repository" in r.stderr
