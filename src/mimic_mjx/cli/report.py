"""``mimic report RUN --out report.html``: the run's self-contained HTML report (see ``presentation/report.py``)."""

from __future__ import annotations

from mimic_mjx.presentation.report import SECTIONS, build_report


def add_parser(subparsers) -> None:
    """Add the ``report`` subcommand to the ``mimic`` command line."""
    p = subparsers.add_parser("report", help="one self-contained HTML report of a run (opens from disk, offline)")
    p.add_argument("run", metavar="RUN", help="run directory written by `mimic train`")
    p.add_argument("--eval", metavar="DIR", help="output of `mimic evaluate` (default RUN/eval, if present)")
    p.add_argument("--analysis", metavar="DIR", help="output of `mimic analyze`")
    p.add_argument("--experiments", metavar="DIR", help="output of `mimic experiment`")
    p.add_argument("--video", metavar="FILE", help="a video to embed (MP4, e.g. from `mimic render`)")
    p.add_argument("--out", required=True, metavar="FILE", help="HTML file to write, e.g. report.html")
    p.set_defaults(func=run)


def run(args) -> int:
    result = build_report(
        args.run,
        args.out,
        eval_dir=args.eval,
        analysis_dir=args.analysis,
        experiments_dir=args.experiments,
        video=args.video,
    )
    missing = [SECTIONS[s] for s, ok in result["sections"].items() if not ok]
    print(f"wrote {result['out']}; open it in a browser (self-contained, works offline)")
    if missing:
        print(f"sections without input (the report says which command makes each): {', '.join(missing)}")
    return 0
