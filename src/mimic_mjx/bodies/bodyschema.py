"""The body file's keys: each with its type, default and unit, read from YAML with one-line errors.

A body file is a YAML mapping; every key is optional except ``mjcf``:

==========================  ==============================================================
key                         meaning (default)
==========================  ==============================================================
``mjcf``                    the model, relative to the body file, or ``package://NAME/PATH``
                            inside an installed Python package (required)
``name``                    short name for messages (the file's stem)
``description``             one line for ``mimic bodies`` (made from the model)
``scale``                   global body scale: every length x scale (1)
``keypoint_unit``           unit of the keypoint files: m, cm or mm (the files say)
``keypoints``               keypoint -> body or site name, or ``{body|site: NAME, offset: [x, y, z]}``;
                            offsets in the MJCF's length unit at scale 1, in the body's (site's)
                            frame, scaled with the body (none)
``root_keypoint``           keypoint that seeds the root position (nearest the root at rest)
``trunk_keypoints``         keypoints the root is aligned on (those on the root body, then the
                            nearest in the tree, 3 at least)
``end_effectors``           bodies (the leaves of the kinematic tree)
``tracked_bodies``          bodies the task compares (the bodies carrying keypoints)
``root``                    auto (detected), free (add a free joint if the MJCF has none) or
                            fixed (remove the MJCF's free joint) (auto)
``floor``                   add a plane at z = 0 (when the root is free under gravity and the
                            MJCF has no plane)
``actuation``               ``model`` (the MJCF's own), ``position`` or ``torque`` (added to
                            every hinge/slide joint), or ``{kind, joints, max_torque, kp, kv}``
                            (the MJCF's own; none is an error)
``contacts``                geom name patterns (``*``, ``?``) the trainable variant keeps, or
                            ``{geoms: [...], against: all|floor}``: ``floor`` = kept geoms touch
                            the floor only, no self-contacts (all geoms, as authored)
``solver``                  the trainable variant's constraint solver: ``{type: cg|newton,
                            iterations, ls_iterations}`` (the MJCF's)
``timestep``                physics step of both variants, s (the MJCF's)
``substeps``                physics steps per control step: the config's env.substeps
``max_joint_speed_rad_s``   physiological bound, rad/s (unchecked)
``max_joint_accel_rad_s2``  physiological bound, rad/s^2 (unchecked)
``config``                  default experiment config: a file (relative to the body file) or
                            a mapping of overrides (ExperimentConfig's defaults)
==========================  ==============================================================

Unknown keys are refused with the nearest known one, like experiment configs
(config/loading.py); names are checked against the model in bodyfile.py.
"""

from __future__ import annotations

import dataclasses
import math

from mimic_mjx.bodies.mjcf import ACTUATION_KINDS, ROOT_KINDS, SOLVERS, Actuation, did_you_mean, package_path
from mimic_mjx.errors import BodyError

#: Keypoint units a body file accepts, in metres.
KEYPOINT_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "um": 1e-6}
Offset = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class KeypointEntry:
    body: str | None = None  # the body the marker rides on ...
    site: str | None = None  # ... or a site (the marker starts at the site, plus the offset)
    offset: Offset = (0.0, 0.0, 0.0)  # MJCF length unit at scale 1, in the body's/site's frame
    given_as: str = ""  # a bare name: a body if one has it, else a site


@dataclasses.dataclass(frozen=True)
class BodyFile:
    mjcf: str
    name: str | None = None
    description: str | None = None
    scale: float = 1.0
    keypoint_unit: str | None = None
    keypoints: dict[str, KeypointEntry] = dataclasses.field(default_factory=dict)
    root_keypoint: str | None = None
    trunk_keypoints: tuple[str, ...] | None = None
    end_effectors: tuple[str, ...] | None = None
    tracked_bodies: tuple[str, ...] | None = None
    root: str = "auto"
    floor: bool | None = None
    actuation: Actuation = Actuation()
    contacts: tuple[str, ...] | None = None
    contacts_against: str = "all"  # "floor": the kept geoms collide with the floor only
    solver: tuple[str, int, int] | None = None  # the trainable variant's (type, iterations, ls_iterations)
    timestep: float | None = None
    substeps: int | None = None
    max_joint_speed_rad_s: float | None = None
    max_joint_accel_rad_s2: float | None = None
    config: str | dict | None = None


def _text(v, key):
    if not isinstance(v, str) or not v.strip():
        raise BodyError(f"{key} must be a non-empty string, got {v!r}")
    return v


def _positive(v, key):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise BodyError(f"{key} must be a positive number, got {v!r}")
    return float(v)


def _non_negative(v, key):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
        raise BodyError(f"{key} must be zero or a positive number, got {v!r}")
    return float(v)


def _count(v, key):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise BodyError(f"{key} must be a whole number, 1 or more, got {v!r}")
    return v


def _names(v, key):
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items:
        raise BodyError(f"{key} must be a name or a non-empty list of names, got {v!r}")
    return tuple(_text(x, f"{key}[{i}]") for i, x in enumerate(items))


def _choice(choices):
    def parse(v, key):
        if v not in choices:
            raise BodyError(
                f"{key} must be one of {', '.join(map(str, choices))}, got {v!r}{did_you_mean(str(v), choices)}"
            )
        return v

    return parse


def _flag(v, key):
    if not isinstance(v, bool):
        raise BodyError(f"{key} must be true or false, got {v!r}")
    return v


def parse_offset(v, key) -> Offset:
    """Three numbers: a list, or a string "x y z" (the way stac-mjx files write them)."""
    if isinstance(v, str):
        try:
            v = [float(p) for p in v.split()]
        except ValueError:
            raise BodyError(f"{key} must be three numbers, got {v!r}") from None
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise BodyError(f"{key} must be three numbers [x, y, z], got {v!r}")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise BodyError(f"{key} must be three finite numbers, got {v!r}")
        out.append(float(x))
    return tuple(out)


def _keypoints(v, key):
    if not isinstance(v, dict):
        raise BodyError(f"{key} must map keypoint names to body or site names, got {type(v).__name__}")
    out = {}
    for name, entry in v.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not name:
            raise BodyError(f"{key}: keypoint names must be strings, got {name!r}")
        if isinstance(entry, str):
            out[name] = KeypointEntry(given_as=_text(entry, where))
            continue
        fields = {"body": _text, "site": _text, "offset": parse_offset}
        parsed = _fields(entry, fields, where)
        if ("body" in parsed) == ("site" in parsed):
            raise BodyError(f"{where} must name exactly one of body or site, got {entry!r}")
        out[name] = KeypointEntry(**parsed)
    return out


def _actuation(v, key):
    if isinstance(v, str):
        return Actuation(kind=_choice(ACTUATION_KINDS)(v, key))
    fields = {
        "kind": _choice(ACTUATION_KINDS),
        "joints": _names,
        "max_torque": _positive,
        "kp": _positive,
        "kv": _non_negative,
    }
    parsed = _fields(v, fields, key)
    if parsed.get("kind", "auto") in ("auto", "model") and set(parsed) - {"kind"}:
        raise BodyError(f"{key}: joints and gains need kind: position or torque (actuators added to joints)")
    return Actuation(**parsed)


def _mjcf(v, key):
    try:
        package_path(_text(v, key))
    except ValueError as exc:
        raise BodyError(f"{key}: {exc}") from None
    return v


CONTACTS_AGAINST = ("all", "floor")


def _contacts(v, key):
    if not isinstance(v, dict):
        return {"contacts": _names(v, key)}
    parsed = _fields(v, {"geoms": _names, "against": _choice(CONTACTS_AGAINST)}, key)
    if "geoms" not in parsed:
        raise BodyError(f"{key} needs geoms: the name patterns of the geoms that keep their contacts")
    return {"contacts": parsed["geoms"], "contacts_against": parsed.get("against", "all")}


def _solver(v, key):
    parsed = _fields(v, {"type": _choice(tuple(SOLVERS)), "iterations": _count, "ls_iterations": _count}, key)
    missing = [k for k in ("type", "iterations", "ls_iterations") if k not in parsed]
    if missing:
        raise BodyError(f"{key} needs type, iterations and ls_iterations; missing {', '.join(missing)}")
    return (parsed["type"], parsed["iterations"], parsed["ls_iterations"])


def _config(v, key):
    if isinstance(v, str):
        return _text(v, key)
    if isinstance(v, dict):
        return v
    raise BodyError(f"{key} must be a config file's path or a mapping of config keys, got {v!r}")


_PARSERS = {
    "mjcf": _mjcf,
    "name": _text,
    "description": _text,
    "scale": _positive,
    "keypoint_unit": _choice(tuple(KEYPOINT_UNITS)),
    "keypoints": _keypoints,
    "root_keypoint": _text,
    "trunk_keypoints": _names,
    "end_effectors": _names,
    "tracked_bodies": _names,
    "root": _choice(ROOT_KINDS),
    "floor": _flag,
    "actuation": _actuation,
    "contacts": _contacts,
    "solver": _solver,
    "timestep": _positive,
    "substeps": _count,
    "max_joint_speed_rad_s": _positive,
    "max_joint_accel_rad_s2": _positive,
    "config": _config,
}


def _fields(values, parsers: dict, prefix: str) -> dict:
    """Each key of ``values`` through its parser; unknown keys refused with the nearest known one."""
    if not isinstance(values, dict):
        raise BodyError(f"{prefix} must be a mapping, got {values!r}")
    out = {}
    for key, value in values.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in parsers:
            raise BodyError(
                f"unknown body-file key '{where}'{did_you_mean(str(key), parsers)}; known: {', '.join(parsers)}"
            )
        if value is None:  # "key:" with nothing after it: the default
            continue
        out[key] = parsers[key](value, where)
    return out


def parse_body_file(values: dict) -> BodyFile:
    """The typed body file of a YAML mapping (BodyError without the file's name: the caller adds it)."""
    if not isinstance(values, dict):
        raise BodyError(f"a body file must be a mapping of keys, got {type(values).__name__}")
    parsed = _fields(values, _PARSERS, "")
    parsed.update(parsed.pop("contacts", {}))  # a list, or geoms and what they touch
    if "mjcf" not in parsed:
        raise BodyError("the body file names no model: add 'mjcf: PATH/TO/MODEL.xml' (relative to the body file)")
    return BodyFile(**parsed)
