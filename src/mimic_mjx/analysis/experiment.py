"""Virtual experiments: the same controller on the same clips, with the body, physics or network perturbed.

Every entry of a perturbation file is one condition; the unperturbed
controller runs first, then each condition with the same clips, seeds and
backend. Each condition's rollouts are written as a rollout dataset
(docs/rollout-format.md), and one table compares them with the baseline:
tracking errors, fraction tracked, and how much muscle activations and the
latent intention changed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from mimic_mjx.agents.policy import Policy
from mimic_mjx.analysis import perturb as P
from mimic_mjx.analysis import perturb_apply as PA
from mimic_mjx.analysis.rollout import collect, derive_physiology, write_rollouts
from mimic_mjx.files import atomic_path, require_writable_dir, write_text
from mimic_mjx.training.checkpoint import load_policy
from mimic_mjx.training.experiment import build_eval_env

TABLE_COLUMNS = (
    "condition",
    "fraction_tracked",
    "joint_rmse_deg",
    "ee_error_mm",
    "keypoint_error_mm",
    "activation_change",
    "latent_change",
)


def _file_name(i: int, name: str) -> str:
    return f"{i:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.h5"


def _nanmean(x) -> float:
    x = np.asarray(x, float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def condition_figures(recs: dict, steps: np.ndarray, base: dict | None) -> dict:
    """One row of the table: errors over tracked steps and changes against the baseline's rollouts."""
    tracked = recs["tracked"]
    frac = np.mean([tracked[c, :, :n].sum(-1).mean() / n for c, n in enumerate(steps)])
    row = {
        "fraction_tracked": float(frac),
        "joint_rmse_deg": float(np.rad2deg(np.sqrt(_nanmean(recs["joint_error"] ** 2)))),
        "ee_error_mm": 1e3 * _nanmean(recs["ee_error"]),
        "keypoint_error_mm": 1e3 * _nanmean(recs["keypoint_error"]) if recs["keypoint_error"].size else float("nan"),
    }
    if base is None:
        row["activation_change"] = row["latent_change"] = 0.0
    else:
        # Mean absolute change, over the steps both rollouts tracked.
        row["activation_change"] = _nanmean(np.abs(recs["activation"] - base["activation"]))
        row["latent_change"] = _nanmean(np.abs(recs["latent"] - base["latent"]))
    return row


def _perturbed_policy(policy: Policy, ps, latent_dim: int) -> Policy:
    params = PA.apply_to_params(policy.params.params, ps, latent_dim)
    return dataclasses.replace(policy, params=policy.params.replace(params=params))


def _xfrc(model, ps, num_steps: int, dt: float):
    if not any(isinstance(p, P.ForcePulse) for p in ps):
        return None
    return PA.xfrc_schedule(model, ps, np.arange(num_steps) * dt)  # a step's wrench holds from its start


def _spec_text(ps) -> str:
    return yaml.safe_dump([{"kind": p.kind, **dataclasses.asdict(p)} for p in ps], sort_keys=False) if ps else ""


def run_condition(policy, cfg, clips, body_model, ps, *, seeds: int, seed: int, stochastic: bool):
    """Build the (perturbed) task, roll the (perturbed) controller out; the env and records.

    ``body_model``: the body's trainable model, which ``ps`` perturb (a copy; it is not changed).
    """
    model = PA.apply_to_model(body_model, ps)
    env = build_eval_env(cfg, clips, physics_model=model, body=policy.body)
    pol = _perturbed_policy(policy, ps, cfg.agent.latent_dim)
    num_steps = int((env.bank.lengths.max() - 1) // env.cfg.control_every)
    recs = collect(
        pol,
        env,
        stochastic=stochastic,
        seeds=seeds,
        seed=seed,
        latent_noise_std=PA.latent_noise_std(ps),
        xfrc=_xfrc(env.model, ps, num_steps, env.control_dt),
    )
    recs.update(derive_physiology(env, recs))
    return env, pol, recs


def experiment(
    run_dir: str | Path,
    clips: Sequence,
    perturb_file: str | Path,
    out_dir: str | Path,
    *,
    seeds: int = 1,
    seed: int = 0,
    stochastic: bool = False,
    backend: str | None = None,
    log=print,
) -> dict:
    """``mimic experiment``: baseline and every perturbation of ``perturb_file``; the comparison table."""
    out_dir = require_writable_dir(out_dir, "output folder")  # first: before any rollout
    policy = load_policy(run_dir)
    cfg = policy.config
    if backend:
        cfg = cfg.replace(env=dataclasses.replace(cfg.env, backend=backend))
    from mimic_mjx.bodies import get_body

    perturbations = P.load_perturbations(perturb_file)
    model = (policy.body or get_body(cfg.env.body)).compile_trainable()  # the run's stored body
    P.validate(perturbations, model, P.layer_widths(cfg.agent), cfg.agent.latent_dim)
    require_writable_dir(out_dir, "output folder", create=True)
    conditions = [("baseline", [])] + [(p.name, [p]) for p in perturbations]
    rows, base = [], None
    for i, (name, ps) in enumerate(conditions):
        log(f"[{i}/{len(conditions) - 1}] {name}")
        env, pol, recs = run_condition(policy, cfg, clips, model, ps, seeds=seeds, seed=seed, stochastic=stochastic)
        steps = (np.asarray(env.bank.lengths) - 1) // env.cfg.control_every
        path = out_dir / _file_name(i, name)
        write_rollouts(path, env, pol, recs, stochastic=stochastic, perturbation=_spec_text(ps))
        row = {"condition": name, **condition_figures(recs, steps, base), "rollouts": path.name}
        rows.append(row)
        base = base or recs
        log("    " + ", ".join(f"{k} {row[k]:.3g}" for k in TABLE_COLUMNS[1:]))
    result = {
        "run_dir": str(run_dir),
        "perturbations": str(perturb_file),
        "backend": env.backend.name,
        "seeds": seeds,
        "stochastic": stochastic,
        "clips": list(env.bank.names),
        "conditions": rows,
    }
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*TABLE_COLUMNS, "rollouts"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(out_dir / "table.csv", buf.getvalue())
    write_text(out_dir / "experiments.json", json.dumps(result, indent=2))
    plot_conditions(rows, out_dir / "experiments.png")
    return result


def plot_conditions(rows: list[dict], path: Path) -> None:
    """Bars per condition: fraction tracked, joint error, activation and latent change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["condition"] for r in rows]
    keys = ("fraction_tracked", "joint_rmse_deg", "activation_change", "latent_change")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 0.35 * len(rows) + 1.8))
    y = np.arange(len(rows))
    for ax, k in zip(axes, keys, strict=True):
        ax.barh(y, [r[k] for r in rows], color=["0.5"] + ["C0"] * (len(rows) - 1))
        ax.set_yticks(y, names if ax is axes[0] else [""] * len(rows))
        ax.invert_yaxis()
        ax.set_title(k.replace("_", " "))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
