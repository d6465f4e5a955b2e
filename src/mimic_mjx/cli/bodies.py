"""``mimic bodies``: list the built-in bodies, check a body (file or name), convert a stac-mjx model file."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bodies",
        help="list the built-in body models; `bodies check FILE|NAME`, `bodies convert STAC_YAML --out BODY.yaml`",
    )
    b.set_defaults(func=cmd_list)
    bsub = b.add_subparsers(dest="bodies_command")
    c = bsub.add_parser(
        "check",
        help="what to know before training a body: sizes, actuators, keypoints, joint ranges, contacts, a rest-pose "
        "picture, a 1-s passive stability test and raw physics throughput (exit 1 when a problem is found)",
    )
    c.add_argument("body", help="a body file (.yaml), a stac-mjx model file, or a built-in body name")
    c.add_argument("--png", help="rest-pose picture to write (default: NAME_rest.png in the current folder)")
    c.add_argument("--no-png", action="store_true", help="draw no picture")
    c.add_argument(
        "--no-mjx", action="store_true", help="skip the MJX stability test (compiling MJX takes minutes on a CPU)"
    )
    c.set_defaults(func=cmd_check)
    v = bsub.add_parser("convert", help="write the native body file of a stac-mjx model file")
    v.add_argument("stac_yaml", help="stac-mjx model file (configs/model/*.yaml: MJCF_PATH, KEYPOINT_MODEL_PAIRS, ...)")
    v.add_argument("--out", required=True, help="body file to write (YAML); the MJCF path is written relative to it")
    v.set_defaults(func=cmd_convert)


def cmd_list(args) -> int:
    from mimic_mjx.bodies import available_bodies, get_body

    for name in available_bodies():
        body = get_body(name)
        model = body.compile()
        print(f"{name}: {body.description} (nq={model.nq}, actuators={model.nu})")
    print("any other animal: a body file (YAML beside its MJCF) or a stac-mjx model file; see `mimic bodies check`")
    return 0


def _range(kind: str, lo: float, hi: float) -> str:
    if not math.isfinite(lo):
        return "unlimited"
    if kind == "hinge":
        return f"[{math.degrees(lo):.1f}, {math.degrees(hi):.1f}] deg"
    return f"[{lo:.4g}, {hi:.4g}]"


def cmd_check(args) -> int:
    from mimic_mjx.bodies import get_body
    from mimic_mjx.bodies.checkup import PASSIVE_SECONDS, check_body, markers_at_rest
    from mimic_mjx.files import require_writable_file

    png = None
    body = get_body(args.body)
    if not args.no_png:
        png = Path(args.png or f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', body.display_name)}_rest.png")
        require_writable_file(png, "--png")  # before the tests, which take a while
    where = f" ({body.source})" if body.source else ""
    print(f"body: {body.display_name}{where}")
    for note in body.notes:
        print(f"  info: {note}")
    report = check_body(body, mjx=not args.no_mjx)
    scalar = sum(1 for _, kind, _, _ in report.joints if kind in ("hinge", "slide"))
    print(f"degrees of freedom: {report.nv} (nq {report.nq}): {report.root} root + {scalar} hinge/slide joints")
    acts = ", ".join(f"{n} {k}" for k, n in sorted(report.actuators.items())) or "none"
    print(f"actuators: {sum(report.actuators.values())} ({acts})")
    print(f"total mass: {report.total_mass:.4g} (model units: kg for an MJCF in metres)")
    print(f"keypoints: {len(report.keypoints)}" + ("" if report.keypoints else " (none: cannot be registered)"))
    for name, b, off in report.keypoints:
        print(f"  {name:<16} -> {b:<24} offset [{', '.join(f'{x:.4g}' for x in off)}]")
    print(f"joints: {len(report.joints)}")
    for name, kind, lo, hi in report.joints:
        print(f"  {name:<28} {kind:<6} {_range(kind, lo, hi)}")
    total = body.compile_trainable().ngeom
    print(f"contacts kept in the trainable variant: {len(report.contacts)} of {total} geoms")
    if report.contacts and len(report.contacts) < total:
        print(f"  {', '.join(report.contacts)}")
    if png is not None:
        print(f"rest-pose picture: {_picture(body, png, markers_at_rest)}")
    print(f"passive {PASSIVE_SECONDS:g}-s stability test at the {report.timestep:g} s timestep:")
    for run in report.runs:
        print(f"  {run.backend:<7} {run.detail}")
    print(f"raw physics: {report.steps_per_s:,.0f} steps/s (MuJoCo C, one world, one thread)")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print("no problems found" if not report.problems else f"{len(report.problems)} problem(s) found")
    return 1 if report.problems else 0


def _picture(body, png: Path, markers_at_rest) -> str:
    from mimic_mjx.errors import MimicError
    from mimic_mjx.presentation.rest_pose import render_rest_pose

    model = body.compile()
    try:
        render_rest_pose(model, np.asarray(markers_at_rest(model, body)), png)
    except MimicError as exc:  # no OpenGL here: the check goes on without the picture
        return f"not drawn: {exc}"
    return f"wrote {png} (markers in green)"


def cmd_convert(args) -> int:
    from mimic_mjx.bodies.bodyfile import convert_stac_file
    from mimic_mjx.files import require_writable_file

    out = require_writable_file(args.out, "--out")
    body, notes = convert_stac_file(Path(args.stac_yaml), out)
    for note in notes:
        print(f"info: {note}")
    print(f"wrote {out} ({len(body.keypoint_map.keypoints) if body.keypoint_map else 0} keypoints)")
    return 0
