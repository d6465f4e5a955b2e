"""Rat benchmark: register the DANNCE recording, train on 8 clips with the native
backend, and evaluate on the 2 held-out clips early and after the full budget.

Registers ``../shared/data/rodent/rat_dannce_1000f.mat`` (50 Hz) into ten 2-s
clips, trains ``configs/rat.yaml`` on the first eight, and evaluates on all ten
(from each clip's first frame) after ``--early-minutes`` and again after
``--minutes`` of training (the run is resumed exactly in between). Reports
per-body position errors in millimetres and the fraction of each clip tracked.
Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/rat.py [--minutes 30] [--early-minutes 2] [--run-dir runs/bench_rat]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "rodent"


def _figures(ev: dict, prefix: str) -> dict:
    return {
        f"{prefix}_body_error_mm": round(ev["mean_body_error_mm"], 2),
        f"{prefix}_root_error_mm": round(ev["mean_root_error_mm"], 2),
        f"{prefix}_ee_error_mm": round(ev["mean_ee_error_mm"], 2),
        f"{prefix}_joint_rmse_deg": round(ev["mean_joint_rmse_deg"], 2),
        f"{prefix}_fraction_tracked": round(ev["mean_fraction_tracked"], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="total training wall-time budget")
    ap.add_argument("--early-minutes", type=float, default=2.0, help="first evaluation after this much training")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_rat"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()
    kp_file = DATA / "rat_dannce_1000f.mat"
    if not kp_file.exists():
        print(f"needs {kp_file}; see ../shared/data/README.md", file=sys.stderr)
        return 2

    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.evaluate import evaluate, format_summary
    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.keypoints import read_keypoints
    from mimic_mjx.registration.register import register, split_clip
    from mimic_mjx.training.trainer import train

    run_dir = Path(args.run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t = time.perf_counter()
    kp = read_keypoints(kp_file, fps=50.0)
    clips = split_clip(register(kp, "rat", log=lambda m: print(m, flush=True)).clip, 100)
    register_s = time.perf_counter() - t
    train_clips, held_out = clips[:8], clips[8:]
    print(
        f"registered {len(clips)} clips in {register_s:.0f} s; train on {len(train_clips)}, hold out "
        f"{', '.join(c.name for c in held_out)}",
        flush=True,
    )

    base = get_body("rat").default_config()
    log = lambda m: print(m, flush=True)
    early_cfg = config_lib.apply_overrides(base, [f"train.max_minutes={args.early_minutes}", *args.set])
    early = train(early_cfg, run_dir, train_clips, log=log)
    ev_early = evaluate(run_dir, held_out, run_dir / "eval_early_heldout")
    ev_early_train = evaluate(run_dir, train_clips, run_dir / "eval_early_train")
    print("early, held out:\n" + format_summary(ev_early), flush=True)

    rest = args.minutes - early["wall_s"] / 60.0
    late_cfg = config_lib.apply_overrides(base, [f"train.max_minutes={max(rest, 0.1)}", *args.set])
    final = train(late_cfg, run_dir, resume=True, log=log)
    ev = evaluate(run_dir, held_out, run_dir / "eval_heldout")
    ev_train = evaluate(run_dir, train_clips, run_dir / "eval_train")
    print("final, held out:\n" + format_summary(ev), flush=True)
    print("final, training clips:\n" + format_summary(ev_train), flush=True)
    print(
        "per-body error (mm), held out: " + ", ".join(f"{b} {e:.1f}" for b, e in ev["body_error_mm_per_body"].items()),
        flush=True,
    )

    figures = {
        "register_s": round(register_s, 1),
        "train_wall_s": round(early["wall_s"] + final["wall_s"], 1),
        "train_env_steps": final["env_steps"],
        "train_steps_per_s": round(final["steps_per_s"], 1),
        "first_update_s": round(early["compile_s"], 1),
        "num_envs": base.ppo.num_envs,
        "substeps": base.env.substeps,
        "backend": base.env.backend,
        "early_env_steps": early["env_steps"],
        **_figures(ev_early, "early_heldout"),
        **_figures(ev_early_train, "early_train"),
        **_figures(ev, "heldout"),
        **_figures(ev_train, "train"),
        "run_dir": str(run_dir),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
