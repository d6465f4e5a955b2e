"""Data efficiency: held-out tracking against the number of training clips.

Trains one controller per clip count (default 1, 5, 10, 25, 50 clips), each
for the same wall-time budget (``--minutes``), and evaluates every one on the
same held-out clips: mean body error (mm, over the tracked part) and fraction
tracked. The training sets are nested (the first n clips of one seeded
order), so a count differs from the one before only by its added clips.

Data:

- ``--clips FILE [FILE ...]``: the registered clips of a long recording (e.g.
  ``mimic register --clip-length`` output) for ``--body``; ``--held-out K``
  clips spread evenly over them are held out, the rest form the training pool.
- default: the 37 mouse reaching trials of ../shared/data/mouse_arm (their
  shipped IK, 200 Hz). The 7 held-out trials are those of
  benchmarks/forelimb.py; the pool is the 30 others plus time-warped copies of
  them (each resampled at a speed drawn from [0.8, 1.25], seeded), so counts
  past 30 exist. Without the shared data the benchmark says so and exits 0.

Budget: ``--minutes`` of wall time per run, or a number of environment steps
(``--set train.total_steps=N``, whichever ends first), which does not depend
on how busy the machine is. ``--seeds`` repeats every count with other
training seeds (the clip order and warps stay those of the first seed), and
each count reports its worst and mean over them.

Each run trains in RUN_DIR/clipsN[_seedS] (replaced). Prints one line per run;
the last line is one JSON object (``rows``: one per count and seed;
``counts``: per count the worst and mean held-out body error and fraction
tracked).

    .venv/bin/python benchmarks/data_efficiency.py [--counts 1 5 10 25 50] [--minutes 15] [--seeds 0 1 2] \
        [--run-dir runs/bench_data] [--set train.total_steps=3000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MOUSE_ARM = ROOT.parent / "shared" / "data" / "mouse_arm"
SPEEDS = (0.8, 1.25)


def time_warp(clip, speed: float, name: str):
    """``clip`` played ``speed`` times as fast (joint angles interpolated linearly; velocities recomputed).

    Hinge and slide joints only (a free root's quaternion is not interpolated
    linearly); body poses and keypoints are left out, binding poses the bodies.
    """
    from mimic_mjx.data.clips import Clip, finite_difference_velocity

    if any(d != 1 for d in clip.qpos_dims):
        raise SystemExit(f"clip '{clip.name}' has free or ball joints; time-warped copies need hinge joints")
    src = np.arange(int(round((clip.num_frames - 1) / speed)) + 1) * speed
    src = np.minimum(src, clip.num_frames - 1)
    qpos = np.stack([np.interp(src, np.arange(clip.num_frames), col) for col in clip.qpos.T], axis=1)
    return Clip(
        name=name,
        body=clip.body,
        fps=clip.fps,
        joint_names=clip.joint_names,
        qpos=qpos.astype(np.float32),
        qvel=finite_difference_velocity(qpos, clip.fps),
        joint_qpos_dims=clip.joint_qpos_dims,
        body_hash=clip.body_hash,
    ).validate()


def forelimb_split(pool_size: int, seed: int):
    """The default data: (training pool, held-out clips) from the shared reaching trials; None when absent."""
    from mimic_mjx.data.clips import read_clip_files

    files = sorted(MOUSE_ARM.glob("trial*_ik.h5"))
    if len(files) != 37:
        return None
    clips = read_clip_files(files)
    held_idx = set(range(2, 37, 5)[:7])  # benchmarks/forelimb.py's held-out trials
    train = [c for i, c in enumerate(clips) if i not in held_idx]
    rng = np.random.default_rng(seed)
    copies, k = [], 0
    while len(train) + len(copies) < pool_size:
        base = train[k % len(train)]
        speed = float(rng.uniform(*SPEEDS))
        copies.append(time_warp(base, speed, f"{base.name}-x{speed:.3f}-{k // len(train)}"))
        k += 1
    return train + copies, [c for i, c in enumerate(clips) if i in held_idx]


def file_split(paths, held_out: int):
    """(training pool, held-out clips) of registered clips: ``held_out`` spread evenly over the recording."""
    from mimic_mjx.data.clip_files import ClipFiles, open_clip_files

    clips = open_clip_files(paths)
    if not 0 < held_out < len(clips):
        raise SystemExit(f"--held-out must be between 1 and {len(clips) - 1} (the files hold {len(clips)} clips)")
    held = set(np.round(np.linspace(0, len(clips) - 1, held_out)).astype(int).tolist())
    pool = [i for i in range(len(clips)) if i not in held]
    return ClipFiles([clips.infos[i] for i in pool]), clips.select([clips.names[i] for i in sorted(held)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 5, 10, 25, 50], help="training clip counts")
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall-time budget per count")
    ap.add_argument("--clips", nargs="+", metavar="FILE", help="registered clips of a long recording (default: mouse)")
    ap.add_argument("--body", default="mouse_forelimb", help="the body of --clips")
    ap.add_argument("--held-out", type=int, default=10, help="clips of --clips held out for evaluation")
    ap.add_argument("--seed", type=int, default=0, help="order of the training pool and warps")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: --seed)")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_data"), help="counts go to RUN_DIR/clipsN")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()
    counts = sorted(set(args.counts))
    if counts[0] < 1 or args.minutes <= 0:
        print("--counts must be 1 or more and --minutes positive", file=sys.stderr)
        return 2

    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.evaluate import evaluate
    from mimic_mjx.bodies import get_body
    from mimic_mjx.training.signals import exit_code
    from mimic_mjx.training.trainer import train

    log = lambda m: print(m, flush=True)
    if args.clips:
        pool, held = file_split(args.clips, args.held_out)
        body = args.body
    else:
        split = forelimb_split(counts[-1], args.seed)
        if split is None:
            log(f"skipped: the 37 reaching trials of {MOUSE_ARM} are not here; pass --clips FILE [FILE ...]")
            print(json.dumps({"skipped": f"no data at {MOUSE_ARM}"}))
            return 0
        pool, held = split
        body = "mouse_forelimb"
    if counts[-1] > len(pool):
        raise SystemExit(f"the training pool has {len(pool)} clips, fewer than --counts {counts[-1]}")
    order = np.random.default_rng(args.seed).permutation(len(pool))
    log(f"held out {len(held)} clips; training pool {len(pool)} clips; counts {counts}; {args.minutes} min each")

    seeds = args.seeds or [args.seed]
    base = Path(args.run_dir)
    rows = []
    for n, seed in ((n, s) for n in counts for s in seeds):
        cfg = config_lib.apply_overrides(
            get_body(body).default_config(), [f"train.max_minutes={args.minutes}", f"train.seed={seed}", *args.set]
        )
        run_dir = base / (f"clips{n}" if args.seeds is None else f"clips{n}_seed{seed}")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        # A lazy pool (--clips) stays lazy: each clip is read while binding, not held.
        clips = (
            pool.select([pool.names[int(i)] for i in order[:n]]) if args.clips else [pool[int(i)] for i in order[:n]]
        )
        summary = train(cfg, run_dir, clips, log=lambda m: None)
        if summary.get("stopped_by"):  # preempted: its figures would mislead
            return exit_code(summary["stopped_by"])
        del clips
        ev = evaluate(run_dir, held, run_dir / "eval_heldout")
        row = {
            "clips": n,
            "seed": seed,
            "train_frames": int(sum(getattr(pool, "infos", pool)[int(i)].num_frames for i in order[:n])),
            "env_steps": summary["env_steps"],
            "heldout_body_error_mm": round(ev["mean_body_error_mm"], 4),
            "heldout_fraction_tracked": round(ev["mean_fraction_tracked"], 4),
            "heldout_joint_rmse_deg": round(ev["mean_joint_rmse_deg"], 3),
            "run_dir": str(run_dir),
        }
        rows.append(row)
        log(
            f"{n:>5} clips  seed {seed}  {row['env_steps']:>11,} steps"
            f"  held-out body error {row['heldout_body_error_mm']:8.3f} mm"
            f"  tracked {100 * row['heldout_fraction_tracked']:5.1f}%"
            f"  joint RMSE {row['heldout_joint_rmse_deg']:6.2f} deg"
        )
    data = "files" if args.clips else "mouse_arm trials + time-warped copies"
    per_count = {}
    for n in counts:
        mine = [r for r in rows if r["clips"] == n]
        err = [r["heldout_body_error_mm"] for r in mine]
        tracked = [r["heldout_fraction_tracked"] for r in mine]
        per_count[str(n)] = {
            "body_error_mm_worst": max(err),
            "body_error_mm_mean": round(float(np.mean(err)), 4),
            "fraction_tracked_worst": min(tracked),
            "fraction_tracked_mean": round(float(np.mean(tracked)), 4),
        }
        log(
            f"{n:>5} clips over {len(mine)} seed(s): body error worst {max(err):.3f} mean {np.mean(err):.3f} mm; "
            f"tracked worst {100 * min(tracked):.1f}% mean {100 * np.mean(tracked):.1f}%"
        )
    print(
        json.dumps(
            {
                "data": data,
                "held_out": len(held),
                "minutes_per_count": args.minutes,
                "seeds": seeds,
                "counts": per_count,
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
