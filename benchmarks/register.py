"""Registration benchmark: STAC on the real rat and mouse-forelimb recordings.

- rat: all 1000 frames of ../shared/data/rodent/rat_dannce_1000f.mat (50 Hz, mm),
  wall time with compilation included; then a 3-minute recording that starts
  with those frames (make_long_recording.py, seed 0) streamed with the default
  settings (registration.stream: offsets calibrated on 1000 sampled frames,
  poses in chunks of 1000): ``rat_frames_per_s`` is the chunk pass after its
  first (compiling) chunk, the rate an hours-long recording runs at once
  calibrated; compile and calibration seconds beside it. The same recording
  without mirrored copies (one rat's marker placement throughout, as a real
  recording has) is streamed too: its median residual over the 1000 shared
  frames (``rat_stream_median_residual_mm``) compares with one piece; the
  mirrored recording's is ``rat_stream_mirrored_median_residual_mm``;
- mouse forelimb: each of the 37 trials' keypoints (kp_data) registered on its
  own, residuals, and agreement of our joint angles with the registered qpos
  shipped in the files.

Last output line: one JSON object of the figures (with the load average at
the start and end: the CPU may be shared). ``--rat-only`` skips the forelimb.

    .venv/bin/python benchmarks/register.py [--rat-only]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_long_recording beside this file


def main() -> int:
    rat_file = DATA / "rodent" / "rat_dannce_1000f.mat"
    arm_files = sorted((DATA / "mouse_arm").glob("trial*_ik.h5"))
    if not rat_file.exists() or len(arm_files) != 37:
        print(
            f"needs {rat_file} and the 37 trials in {DATA / 'mouse_arm'}; see ../shared/data/README.md", file=sys.stderr
        )
        return 2
    import h5py

    from mimic_mjx.data.keypoints import read_keypoints
    from mimic_mjx.registration.register import format_residuals, register
    from mimic_mjx.registration.stac import StacConfig

    log = lambda m: print(m, flush=True)
    t0 = time.perf_counter()
    kp = read_keypoints(rat_file, fps=50.0, units="mm")
    rat = register(kp, "rat", StacConfig(), log=log)
    rat_wall = time.perf_counter() - t0
    print(format_residuals(rat.summary))
    print(f"rat: {rat_wall:.1f} s wall, compile included")
    stream = _rat_streamed(kp, log)
    if "--rat-only" in sys.argv:
        print(json.dumps({**_rat_figures(rat, rat_wall), **stream}))
        return 0

    t0 = time.perf_counter()
    residuals, diffs, their = [], [], []
    for path in arm_files:
        kp = read_keypoints(path)
        reg = register(kp, "mouse_forelimb", StacConfig(), log=lambda m: None)
        residuals.append(reg.result.residuals)
        with h5py.File(path) as f:
            shipped = f["qpos"][()]
            their.append(np.linalg.norm(f["marker_sites"][()] - kp.positions, axis=-1))
        diffs.append(np.rad2deg(np.abs(reg.result.qpos - shipped)))
    arm_wall = time.perf_counter() - t0
    residuals, diffs, their = np.concatenate(residuals), np.concatenate(diffs), np.concatenate(their)
    per_joint = dict(
        zip(["sh_elv", "sh_extension", "sh_rotation", "elbow_joint"], np.median(diffs, 0).round(2), strict=True)
    )
    print(
        f"arm: 37 trials in {arm_wall:.1f} s; median residual {1e3 * np.nanmedian(residuals):.3f} mm "
        f"(the shipped registration: {1e3 * np.median(their):.3f} mm); joint-angle agreement with the shipped "
        f"qpos: median |difference| {np.median(diffs):.2f} deg, per joint {per_joint}"
    )

    figures = {
        **_rat_figures(rat, rat_wall),
        **stream,
        "arm_median_residual_mm": round(1e3 * float(np.nanmedian(residuals)), 4),
        "arm_p95_residual_mm": round(1e3 * float(np.nanpercentile(residuals, 95)), 4),
        "arm_shipped_median_residual_mm": round(1e3 * float(np.median(their)), 4),
        "arm_qpos_agreement_deg": round(float(np.median(diffs)), 3),
        "arm_qpos_mean_abs_diff_deg": round(float(np.mean(diffs)), 3),
        "arm_wall_s": round(arm_wall, 1),
    }
    print(json.dumps(figures))
    return 0


def _rat_figures(rat, wall: float) -> dict:
    return {
        "rat_median_residual_mm": round(rat.summary["median_residual_mm"], 3),
        "rat_p95_residual_mm": round(rat.summary["p95_residual_mm"], 3),
        "rat_wall_s": round(wall, 1),
        "rat_joint_limit_violations": rat.summary["joint_limit_violations"],
    }


def _rat_streamed(kp, log) -> dict:
    """A 3-minute rat recording streamed with the default chunks: warm frames/s, compile, calibration, residual.

    The recording (benchmarks/make_long_recording.py, seed 0) starts with the
    1000 shared frames themselves: the residual over them compares with the
    one-piece registration above.
    """
    import dataclasses

    import jax
    from make_long_recording import build

    from mimic_mjx.data.clips import read_clips
    from mimic_mjx.registration.stream import register_stream

    def stream(mirror_share: float):
        long = build(kp.positions, list(kp.names), 9000, seed=0, mirror_share=mirror_share)
        kp_long = dataclasses.replace(kp, positions=long, confidence=np.ones(long.shape[:2]), source="rat_3min")
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = register_stream(kp_long, "rat", f"{tmp}/rat.h5", log=log)
            wall = time.perf_counter() - t0
            (clip,) = read_clips(f"{tmp}/rat.h5")
            return res, wall, 1e3 * np.nanmedian(clip.keypoint_residuals[:1000])

    load = os.getloadavg()[0]
    res, wall, first = stream(0.5)
    s = res.summary
    # One rat's marker placement throughout (no mirrored copies): the residual a real recording's
    # registration compares with; the mirrored recording cannot be fitted by one set of offsets.
    same, _, same_first = stream(0.0)
    print(
        f"rat streamed, 9000 frames without mirrored copies: {same.summary['warm_frames_per_s']:.1f} frames/s warm; "
        f"median residual {same.summary['median_residual_mm']:.3f} mm, {same_first:.3f} mm over the 1000 shared frames"
    )
    print(
        f"rat streamed, 9000 frames: {s['warm_frames_per_s']:.1f} frames/s warm ({s['devices']} device(s)), first "
        f"chunk {s['first_step_s']:.1f} s (compiles), calibration {s['calibration_s']:.1f} s, {wall:.1f} s wall; "
        f"median residual {s['median_residual_mm']:.3f} mm, {first:.3f} mm over the 1000 shared frames"
    )
    return {
        "rat_frames_per_s": round(s["warm_frames_per_s"], 1),
        "rat_stream_median_residual_mm": round(float(same_first), 3),
        "rat_stream_unmirrored_9000_median_residual_mm": round(same.summary["median_residual_mm"], 3),
        "rat_stream_mirrored_median_residual_mm": round(float(first), 3),
        "rat_stream_9000_median_residual_mm": round(s["median_residual_mm"], 3),
        "rat_stream_9000_p95_residual_mm": round(s["p95_residual_mm"], 3),
        "rat_stream_compile_s": round(s["first_step_s"], 1),
        "rat_stream_calibration_s": round(s["calibration_s"], 1),
        "rat_stream_wall_s": round(wall, 1),
        "rat_stream_devices": s["devices"],
        "rat_stream_backend": jax.default_backend(),
        "load_avg_1min_start_end": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


if __name__ == "__main__":
    sys.exit(main())
