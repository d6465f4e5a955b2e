"""Forelimb muscle strength benchmark: can the muscles produce the torques the reaches need?

For every frame of the 37 mouse-arm reaches (the qpos shipped in
../shared/data/mouse_arm/trial*_ik.h5 and, with ``--references``, a file of
re-registered references such as the cache `benchmarks/forelimb.py` writes):

- the torque the muscles reach in every direction at that pose and velocity
  (``bodies.strength.weakest_torque``; micro-newton-metres), min / 5th
  percentile / median over frames;
- the share of frames whose inverse-dynamics torque no activation pattern
  produces (static optimisation leaves more than a tenth), and how many clips
  have any such frame (what `mimic clips check` reports per clip).

Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/forelimb_strength.py [--references runs/bench_forelimb/references_registered.h5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mouse_arm"


def _figures(clips, model) -> dict:
    import mujoco

    from mimic_mjx.bodies.layout import reference_velocities
    from mimic_mjx.bodies.strength import muscle_torques, unproducible_frames, weakest_torque

    data = mujoco.MjData(model)
    weakest, bad, clips_bad = [], 0, 0
    frames = 0
    for c in clips:
        q = np.asarray(c.qpos, float)
        v = reference_velocities(q, c.fps)
        a = np.gradient(v, 1.0 / c.fps, axis=0)
        for t in range(len(q)):
            data.qpos[:], data.qvel[:] = q[t], v[t]
            weakest.append(weakest_torque(muscle_torques(model, data)[0]) * 1e6)
        mask = unproducible_frames(model, q, v, a)
        bad += int(mask.sum())
        clips_bad += bool(mask.any())
        frames += len(q)
    w = np.asarray(weakest)
    return {
        "clips": len(clips),
        "frames": frames,
        "weakest_torque_uNm_min": round(float(w.min()), 1),
        "weakest_torque_uNm_p5": round(float(np.percentile(w, 5)), 1),
        "weakest_torque_uNm_median": round(float(np.median(w)), 1),
        "unproducible_frame_fraction": round(bad / frames, 4),
        "clips_with_unproducible_frames": clips_bad,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--references", type=Path, help="an HDF5 file of re-registered forelimb references")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.clips import read_clip_files, read_clips

    files = sorted(DATA.glob("trial*_ik.h5"))
    if not files:
        print(f"no trials in {DATA}; this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    model = get_body("mouse_forelimb").compile()
    t0 = time.perf_counter()
    out = {"shipped_ik": _figures(read_clip_files(files), model)}
    print("shipped IK:", out["shipped_ik"], flush=True)
    if args.references is not None:
        out["registered"] = _figures(read_clips(args.references), model)
        print("re-registered:", out["registered"], flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
