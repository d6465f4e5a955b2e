"""Forelimb registration benchmark: joint speeds of the 37 mouse-arm reaches, before and after the temporal prior.

Each trial's keypoints (kp_data of ../shared/data/mouse_arm/trial*_ik.h5,
200 Hz) is registered on its own by `register` with the default StacConfig
(speed prior on, hinges kept a margin inside their limits) and again with
both off (the registration before they existed). For each, and for the qpos shipped in the files, it reports the
keypoint residual (median, 95th percentile over all frames and keypoints) and
per joint the median and maximum over trials of each trial's peak joint speed
(rad/s, central differences: the velocities the tracking task uses), plus how
many trials `mimic clips check` flags against the forelimb's bounds and how
many frames hold a joint on its range limit.

Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/register_forelimb.py
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mouse_arm"
JOINTS = ("sh_elv", "sh_extension", "sh_rotation", "elbow_joint")


def _figures(residuals_m: list[np.ndarray], qpos: list[np.ndarray], clips) -> dict:
    from mimic_mjx.bodies.layout import reference_velocities
    from mimic_mjx.data.check import check_clips

    peaks = np.array([np.abs(reference_velocities(q, 200.0)).max(0) for q in qpos])
    res = 1e3 * np.concatenate([r.ravel() for r in residuals_m])
    res = res[np.isfinite(res)]
    checks = check_clips(clips)
    by_joint = lambda a: {j: round(float(v), 1) for j, v in zip(JOINTS, a, strict=True)}
    return {
        "residual_median_mm": round(float(np.median(res)), 3),
        "residual_p95_mm": round(float(np.percentile(res, 95)), 3),
        "peak_speed_rad_s_median_by_joint": by_joint(np.median(peaks, 0)),
        "peak_speed_rad_s_max_by_joint": by_joint(peaks.max(0)),
        "trials_over_bounds": sum(bool(c.exceeding) for c in checks),
        "frames_on_a_limit": sum(len(_limit_frame_set(c)) for c in checks),
    }


def _limit_frame_set(check) -> set[int]:
    """Frames of a clip in which any joint is on its range limit."""
    return {t for j in check.joints for a, b in j.limit_frames for t in range(a, b + 1)}


def _line(name: str, f: dict) -> str:
    med, top = f["peak_speed_rad_s_median_by_joint"], f["peak_speed_rad_s_max_by_joint"]
    speeds = ", ".join(f"{j} {med[j]:.0f}/{top[j]:.0f}" for j in JOINTS)
    return (
        f"{name:<22} residual {f['residual_median_mm']:.3f} / {f['residual_p95_mm']:.3f} mm; "
        f"peak speed median/max (rad/s): {speeds}; over bounds: {f['trials_over_bounds']}/37; "
        f"frames on a limit: {f['frames_on_a_limit']}"
    )


def main() -> int:
    files = sorted(DATA.glob("trial*_ik.h5"))
    if len(files) != 37:
        print(f"needs the 37 trials in {DATA}; see ../shared/data/README.md", file=sys.stderr)
        return 2
    import h5py

    from mimic_mjx.data.clips import read_clips
    from mimic_mjx.data.keypoints import read_keypoints
    from mimic_mjx.registration.register import register
    from mimic_mjx.registration.stac import StacConfig

    shipped_res, shipped_q, shipped_clips = [], [], []
    for path in files:
        with h5py.File(path) as f:
            kp = f["kp_data"][()].reshape(-1, 3, 3)
            shipped_res.append(np.linalg.norm(f["marker_sites"][()] - kp, axis=-1))
            shipped_q.append(f["qpos"][()].astype(np.float64))
        shipped_clips += read_clips(path)
    figures = {"shipped": _figures(shipped_res, shipped_q, shipped_clips)}
    t_after = 0.0
    before_cfg = dataclasses.replace(StacConfig(), velocity_m_per_rad_s=0.0, limit_margin_rad=0.0)
    for name, cfg in (("before", before_cfg), ("after", StacConfig())):
        t0 = time.perf_counter()
        res, qpos, clips = [], [], []
        for path in files:
            reg = register(read_keypoints(path), "mouse_forelimb", cfg, log=lambda m: None)
            res.append(reg.result.residuals)
            qpos.append(reg.result.qpos)
            clips.append(reg.clip)
        figures[name] = _figures(res, qpos, clips)
        figures[name]["seconds"] = round(time.perf_counter() - t0, 1)
        t_after = figures[name]["seconds"]
    for name in ("shipped", "before", "after"):
        print(_line(name if name != "after" else "after (default prior)", figures[name]))

    after, before, shipped = figures["after"], figures["before"], figures["shipped"]
    cfg = StacConfig()
    out = {
        "velocity_m_per_rad_s": cfg.velocity_m_per_rad_s,
        "observable_lever_m": cfg.observable_lever_m,
        "limit_margin_rad": cfg.limit_margin_rad,
        **{k: v for k, v in after.items() if k != "seconds"},
        "before_residual_median_mm": before["residual_median_mm"],
        "before_residual_p95_mm": before["residual_p95_mm"],
        "before_peak_speed_rad_s_median_by_joint": before["peak_speed_rad_s_median_by_joint"],
        "before_peak_speed_rad_s_max_by_joint": before["peak_speed_rad_s_max_by_joint"],
        "before_trials_over_bounds": before["trials_over_bounds"],
        "before_frames_on_a_limit": before["frames_on_a_limit"],
        "shipped_residual_median_mm": shipped["residual_median_mm"],
        "shipped_peak_speed_rad_s_median_by_joint": shipped["peak_speed_rad_s_median_by_joint"],
        "shipped_peak_speed_rad_s_max_by_joint": shipped["peak_speed_rad_s_max_by_joint"],
        "shipped_trials_over_bounds": shipped["trials_over_bounds"],
        "shipped_frames_on_a_limit": shipped["frames_on_a_limit"],
        "before_seconds": before["seconds"],
        "seconds": t_after,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
