"""stac-mjx model files (configs/model/*.yaml of talmolab/stac-mjx) read as body files.

What each stac-mjx key means there, and what it becomes here:

* ``MJCF_PATH``: the model, relative to the folder stac-mjx runs from (its
  repository root, two folders above configs/model/). Searched in the YAML's
  folder, its three parent folders, then the current folder -> ``mjcf``.
  ``package://NAME/PATH`` (a model inside an installed package, as in body
  files) is read here too, though stac-mjx itself needs a plain path.
* ``KEYPOINT_MODEL_PAIRS``: keypoint -> the *body* that stac-mjx adds the
  keypoint's marker site to -> ``keypoints`` (``body:``).
* ``KEYPOINT_INITIAL_OFFSETS``: the marker site's position in that body's frame,
  metres, as "x y z" strings. stac-mjx adds the sites before it rescales the
  model and its rescaling leaves sites where they are, so the offsets hold for
  the scaled body as written; a body file's offsets scale with the body, so they
  are divided by ``SCALE_FACTOR`` here to keep every marker where stac-mjx puts it.
* ``KP_NAMES``: the order of the recording's keypoints (used there when the
  keypoint file carries no names); the keypoint map follows this order.
  Names without a pair are left out of the map, as stac-mjx leaves them out
  of the fit.
* ``ROOT_OPTIMIZATION_KEYPOINT`` -> ``root_keypoint``;
  ``TRUNK_OPTIMIZATION_KEYPOINTS`` -> ``trunk_keypoints`` (the root alignment).
* ``SCALE_FACTOR``: size of the animal relative to the model -> ``scale``.
* ``MOCAP_SCALE_FACTOR``: multiplier taking the keypoints to metres ->
  ``keypoint_unit`` (1: m, 0.01: cm, 0.001: mm).
* Everything else only steers stac-mjx's own optimiser or viewer and has no
  meaning here (listed in one info line, never an error): ``FTOL``,
  ``ROOT_FTOL``, ``LIMB_FTOL``, ``N_ITER_Q`` (solver tolerances and
  iterations), ``N_ITERS`` (pose/offset rounds: ``mimic register --rounds``),
  ``INDIVIDUAL_PART_OPTIMIZATION`` (per-limb pose passes; here every joint is
  fitted at once), ``SITES_TO_REGULARIZE`` and ``M_REG_COEF`` (offset
  regularisation of chosen keypoints; here every offset is regularised towards
  its start), ``N_SAMPLE_FRAMES``, ``KEYPOINT_COLOR_PAIRS``, ``MARKER_SIZE``,
  ``RENDER_FPS``, ``KP_NAMES_LABEL3D_PATH``, ``IS_TEST``.

The root kind is detected from the MJCF, as stac-mjx does (a free first joint:
free; else fixed); stac-mjx registers without actuators, so a model without
any gets position servos here (a body file would have to ask for them).

Body-file keys (lower case: ``root``, ``floor``, ``contacts``, ``solver``,
``timestep``, ``substeps``, ``config``, ...) may sit beside the upper-case ones
and say what a stac-mjx file cannot (a free root for an MJCF without one, the
contacts and solver of training); stac-mjx reads its model settings by name
and passes them by. Each is checked like a body file's; one that restates a
mapped key (``mjcf`` beside ``MJCF_PATH``) is refused.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from mimic_mjx.bodies.bodyschema import parse_offset
from mimic_mjx.bodies.mjcf import did_you_mean
from mimic_mjx.errors import BodyError

#: Keys with a meaning here (mapped onto body-file keys).
MAPPED = (
    "MJCF_PATH",
    "KP_NAMES",
    "KEYPOINT_MODEL_PAIRS",
    "KEYPOINT_INITIAL_OFFSETS",
    "ROOT_OPTIMIZATION_KEYPOINT",
    "TRUNK_OPTIMIZATION_KEYPOINTS",
    "SCALE_FACTOR",
    "MOCAP_SCALE_FACTOR",
)
#: Keys that only steer stac-mjx itself, with what stands for them here (if anything).
UNMAPPED = {
    "N_ITERS": "mimic register --rounds",
    "N_ITER_Q": "",
    "FTOL": "",
    "ROOT_FTOL": "",
    "LIMB_FTOL": "",
    "INDIVIDUAL_PART_OPTIMIZATION": "every joint is fitted at once",
    "SITES_TO_REGULARIZE": "every offset is regularised towards its start",
    "M_REG_COEF": "",
    "N_SAMPLE_FRAMES": "",
    "KEYPOINT_COLOR_PAIRS": "",
    "MARKER_SIZE": "",
    "RENDER_FPS": "",
    "KP_NAMES_LABEL3D_PATH": "",
    "IS_TEST": "",
}
#: Body-file keys and the stac-mjx key each one is made from (a file may give one of the two).
SAME_AS = {
    "mjcf": "MJCF_PATH",
    "keypoints": "KEYPOINT_MODEL_PAIRS",
    "scale": "SCALE_FACTOR",
    "keypoint_unit": "MOCAP_SCALE_FACTOR",
    "root_keypoint": "ROOT_OPTIMIZATION_KEYPOINT",
    "trunk_keypoints": "TRUNK_OPTIMIZATION_KEYPOINTS",
}
#: MOCAP_SCALE_FACTOR values and the unit each one means.
UNITS_BY_FACTOR = {1.0: "m", 0.01: "cm", 0.001: "mm", 1e-6: "um"}
#: Parent folders of the YAML searched for MJCF_PATH (stac-mjx resolves it from its run folder).
PARENT_LEVELS = 3


def is_stac_model(values) -> bool:
    """A stac-mjx model file: its keys are upper-case (a body file's are lower-case)."""
    if not isinstance(values, dict) or not values:
        return False
    keys = [k for k in values if isinstance(k, str)]
    return "MJCF_PATH" in values or (len(keys) == len(values) and all(k == k.upper() for k in keys))


def find_mjcf(relative: str, yaml_path: Path) -> Path:
    """MJCF_PATH resolved: the YAML's folder, its parents, then the current folder (or package://NAME/PATH)."""
    if relative.startswith("package://"):  # a model shipped inside an installed package, as body files name it
        from mimic_mjx.bodies.mjcf import resolve_mjcf

        return resolve_mjcf(relative, yaml_path.parent, str(yaml_path))
    given = Path(relative).expanduser()
    if given.is_absolute():
        folders = [given.parent]
    else:
        folders = [yaml_path.parent, *list(yaml_path.parent.parents)[:PARENT_LEVELS], Path.cwd()]
        folders = list(dict.fromkeys(f.resolve() for f in folders))
    for folder in folders:
        candidate = folder / given if not given.is_absolute() else given
        if candidate.is_file():
            # Absolute, but symbolic links kept: MuJoCo finds meshes beside the path it is given.
            return Path(os.path.abspath(candidate))
    raise BodyError(
        f"{yaml_path}: MJCF_PATH '{relative}' not found; searched {', '.join(str(f) for f in folders)} "
        f"(stac-mjx resolves it from the folder it runs in)"
    )


def _names(values, key, where):
    v = values.get(key)
    if v is None:
        return None
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise BodyError(f"{where}: {key} must be a list of keypoint names, got {v!r}")
    return list(items)


def stac_to_body_values(values: dict, yaml_path: Path) -> tuple[dict, list[str]]:
    """Body-file values (``mjcf`` absolute) of a stac-mjx model file, and its info lines."""
    where = str(yaml_path)
    if "MJCF_PATH" not in values:
        hint = did_you_mean("MJCF_PATH", [k for k in values if isinstance(k, str)])
        raise BodyError(f"{where}: a stac-mjx model file needs MJCF_PATH (the model){hint}")
    if not isinstance(values["MJCF_PATH"], str):
        raise BodyError(f"{where}: MJCF_PATH must be a path, got {values['MJCF_PATH']!r}")
    pairs = values.get("KEYPOINT_MODEL_PAIRS") or {}
    if not isinstance(pairs, dict) or not all(isinstance(b, str) for b in pairs.values()):
        raise BodyError(f"{where}: KEYPOINT_MODEL_PAIRS must map keypoint names to body names, got {pairs!r}")
    offsets = values.get("KEYPOINT_INITIAL_OFFSETS") or {}
    if not isinstance(offsets, dict):
        raise BodyError(f"{where}: KEYPOINT_INITIAL_OFFSETS must map keypoint names to 'x y z', got {offsets!r}")
    scale = values.get("SCALE_FACTOR", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
        raise BodyError(f"{where}: SCALE_FACTOR must be a positive number, got {scale!r}")
    notes = []
    order = _names(values, "KP_NAMES", where) or []
    names = [n for n in order if n in pairs] + [n for n in pairs if n not in order]
    unpaired = [n for n in order if n not in pairs]
    if unpaired:
        notes.append(f"KP_NAMES without a KEYPOINT_MODEL_PAIRS entry are left out, as stac-mjx does: {unpaired}")
    stray = [n for n in offsets if n not in pairs]
    if stray:
        raise BodyError(
            f"{where}: KEYPOINT_INITIAL_OFFSETS names keypoints with no KEYPOINT_MODEL_PAIRS entry: {stray}"
        )
    keypoints = {}
    for n in names:
        off = parse_offset(offsets.get(n, "0 0 0"), f"{where}: KEYPOINT_INITIAL_OFFSETS.{n}")
        keypoints[n] = {"body": pairs[n], "offset": [_tidy(c / scale) for c in off]}
    out = {
        "name": yaml_path.stem,
        "mjcf": str(find_mjcf(values["MJCF_PATH"], yaml_path)),
        "scale": float(scale),
        "keypoints": keypoints,
        "actuation": "auto",
    }
    if "MOCAP_SCALE_FACTOR" in values:
        out["keypoint_unit"] = _unit(values["MOCAP_SCALE_FACTOR"], where)
    if values.get("ROOT_OPTIMIZATION_KEYPOINT") is not None:
        out["root_keypoint"] = values["ROOT_OPTIMIZATION_KEYPOINT"]
    trunk = _names(values, "TRUNK_OPTIMIZATION_KEYPOINTS", where)
    if trunk:
        out["trunk_keypoints"] = trunk
    # Lower-case keys are the body file's own: passed through (and checked there).
    own = {k: v for k, v in values.items() if isinstance(k, str) and k != k.upper()}
    for key, stac_key in SAME_AS.items():
        if key in own and stac_key in values:
            raise BodyError(f"{where}: '{key}' restates {stac_key}; keep one of the two")
    out.update(own)
    ignored = [k for k in values if k not in MAPPED and k not in own]
    if ignored:
        described = [f"{k} ({UNMAPPED[k]})" if UNMAPPED.get(k) else str(k) for k in ignored]
        notes.append(f"stac-mjx settings with no meaning here (ignored): {', '.join(described)}")
    return out, notes


def _unit(factor, where) -> str:
    if not isinstance(factor, bool) and isinstance(factor, (int, float)):
        for value, unit in UNITS_BY_FACTOR.items():
            if math.isclose(factor, value, rel_tol=1e-9):
                return unit
    raise BodyError(
        f"{where}: MOCAP_SCALE_FACTOR {factor!r} is not a unit this project reads keypoints in "
        f"(1: m, 0.01: cm, 0.001: mm); convert the keypoints to one of them"
    )


def _tidy(x: float) -> float:
    """12 significant digits: 0.0287 / 0.9 written as 0.0318888888889, not 0.031888888888888886."""
    return float(f"{x:.12g}")


def relative_mjcf(values: dict, out: Path) -> dict:
    """``values`` with ``mjcf`` relative to the folder of the body file written to ``out``.

    Relative, so the body file and its model can move together; absolute when the two share no
    folder but the file system's root (a path climbing to / would break on any move).
    """
    folder = out.resolve().parent
    if os.path.commonpath([values["mjcf"], folder]) == os.path.sep:
        return values
    return {**values, "mjcf": os.path.relpath(values["mjcf"], folder)}
