"""Any-body benchmark (issue 21, item 8): a body from its file, from keypoints to held-out tracking.

Registers ``--keypoints`` to ``--body`` (a body file, a stac-mjx model file or a
built-in name), cuts the registration into clips, holds the last fifth out,
trains the body's own default config for ``--minutes`` on the rest, evaluates
on the held-out clips, and measures raw physics (MuJoCo's C engine on the
trainable model, all cores, the training's number of worlds).

``--compare-builtin NAME`` runs a built-in body through the same registration
in the same process and measures both bodies' training throughput on one
config, interleaved update block by update block (so that load from other
processes falls on both alike); it prints the ratios file / built-in. The
target for benchmarks/rodent_stac.yaml against ``rat``: within 5 % on the
registration residual, within 10 % on training throughput.

Last output line: one JSON object (``register_median_residual_mm``,
``register_frames_per_s``, ``train_steps_per_s``, ``raw_physics_steps_per_s``,
``heldout_body_error_mm``, ``heldout_fraction_tracked``, and with a comparison
``builtin_*`` and ``ratio_*``).

    .venv/bin/python benchmarks/any_body.py --body benchmarks/rodent_stac.yaml \\
        --keypoints ../shared/data/rodent/rat_dannce_1000f.mat --fps 50 --frames 300 --minutes 2 \\
        --compare-builtin rat
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, flush=True)


def read(args, body):
    from mimic_mjx.data.keypoints import read_keypoints

    kp = read_keypoints(args.keypoints, units=args.units or body.keypoint_unit, fps=args.fps)
    if args.frames is not None and args.frames < kp.num_frames:
        kp = dataclasses.replace(kp, positions=kp.positions[: args.frames], confidence=kp.confidence[: args.frames])
    return kp


def registered(kp, body, clip_length: int) -> tuple[list, dict]:
    """(clips, figures) of registering ``kp`` to ``body``; frames/s include compilation (what a user waits)."""
    from mimic_mjx.registration.register import register, split_clip

    t = time.perf_counter()
    reg = register(kp, body.name, log=log)
    seconds = time.perf_counter() - t
    clips = split_clip(reg.clip, clip_length)
    figures = {
        "register_median_residual_mm": round(reg.summary["median_residual_mm"], 3),
        "register_p95_residual_mm": round(reg.summary["p95_residual_mm"], 3),
        "register_frames_per_s": round(kp.num_frames / seconds, 2),
        "register_s": round(seconds, 1),
    }
    return clips, figures


def raw_physics(cfg, clips) -> float:
    """Physics steps/s of the trainable model from the clips' poses (the env's timestep), on all cores."""
    from mimic_mjx.bodies import get_body
    from mimic_mjx.training.bench import raw_native_steps_per_s

    model = get_body(cfg.env.body).compile_trainable()
    model.opt.timestep = cfg.env.control_every / clips[0].fps / cfg.env.substeps  # as the env sets it
    n = cfg.ppo.num_envs
    frames = np.concatenate([c.qpos for c in clips])
    vel = np.concatenate([c.qvel for c in clips])
    pick = np.random.default_rng(0).integers(0, len(frames), n)
    threads = cfg.env.native_threads or os.cpu_count() or 1
    control = raw_native_steps_per_s(model, n, cfg.env.substeps, threads, qpos=frames[pick], qvel=vel[pick])
    return control * cfg.env.substeps


def paired_throughput(cfgs: list, clip_sets: list, rounds: int, updates: int) -> list[float]:
    """Training steps/s of each config, updates timed in interleaved blocks; the median block of each."""
    import jax

    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.ppo import PPOTrainer

    trainers, states = [], []
    for cfg, clips in zip(cfgs, clip_sets, strict=True):
        trainer = PPOTrainer(cfg, build_env(cfg, clips))
        ts = trainer.init(jax.random.PRNGKey(cfg.train.seed))
        ts, m = trainer.update(ts)  # compiles
        jax.block_until_ready(m)
        trainers.append(trainer)
        states.append(ts)
    rates = [[] for _ in cfgs]
    for r in range(rounds):
        # A B, then B A: a drift in the machine's load falls on both alike.
        for i in range(len(trainers)) if r % 2 == 0 else reversed(range(len(trainers))):
            trainer = trainers[i]
            t = time.perf_counter()
            for _ in range(updates):
                states[i], m = trainer.update(states[i])
            jax.block_until_ready(m)
            rates[i].append(trainer.steps_per_update * updates / (time.perf_counter() - t))
    log("interleaved training steps/s: " + "; ".join(", ".join(f"{r:,.0f}" for r in rs) for rs in rates))
    return [statistics.median(rs) for rs in rates]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--body", required=True, help="NAME or body file (YAML): body file, stac-mjx model file")
    ap.add_argument("--keypoints", required=True, help="keypoint file (any format `mimic register` reads)")
    ap.add_argument("--minutes", type=float, default=2.0, help="training wall-time budget")
    ap.add_argument("--units", choices=["m", "cm", "mm"], help="keypoint unit (default: the body's, else the file's)")
    ap.add_argument("--fps", type=float, help="keypoint frame rate (default: the file's)")
    ap.add_argument("--frames", type=int, help="register only the first N frames")
    ap.add_argument("--clip-length", type=int, default=50, help="frames per clip")
    ap.add_argument("--compare-builtin", metavar="NAME", help="also run this built-in body; print the ratios")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved throughput blocks per body (--compare-builtin)")
    ap.add_argument("--updates", type=int, default=3, help="training updates per throughput block")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_any_body"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.evaluate import evaluate, format_summary
    from mimic_mjx.bodies import get_body
    from mimic_mjx.errors import MimicError
    from mimic_mjx.training.trainer import train

    try:
        body = get_body(args.body)
        kp = read(args, body)
        log(f"body {body.display_name}: {body.description}")
        clips, figures = registered(kp, body, args.clip_length)
        held = max(1, len(clips) // 5)
        if len(clips) < 2:
            raise MimicError(f"{kp.num_frames} frames make {len(clips)} clip(s) of {args.clip_length}; need 2 or more")
        train_clips, heldout = clips[:-held], clips[-held:]
        log(
            f"registered {len(clips)} clips; train on {len(train_clips)}, hold out {', '.join(c.name for c in heldout)}"
        )
        cfg = config_lib.apply_overrides(body.default_config(), [f"train.max_minutes={args.minutes}", *args.set])
        run_dir = Path(args.run_dir)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        summary = train(cfg, run_dir, train_clips, log=log)
        ev = evaluate(run_dir, heldout, run_dir / "eval_heldout")
        log("held out:\n" + format_summary(ev))
        figures |= {
            "train_steps_per_s": round(summary["steps_per_s"], 1),
            "train_env_steps": summary["env_steps"],
            "raw_physics_steps_per_s": round(raw_physics(cfg, train_clips), 1),
            "heldout_body_error_mm": round(ev["mean_body_error_mm"], 2),
            "heldout_fraction_tracked": round(ev["mean_fraction_tracked"], 3),
            "num_envs": cfg.ppo.num_envs,
            "substeps": cfg.env.substeps,
            "frames": kp.num_frames,
        }
        if args.compare_builtin:
            figures |= compare(args, cfg, kp, train_clips, figures)
    except MimicError as exc:
        print(f"any_body: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures))
    return 0


def compare(args, cfg, kp, train_clips, figures: dict) -> dict:
    """The built-in body through the same registration; throughput of both measured side by side."""
    from mimic_mjx import config as config_lib
    from mimic_mjx.bodies import get_body
    from mimic_mjx.errors import MimicError

    builtin = get_body(args.compare_builtin)
    if builtin.source is not None:
        raise MimicError(f"--compare-builtin takes a built-in body's name, got the body file {builtin.source}")
    log(f"built-in {builtin.name}: the same {kp.num_frames} frames")
    clips, reg = registered(kp, builtin, args.clip_length)
    clips = clips[: len(train_clips)]
    other = config_lib.apply_overrides(cfg, [f"env.body={builtin.name}"])
    mine, theirs = paired_throughput([cfg, other], [train_clips, clips], args.rounds, args.updates)
    # Raw physics of both, interleaved the same way (one figure each at another time differs by the load).
    raws = [[], []]
    for r in range(args.rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            raws[i].append(raw_physics(*((cfg, train_clips), (other, clips))[i]))
    log("interleaved raw physics steps/s: " + "; ".join(", ".join(f"{x:,.0f}" for x in xs) for xs in raws))
    raw_mine, raw_theirs = (statistics.median(xs) for xs in raws)
    out = {f"builtin_{k}": v for k, v in reg.items()}
    residual = figures["register_median_residual_mm"] / reg["register_median_residual_mm"]
    out |= {
        "paired_raw_physics_steps_per_s": round(raw_mine, 1),
        "builtin_paired_raw_physics_steps_per_s": round(raw_theirs, 1),
        "paired_train_steps_per_s": round(mine, 1),
        "builtin_paired_train_steps_per_s": round(theirs, 1),
        "ratio_register_residual": round(residual, 4),
        "ratio_train_steps_per_s": round(mine / theirs, 3),
    }
    out["ratio_raw_physics_steps_per_s"] = round(raw_mine / raw_theirs, 3)
    log(
        f"file / built-in: registration residual x{out['ratio_register_residual']:.4f} (target within 5 %), "
        f"training throughput x{out['ratio_train_steps_per_s']:.3f} (within 10 %), "
        f"raw physics x{out['ratio_raw_physics_steps_per_s']:.3f}"
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
