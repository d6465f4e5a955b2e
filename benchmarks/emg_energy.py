"""The forelimb paper's experiment: physics-aware vs joint-only imitation, muscle energy, co-contraction, EMG.

Trains the mouse forelimb twice on the 30 training reaches with the same
seed and budget: once with the task's physics-aware terms (muscle energy,
control change, joint velocity beside joint and wrist tracking), once with
joint tracking alone. Both are rolled out on the 7 held-out reaches
(`mimic rollout` datasets) and compared: tracking, total muscle energy (the
absolute mechanical work of the muscles, J per reach), a co-contraction index
of antagonist pairs (elbow flexors Biceps/Brachialis vs the Triceps heads;
anterior vs posterior deltoid) and, given an EMG file and a channel map, the
EMG comparison of each (`mimic emg`). Last output line: one JSON object.

    .venv/bin/python benchmarks/emg_energy.py [--minutes 15] [--seed 0] [--emg FILE --map muscles.yaml]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forelimb import ROOT, split_trials  # the same references and split as the forelimb benchmark

CONDITIONS = {
    "physics_aware": ["reward.joint_vel.weight=0.1"],  # energy and ctrl_change are in the default config
    "joint_only": [
        f"reward.{t}.weight=0" for t in ("end_effector", "joint_vel", "ctrl", "ctrl_change", "energy", "keypoint")
    ],
}
ANTAGONISTS = {
    "elbow": (("Biceps_Long", "Brachialis"), ("Triceps_Lateral", "Triceps_Long")),
    "deltoid": (("AD",), ("PD",)),
}


def cocontraction_index(act: np.ndarray, names: list[str]) -> float:
    """Mean over antagonist pairs of 2 * sum(min(flexor, extensor)) / sum(flexor + extensor), over time.

    ``act``: (..., muscles) activations with NaN where not tracked; each group is
    the sum of its muscles' activations.
    """
    col = {n: i for i, n in enumerate(names)}
    out = []
    for flex, ext in ANTAGONISTS.values():
        a = act[..., [col[n] for n in flex]].sum(-1)
        b = act[..., [col[n] for n in ext]].sum(-1)
        ok = np.isfinite(a) & np.isfinite(b)
        out.append(2 * np.minimum(a[ok], b[ok]).sum() / max((a[ok] + b[ok]).sum(), 1e-12))
    return float(np.mean(out))


def dataset_figures(path: Path) -> dict:
    """Tracking, muscle energy and co-contraction from a rollout dataset."""
    with h5py.File(path) as f:
        dt = float(f.attrs["control_dt_s"])
        names = [n.decode() if isinstance(n, bytes) else n for n in f["actuator_names"][()]]
        ee = [n.decode() if isinstance(n, bytes) else n for n in f["end_effectors"][()]]
        frac, wrist, energy, acts = [], [], [], []
        for g in f["clips"].values():
            frac.append(g.attrs["fraction_tracked"])
            wrist.append(np.nanmean(g["ee_error"][()][..., ee.index("wrist_body") if "wrist_body" in ee else 0]))
            power = np.abs(g["actuator_force"][()] * g["muscle_velocity"][()])  # W per muscle
            energy.append(np.nansum(power) * dt / power.shape[0])  # J per rollout of this reach
            acts.append(g["activation"][()].reshape(-1, len(names)))
    return {
        "heldout_fraction_tracked": round(float(np.mean(frac)), 4),
        "heldout_wrist_error_mm": round(1e3 * float(np.mean(wrist)), 4),
        "muscle_energy_j": float(f"{np.mean(energy):.4g}"),
        "cocontraction_index": round(cocontraction_index(np.concatenate(acts), names), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall-time budget per condition")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--references", choices=["registered", "shipped"], default="registered")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_emg_energy"))
    ap.add_argument("--emg", help="EMG file (CSV or NWB) of the held-out reaches")
    ap.add_argument("--map", help="EMG channel -> muscle map (YAML), with --emg")
    ap.add_argument("--emg-args", nargs="*", default=[], help="further `mimic emg` options, e.g. --rate 10000")
    args = ap.parse_args()
    if bool(args.emg) != bool(args.map):
        print("--emg and --map go together", file=sys.stderr)
        return 2
    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.rollout import roll_out
    from mimic_mjx.bodies import get_body
    from mimic_mjx.training.bench import raw_physics
    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.signals import exit_code
    from mimic_mjx.training.trainer import train

    log = lambda m: print(m, flush=True)
    base = Path(args.run_dir)
    train_clips, eval_clips = split_trials(args.references, base, log)
    cfg0 = config_lib.apply_overrides(
        get_body("mouse_forelimb").default_config(), [f"train.max_minutes={args.minutes}", f"train.seed={args.seed}"]
    )
    env = build_env(cfg0, train_clips)
    raw, _ = raw_physics(env, cfg0.ppo.num_envs, seed=args.seed)
    del env
    log(f"raw {cfg0.env.backend} physics: {raw:,.0f} control steps/s at {cfg0.ppo.num_envs} envs")

    figures = {"seed": args.seed, "minutes_per_condition": args.minutes, "raw_physics_steps_per_s": round(raw, 1)}
    for name, overrides in CONDITIONS.items():
        run_dir = base / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        log(f"--- {name}: {' '.join(overrides)}")
        cfg = config_lib.apply_overrides(cfg0, overrides)
        summary = train(cfg, run_dir, train_clips, log=log)
        if summary.get("stopped_by"):  # preempted: its checkpoint is saved, its figures would mislead
            return exit_code(summary["stopped_by"])
        data = run_dir / "heldout_rollouts.h5"
        roll_out(run_dir, eval_clips, data)
        fig = dataset_figures(data) | {
            "train_env_steps": summary["env_steps"],
            "train_steps_per_s": round(summary["steps_per_s"], 1),
            "run_dir": str(run_dir),
        }
        if args.emg:
            from mimic_mjx.cli.main import main as mimic

            out = run_dir / "emg"
            rc = mimic(["emg", str(data), "--emg", args.emg, "--map", args.map, "--out", str(out), *args.emg_args])
            if rc != 0:
                return rc
            emg = json.loads((out / "emg.json").read_text())
            fig["emg_mae"] = {m: v["mae"] for m, v in emg["per_muscle"].items()}
            fig["emg_r"] = {m: v["r"] for m, v in emg["per_muscle"].items()}
        log(json.dumps(fig))
        figures[name] = fig
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
