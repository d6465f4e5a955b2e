"""``mimic export RUN --out policy.onnx [--decoder-only]``: a run's controller as ONNX (see ``agents/export.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from mimic_mjx.agents.export import OPSET, export_policy_onnx
from mimic_mjx.errors import RunDirError


def export_onnx(run_dir: str | Path, out: str | Path, decoder_only: bool = False) -> dict:
    """``mimic export``: write the run's deterministic controller (or decoder) as ONNX to ``out``."""
    from mimic_mjx.bodies import get_body
    from mimic_mjx.training.checkpoint import load_policy

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run folder not found: {run_dir}; pass the folder `mimic train` wrote")
    if not (run_dir / "checkpoints").is_dir():
        raise RunDirError(
            f"{run_dir} holds no checkpoint (no {run_dir / 'checkpoints'}); train it first with "
            f"`mimic train --run-dir {run_dir}`, or pass the folder `mimic train` wrote"
        )
    policy = load_policy(run_dir)
    # The model build_env simulates: the run's stored body, or (older runs) the one env.body names.
    model = (policy.body or get_body(policy.config.env.body)).compile_trainable()
    if model.nu != policy.action_size:
        raise RunDirError(
            f"{run_dir}: its controller has {policy.action_size} actions but body '{policy.config.env.body}' "
            f"has {model.nu} actuators now; was it trained with another version of the body?"
        )
    names = [model.actuator(i).name for i in range(model.nu)]
    relative = None
    if policy.config.env.action == "relative":
        from mimic_mjx.bodies.layout import JointLayout
        from mimic_mjx.environments.actions import relative_qpos_index

        # The task's proprioceptive observation starts with the hinge angles, in qpos order.
        hinges = list(JointLayout.from_model(model).hinge_qpos)
        columns = [hinges.index(i) for i in relative_qpos_index(model)]
        relative = (policy.config.env.action_range_rad, columns)
    return export_policy_onnx(policy, out, model.actuator_ctrlrange, decoder_only, names, relative=relative)


def add_parser(subparsers) -> None:
    x = subparsers.add_parser("export", help="write a trained controller as ONNX (runs without JAX)")
    x.add_argument("run", help="run directory written by `mimic train`")
    x.add_argument("--out", required=True, help="ONNX file to write, e.g. policy.onnx")
    x.add_argument(
        "--decoder-only",
        action="store_true",
        help="export the decoder alone (inputs latent, proprio_obs, and decoder_state for a recurrent decoder; outputs "
        "action, ctrl, and next_decoder_state) for a new high-level policy",
    )
    x.set_defaults(func=run)


def run(args) -> int:
    info = export_onnx(args.run, args.out, decoder_only=args.decoder_only)
    m = info["metadata"]
    print(f"{m['part']} of {args.run} (body {m['body']}, update {m['checkpoint_update']}) as ONNX opset {OPSET}:")
    for kind in ("inputs", "outputs"):
        for name, shape in info[kind].items():
            print(f"  {kind[:-1]:<6} {name:<14} {shape}")
    print(f"wrote {os.fspath(args.out)}")
    return 0
