"""``mimic analyze``: PCA of the latent and hidden layers, muscle synergies, of a rollout dataset.

Reads a file written by ``mimic rollout`` or ``mimic evaluate`` (docs/rollout-format.md),
pools the tracked steps of every clip and seed, and writes ``analysis.json``
and PNG figures. The numerics are in ``analysis/population.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mimic_mjx.analysis.rollout_format import HINT, RolloutFileError, names, open_rollouts, text
from mimic_mjx.files import atomic_path, write_text

MAX_SYNERGIES = 8
MAX_LEGEND_CLIPS = 12
NMF_MAX_SAMPLES = 20_000
PCA_FIELDS = ("n_samples", "dims", "explained_variance_ratio", "cumulative", "components_90", "components_95")


def _read(path: Path) -> dict:
    """Check the file and list what to analyse and which (clip, seed, step) each pooled row is."""
    with open_rollouts(path) as f:
        layers = names(f["layer_names"]) if "layer_names" in f else []
        is_muscle = np.asarray(f["actuator_is_muscle"][()], bool) if "actuator_is_muscle" in f else np.zeros(0, bool)
        actuators = names(f["actuator_names"]) if "actuator_names" in f else []
        if len(actuators) != len(is_muscle):
            raise RolloutFileError(f"{path}: actuator_names and actuator_is_muscle differ in length; {HINT}")
        keys = ["latent_mean"] + [f"layers/{n}" for n in layers] + (["activation"] if is_muscle.any() else [])
        clips = sorted(f["clips"].keys())
        rows, widths, clip_ix, seed_ix, time_s = [], {}, [], [], []
        for c, name in enumerate(clips):
            g = f["clips"][name]
            for k in ["tracked", "time_s", *keys]:
                if k not in g:
                    raise RolloutFileError(f"{path}: clip '{name}' has no '{k}' dataset; {HINT}")
            tracked = np.asarray(g["tracked"][()], bool)
            for k in keys:
                shape = g[k].shape
                if shape[:2] != tracked.shape or widths.setdefault(k, shape[2:]) != shape[2:]:
                    raise RolloutFileError(
                        f"{path}: clip '{name}': '{k}' has shape {shape}, not (S, T) = {tracked.shape} as 'tracked' "
                        f"followed by {widths[k]} as in the other clips; {HINT}"
                    )
            s, t = np.nonzero(tracked)  # row-major: each rollout's steps stay together, in time order
            rows.append((s, t))
            clip_ix.append(np.full(len(s), c))
            seed_ix.append(s)
            time_s.append(np.asarray(g["time_s"][()], np.float64)[t])
        if "activation" in widths and widths["activation"] != (len(is_muscle),):
            raise RolloutFileError(f"{path}: 'activation' is not (S, T, {len(is_muscle)} actuators); {HINT}")
        return {
            "path": path,
            "body": text(f.attrs.get("body", "")),
            "run_id": text(f.attrs.get("run_id", "")),
            "stochastic": bool(f.attrs.get("stochastic", False)),
            "clips": clips,
            "keys": keys,
            "is_muscle": is_muscle,
            "muscles": [a for a, m in zip(actuators, is_muscle, strict=True) if m],
            "rows": rows,
            "clip": np.concatenate(clip_ix),
            "seed": np.concatenate(seed_ix),
            "time_s": np.concatenate(time_s),
        }


def _stack(d: dict, key: str) -> np.ndarray:
    # One representation at a time, in float32: a large dataset's hidden layers do not fit in memory together.
    with open_rollouts(d["path"]) as f:
        parts = [f["clips"][name][key][()][s, t] for name, (s, t) in zip(d["clips"], d["rows"], strict=True)]
    X = np.concatenate([np.asarray(p, np.float32).reshape(len(p), -1) for p in parts])
    if key == "activation":
        # Only muscles have synergies; tiny negative activations are solver noise.
        X = np.clip(X[:, d["is_muscle"]], 0.0, None)
    return X


def analyze(data_path, out_dir, max_components: int = 10, max_synergies: int | None = None) -> dict:
    """Write ``analysis.json`` and plots of the rollout dataset into ``out_dir``; return the JSON summary."""
    from mimic_mjx.analysis.population import AnalysisError, nmf_synergies, pca_summary

    data_path, out_dir = Path(data_path), Path(out_dir)
    if max_components < 1:
        raise AnalysisError(f"max_components must be at least 1, got {max_components}")
    d = _read(data_path)
    if len(d["clip"]) == 0:
        raise RolloutFileError(f"{data_path}: no clip has a tracked step; there is nothing to analyse")
    reps, fits = {}, {}
    for key in (k for k in d["keys"] if k != "activation"):
        try:
            fits[key] = pca_summary(_stack(d, key), max_components, what=f"{data_path}: {key}")
            reps[key] = {k: np.asarray(fits[key][k]).tolist() for k in PCA_FIELDS}
        except AnalysisError as exc:
            # A dead layer must not stop the analysis of the others.
            reps[key] = {"skipped": str(exc)}
    synergies, syn = None, None
    if "activation" in d["keys"]:
        muscles = d["muscles"]
        k_max = min(MAX_SYNERGIES, len(muscles)) if max_synergies is None else max_synergies
        A = _stack(d, "activation")
        # NMF costs rows x iterations per k; consecutive steps are so alike that every n-th one suffices.
        every = -(-len(A) // NMF_MAX_SAMPLES)
        syn = nmf_synergies(A[::every], k_max, what=f"{data_path}: muscle activations")
        H = syn["H"][syn["k"] - 1]
        synergies = {
            "muscles": muscles,
            "n_samples": syn["n_samples"],
            "every_nth_step": every,
            "vaf": syn["vaf"].tolist(),
            "threshold": syn["threshold"],
            "synergies_90": syn["synergies_needed"],
            "k": syn["k"],
            "weights": [dict(zip(muscles, row.tolist(), strict=True)) for row in H],
        }
    plots = _plots(d, fits, syn, out_dir)
    summary = {
        "data": str(data_path.resolve()),
        "body": d["body"],
        "run_id": d["run_id"],
        "stochastic": d["stochastic"],
        "clips": d["clips"],
        "n_tracked_steps": len(d["clip"]),
        "representations": reps,
        "synergies": synergies,
        "plots": [p.name for p in plots],
    }
    write_text(out_dir / "analysis.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _plots(d: dict, fits: dict, syn: dict | None, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if fits:
        n = len(fits)
        cols = min(n, 3)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
        for ax, (key, fit) in zip(axes.flat, fits.items(), strict=False):
            pcs = np.arange(1, len(fit["cumulative"]) + 1)
            ax.bar(pcs, 100 * fit["explained_variance_ratio"], color="C0", label="per component")
            ax.plot(pcs, 100 * fit["cumulative"], "C1o-", ms=3, label="cumulative")
            ax.axhline(90, color="grey", lw=0.8, ls=":")
            ax.set_ylim(0, 102)
            ax.set_title(f"{key} ({fit['dims']}-d): 90 % in {fit['components_90']}", fontsize=9)
            ax.set_xlabel("principal component")
            ax.set_ylabel("variance explained (%)")
        axes.flat[0].legend(fontsize=8, loc="center right")
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.tight_layout()
        paths.append(_save(fig, out_dir / "pca_variance.png"))
    fit = fits.get("latent_mean")
    if fit is not None and fit["projection"].shape[1] >= 2:
        paths += _plot_trajectories(d, fit["projection"], out_dir)
    if syn is not None:
        paths += _plot_synergies(syn, d["muscles"], out_dir)
    return paths


def _plot_trajectories(d: dict, P: np.ndarray, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    three = P.shape[1] >= 3
    # Tracked steps of one rollout are consecutive rows (see _read): split where (clip, seed) changes.
    key = d["clip"] * (d["seed"].max() + 1) + d["seed"]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    segments = np.split(np.arange(len(key)), starts[1:])
    n_clips = len(d["clips"])
    cmap = plt.get_cmap("tab10" if n_clips <= 10 else "tab20")
    paths = []
    for by in ("time", "clip"):
        fig = plt.figure(figsize=(11 if three else 5.5, 4.5))
        axes = [fig.add_subplot(1, 2 if three else 1, 1)]
        if three:
            axes.append(fig.add_subplot(1, 2, 2, projection="3d"))
        for ax in axes:
            dims = 3 if ax.name == "3d" else 2
            for seg in segments:
                pts = [P[seg, i] for i in range(dims)]
                c = d["clip"][seg[0]]
                if by == "time":
                    ax.plot(*pts, color="0.6", lw=0.5, alpha=0.6)
                    sc = ax.scatter(*pts, c=d["time_s"][seg], s=4, cmap="viridis", vmin=0, vmax=d["time_s"].max())
                else:
                    first = seg is segments[0] or d["clip"][seg[0] - 1] != c
                    label = d["clips"][c] if first and n_clips <= MAX_LEGEND_CLIPS else None
                    ax.plot(*pts, color=cmap(c % cmap.N), lw=1, label=label)
            ax.set_xlabel("PC 1")
            ax.set_ylabel("PC 2")
            if dims == 3:
                ax.set_zlabel("PC 3")
        if by == "time":
            fig.colorbar(sc, ax=axes, label="time in clip (s)", shrink=0.8, pad=0.08)
        elif n_clips <= MAX_LEGEND_CLIPS:
            axes[0].legend(fontsize=7, loc="best")
        fig.suptitle(f"latent mean in its principal components, coloured by {by}")
        paths.append(_save(fig, out_dir / f"latent_pcs_by_{by}.png"))
    return paths


def _plot_synergies(syn: dict, muscles: list[str], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    ks = np.arange(1, len(syn["vaf"]) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, 100 * syn["vaf"], "C0o-")
    ax.axhline(100 * syn["threshold"], color="grey", lw=0.8, ls=":")
    ax.set_xticks(ks)
    ax.set_xlabel("number of synergies")
    ax.set_ylabel("VAF (%)")
    ax.set_title(f"muscle synergies (NMF), {len(muscles)} muscles")
    fig.tight_layout()
    paths = [_save(fig, out_dir / "synergies_vaf.png")]

    H = syn["H"][syn["k"] - 1]
    fig, axes = plt.subplots(len(H), 1, figsize=(max(5, 0.25 * len(muscles) + 2), 1.6 * len(H) + 1), sharex=True)
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.bar(np.arange(len(muscles)), H[i], color=f"C{i % 10}")
        ax.set_ylabel(f"synergy {i + 1}")
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[-1].set_xticks(np.arange(len(muscles)), muscles, rotation=90, fontsize=7)
    fig.suptitle(f"synergy weights (k = {syn['k']}, VAF {100 * syn['vaf'][syn['k'] - 1]:.1f} %)")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "synergy_weights.png"))
    return paths


def add_parser(subparsers) -> None:
    """Add the ``analyze`` subcommand to the ``mimic`` command line."""
    p = subparsers.add_parser(
        "analyze", help="PCA of the latent and hidden layers and muscle synergies of a rollout dataset"
    )
    p.add_argument("data", metavar="DATA", help="rollout dataset written by `mimic rollout` (HDF5)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for analysis.json and the plots")
    p.add_argument("--max-components", type=int, default=10, metavar="N", help="principal components to report")
    p.add_argument(
        "--max-synergies", type=int, metavar="N", help="fit 1..N synergies (default: min(8, number of muscles))"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    summary = analyze(args.data, args.out, max_components=args.max_components, max_synergies=args.max_synergies)
    print(format_summary(summary))
    print(f"wrote {Path(args.out) / 'analysis.json'} and {len(summary['plots'])} plots in {args.out}")
    return 0


def format_summary(summary: dict) -> str:
    lines = [f"{summary['n_tracked_steps']} tracked steps of {len(summary['clips'])} clip(s), body {summary['body']}"]
    for key, r in summary["representations"].items():
        if "skipped" in r:
            lines.append(f"  {key}: skipped ({r['skipped']})")
        else:
            lines.append(
                f"  {key} ({r['dims']}-d): {r['components_90']} components for 90 % of the variance, "
                f"{r['components_95']} for 95 %"
            )
    syn = summary["synergies"]
    if syn is not None:
        n = syn["synergies_90"]
        got = f"{n} synergies reach" if n else f"{len(syn['vaf'])} synergies do not reach"
        lines.append(f"  muscle synergies: {got} VAF {100 * syn['threshold']:.0f} % ({len(syn['muscles'])} muscles)")
    return "\n".join(lines)
