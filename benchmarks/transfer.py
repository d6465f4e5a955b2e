"""Transfer benchmark: forelimb reach-to-target on an imitation run's decoder, frozen vs trainable vs scratch.

A forelimb imitation run (``--source RUN``, or trained here for
``--source-minutes`` on the 37 recorded reaches' shipped references in
../shared/data/mouse_arm, or on the demo's generated reaches when that data is
absent) gives the decoder. For every seed, three transfer runs with the same
wall-clock budget (``--minutes``) learn `reach_target` with that decoder
frozen, trainable, and with a fresh decoder (scratch); each is evaluated on
the same held-out targets (``--instances``, a key stream training never uses)
with the success radius of 2 mm held for the task's hold time. Training
curves (success of the episodes that ended, per logged update) go to
RUN_DIR/curves.json. Raw physics (control steps/s of the same model, backend,
substeps and threads) is measured in the same process before and after each seed.
Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/transfer.py [--seeds 3] [--minutes 5] [--source RUN] [--run-dir runs/bench_transfer]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mouse_arm"
MODES = ("frozen", "trainable", "scratch")


def _source(args, base: Path, log) -> tuple[Path, str]:
    """The imitation run whose decoder is reused, and what it was trained on."""
    if args.source:
        return Path(args.source), f"given run {args.source}"
    from mimic_mjx import config as config_lib
    from mimic_mjx.bodies import get_body
    from mimic_mjx.training.trainer import train

    files = sorted(DATA.glob("trial*_ik.h5"))
    if args.source_clips:
        from mimic_mjx.data.clips import read_clip_files

        clips, what = read_clip_files(args.source_clips), f"clips of {', '.join(args.source_clips)}"
    elif files:
        from mimic_mjx.data.clips import read_clip_files

        clips, what = read_clip_files(files), f"{len(files)} recorded reaches (shipped references)"
    else:
        from mimic_mjx.demo import demo_clips

        clips, what = demo_clips("mouse_forelimb")[0], "the demo's generated reaches"
    run = base / "source"
    if (run / "checkpoints").is_dir():
        log(f"source imitation run: {run} (kept from an earlier call; delete it to retrain)")
        return run, what
    if run.exists():
        shutil.rmtree(run)
    cfg = config_lib.apply_overrides(
        get_body("mouse_forelimb").default_config(), [f"train.max_minutes={args.source_minutes}", *args.source_set]
    )
    log(f"training the source imitation run on {what} for {args.source_minutes} min -> {run}")
    train(cfg, run, clips, log=log)
    return run, what


def steps_to(curve: list[tuple[int, float]], level: float) -> int | None:
    """Environment steps at the first logged update whose ended episodes succeeded at >= ``level``."""
    return next((steps for steps, success in curve if success >= level), None)


def success_curve(run_dir: Path) -> list[tuple[int, float]]:
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        m = rec.get("metrics", rec)
        if "episode/success" in m and m.get("episode/count", 1) > 0:
            curve.append((int(rec.get("env_steps", m.get("env_steps", 0))), float(m["episode/success"])))
    return curve


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall-time budget of every transfer run")
    ap.add_argument("--source", help="imitation run whose decoder to reuse (default: train one)")
    ap.add_argument("--source-minutes", type=float, default=10.0)
    ap.add_argument(
        "--source-clips",
        nargs="*",
        help="clip files to train the source run on (default: the recorded reaches' shipped references), e.g. the "
        "re-registered references benchmarks/forelimb.py caches in its --run-dir",
    )
    ap.add_argument("--source-set", nargs="*", default=[], metavar="KEY=VALUE", help="source run config overrides")
    ap.add_argument("--instances", type=int, default=50, help="held-out targets per evaluation")
    ap.add_argument("--radius-mm", type=float, default=2.0, help="success radius")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_transfer"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="transfer config overrides")
    args = ap.parse_args()

    from mimic_mjx.analysis.task_eval import evaluate_task, format_task_summary
    from mimic_mjx.training.bench import raw_physics
    from mimic_mjx.training.signals import exit_code
    from mimic_mjx.training.transfer import transfer

    log = lambda m: print(m, flush=True)
    base = Path(args.run_dir)
    base.mkdir(parents=True, exist_ok=True)
    source, source_what = _source(args, base, log)
    sets = [
        f"train.max_minutes={args.minutes}",
        "train.total_steps=1000000000",
        f"task.success_radius_m={args.radius_mm / 1e3}",
    ]
    sets += args.set
    raws: list[float] = []
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    curves: dict[str, dict] = {}
    env_for_raw = None
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for mode in MODES:
            run = base / f"{mode}_seed{seed}"
            if run.exists():
                shutil.rmtree(run)
            log(f"--- seed {seed}, {mode} decoder -> {run}")
            summary = transfer(
                source, run, task="reach_target", decoder=mode, overrides=[*sets, f"train.seed={seed}"], log=log
            )
            if summary.get("stopped_by"):
                return exit_code(summary["stopped_by"])
            if env_for_raw is None:
                env_for_raw = _task_env(run)
            if mode == MODES[0]:
                raws.append(_raw(raw_physics, env_for_raw, log))
            ev = evaluate_task(run, run / "eval_heldout", instances=args.instances, seed=1)
            log(format_task_summary(ev))
            curve = success_curve(run)
            curves[f"{mode}_seed{seed}"] = {"env_steps": [c[0] for c in curve], "success": [c[1] for c in curve]}
            results[mode].append(
                {
                    "seed": seed,
                    "success": ev["success_rate"],
                    "reach": ev["reach_rate"],
                    "steps_to_80pct": steps_to(curve, 0.8),
                    "energy_mj": ev["mean_energy_mj"],
                    "jerk": ev["mean_jerk_m_s3"],
                    "final_distance_mm": ev["mean_final_distance_mm"],
                    "latent_rms_z": ev["latent"].get("rms_z"),
                    "env_steps": summary["env_steps"],
                    "train_steps_per_s": summary["steps_per_s"],
                }
            )
            log(json.dumps(results[mode][-1]))
        raws.append(_raw(raw_physics, env_for_raw, log))
    (base / "curves.json").write_text(json.dumps(curves))
    figures = _figures(results, raws, args, source, source_what)
    print(json.dumps(figures))
    return 0


def _task_env(run: Path):
    from mimic_mjx.environments.tasks import make_task_env
    from mimic_mjx.training.checkpoint import load_policy
    from mimic_mjx.training.transfer import read_transfer, task_body

    cfg = load_policy(run).config
    body = task_body(run, cfg.env.body, print)
    return make_task_env(cfg.task.name, cfg, body, float(read_transfer(run)["control_dt"]))


def _raw(raw_physics, env, log) -> float:
    raw, _ = raw_physics(env, 512)
    log(f"raw {env.backend.name} physics: {raw:,.0f} control steps/s at 512 envs")
    return raw


def _figures(results: dict, raws: list[float], args, source: Path, source_what: str) -> dict:
    col = lambda mode, k: np.array([r[k] for r in results[mode]], float)

    def worst_steps(mode):  # None when any seed never reached 80 %
        s = [r["steps_to_80pct"] for r in results[mode]]
        return None if any(v is None for v in s) else int(max(s))

    train_sps = float(np.mean([r["train_steps_per_s"] for m in MODES for r in results[m]]))
    raw = float(np.mean(raws))
    figures = {
        "task": "reach_target",
        "body": "mouse_forelimb",
        "source": str(source),
        "source_trained_on": source_what,
        "seeds": args.seeds,
        "minutes_per_run": args.minutes,
        "heldout_targets": args.instances,
        "success_radius_mm": args.radius_mm,
    }
    for mode in MODES:
        figures[f"{mode}_success_min"] = round(float(col(mode, "success").min()), 3)
        figures[f"{mode}_success_mean"] = round(float(col(mode, "success").mean()), 3)
    figures.update(
        {
            "frozen_steps_to_80pct": worst_steps("frozen"),
            "trainable_steps_to_80pct": worst_steps("trainable"),
            "scratch_steps_to_80pct": worst_steps("scratch"),
        }
    )
    for mode in MODES:
        figures[f"{mode}_energy_mj"] = round(float(col(mode, "energy_mj").mean()), 4)
        figures[f"{mode}_jerk"] = round(float(np.nanmean(col(mode, "jerk"))), 3)
    figures.update(
        {
            "train_steps_per_s": round(train_sps, 1),
            "raw_physics_steps_per_s": round(raw, 1),
            "raw_physics_steps_per_s_range": [round(min(raws), 1), round(max(raws), 1)],
            "train_to_raw_ratio": round(train_sps / raw, 3),
            "per_seed": results,
        }
    )
    return figures


if __name__ == "__main__":
    sys.exit(main())
