"""``mimic transfer`` (a new task on a trained decoder) and ``mimic evaluate`` (imitation or task runs)."""

from __future__ import annotations

import json
from pathlib import Path

from mimic_mjx.errors import MimicError


def cmd_transfer(args) -> int:
    from mimic_mjx.training.signals import exit_code
    from mimic_mjx.training.trainer import stderr_log
    from mimic_mjx.training.transfer import transfer

    if not args.resume and args.run is None:
        raise MimicError(
            "name the imitation run whose decoder to reuse: `mimic transfer RUN --task NAME --run-dir NEW`"
        )
    summary = transfer(
        args.run,
        args.run_dir,
        task=args.task or "",
        decoder=args.decoder,
        overrides=args.set or [],
        resume=args.resume,
        stored_body=args.stored_body,
        log=stderr_log,
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "last_metrics"}))
    return exit_code(summary.get("stopped_by"))


def cmd_evaluate(args) -> int:
    from mimic_mjx.training.transfer import is_transfer_run

    if is_transfer_run(args.run):
        from mimic_mjx.analysis.task_eval import evaluate_task, format_task_summary

        if args.clips:
            raise MimicError(f"{args.run} is a transfer run (task, no clips); evaluate it without --clips")
        out = Path(args.out) if args.out else Path(args.run) / "eval"
        summary = evaluate_task(args.run, out, instances=args.instances, seed=args.seed)
        print(format_task_summary(summary))
        print(f"wrote {out / 'summary.json'} and {out / 'rollouts.npz'}")
        return 0
    from mimic_mjx.analysis.evaluate import evaluate, format_summary
    from mimic_mjx.cli.types import open_selected_clips
    from mimic_mjx.presentation.plots import plot_clip

    if not args.clips:
        raise MimicError(f"evaluating an imitation run needs held-out clips: `mimic evaluate {args.run} --clips FILE`")
    clips = open_selected_clips(args)  # each clip read once, while binding
    out = Path(args.out) if args.out else Path(args.run) / "eval"
    summary = evaluate(args.run, clips, out)
    if args.plots:
        for c in summary["clips"][: args.plots]:
            plot_clip(out / "rollouts.h5", c["clip"], out)
    print(format_summary(summary))
    print(f"wrote {out / 'rollouts.h5'} and {out / 'summary.json'}")
    return 0


def add_parsers(sub) -> None:
    from mimic_mjx.cli.types import add_clip_selection
    from mimic_mjx.training.transfer import DECODER_MODES

    e = sub.add_parser("evaluate", help="roll a trained controller out on held-out clips or task instances; score it")
    e.add_argument("run", help="run directory written by `mimic train` or `mimic transfer`")
    e.add_argument("--clips", nargs="+", help="clip files to evaluate on (held-out behaviour; imitation runs)")
    e.add_argument("--out", help="output folder (default RUN/eval)")
    e.add_argument("--plots", type=int, default=3, help="plot this many clips (0: none; imitation runs)")
    e.add_argument("--instances", type=int, default=50, help="held-out task instances (transfer runs)")
    e.add_argument("--seed", type=int, default=0, help="seed of the held-out task instances (transfer runs)")
    add_clip_selection(e)
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("transfer", help="train a new task on a trained run's decoder (no motion capture needed)")
    t.add_argument("run", nargs="?", help="imitation run (folder `mimic train` wrote) whose decoder to reuse")
    t.add_argument("--task", help="task: reach_target, go_to_target, bowl_escape (docs/transfer.md)")
    t.add_argument("--run-dir", required=True, help="folder of the new run")
    t.add_argument(
        "--decoder",
        choices=DECODER_MODES,
        default="frozen",
        help="frozen: the run's decoder, not trained; trainable: starts from it; scratch: a fresh decoder",
    )
    t.add_argument("--resume", action="store_true", help="continue the transfer run in --run-dir")
    t.add_argument("--stored-body", action="store_true", help="resume with the body the run stores")
    t.add_argument(
        "--set", nargs="*", action="extend", metavar="KEY=VALUE", help="config overrides, e.g. task.hold_s=0.3"
    )
    t.set_defaults(func=cmd_transfer)
