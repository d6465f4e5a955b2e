"""Subcommands of the analysis stage: rollout datasets, analyses, virtual experiments, EMG."""

from __future__ import annotations

import numpy as np

from mimic_mjx.cli.types import add_clip_selection, cli_number, open_selected_clips

_SEEDS = cli_number(int, 1, what="a number of rollouts per clip, 1 or more")


def cmd_rollout(args) -> int:
    from mimic_mjx.analysis.rollout import roll_out

    clips = open_selected_clips(args)  # each clip read once, while binding
    opts = {"stochastic": args.stochastic, "seeds": args.seeds, "seed": args.seed, "randomize": args.randomize}
    s = roll_out(args.run, clips, args.out, **opts)
    mode = "stochastic" if args.stochastic else "deterministic"
    print(f"{len(clips)} clip(s) x {args.seeds} {mode} rollout(s):")
    for name, c in s["clips"].items():
        print(f"  {name:<28} {c['steps']:>6} steps  tracked {100 * c['fraction_tracked']:5.1f}%")
    t, frac = np.asarray(s["survival"]["time_s"]), np.asarray(s["survival"]["fraction"])
    marks = [i for i in np.unique(np.linspace(0, len(t) - 1, 5).round().astype(int))]
    print("survival (fraction of rollouts still tracked): " + ", ".join(f"{t[i]:.2f} s {frac[i]:.2f}" for i in marks))
    print(f"wrote {args.out} (layout: docs/rollout-format.md)")
    return 0


def cmd_experiment(args) -> int:
    from mimic_mjx.analysis.experiment import TABLE_COLUMNS, experiment

    clips = open_selected_clips(args)  # read while binding, once per condition: never all held
    result = experiment(
        args.run,
        clips,
        args.perturb,
        args.out,
        seeds=args.seeds,
        seed=args.seed,
        stochastic=args.stochastic,
        backend=args.backend,
    )
    print(f"{'condition':<24}" + "".join(f"{c:>19}" for c in TABLE_COLUMNS[1:]))
    for row in result["conditions"]:
        print(f"{row['condition']:<24}" + "".join(f"{row[c]:>19.4g}" for c in TABLE_COLUMNS[1:]))
    print(f"wrote {args.out}/table.csv, experiments.json, experiments.png and one rollout dataset per condition")
    return 0


def add_parsers(sub) -> None:
    r = sub.add_parser("rollout", help="roll a trained controller out on clips and record body, muscles and network")
    r.add_argument("run", help="run directory written by `mimic train`")
    r.add_argument("--clips", nargs="+", required=True, help="clip files (HDF5); clips may be longer than training's")
    r.add_argument("--out", required=True, help="dataset to write (HDF5, docs/rollout-format.md)")
    r.add_argument("--stochastic", action="store_true", help="sample latents and actions instead of their means")
    r.add_argument("--seeds", type=_SEEDS, default=1, help="rollouts per clip")
    r.add_argument("--seed", type=int, default=0, help="first random seed")
    r.add_argument(
        "--randomize",
        action="store_true",
        help="draw each rollout's body physics from the run's randomize.* ranges (recorded per clip and seed)",
    )
    add_clip_selection(r)
    r.set_defaults(func=cmd_rollout)

    x = sub.add_parser("experiment", help="virtual experiments: perturb body, physics or network and compare")
    x.add_argument("run", help="run directory written by `mimic train`")
    x.add_argument("--clips", nargs="+", required=True, help="clip files (HDF5)")
    x.add_argument(
        "--perturb",
        required=True,
        help="perturbation file (YAML), one condition per entry; examples: mimic_mjx/configs/perturb_*.yaml",
    )
    x.add_argument("--out", required=True, help="output folder")
    x.add_argument("--stochastic", action="store_true", help="sample latents and actions instead of their means")
    x.add_argument("--seeds", type=_SEEDS, default=1, help="rollouts per clip and condition")
    x.add_argument("--seed", type=int, default=0, help="first random seed (the same in every condition)")
    x.add_argument("--backend", choices=["native", "mjx", "warp"], help="physics backend (default: the run's)")
    add_clip_selection(x)
    x.set_defaults(func=cmd_experiment)

    from mimic_mjx.analysis import emg

    emg.add_parser(sub)

    from mimic_mjx.analysis.analyze import add_parser as add_analyze_parser

    add_analyze_parser(sub)

    from mimic_mjx.presentation import video

    video.add_parser(sub)

    from mimic_mjx.cli import export

    export.add_parser(sub)

    from mimic_mjx.cli.report import add_parser as add_report_parser

    add_report_parser(sub)
