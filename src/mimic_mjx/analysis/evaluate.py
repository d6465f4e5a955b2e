"""Deterministic evaluation of a trained controller on (held-out) clips.

Every clip is rolled out from its first frame with the latent mean and the
action mean. A clip's rollout stops being scored at the step where tracking is lost
(the training termination thresholds; the records hold NaN from there), so
errors are measured over the part of the clip that was tracked and the
tracked fraction is reported beside them. The rollout and its file are
``mimic rollout``'s (``analysis.rollout``): rollouts.h5 is a rollout dataset
of docs/rollout-format.md with one deterministic seed, so ``mimic analyze``,
``mimic emg`` and the plots read it as they read any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from mimic_mjx.analysis.rollout import collect, derive_physiology, write_rollouts
from mimic_mjx.data.clips import Clip
from mimic_mjx.files import write_text
from mimic_mjx.training.checkpoint import load_policy
from mimic_mjx.training.experiment import build_eval_env


def evaluate(run_dir: str | Path, clips: Sequence[Clip], out_dir: str | Path) -> dict:
    """Roll the run's controller out on ``clips``; write rollouts.h5 and summary.json."""
    policy = load_policy(run_dir)
    env = build_eval_env(policy.config, clips, body=policy.body)
    ce = env.cfg.control_every
    full = collect(policy, env)
    full.update(derive_physiology(env, full))
    # One deterministic rollout per clip: the summary drops the seed axis; the file keeps it (S = 1).
    recs = jax.tree.map(lambda x: x[:, 0], {k: v for k, v in full.items() if k != "xfrc"})

    per_clip = []
    for i, name in enumerate(env.bank.names):
        steps = int((env.bank.lengths[i] - 1) // ce)
        tracked = recs["tracked"][i, :steps]
        n_tracked = int(np.argmin(tracked)) if not tracked.all() else steps
        sl = slice(0, max(n_tracked, 1))
        jerr = recs["joint_error"][i, sl]
        body_mm = 1e3 * np.mean(recs["body_error"][i, sl], axis=0)
        kp = _keypoint_errors_mm(env.keypoint_names, recs["keypoint_error"][i, sl], recs["keypoint_valid"][i, sl])
        per_clip.append(
            {
                "clip": name,
                "frames": int(env.bank.lengths[i]),
                "joint_rmse_deg": float(np.rad2deg(np.sqrt(np.mean(jerr**2)))),
                "joint_rmse_deg_per_joint": np.rad2deg(np.sqrt(np.mean(jerr**2, axis=0))).tolist(),
                "ee_error_mm": float(1e3 * np.mean(recs["ee_error"][i, sl])),
                # The closest the clip came to being lost (episodes end at termination.max_ee_error_m).
                "peak_ee_error_mm": float(1e3 * np.max(np.mean(recs["ee_error"][i, sl], axis=-1))),
                "body_error_mm": float(np.mean(body_mm)),
                "body_error_mm_per_body": dict(zip(env.tracked_bodies, body_mm.round(3).tolist(), strict=True)),
                "root_error_mm": float(1e3 * np.mean(recs["root_error"][i, sl])),
                "fraction_tracked": n_tracked / steps,
                # Markers against the recorded keypoints (what was measured); absent without keypoints.
                **kp,
                # The training record's errors over the tracked steps (same names as the training logs).
                "metrics": {k: float(np.mean(v[i, sl])) for k, v in recs["metrics"].items() if k.startswith("error/")},
            }
        )
    summary = {
        "run_dir": str(run_dir),
        "checkpoint_update": policy.update,
        "metrics": {k: float(np.mean([c["metrics"][k] for c in per_clip])) for k in per_clip[0]["metrics"]},
        "num_clips": len(per_clip),
        "joint_names": list(env.joint_names),
        "end_effectors": list(env.end_effectors),
        "mean_joint_rmse_deg": float(np.mean([c["joint_rmse_deg"] for c in per_clip])),
        "mean_ee_error_mm": float(np.mean([c["ee_error_mm"] for c in per_clip])),
        "peak_ee_error_mm": float(np.max([c["peak_ee_error_mm"] for c in per_clip])),
        "ee_termination_mm": 1e3 * policy.config.termination.max_ee_error_m,
        # Tracked bodies' positions relative to the root (the root's own error is separate).
        "mean_body_error_mm": float(np.mean([c["body_error_mm"] for c in per_clip])),
        "body_error_mm_per_body": {
            b: float(np.mean([c["body_error_mm_per_body"][b] for c in per_clip])) for b in env.tracked_bodies
        },
        "mean_root_error_mm": float(np.mean([c["root_error_mm"] for c in per_clip])),
        **_mean_keypoint_errors(per_clip, env.keypoint_names),
        "mean_fraction_tracked": float(np.mean([c["fraction_tracked"] for c in per_clip])),
        "clips": per_clip,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_rollouts(out_dir / "rollouts.h5", env, policy, full, stochastic=False)
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def _keypoint_errors_mm(names, err, valid) -> dict:
    """Per-clip keypoint errors (mm) over the steps where each keypoint was recorded."""
    valid = valid > 0
    err = np.where(valid, err, 0.0)
    seen = valid.sum(axis=0)
    if not len(names) or not seen.any():
        return {}
    per = 1e3 * (err * valid).sum(axis=0) / np.maximum(seen, 1)
    per_kp = {n: float(v) for n, v, s in zip(names, per, seen, strict=True) if s}
    return {"keypoint_error_mm": float(np.mean(list(per_kp.values()))), "keypoint_error_mm_per_keypoint": per_kp}


def _mean_keypoint_errors(per_clip, names) -> dict:
    with_kp = [c for c in per_clip if "keypoint_error_mm" in c]
    if not with_kp:
        return {}
    per_kp = {}
    for n in names:
        vals = [c["keypoint_error_mm_per_keypoint"][n] for c in with_kp if n in c["keypoint_error_mm_per_keypoint"]]
        if vals:
            per_kp[n] = float(np.mean(vals))
    return {
        "keypoint_names": list(names),
        "mean_keypoint_error_mm": float(np.mean([c["keypoint_error_mm"] for c in with_kp])),
        "keypoint_error_mm_per_keypoint": per_kp,
    }


def format_summary(summary: dict) -> str:
    """A table per clip: joint RMSE next to the errors against what was measured (keypoints)."""
    kp_names = [n for n in summary.get("keypoint_names", []) if n in summary.get("keypoint_error_mm_per_keypoint", {})]
    head = f"{'clip':<28} {'joint RMSE (deg)':>17} {'end-eff. (mm)':>14} {'bodies (mm)':>12} {'root (mm)':>10}"
    head += "".join(f" {n[:10] + ' (mm)':>15}" for n in kp_names) + f" {'tracked':>8}"

    def row(label, joint, ee, body, root, kp, tracked):
        kp_cols = "".join(f" {kp[n]:>15.3f}" if n in kp else f" {'-':>15}" for n in kp_names)
        return f"{label:<28} {joint:>17.2f} {ee:>14.3f} {body:>12.2f} {root:>10.2f}{kp_cols} {100 * tracked:>7.0f}%"

    lines = [head]
    for c in summary["clips"]:
        lines.append(
            row(
                c["clip"],
                c["joint_rmse_deg"],
                c["ee_error_mm"],
                c["body_error_mm"],
                c["root_error_mm"],
                c.get("keypoint_error_mm_per_keypoint", {}),
                c["fraction_tracked"],
            )
        )
    s = summary
    lines.append(
        row(
            f"mean over {s['num_clips']} clips",
            s["mean_joint_rmse_deg"],
            s["mean_ee_error_mm"],
            s["mean_body_error_mm"],
            s["mean_root_error_mm"],
            s.get("keypoint_error_mm_per_keypoint", {}),
            s["mean_fraction_tracked"],
        )
    )
    if "peak_ee_error_mm" in s:  # summaries of earlier releases lack it
        lines.append(
            f"largest end-effector error on a tracked frame: {s['peak_ee_error_mm']:.3f} mm "
            f"(an episode ends at {s['ee_termination_mm']:g} mm)"
        )
    return "\n".join(lines)
