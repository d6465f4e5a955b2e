"""Forelimb benchmark: train on 30 real reaching trials, evaluate on the other 7.

Reports training wall time and throughput next to the raw physics throughput
(control steps/s) of the same model, backend and substeps, measured in the same process, and
held-out tracking accuracy. Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/forelimb.py [--minutes 15] [--run-dir runs/bench_forelimb]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mouse_arm"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall-time budget")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_forelimb"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    files = sorted(DATA.glob("trial*_ik.h5"))
    if len(files) != 37:
        print(f"needs the 37 trials of {DATA} (found {len(files)}); see ../shared/data/README.md", file=sys.stderr)
        return 2

    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.evaluate import evaluate, format_summary
    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.clips import read_clip_files
    from mimic_mjx.training.trainer import train

    held_out = files[2::5][:7]  # spread over the recording sessions
    train_files = [f for f in files if f not in held_out]
    cfg = config_lib.apply_overrides(
        get_body("mouse_forelimb").default_config(), [f"train.max_minutes={args.minutes}", *args.set]
    )

    run_dir = Path(args.run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    train_clips = read_clip_files(train_files)
    eval_clips = read_clip_files(held_out)
    print(
        f"train on {len(train_clips)} trials, evaluate on {len(eval_clips)}: {', '.join(c.name for c in eval_clips)}",
        flush=True,
    )

    from mimic_mjx.analysis.bench import raw_physics
    from mimic_mjx.training.experiment import build_env

    env = build_env(cfg, train_clips)
    raw_control, raw_compile = raw_physics(env, cfg.ppo.num_envs, seed=cfg.train.seed)
    print(
        f"raw {env.backend.name} physics: {raw_control * cfg.env.substeps:,.0f} physics steps/s = "
        f"{raw_control:,.0f} control steps/s at {cfg.ppo.num_envs} envs (compile {raw_compile:.1f} s)",
        flush=True,
    )
    env_backend = env.backend.name
    del env

    summary = train(cfg, run_dir, train_clips, log=lambda m: print(m, flush=True))
    t = time.perf_counter()
    ev = evaluate(run_dir, eval_clips, run_dir / "eval_heldout")
    print(format_summary(ev))
    print(f"evaluation took {time.perf_counter() - t:.1f} s")

    figures = {
        "train_wall_s": round(summary["wall_s"], 1),
        "train_compile_s": round(summary["compile_s"], 1),
        "train_env_steps": summary["env_steps"],
        "train_steps_per_s": round(summary["steps_per_s"], 1),
        "raw_physics_steps_per_s": round(raw_control, 1),
        "backend": env_backend,
        "num_envs": cfg.ppo.num_envs,
        "substeps": cfg.env.substeps,
        "heldout_joint_rmse_deg": round(ev["mean_joint_rmse_deg"], 3),
        "heldout_wrist_error_mm": round(ev["mean_ee_error_mm"], 4),
        "heldout_fraction_tracked": round(ev["mean_fraction_tracked"], 4),
        "run_dir": str(run_dir),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
