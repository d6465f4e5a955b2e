"""The ``mimic`` command line: one entry point, a subcommand per pipeline stage."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from mimic_mjx.config import BACKENDS
from mimic_mjx.demo import DEMO_BODIES
from mimic_mjx.errors import MimicError

#: What --body takes, said the same way by every command that has it.
BODY_HELP = (
    "NAME or body file (YAML): a built-in body (rat, mouse_forelimb, fruitfly; see `mimic bodies`), "
    "a body file beside its MJCF, or a stac-mjx model file"
)


def _load_config(args):
    from mimic_mjx import config as config_lib
    from mimic_mjx.bodies import check_config, get_body

    sets = args.set or []
    if args.config:
        cfg = config_lib.load(args.config)
    else:
        cfg = config_lib.ExperimentConfig()
        if any(item.split("=", 1)[0].strip() == "env.body" for item in sets):
            # No config file: the default config of the body --set env.body=NAME|FILE names (a built-in's
            # file in configs/, a body file's own `config:`), so a body file trains with what it says.
            cfg = get_body(check_config(config_lib.apply_overrides(cfg, sets)).env.body).default_config()
    cfg = check_config(config_lib.apply_overrides(cfg, sets))
    # A body file's resolved path: the run's stored config finds the body again from any folder.
    return cfg.replace(env=dataclasses.replace(cfg.env, body=get_body(cfg.env.body).name))


def cmd_train(args) -> int:
    from mimic_mjx.data.clip_files import open_clip_files
    from mimic_mjx.training.parallel import init_distributed
    from mimic_mjx.training.rundir import stored_config
    from mimic_mjx.training.signals import exit_code
    from mimic_mjx.training.trainer import stderr_log, train

    init_distributed()  # several processes (SLURM, MIMIC_COORDINATOR, ...): docs/scaling.md; else nothing
    run_dir = Path(args.run_dir)
    if args.resume and args.clips:
        raise MimicError(
            f"--clips cannot be combined with --resume: a run keeps the clips it started with "
            f"({run_dir / 'train_clips.h5'}); to train on other clips, start a new run with another --run-dir"
        )
    if args.resume and not args.config:
        from mimic_mjx import config as config_lib
        from mimic_mjx.bodies import check_config
        from mimic_mjx.training.runbody import has_run_body

        cfg = config_lib.apply_overrides(stored_config(run_dir), args.set or [])
        if not has_run_body(run_dir):  # a run that keeps its body resumes without the body's own files
            cfg = check_config(cfg)
        clips = None
    else:
        cfg = _load_config(args)
        paths = args.clips or list(cfg.train_clips)
        if not paths and not args.resume:
            raise MimicError("no training clips: pass --clips FILE [FILE ...] or set train_clips in the config")
        clips = open_clip_files(paths) if paths and not args.resume else None  # read while binding
    summary = train(cfg, run_dir, clips, resume=args.resume, stored_body=args.stored_body, log=stderr_log)
    print(json.dumps({k: v for k, v in summary.items() if k != "last_metrics"}))
    # 128 + signal number, as for a process the signal ended: schedulers read it as "preempted".
    return exit_code(summary.get("stopped_by"))


def cmd_bench(args) -> int:
    from mimic_mjx import config as config_lib
    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.clips import read_clip_files
    from mimic_mjx.errors import BodyError
    from mimic_mjx.training.bench import bench

    body = get_body(args.body)
    cfg = config_lib.load(args.config) if args.config else body.default_config()
    if args.clips:
        clips = read_clip_files(args.clips)
    elif body.name == "mouse_forelimb":
        from mimic_mjx.data.synthetic import make_reaching_clips

        clips = make_reaching_clips(8, seed=0)
    else:
        from mimic_mjx.data.synthetic import make_still_clip

        clips = [make_still_clip(body.name)]
    sets = [f"env.body={body.name}"]
    if args.backend:
        sets.append(f"env.backend={args.backend}")
    if args.num_envs is not None:
        sets.append(f"ppo.num_envs={args.num_envs}")
    substeps = args.substeps
    own = (body.default_config_values or {}).get("env") or {}
    if substeps is None and not args.config and body.default_config_file is None and "substeps" not in own:
        # No tuned config and no substeps in the body file: keep the body's own physics time step at
        # the clips' rate (the env sets timestep = control period / substeps).
        substeps = max(1, round(1.0 / clips[0].fps / body.compile_trainable().opt.timestep))
    if substeps is not None:
        sets.append(f"env.substeps={substeps}")
    if args.threads is not None:
        sets.append(f"env.native_threads={args.threads}")
    cfg = config_lib.apply_overrides(cfg, sets + (args.set or []))
    if cfg.env.body != body.name:
        raise BodyError(f"--body {body.name} disagrees with env.body={cfg.env.body} of the config")
    result = bench(
        cfg,
        clips,
        updates=args.updates,
        published=not args.no_published,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(json.dumps(result))
    return 0


def cmd_demo(args) -> int:
    from mimic_mjx.demo import run_demo

    run_demo(Path(args.out), minutes=args.minutes, force=args.force, body=args.body)
    return 0


def cmd_clips_list(args) -> int:
    from mimic_mjx.data.clip_files import open_clip_files

    infos = open_clip_files(args.files).infos  # metadata only: no frames are read
    if args.json:
        rows = [{"name": i.name, "file": str(i.path), "frames": i.num_frames, "fps": i.fps} for i in infos]
        print(json.dumps({"clips": rows, "frames": sum(i.num_frames for i in infos)}))
        return 0
    print(f"{'clip':<32} {'frames':>8} {'seconds':>9} {'fps':>7}  file")
    for i in infos:
        print(f"{i.name:<32} {i.num_frames:>8} {i.duration_s:>9.2f} {i.fps:>7.4g}  {i.path}")
    total = sum(i.duration_s for i in infos)
    print(f"{len(infos)} clip(s), {sum(i.num_frames for i in infos)} frames, {total / 60:.1f} min")
    return 0


def cmd_clips_check(args) -> int:
    from mimic_mjx.data.check import check_clips, format_report
    from mimic_mjx.data.clip_files import open_clip_files

    for flag, value in (("--max-speed", args.max_speed), ("--max-accel", args.max_accel)):
        if value is not None and not value > 0:
            raise MimicError(f"{flag} must be a positive number, got {value}")
    checks = check_clips(open_clip_files(args.files), args.max_speed, args.max_accel)  # one clip at a time
    if args.json:
        bad = sum(bool(c.exceeding) for c in checks)
        print(json.dumps({"clips": [c.to_dict() for c in checks], "clips_exceeding": bad}))
    else:
        print(format_report(checks))
    return 0  # a report: exceeding a bound is not a failure


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mimic",
        description="mimic-mjx: imitate animal kinematics with "
        "neural controllers of biomechanical bodies in MuJoCo/MJX.",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a controller on reference clips")
    t.add_argument("--config", help="experiment config (YAML), e.g. configs/forelimb.yaml")
    t.add_argument("--clips", nargs="+", help="clip files (HDF5) of a new run (a resumed run keeps its own)")
    t.add_argument("--run-dir", required=True, help="folder for this run's config, checkpoints and metrics")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its newest good checkpoint (SIGTERM/Ctrl-C save one and stop)",
    )
    t.add_argument(
        "--stored-body",
        action="store_true",
        help="with --resume: continue with the body the run folder stores although the body's files changed",
    )
    t.add_argument(
        "--set",
        nargs="*",
        action="extend",  # --set a=1 --set b=2 keeps both
        metavar="KEY=VALUE",
        help="config overrides, e.g. ppo.num_envs=128; env.body=NAME or body file (YAML) picks the body, and "
        "without --config its own default config",
    )
    t.set_defaults(func=cmd_train)

    from mimic_mjx.cli import transfer

    transfer.add_parsers(sub)  # mimic evaluate (imitation and task runs), mimic transfer

    d = sub.add_parser("demo", help="train, evaluate, analyse and report on a body's generated behaviour; no data")
    d.add_argument("--out", default="demo_out", help="output folder")
    d.add_argument("--body", default="mouse_forelimb", choices=tuple(DEMO_BODIES), help="reaches, crawls or walks")
    d.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    d.add_argument("--force", action="store_true", help="replace an existing demo output folder")
    d.set_defaults(func=cmd_demo)

    # Counts and rates are checked as they are parsed: a 0 or -1 must be an error, never a default.
    from mimic_mjx.cli.types import cli_number

    _COUNT = cli_number(int, 1, what="a whole number, 1 or more")
    _BOUND = cli_number(float, 0, what="a positive number")

    from mimic_mjx.cli import register as register_cli

    register_cli.add_parser(sub, BODY_HELP)

    k = sub.add_parser("bench", help="measure environment, training and raw physics throughput")
    k.add_argument("--body", default="rat", help=f"{BODY_HELP} (default rat)")
    k.add_argument("--backend", choices=BACKENDS, help="physics backend")
    k.add_argument("--num-envs", type=_COUNT, help="parallel environments")
    k.add_argument("--substeps", type=_COUNT, help="physics steps per control step")
    k.add_argument(
        "--threads",
        type=cli_number(int, 0, what="a number of threads (0: all cores)"),
        help="host threads of the native backend (default: all cores)",
    )
    k.add_argument("--clips", nargs="+", help="clip files (default: built-in reaches or the body's rest pose)")
    k.add_argument("--config", help="experiment config (default: the body's own: built-in, or the body file's)")
    k.add_argument("--updates", type=_COUNT, default=5, help="training updates to time")
    k.add_argument(
        "--no-published", action="store_true", help="skip the training measurement with the published network sizes"
    )
    k.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE", help="config overrides")
    k.set_defaults(func=cmd_bench)

    c = sub.add_parser("clips", help="inspect reference clips")
    csub = c.add_subparsers(dest="clips_command", required=True)
    ck = csub.add_parser(
        "check",
        help="report each clip's peak joint speeds and accelerations against the body's physiological bounds",
    )
    ck.add_argument("files", nargs="+", help="clip files (HDF5)")
    ck.add_argument("--max-speed", type=_BOUND, help="joint speed bound, rad/s (default: the body's)")
    ck.add_argument("--max-accel", type=_BOUND, help="joint acceleration bound, rad/s^2 (default: the body's)")
    ck.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ck.set_defaults(func=cmd_clips_check)
    cl = csub.add_parser("list", help="list the clips of clip files (names, frames, seconds) without reading them")
    cl.add_argument("files", nargs="+", help="clip files (HDF5)")
    cl.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    cl.set_defaults(func=cmd_clips_list)

    from mimic_mjx.cli import bodies

    bodies.add_parser(sub)  # mimic bodies [check FILE|NAME | convert STAC_YAML --out BODY.yaml]

    from mimic_mjx.cli import analysis

    analysis.add_parsers(sub)
    return ap


def main(argv=None) -> int:
    from mimic_mjx.cli.outputs import check_outputs

    args = build_parser().parse_args(argv)
    try:
        check_outputs(args)  # every command's output location, before any long work
        return args.func(args)
    except MimicError as exc:
        print(f"mimic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mimic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
