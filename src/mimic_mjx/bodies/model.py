"""What a body is: ``BodyModel``, whether built into the package or read from a body file.

A body is a function returning a ``mujoco.MjSpec`` plus the names the tasks
need (end effectors, keypoint mapping). Everything downstream binds joints and
bodies by these names, never by index.

A body may also have a *trainable* variant (``build_trainable_spec``): the same
kinematic tree with identical joint, body and actuator names, but set up for
fast, robust simulation (restricted contacts, a cheaper solver). Registration
(kinematic fitting) uses ``compile()``; training and rollouts should use
``compile_trainable()``, which falls back to the plain model for bodies without
a separate variant. Both are the same body, so clips registered to it bind to
either model.

A body also carries the experiment config it trains with by default: a file
in ``mimic_mjx/configs`` for the built-in bodies, a mapping of overrides for
bodies read from a body file (bodies/bodyfile.py).

This module holds the class alone so that the registry (which reads body
files) and the body-file reader (which builds ``BodyModel``s) both import it
without importing each other.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from mimic_mjx.bodies.keypoint_maps import KeypointMap
from mimic_mjx.errors import BodyError

if TYPE_CHECKING:
    from mimic_mjx.config import ExperimentConfig

#: The experiment configs that ship with mimic-mjx (src/mimic_mjx/configs).
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass(frozen=True)
class BodyModel:
    # Built-in bodies: a short name. Body files: the file's resolved path, so that the name
    # written into configs and clips (env.body) finds the same body again through get_body.
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
    max_joint_speed_rad_s: float | None = None
    max_joint_accel_rad_s2: float | None = None
    # Keypoint map for registration (offsets in the model's length unit, for the body as built);
    # None: the body cannot be registered to keypoints.
    keypoint_map: KeypointMap | None = None
    # Length unit of this body's keypoint files ("m", "cm" or "mm"); None: the files say.
    keypoint_unit: str | None = None
    # Body files: overrides of ExperimentConfig's defaults (env.body is set to ``name``);
    # takes the place of default_config_file.
    default_config_values: Mapping | None = None
    # The body file this body was read from and the SHA-256 of its bytes; None for built-ins.
    source: Path | None = None
    source_sha256: str | None = None
    # Short name for messages (a body file's ``name``, else its stem); "" = ``name``.
    label: str = ""
    # One line each: what reading the body file derived, detected or ignored.
    notes: tuple[str, ...] = ()
    # The body's hash (``body_hash``) when it is known without compiling: a body stored in a run folder.
    known_hash: str | None = None
    # Compiled models, built once per BodyModel (callers that edit options copy them first).
    _compiled: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def display_name(self) -> str:
        return self.label or self.name

    def tracked(self) -> tuple[str, ...]:
        return self.tracked_bodies or self.end_effectors

    def compile(self) -> mujoco.MjModel:
        """The registration model (cached)."""
        if "plain" not in self._compiled:
            self._compiled["plain"] = self.build_spec().compile()
        return self._compiled["plain"]

    def compile_trainable(self) -> mujoco.MjModel:
        """The model to simulate for training (cached, like :meth:`compile`)."""
        if self.build_trainable_spec is None:
            return self.compile()
        if "trainable" not in self._compiled:
            self._compiled["trainable"] = self.build_trainable_spec().compile()
        return self._compiled["trainable"]

    def body_hash(self) -> str:
        """SHA-256 of the registration model's MJB: what clips and rollouts record as the body they belong to.

        The same files give the same hash in every process (MuJoCo writes a compiled model byte
        for byte the same); any change to the kinematic tree, masses, geoms or actuators changes it.
        """
        if self.known_hash is not None:
            return self.known_hash
        if "hash" not in self._compiled:
            self._compiled["hash"] = model_sha256(self.compile())
        return self._compiled["hash"]

    def simulated_hash(self) -> str:
        """SHA-256 of the simulated model's MJB (``compile_trainable``): what a checkpoint was trained on."""
        if "simulated_hash" not in self._compiled:
            self._compiled["simulated_hash"] = model_sha256(self.compile_trainable())
        return self._compiled["simulated_hash"]

    def joint_names(self) -> tuple[str, ...]:
        model = self.compile()
        return tuple(model.joint(j).name for j in range(model.njnt))

    def default_config(self) -> ExperimentConfig:
        """The experiment config this body trains with unless given another (loaded fresh each call).

        Bodies without a config file or overrides get ExperimentConfig's defaults with ``env.body``
        set to this body.
        """
        from mimic_mjx import config as config_lib

        if self.default_config_values is not None:
            values = copy.deepcopy(dict(self.default_config_values))
            env = dict(values.get("env") or {})
            env["body"] = self.name
            values["env"] = env
            return config_lib.from_dict(values)
        if self.default_config_file is None:
            cfg = config_lib.ExperimentConfig()
            return cfg.replace(env=dataclasses.replace(cfg.env, body=self.name)).validate()
        cfg = config_lib.load(CONFIGS / self.default_config_file)
        if cfg.env.body != self.name:
            raise BodyError(
                f"body '{self.name}': its default config {self.default_config_file} is for env.body={cfg.env.body}"
            )
        return cfg


def model_bytes(model: mujoco.MjModel) -> bytes:
    """The MJB file of a compiled model (meshes and textures included)."""
    buf = np.zeros(mujoco.mj_sizeModel(model), np.uint8)
    mujoco.mj_saveModel(model, None, buf)
    return buf.tobytes()


def model_sha256(model: mujoco.MjModel) -> str:
    """SHA-256 of every array and number of the compiled model except the asset file paths.

    An MJB records where its meshes were read from (absolute paths into an
    installation such as dm_control's, and their total length in its header);
    two installs of the same files must give the same hash, or clips registered
    in one would not bind in another. So the fields are hashed one by one.
    """
    h = hashlib.sha256()
    # The paths, their addresses and lengths, the buffer size they change, and the compiler's
    # signature (not kept through an MJB: a model read back from its MJB must hash the same).
    _hash_fields(h, model, skip={"paths", "npaths", "nbuffer", "signature"}, skip_suffix="pathadr")
    for part in ("opt", "stat", "vis"):
        _hash_fields(h, getattr(model, part), prefix=part + ".")
    return h.hexdigest()


def _hash_fields(h, obj, skip=frozenset(), prefix: str = "", skip_suffix: str = "\0") -> None:
    for name in sorted(dir(obj)):
        if name.startswith("_") or name in skip or name.endswith(skip_suffix):
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # a property that cannot be read for this model
            continue
        if isinstance(value, np.ndarray):
            h.update(f"{prefix}{name}:{value.dtype}:{value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, (bool, int, float, str, bytes)):
            h.update(f"{prefix}{name}={value!r}".encode())
