"""Shared by benchmarks/worm.py and benchmarks/stick_insect.py: train a body on its generator's clips,
evaluate on clips generated with parameters the training never saw, over several seeds.

Each seed trains the body's default config for ``--minutes`` and is evaluated on
the held-out clips: the fraction of held-out frames tracked (frames before an
episode would have ended, over all held-out frames) and the mean tracked-body
error. Raw physics (control steps/s of the same model, backend, substeps and
environments) is measured in the same process before and after every seed;
the training rate is reported as a ratio to its mean. Prints every seed, the
worst and the mean; the last output line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args(name: str, doc: str, minutes: float) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=minutes, help="training wall-time budget per seed")
    ap.add_argument("--seeds", type=int, default=3, help="train this many seeds")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST_SEED, FIRST_SEED+1, ...")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / f"bench_{name}"), help="seeds go to RUN_DIR/seedN")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()
    if args.seeds < 1 or args.minutes <= 0:
        raise SystemExit(f"--seeds must be at least 1 and --minutes above 0 (got {args.seeds}, {args.minutes})")
    return args


def run(body: str, train_clips: list, heldout_clips: list, args, extra: Callable[[dict], dict] = dict) -> int:
    """Train and evaluate every seed; print the figures (``extra`` adds body-specific keys to them)."""
    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.evaluate import evaluate, format_summary
    from mimic_mjx.bodies import get_body
    from mimic_mjx.training.bench import raw_physics
    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.signals import exit_code
    from mimic_mjx.training.trainer import train

    log = lambda m: print(m, flush=True)
    base = Path(args.run_dir)
    base.mkdir(parents=True, exist_ok=True)
    log(f"{body}: train on {len(train_clips)} generated clips, evaluate on {len(heldout_clips)} with unseen parameters")
    cfg0 = config_lib.apply_overrides(get_body(body).default_config(), [f"train.max_minutes={args.minutes}", *args.set])
    env = build_env(cfg0, train_clips)
    raws: list[float] = []

    def measure_raw():
        raw, compile_s = raw_physics(env, cfg0.ppo.num_envs, seed=cfg0.train.seed)
        raws.append(raw)
        log(f"raw {env.backend.name} physics: {raw:,.0f} control steps/s at {cfg0.ppo.num_envs} envs")

    measure_raw()
    frames = np.array([c.num_frames for c in heldout_clips], float)
    seeds = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        run_dir = base / f"seed{seed}"
        log(f"--- seed {seed} -> {run_dir}")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        summary = train(config_lib.apply_overrides(cfg0, [f"train.seed={seed}"]), run_dir, train_clips, log=log)
        if summary.get("stopped_by"):
            return exit_code(summary["stopped_by"])
        measure_raw()
        ev = evaluate(run_dir, heldout_clips, run_dir / "eval_heldout")
        log(format_summary(ev))
        tracked = np.array([c["fraction_tracked"] for c in ev["clips"]])
        seeds.append(
            {
                "seed": seed,
                "run_dir": str(run_dir),
                "train_env_steps": summary["env_steps"],
                "train_steps_per_s": round(summary["steps_per_s"], 1),
                "heldout_fraction_tracked": round(float((tracked * frames).sum() / frames.sum()), 4),
                "heldout_body_error_mm": round(ev["mean_body_error_mm"], 5),
                "heldout_ee_error_mm": round(ev["mean_ee_error_mm"], 5),
                "heldout_joint_rmse_deg": round(ev["mean_joint_rmse_deg"], 3),
            }
        )
        log(json.dumps(seeds[-1]))
    col = lambda k: np.array([s[k] for s in seeds], float)
    raw = float(np.mean(raws))
    figures = {
        "body": body,
        "seeds": args.seeds,
        "minutes_per_seed": args.minutes,
        "backend": env.backend.name,
        "num_envs": cfg0.ppo.num_envs,
        "substeps": cfg0.env.substeps,
        "train_clips": len(train_clips),
        "heldout_clips": len(heldout_clips),
        "heldout_fraction_tracked_min": round(float(col("heldout_fraction_tracked").min()), 4),
        "heldout_fraction_tracked_mean": round(float(col("heldout_fraction_tracked").mean()), 4),
        "heldout_body_error_mm_max": round(float(col("heldout_body_error_mm").max()), 5),
        "heldout_body_error_mm_mean": round(float(col("heldout_body_error_mm").mean()), 5),
        "heldout_joint_rmse_deg_max": round(float(col("heldout_joint_rmse_deg").max()), 3),
        "train_steps_per_s": round(float(col("train_steps_per_s").mean()), 1),
        "raw_physics_steps_per_s": round(raw, 1),
        "raw_physics_steps_per_s_range": [round(min(raws), 1), round(max(raws), 1)],
        "train_to_raw_ratio": round(float(col("train_steps_per_s").mean()) / raw, 3),
    }
    figures.update(extra(figures))
    figures["per_seed"] = seeds
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit("run benchmarks/worm.py or benchmarks/stick_insect.py")
