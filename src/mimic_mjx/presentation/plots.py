"""PNG figures of evaluation rollouts (rollout datasets, docs/rollout-format.md) and training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mimic_mjx.analysis.rollout_format import RolloutFileError, names, open_rollouts
from mimic_mjx.files import atomic_path

MAX_JOINT_PANELS = 8


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_clip(rollouts_h5: str | Path, clip: str, out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Joint angles (reference vs simulated) and muscle activations of one clip of a rollout dataset.

    Reads the layout of docs/rollout-format.md (``mimic evaluate`` or ``mimic rollout``); ``seed``
    picks one rollout of a file with several.
    """
    out_dir = Path(out_dir)
    hint = "pass the rollouts.h5 of `mimic evaluate` (rerun it if the file predates this layout) or of `mimic rollout`"
    with open_rollouts(rollouts_h5, hint) as f:
        if clip not in f["clips"]:
            raise RolloutFileError(f"{rollouts_h5} holds no clip {clip!r}; its clips: {', '.join(f['clips'])}")
        seeds = int(f.attrs.get("seeds", 1))
        if not 0 <= seed < seeds:
            raise RolloutFileError(f"{rollouts_h5} holds seeds 0..{seeds - 1}, not {seed}; pass one of them")
        joints, muscles = names(f["joint_names"]), names(f["actuator_names"])
        qidx = f["joint_qpos_index"][()]
        dt = float(f.attrs["control_dt_s"])
        g = f["clips"][clip]
        t = g["time_s"][()]
        ref = g["reference_qpos"][()][:, qidx]
        sim = g["qpos"][seed][:, qidx]
        jerr = g["joint_error"][seed]
        act = g["activation"][seed]
        # Tracking, once lost, is not regained: the tracked steps are the first ``tracked`` ones.
        tracked = int(g["tracked"][seed].sum())
    if len(joints) > MAX_JOINT_PANELS:
        # Large bodies: show the joints tracked worst.
        keep = np.sort(np.argsort(-np.sqrt(np.mean(jerr[: max(tracked, 1)] ** 2, axis=0)))[:MAX_JOINT_PANELS])
        joints, ref, sim = [joints[k] for k in keep], ref[:, keep], sim[:, keep]
    of = f" (seed {seed} of {seeds})" if seeds > 1 else ""
    paths = []

    fig, axes = plt.subplots(len(joints), 1, figsize=(7, 1.8 * len(joints)), sharex=True)
    for j, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(t, np.rad2deg(ref[:, j]), "k-", lw=1.5, label="reference")
        ax.plot(t[:tracked], np.rad2deg(sim[:tracked, j]), "C1--", lw=1.5, label="simulated")
        ax.set_ylabel(f"{joints[j]}\n(deg)")
        if tracked < len(sim):
            ax.axvline(t[tracked - 1] if tracked else 0, color="r", lw=0.8, ls=":")
    np.atleast_1d(axes)[0].legend(loc="best", fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    fig.suptitle(f"{clip}: joint angles{of}")
    fig.tight_layout()
    paths.append(out_dir / f"{_safe(clip)}_joints.png")
    _save(fig, paths[-1])

    fig, ax = plt.subplots(figsize=(7, 3.5))
    im = ax.imshow(
        act[: max(tracked, 1)].T,
        aspect="auto",
        origin="lower",
        vmin=min(0.0, float(np.nanmin(act))),
        vmax=max(1.0, float(np.nanmax(act))),
        cmap="magma",
        extent=(t[0] - dt / 2, t[max(tracked, 1) - 1] + dt / 2, -0.5, len(muscles) - 0.5),
    )
    ax.set_yticks(range(len(muscles)), muscles, fontsize=8)
    ax.set_xlabel("time (s)")
    fig.colorbar(im, ax=ax, label="activation")
    ax.set_title(f"{clip}: muscle activations{of}")
    fig.tight_layout()
    paths.append(out_dir / f"{_safe(clip)}_muscles.png")
    _save(fig, paths[-1])
    return paths


def plot_training_curve(metrics_jsonl: str | Path, out_path: str | Path) -> Path:
    from mimic_mjx.errors import MimicError
    from mimic_mjx.files import read_jsonl

    # Damaged lines (a crash mid-write, bad bytes) are skipped, as the report skips them.
    rows = [r for r in read_jsonl(metrics_jsonl, MimicError, "metrics log")[0] if "env_steps" in r]
    steps = np.array([r["env_steps"] for r in rows]) / 1e6
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, key, label in zip(
        axes,
        ("reward/total", "error/joint_deg", "error/ee_mm"),
        ("reward per step", "joint error (deg)", "end-effector error (mm)"),
        strict=True,
    ):
        # null (non-finite) values are gaps in the curve.
        ax.plot(steps, [np.nan if r.get(key) is None else r[key] for r in rows])
        ax.set_xlabel("environment steps (M)")
        ax.set_title(label)
    fig.tight_layout()
    _save(fig, Path(out_path))
    return Path(out_path)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
