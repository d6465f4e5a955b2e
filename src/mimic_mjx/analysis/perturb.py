"""Perturbations for virtual experiments: what to change, read from YAML.

A file is a list of entries (or a mapping ``perturbations:`` holding one). Each
entry is a mapping with ``kind``, the kind's fields and an optional ``name``
(default ``<kind>_<n>``, n counting entries from 1). Entries apply in file
order, so entries on the same quantity compose: scales multiply, additions add.

Body kinds edit a copy of the MuJoCo model (:func:`apply_to_model`):

Name lists (``bodies``, ``joints``, ``actuators``) take names, shell patterns
(``[MDL*]``: one quadrant of the worm's muscles) or ``all``.

- ``mass`` (``scale``, ``bodies``): body_mass and body_inertia.
- ``length`` (``scale``, ``bodies``, ``lengthrange: rescale | keep``): lengthens
  the segment a body carries: its child bodies' body_pos, its own body_ipos (the
  centre of mass stays at the same fraction of the segment), its geoms'
  geom_pos and, for capsules and cylinders, their half-length size[1] (with
  geom_rbound and geom_aabb to match), and its sites' site_pos, so tendons
  routed through those sites lengthen too. Mass, inertia, radii, joint
  positions, cameras and lights are kept. Muscle length ranges are not
  re-simulated: ``mujoco.mj_setLengthRange`` does not converge for the 1 g
  forelimb (it hangs at its 1 ms step, see bodies/forelimb.py). With
  ``rescale`` (default) each muscle's lengthrange is multiplied by the ratio of
  its actuator length at qpos0 after/before, which keeps its operating point on
  the force-length curve at the reference pose; with ``keep`` the longer path
  moves the muscle along that curve.
- ``gravity`` (``scale`` or ``vector: [x, y, z]``): opt.gravity.
- ``actuator_gain`` / ``muscle_force`` (``scale``, ``actuators``): muscles get
  peak force gainprm[2] and its mirror biasprm[2] scaled (an automatic force,
  -1, is first resolved as gainprm[3] / acc0 as MuJoCo does); other actuators
  get gainprm[0:3] and biasprm[0:3] scaled, which scales their whole affine
  force gain * ctrl + bias. actuator_forcerange scales with them.
- ``joint_damping`` (``add`` N m s/rad, ``joints``): dof_damping of the joints' dofs.

After the edits ``mj_setConst`` recomputes what depends on them at qpos0
(subtree masses, acc0, tendon_length0, ...).

``force_pulse`` (``body``, ``direction``, ``newtons``, ``start_s``,
``duration_s``) is a force in the world frame at the body's centre of mass
while start_s <= t < start_s + duration_s: :func:`xfrc_schedule` gives
xfrc_applied per control step.

Network kinds act on the controller (:func:`apply_to_params`) or the rollout:

- ``latent_noise`` (``std``): Gaussian noise added to the latent each step;
  :func:`latent_noise_std` combines all entries for the rollout loop.
- ``silence_latent`` (``units``): encoder output columns zeroed, so the latent
  mean is exactly 0. A stochastic policy also samples noise around it: the
  log-variance columns are zeroed with bias -10 (the encoder's lower clip), which
  leaves a residual std of exp(-5) ~ 0.0067; a loop that needs exact zeros
  masks :func:`silenced_latent_units` of its latent sample.
- ``silence_layer`` (``layer`` e.g. decoder_0, ``fraction`` in (0, 1] or
  ``units``, ``seed``): those columns of the Dense kernel and bias are zeroed,
  so the unit's pre-activation is 0 and swish(0) = 0 exactly: the recorded
  activation is exactly zero and nothing downstream receives it.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import mujoco
import numpy as np

from mimic_mjx.errors import MimicError

LOG_VAR_MIN = -10.0  # IntentionAgent.encode clips the latent log-variance here


class PerturbationError(MimicError):
    """A perturbation file or entry is invalid."""


@dataclasses.dataclass(frozen=True)
class Perturbation:
    name: str
    kind: ClassVar[str] = ""


# Body/joint/actuator lists are None for `all`.
@dataclasses.dataclass(frozen=True)
class Mass(Perturbation):
    kind: ClassVar[str] = "mass"
    scale: float
    bodies: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Length(Perturbation):
    kind: ClassVar[str] = "length"
    scale: float
    bodies: tuple[str, ...] | None = None
    lengthrange: str = "rescale"


@dataclasses.dataclass(frozen=True)
class Gravity(Perturbation):
    kind: ClassVar[str] = "gravity"
    scale: float | None = None
    vector: tuple[float, float, float] | None = None


@dataclasses.dataclass(frozen=True)
class ActuatorGain(Perturbation):
    kind: ClassVar[str] = "actuator_gain"
    scale: float
    actuators: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class JointDamping(Perturbation):
    kind: ClassVar[str] = "joint_damping"
    add: float
    joints: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class ForcePulse(Perturbation):
    kind: ClassVar[str] = "force_pulse"
    body: str
    direction: tuple[float, float, float]
    newtons: float
    start_s: float
    duration_s: float


@dataclasses.dataclass(frozen=True)
class LatentNoise(Perturbation):
    kind: ClassVar[str] = "latent_noise"
    std: float


@dataclasses.dataclass(frozen=True)
class SilenceLatent(Perturbation):
    kind: ClassVar[str] = "silence_latent"
    units: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class SilenceLayer(Perturbation):
    kind: ClassVar[str] = "silence_layer"
    layer: str
    fraction: float | None = None
    units: tuple[int, ...] | None = None
    seed: int = 0


def _problem(p: Perturbation) -> str | None:
    """What is wrong with an entry's values, and the fix (None: nothing)."""
    if isinstance(p, Mass | Length) and p.scale <= 0:
        return f"scale must be > 0 (a {p.kind} must stay positive), got {p.scale}; e.g. 0.5 halves it"
    if isinstance(p, Length) and p.lengthrange not in ("rescale", "keep"):
        return f"lengthrange must be 'rescale' or 'keep', got {p.lengthrange!r}"
    if isinstance(p, Gravity) and (p.scale is None) == (p.vector is None):
        return "give exactly one of 'scale' (multiplies gravity) or 'vector: [x, y, z]' (m/s^2)"
    if isinstance(p, ActuatorGain | LatentNoise):
        field = "scale" if isinstance(p, ActuatorGain) else "std"
        return f"{field} must be >= 0, got {getattr(p, field)}" if getattr(p, field) < 0 else None
    if isinstance(p, ForcePulse):
        negative = [f for f in ("newtons", "start_s", "duration_s") if getattr(p, f) < 0]
        if negative:
            return f"{negative[0]} must be >= 0, got {getattr(p, negative[0])}"
        return None if any(p.direction) else "direction must be a non-zero vector [x, y, z] (world frame)"
    if isinstance(p, SilenceLayer):
        if (p.fraction is None) == (p.units is None):
            return "give exactly one of 'fraction' (in (0, 1]) or 'units' (indices)"
        if p.fraction is not None and not 0.0 < p.fraction <= 1.0:
            return f"fraction must be in (0, 1], got {p.fraction}"
    if isinstance(p, SilenceLatent | SilenceLayer) and p.units == ():
        return "units must list at least one unit index"
    return None


_CLASSES = (Mass, Length, Gravity, ActuatorGain, JointDamping, ForcePulse, LatentNoise, SilenceLatent, SilenceLayer)
KINDS: dict[str, type[Perturbation]] = {c.kind: c for c in _CLASSES} | {"muscle_force": ActuatorGain}
_NAME_LISTS = ("bodies", "joints", "actuators")
_STRINGS = ("body", "layer", "lengthrange")


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return float(value)


def _convert(field: str, value):
    if field in _NAME_LISTS:
        if value == "all":
            return None
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"must be a list of names or 'all', got {value!r}")
    if field in ("direction", "vector"):
        if not isinstance(value, list) or len(value) != 3:
            raise ValueError(f"must be a list [x, y, z], got {value!r}")
        return tuple(_number(v) for v in value)
    if field in ("units", "seed"):
        items = value if field == "units" and isinstance(value, list) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
            raise ValueError(f"must be {'a list of ' if field == 'units' else 'a '}non-negative integer, got {value!r}")
        return tuple(items) if field == "units" else value
    if field in _STRINGS:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value
    return _number(value)


def _suggest(word: str, options: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(str(word), options, n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    plural = "bodies" if what == "body" else f"{what}s"
    return f"unknown {what} {word!r}{hint}; valid {plural}: {', '.join(options)}"


def _parse_entry(n: int, entry, source: str) -> Perturbation:
    where = f"{source}: entry {n}"
    if not isinstance(entry, dict):
        raise PerturbationError(
            f"{where} is a {type(entry).__name__}, not a mapping; write it as '- kind: ...' + fields"
        )
    name = entry.get("name", f"{entry.get('kind')}_{n}")
    where = f"{where} ({name!r})"
    if "kind" not in entry:
        raise PerturbationError(f"{where} has no 'kind'; add one of: {', '.join(KINDS)}")
    if entry["kind"] not in KINDS:
        raise PerturbationError(f"{where}: {_suggest(entry['kind'], list(KINDS), 'kind')}")
    cls = KINDS[entry["kind"]]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
    for key in entry:
        if key not in fields and key not in ("kind", "name"):
            raise PerturbationError(f"{where}: {_suggest(key, list(fields), 'field')} (kind {cls.kind})")
    missing = [k for k, f in fields.items() if f.default is dataclasses.MISSING and k not in entry]
    if missing:
        raise PerturbationError(f"{where}: kind {cls.kind} needs {', '.join(missing)}; add them")
    kwargs = {}
    for key, value in entry.items():
        if key in fields:
            try:
                kwargs[key] = _convert(key, value)
            except ValueError as e:
                raise PerturbationError(f"{where}: {key} {e}") from None
    p = cls(name=str(name), **kwargs)
    if problem := _problem(p):
        raise PerturbationError(f"{where}: {problem}")
    return p


def parse_perturbations(data, source: str = "perturbations") -> list[Perturbation]:
    """Parse already-loaded YAML data (a list of entries, or ``{perturbations: [...]}``)."""
    if isinstance(data, dict):
        if set(data) != {"perturbations"}:
            raise PerturbationError(f"{source}: a mapping at the top must hold only 'perturbations:', got {list(data)}")
        data = data["perturbations"]
    if not isinstance(data, list):
        raise PerturbationError(
            f"{source}: expected a list of perturbation mappings (or 'perturbations:' holding one), "
            f"got {type(data).__name__}; write '- kind: mass' entries, or [] for none"
        )
    parsed = [_parse_entry(n, entry, source) for n, entry in enumerate(data, 1)]
    names = [p.name for p in parsed]
    for n, name in enumerate(names, 1):
        if names.index(name) != n - 1:
            raise PerturbationError(f"{source}: entry {n} ({name!r}) repeats an earlier name; give it another")
    return parsed


def load_perturbations(path: str | Path) -> list[Perturbation]:
    """Read and check a perturbation YAML file (names are checked by :func:`validate`)."""
    import yaml

    from mimic_mjx.files import read_text

    path = Path(path)
    text = read_text(path, PerturbationError, "perturbation file")  # a named pipe would block forever
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise PerturbationError(f"{path} is not valid YAML{at}: {getattr(e, 'problem', e)}; fix the syntax") from None
    return parse_perturbations(data, str(path))


# --- checks against a model and a network -------------------------------------------------------


def _names(model: mujoco.MjModel, obj: mujoco.mjtObj, count: int, start: int = 0) -> list[str]:
    return [mujoco.mj_id2name(model, obj, i) for i in range(start, count)]


def _targets(model, p: Perturbation) -> tuple[str, list[str], tuple[str, ...] | None]:
    """(what, valid names, requested names or None for all) of a model perturbation."""
    if isinstance(p, Mass | Length | ForcePulse):
        names = _names(model, mujoco.mjtObj.mjOBJ_BODY, model.nbody, start=1)  # not the world
        return "body", names, (p.body,) if isinstance(p, ForcePulse) else p.bodies
    if isinstance(p, ActuatorGain):
        return "actuator", _names(model, mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu), p.actuators
    return "joint", _names(model, mujoco.mjtObj.mjOBJ_JOINT, model.njnt), p.joints


def _expand(requested: tuple[str, ...], names: list[str]) -> list[str]:
    """Requested names with shell patterns (``MDL*``: a quadrant of the worm's muscles) expanded in model order."""
    out: list[str] = []
    for r in requested:
        hits = fnmatch.filter(names, r) if any(c in r for c in "*?[") else [r]
        out += [h for h in hits if h not in out]
    return out


def _ids(model, p: Perturbation) -> np.ndarray:
    what, names, requested = _targets(model, p)
    ids = [names.index(n) for n in (names if requested is None else _expand(requested, names))]
    return np.asarray(ids, dtype=int) + (1 if what == "body" else 0)


def _dofs(model, joint_ids: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(model.dof_jntid, joint_ids))


def layer_widths(source) -> dict[str, int]:
    """Hidden layer name ('encoder_0', 'decoder_1', ...) -> width, from flax params or an agent / its config."""
    if hasattr(source, "encoder_layers"):
        nets = {"encoder": source.encoder_layers, "decoder": source.decoder_layers}
        return {f"{net}_{i}": int(w) for net, ws in nets.items() for i, w in enumerate(ws)}
    return {
        f"{net}_{key.removeprefix('dense_')}": int(layer["kernel"].shape[1])
        for net in ("encoder", "decoder")
        for key, layer in source[net].items()
        if key.startswith("dense_")
    }


def validate(
    perturbations: Sequence[Perturbation],
    model: mujoco.MjModel | None = None,
    layer_widths: Mapping[str, int] | None = None,
    latent_dim: int | None = None,
) -> None:
    """Check names and indices against a model and a network; None skips that side."""
    for n, p in enumerate(perturbations, 1):
        where = f"perturbation {n} ({p.name!r})"
        if model is not None and isinstance(p, Mass | Length | ActuatorGain | JointDamping | ForcePulse):
            what, names, requested = _targets(model, p)
            for name in requested or ():
                if any(c in name for c in "*?[") and not _expand((name,), names):
                    raise PerturbationError(f"{where}: no {what} name matches {name!r}")
                if name not in names and not any(c in name for c in "*?["):
                    raise PerturbationError(f"{where}: {_suggest(name, names, what)}")
            if isinstance(p, JointDamping):
                low = float(np.min(model.dof_damping[_dofs(model, _ids(model, p))] + p.add, initial=0.0))
                if low < 0:
                    raise PerturbationError(f"{where}: add {p.add} makes a joint's damping {low:g} < 0; add less")
        if isinstance(p, SilenceLatent) and latent_dim is not None and max(p.units) >= latent_dim:
            raise PerturbationError(f"{where}: latent unit {max(p.units)} out of range; units are 0..{latent_dim - 1}")
        if isinstance(p, SilenceLayer) and layer_widths is not None:
            if p.layer not in layer_widths:
                raise PerturbationError(f"{where}: {_suggest(p.layer, list(layer_widths), 'layer')}")
            if p.units and max(p.units) >= layer_widths[p.layer]:
                width = layer_widths[p.layer]
                raise PerturbationError(
                    f"{where}: unit {max(p.units)} out of range; {p.layer} has units 0..{width - 1}"
                )


__all__ = [
    "KINDS",
    "Perturbation",
    "PerturbationError",
    "layer_widths",
    "load_perturbations",
    "parse_perturbations",
    "validate",
]
