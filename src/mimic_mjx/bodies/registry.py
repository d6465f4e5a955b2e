"""Body registry: bodies plug in by name, or are read from a body file by path.

Built-in bodies register here under a short name (``register_body``). Anything
that takes a body name also takes the path of a body file (``.yaml``/``.yml``:
a native body file or a stac-mjx model file; bodies/bodyfile.py), which
``get_body`` reads once per file content and returns as the same kind of
``BodyModel``. ``BodyModel`` itself lives in bodies/model.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mimic_mjx.bodies.model import CONFIGS, BodyModel
from mimic_mjx.errors import BodyError

if TYPE_CHECKING:
    from mimic_mjx.config import ExperimentConfig

__all__ = ["CONFIGS", "BodyModel", "available_bodies", "check_config", "get_body", "register_body"]

#: File name endings that make a body name a body file's path.
BODY_FILE_SUFFIXES = (".yaml", ".yml")

_REGISTRY: dict[str, BodyModel] = {}


def register_body(body: BodyModel) -> BodyModel:
    if body.name in _REGISTRY:
        raise BodyError(f"a body named '{body.name}' is already registered")
    _REGISTRY[body.name] = body
    return body


def available_bodies() -> list[str]:
    return sorted(_REGISTRY)


def check_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` if its ``env.body`` names a known body or a readable body file, else a ConfigError."""
    from mimic_mjx.errors import ConfigError

    try:
        get_body(cfg.env.body)
    except BodyError as exc:
        raise ConfigError(f"env.body: {exc}") from None
    return cfg


def is_body_file(name: str | os.PathLike) -> bool:
    """Whether a body name is the path of a body file (by its ending, or a path-like object)."""
    return isinstance(name, os.PathLike) or str(name).lower().endswith(BODY_FILE_SUFFIXES)


def get_body(name: str | os.PathLike) -> BodyModel:
    """The built-in body ``name``, or the body described by the body file at that path."""
    if is_body_file(name):
        return _body_from_file(Path(name))
    if str(name).lower().endswith(".xml"):
        raise BodyError(
            f"'{name}' is an MJCF model, not a body: write a body file (YAML) with the line 'mjcf: {name}' "
            f"and its keypoints, and pass that file (see `mimic bodies check`)"
        )
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BodyError(
            f"unknown body '{name}'; available bodies: {', '.join(available_bodies())}, "
            f"or the path of a body file (.yaml)"
        ) from None


# (resolved path, SHA-256 of the file's bytes) -> the body it describes. Keyed by content so an
# edited body file is read again, while every stage of one run shares one BodyModel (and its
# compiled models). An MJCF edited while the process runs is seen once its body file changes.
_FILE_BODIES: dict[tuple[str, str], BodyModel] = {}


def _body_from_file(path: Path) -> BodyModel:
    from mimic_mjx.bodies.bodyfile import load_body_file, read_body_file_bytes

    resolved, raw = read_body_file_bytes(path)
    key = (str(resolved), hashlib.sha256(raw).hexdigest())
    body = _FILE_BODIES.get(key)
    if body is None:
        body = _FILE_BODIES[key] = load_body_file(resolved, raw)
    return body


def _register_builtin() -> None:
    from mimic_mjx.bodies import forelimb, fruitfly, rat
    from mimic_mjx.bodies.keypoint_maps import get_keypoint_map

    register_body(
        BodyModel(
            name="mouse_forelimb",
            description="Mouse forelimb: 4 hinges (shoulder x3, elbow), 9 Hill-type muscles, about 1 g",
            build_spec=forelimb.build_spec,
            end_effectors=("wrist_body",),
            keypoint_bodies=get_keypoint_map("mouse_forelimb").keypoint_bodies(),
            keypoint_map=get_keypoint_map("mouse_forelimb"),
            default_config_file="forelimb.yaml",
            # The fastest wrist in the 37 recorded reaches moves at 0.37 m/s and accelerates at
            # 15 m/s^2; one joint turning the 6.9 mm forearm alone does that at 54 rad/s and
            # 2,200 rad/s^2. With margins of 1.5x (speed) and 2x (acceleration, twice differentiated):
            max_joint_speed_rad_s=80.0,
            max_joint_accel_rad_s2=5000.0,
        )
    )
    register_body(
        BodyModel(
            name="rat",
            description=(
                f"Rat: dm_control's rodent scaled by {rat.RAT_SCALE:g} on a floor; free root joint + "
                "67 hinges, 38 position actuators, about 0.25 kg"
            ),
            build_spec=rat.build_spec,
            # Hands and feet (the paws that touch the ground) and the head.
            end_effectors=("hand_L", "hand_R", "foot_L", "foot_R", "skull"),
            keypoint_bodies=get_keypoint_map("rat").keypoint_bodies(),
            keypoint_map=get_keypoint_map("rat"),
            # Paws-only contacts, CG 6/6, 2 ms step, position actuators; see
            # rat.build_trainable_spec (torque actuation: actuation="torque").
            build_trainable_spec=rat.build_trainable_spec,
            # The bodies carrying the rat23 markers: what registration pinned down.
            tracked_bodies=tuple(sorted(set(get_keypoint_map("rat").keypoint_bodies().values()))),
            default_config_file="rat.yaml",
            # Literature-level: a galloping rat's paw swings at up to ~2 m/s on limb segments of
            # 3-4 cm (~60 rad/s); it reaches that speed in a ~25 ms swing onset (~2,500 rad/s^2).
            # The bounds add margin: the 50 Hz DANNCE frames leave 20 ms between samples.
            max_joint_speed_rad_s=60.0,
            max_joint_accel_rad_s2=5000.0,
        )
    )
    register_body(
        BodyModel(
            name="fruitfly",
            description=(
                "Fruit fly: dm_control's fruitfly_v2 on a floor (cm, g units); free root + 83 hinges, "
                "wings/mouth/antennae/halteres fixed, 48 leg + 5 head/abdomen position actuators, "
                "claw-floor contacts only, about 0.9 mg"
            ),
            build_spec=fruitfly.build_spec,
            # The six leg tips (claws) and the head.
            end_effectors=(*fruitfly.CLAW_BODIES, "head"),
            # A leg joint swinging 1 rad at the fastest stepping rates (~20 Hz) peaks, as a
            # sinusoid, at pi f A = 63 rad/s and 2 pi^2 f^2 A = 7,900 rad/s^2; 2x margin.
            max_joint_speed_rad_s=120.0,
            max_joint_accel_rad_s2=16000.0,
        )
    )


_register_builtin()
