"""Body registry: bodies plug in by name, or are read from a body file by path.

Built-in bodies register here under a short name (``register_body``): the
rat and the fruit fly are body files shipped in the package (bodies/files/,
over dm_control's own MJCF), read through the same route as any body file
when first asked for, with their modules' edits for what a file cannot say;
the mouse forelimb is built in code (bodies/forelimb.py). Anything
that takes a body name also takes the path of a body file (``.yaml``/``.yml``:
a native body file or a stac-mjx model file; bodies/bodyfile.py), which
``get_body`` reads once per file content and returns as the same kind of
``BodyModel``. ``BodyModel`` itself lives in bodies/model.py.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
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
# Built-in bodies read from their body file on first use: reading compiles the model, which
# importing the package (every command) should not pay for.
_DEFERRED: dict[str, Callable[[], BodyModel]] = {}


def register_body(body: BodyModel) -> BodyModel:
    if body.name in _REGISTRY or body.name in _DEFERRED:
        raise BodyError(f"a body named '{body.name}' is already registered")
    _REGISTRY[body.name] = body
    return body


def available_bodies() -> list[str]:
    return sorted({*_REGISTRY, *_DEFERRED})


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
    if name in _DEFERRED:
        _REGISTRY[name] = _DEFERRED[name]()
        del _DEFERRED[name]  # after reading: a body file that fails to read fails again next time
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
    _DEFERRED["rat"] = functools.partial(_builtin_file, "rat", rat.FILE, rat.finish)
    _DEFERRED["fruitfly"] = functools.partial(
        _builtin_file, "fruitfly", fruitfly.FILE, fruitfly.walking_setup, one_model=True
    )
    for name, module in _WRITTEN_BODIES.items():
        _DEFERRED[name] = functools.partial(_written_body, name, module)


# Bodies whose MJCF this project writes (no package ships them) -> the module that writes it. Each
# module's ``builtin(name)`` returns (body file path, edit of the specs or None, one_model).
_WRITTEN_BODIES = {"worm": "worm", "worm_liquid": "worm", "stick_insect": "stick_insect"}


def _written_body(name: str, module: str) -> BodyModel:
    import importlib

    path, edit, one_model = importlib.import_module(f"mimic_mjx.bodies.{module}").builtin(name)
    return _builtin_file(name, path, edit, one_model=one_model)


def _builtin_file(name: str, path: Path, edit, one_model: bool = False) -> BodyModel:
    """A built-in body read from its body file: named ``name`` (what configs and clips record),
    presented like a body built in code (no source file, no derivation notes).

    ``one_model``: the body's trainable variant serves for everything (the fly: never
    registered to keypoints, so its one model is the walking one, claw contacts included).
    """
    from mimic_mjx.bodies.bodyfile import load_body_file

    body = load_body_file(path, edit=edit)
    kmap = body.keypoint_map and dataclasses.replace(body.keypoint_map, body=name)
    plain, trainable = body.build_spec, body.build_trainable_spec
    compiled = dict(body._compiled)
    if one_model:
        plain, trainable = trainable, None
        compiled = {"plain": compiled["trainable"]}
    built = dataclasses.replace(
        body,
        name=name,
        build_spec=plain,
        build_trainable_spec=trainable,
        keypoint_map=kmap,
        source=None,
        source_sha256=None,
        label="",
        notes=(),
    )
    built._compiled.update(compiled)  # the models reading the file compiled
    return built


_register_builtin()
