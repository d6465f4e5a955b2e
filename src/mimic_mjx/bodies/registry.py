"""Body registry: bodies plug in by name.

A body is a function returning a ``mujoco.MjSpec`` plus the names the tasks
need (end effectors, keypoint mapping). Everything downstream binds joints and
bodies by these names, never by index.

A body may also have a *trainable* variant (``build_trainable_spec``): the same
kinematic tree with identical joint, body and actuator names, but set up for
fast, robust simulation (restricted contacts, a cheaper solver). Registration
(kinematic fitting) uses ``compile()``; training and rollouts should use
``compile_trainable()``, which falls back to the plain model for bodies without
a separate variant. Both are the same registered body, so clips registered to
it bind to either model.

A body also names the experiment config it trains with by default (a file in
``mimic_mjx/configs``), so that commands and benchmarks find a body's tuned
settings here instead of in tables of their own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import mujoco

from mimic_mjx.errors import BodyError

if TYPE_CHECKING:
    from mimic_mjx.config import ExperimentConfig

#: The experiment configs that ship with mimic-mjx (src/mimic_mjx/configs).
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass(frozen=True)
class BodyModel:
    name: str
    description: str
    build_spec: Callable[[], mujoco.MjSpec]
    end_effectors: tuple[str, ...]
    # Keypoint name -> body name the keypoint's marker is attached to.
    keypoint_bodies: dict[str, str] = dataclasses.field(default_factory=dict)
    # Same names as build_spec, simulation set up for training; None = build_spec.
    build_trainable_spec: Callable[[], mujoco.MjSpec] | None = None
    # Bodies whose positions the tracking task compares and observes; empty = end effectors.
    tracked_bodies: tuple[str, ...] = ()
    # Physics backend that ``env.backend: auto`` picks on a CPU: the fastest one
    # measured for this body (docs/benchmarks.md, `mimic bench`).
    cpu_backend: str = "native"
    # Default experiment config: a file name in CONFIGS; None = ExperimentConfig's defaults.
    default_config_file: str | None = None
    # Physiological bounds on any one joint's speed and acceleration (rad/s, rad/s^2), used by
    # `mimic clips check` and the training-start warnings (mimic_mjx.data.check); None = unchecked.
    # Each body's figures are derived where it is registered below and in docs/registration.md.
    max_joint_speed_rad_s: float | None = None
    max_joint_accel_rad_s2: float | None = None

    def tracked(self) -> tuple[str, ...]:
        return self.tracked_bodies or self.end_effectors

    def compile(self) -> mujoco.MjModel:
        return _compiled(self.name)

    def compile_trainable(self) -> mujoco.MjModel:
        """The model to simulate for training (cached, like :meth:`compile`)."""
        if self.build_trainable_spec is None:
            return self.compile()
        return _compiled_trainable(self.name)

    def joint_names(self) -> tuple[str, ...]:
        model = self.compile()
        return tuple(model.joint(j).name for j in range(model.njnt))

    def default_config(self) -> ExperimentConfig:
        """The experiment config this body trains with unless given another (loaded fresh each call).

        Bodies without a config file get ExperimentConfig's defaults with ``env.body`` set to this body.
        """
        from mimic_mjx import config as config_lib

        if self.default_config_file is None:
            cfg = config_lib.ExperimentConfig()
            return cfg.replace(env=dataclasses.replace(cfg.env, body=self.name)).validate()
        cfg = config_lib.load(CONFIGS / self.default_config_file)
        if cfg.env.body != self.name:
            raise BodyError(
                f"body '{self.name}': its default config {self.default_config_file} is for env.body={cfg.env.body}"
            )
        return cfg


_REGISTRY: dict[str, BodyModel] = {}


def register_body(body: BodyModel) -> BodyModel:
    if body.name in _REGISTRY:
        raise BodyError(f"a body named '{body.name}' is already registered")
    _REGISTRY[body.name] = body
    return body


def available_bodies() -> list[str]:
    return sorted(_REGISTRY)


def check_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` if its ``env.body`` names a known body, else a ConfigError naming the choices."""
    from mimic_mjx.errors import ConfigError

    try:
        get_body(cfg.env.body)
    except BodyError as exc:
        raise ConfigError(f"env.body: {exc}") from None
    return cfg


def get_body(name: str) -> BodyModel:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BodyError(f"unknown body '{name}'; available bodies: {', '.join(available_bodies())}") from None


@functools.cache
def _compiled(name: str) -> mujoco.MjModel:
    # A fresh MjModel per body name; callers that edit options copy it first.
    return get_body(name).build_spec().compile()


@functools.cache
def _compiled_trainable(name: str) -> mujoco.MjModel:
    return get_body(name).build_trainable_spec().compile()


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
