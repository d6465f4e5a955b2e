"""``mimic bodies``: list the built-in bodies, check a body (file or name), convert a stac-mjx model file,
suggest a keypoint map for a model that has none (the logic: bodies/suggest.py; the keypoint file is
read here because data sits above bodies)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bodies",
        help="list the built-in body models; `bodies check FILE|NAME`, `bodies convert STAC_YAML --out BODY.yaml`, "
        "`bodies suggest MODEL --keypoints FILE [--out BODY.yaml]`",
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
    g = bsub.add_parser(
        "suggest",
        help="propose the keypoint -> body/site map of a model from the names and a rest-pose fit to one frame of "
        "a recording; writes a body file to review, with the unsure pairs marked",
    )
    g.add_argument("body", help="an MJCF model (.xml), a body file (.yaml) or a built-in body name")
    g.add_argument("--keypoints", required=True, help="3D keypoint file (DANNCE, NWB, SLEAP, Anipose, DeepLabCut)")
    g.add_argument("--out", help="body file to write (YAML); default: print it")
    g.add_argument("--frame", type=int, help="frame to fit the rest pose to (default: the one with most keypoints)")
    g.add_argument("--units", choices=("m", "cm", "mm", "um"), help="the keypoints' length unit (default: the file's)")
    g.set_defaults(func=cmd_suggest)


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
    print(f"total mass: {report.total_mass:.4g} (the MJCF's mass unit: kg for most, g for the fly, mg for the worm)")
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


def _suggest_source(name: str, out: Path | None):
    """(compiled model, body-file values to write the map into or None, label) of ``mimic bodies suggest``'s BODY."""
    from mimic_mjx.bodies import get_body
    from mimic_mjx.bodies.bodyfile import read_body_file_bytes, read_values
    from mimic_mjx.bodies.mjcf import compile_spec, read_mjcf
    from mimic_mjx.bodies.stacmjx import is_stac_model, stac_to_body_values
    from mimic_mjx.errors import BodyError
    from mimic_mjx.files import require_regular_file

    if name.lower().endswith(".xml"):
        mjcf = require_regular_file(Path(name).expanduser(), BodyError, "MJCF model").resolve()
        model = compile_spec(read_mjcf(mjcf, str(mjcf)), mjcf, str(mjcf))
        values = {"mjcf": str(mjcf)}
        if model.nu == 0:  # a body needs actuation; servos on every joint until the file says otherwise
            values["actuation"] = "position"
        return model, values, mjcf.stem
    body = get_body(name)
    if body.source is None:
        if out is not None:
            raise BodyError(
                f"--out: the built-in body '{name}' is built in code, not from a body file, so there is no file to "
                f"write its map into; drop --out to print the map"
            )
        return body.compile(), None, body.display_name
    source, raw = read_body_file_bytes(body.source)
    values = read_values(source, raw)
    if is_stac_model(values):
        values, _ = stac_to_body_values(values, source)
    values = dict(values)
    values["mjcf"] = os.path.abspath(source.parent / Path(values["mjcf"]).expanduser())
    if isinstance(values.get("config"), str):
        values["config"] = os.path.abspath(source.parent / Path(values["config"]).expanduser())
    return body.compile(), values, body.display_name


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` (where the body file goes), absolute when they share only the root."""
    if os.path.commonpath([path, str(folder)]) == os.path.sep:
        return path
    return os.path.relpath(path, folder)


def _map_lines(suggestion, unit: str) -> list[str]:
    import yaml

    from mimic_mjx.bodies.suggest import describe_reasons

    lines = []
    for p in suggestion.pairs:
        entry = yaml.safe_dump({p.keypoint: {p.kind: p.target}}, default_flow_style=None, width=10**6).strip()
        mark = f"  # unsure: {describe_reasons(p, unit)}" if p.unsure else ""
        lines.append(f"  {entry}{mark}")
    return lines


def cmd_suggest(args) -> int:
    import yaml

    from mimic_mjx.bodies import get_body
    from mimic_mjx.bodies.suggest import describe_reasons, model_targets, pick_frame, suggest_map
    from mimic_mjx.data.keypoints import UNIT_SCALE, read_keypoints
    from mimic_mjx.files import require_writable_file, write_text

    out = require_writable_file(args.out, "--out") if args.out else None
    model, values, label = _suggest_source(args.body, out)
    # The frame rate plays no part in a pose: 1 fps keeps files that record none readable.
    kp = read_keypoints(args.keypoints, units=args.units, fps=1.0)
    frame = pick_frame(kp.positions, args.frame)
    unit = kp.input_units
    points = kp.positions[frame] / UNIT_SCALE[unit]  # the file's own unit, for the distances shown
    s = suggest_map(kp.names, points, model_targets(model))
    present = int((~np.isnan(points).any(axis=1)).sum())
    how = (
        f"fitted on {len(s.anchors)} keypoints whose names pick a body"
        if s.method == "names"
        else "found by a search over orientations (fewer than 3 names pick a body)"
    )
    unsure = [p for p in s.pairs if p.unsure]
    summary = [
        f"keypoints: {args.keypoints}, frame {frame} ({present} of {len(kp.names)} present), unit {unit}",
        f"rest pose {how}; residual {100 * s.residual:.1f}% of the body's size, "
        f"{s.fit.scale:.4g} {unit} per model unit",
        f"{len(s.pairs) - len(unsure)} pairs sure, {len(unsure)} unsure"
        + (":" if unsure else "")
        + "".join(f"\n  {p.keypoint} -> {p.target} ({p.kind}): {describe_reasons(p, unit)}" for p in unsure),
    ]
    header = [
        f"Keypoint map of {label} suggested by `mimic bodies suggest` from the keypoint names and a fit",
        f"of the rest pose to frame {frame} of {args.keypoints}.",
        "Review the lines marked 'unsure' before registering.",
    ]
    if values is None:
        print("\n".join(f"# {line}" for line in header))
        print("keypoints:\n" + "\n".join(_map_lines(s, unit)))
        print(f"# the built-in body '{label}' has no body file: put this map in one (mjcf: PATH/TO/MODEL.xml)")
        print("\n".join(f"# {line}" for line in "\n".join(summary).splitlines()))
        return 0
    folder = out.resolve().parent if out else Path.cwd()
    keep = {k: v for k, v in values.items() if k not in ("keypoints", "root_keypoint", "trunk_keypoints")}
    keep["mjcf"] = _relative(keep["mjcf"], folder)
    if isinstance(keep.get("config"), str):
        keep["config"] = _relative(keep["config"], folder)
    keep.setdefault("keypoint_unit", unit)
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.safe_dump(keep, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
    text += "keypoints:\n" + "\n".join(_map_lines(s, unit)) + "\n"
    if out is None:
        print(text, end="")
        print("\n".join(f"# {line}" for line in "\n".join(summary).splitlines()))
        return 0
    write_text(out, text)
    body = get_body(out)  # what was written reads back as a body (its names checked against the model)
    print("\n".join(summary))
    for note in body.notes:
        print(f"info: {note}")
    print(f"wrote {out} ({len(s.pairs)} keypoints, {len(unsure)} marked unsure); review, then `mimic bodies check`")
    return 0
