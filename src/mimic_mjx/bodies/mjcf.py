"""A body file's MJCF made into a body: read, checked, rooted, scaled, actuated, trimmed for training.

The MJCF is named relative to the body file, or inside an installed Python
package as ``package://NAME/PATH`` (the built-in rat and fly read
dm_control's shipped models that way, in place). It is read with ``MjSpec.from_file`` from its own path, so its
``<include>`` files, ``meshdir``/``texturedir``/``assetdir`` and meshes
resolve exactly as MuJoCo resolves them for that file. Every failure is one
line naming the body file: a missing MJCF, included or asset file (with the
folder MuJoCo searched), or MuJoCo's own compile message.

Defaults that carry a unit are derived from the model itself so that they
hold from a millimetre worm to a metre-long animal (see ``servo_gains``).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib.util
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.bodies.scaling import scale_spec, skin_arrays
from mimic_mjx.errors import BodyError
from mimic_mjx.files import require_regular_file

# Plain ints: numpy arrays of joint types compare (and `in`) reliably with ints, not with the enum.
_FREE, _HINGE, _SLIDE = (
    int(t) for t in (mujoco.mjtJoint.mjJNT_FREE, mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
)
ROOT_KINDS = ("auto", "free", "fixed")
ACTUATION_KINDS = ("auto", "model", "position", "torque")
SOLVERS = {"cg": mujoco.mjtSolver.mjSOL_CG, "newton": mujoco.mjtSolver.mjSOL_NEWTON}
FLOOR = "floor"
#: An MJCF inside an installed package: package://NAME/PATH (NAME a dotted module name).
PACKAGE_PREFIX = "package://"
_PACKAGE_PATH = re.compile(r"package://([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)/(.+)\Z")

#: Default peak torque of an added actuator: what holds the joint's subtree against this many
#: times its weight at the subtree's radius of gyration about the joint (mass x gravity x length:
#: it scales with the body's size and with the model's own units).
GRAVITY_MULTIPLE = 3.0
#: A default position servo reaches its peak torque this far from its target (rad) ...
SATURATION_RAD = 0.25
#: ... or, on a slide joint, this fraction of the model's extent.
SLIDE_SATURATION = 0.05
#: A default servo's natural frequency times the timestep stays below this: the servo's
#: spring and damping enter MuJoCo's integrator explicitly and a faster servo diverges.
MAX_OMEGA_DT = 0.5


@dataclasses.dataclass(frozen=True)
class Actuation:
    """What drives the body: the MJCF's actuators, or servos/motors added to its joints."""

    kind: str = "auto"  # auto: the MJCF's own (an error when it has none); model; position; torque
    joints: tuple[str, ...] = ()  # joint names or glob patterns; empty = every hinge and slide joint
    max_torque: float | None = None  # peak torque, N m (N on slide joints); None = derived
    kp: float | None = None  # position gain per rad (per m); None = derived
    kv: float | None = None  # position servo damping per rad/s; None = critically damped


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    mjcf: Path  # resolved MJCF path
    where: str  # the body file, named in every message
    root: str = "auto"  # auto (detected), free (add a free joint if missing), fixed (remove one)
    floor: bool | None = None  # None: add one when the root is free and the model has no plane
    actuation: Actuation = Actuation()
    contacts: tuple[str, ...] | None = None  # geom name patterns the trainable variant keeps; None = all
    timestep: float | None = None  # s; None = the MJCF's
    # Contacts the trainable variant keeps: only with the floor (no self-contacts), or as authored.
    contacts_floor_only: bool = False
    # The trainable variant's solver: (name in SOLVERS, iterations, ls_iterations); None = the MJCF's.
    solver: tuple[str, int, int] | None = None
    # What a file cannot say (a built-in body's module, bodies/fruitfly.py): edit(spec, trainable), last.
    edit: Callable[[mujoco.MjSpec, bool], None] | None = None
    # actuation "auto" on a model without actuators adds position servos instead of failing
    # (stac-mjx files: stac-mjx fits poses only, so its models need none, and its files cannot ask).
    servos_if_none: bool = False


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def package_path(text: str) -> tuple[str, str] | None:
    """(package, path inside it) of ``package://NAME/PATH``; None for a plain path; ValueError if malformed."""
    if not text.startswith(PACKAGE_PREFIX):
        return None
    match = _PACKAGE_PATH.match(text)
    inner = match.group(2) if match else ""
    parts = Path(inner).parts
    if not match or Path(inner).is_absolute() or ".." in parts or "\\" in inner:
        raise ValueError(f"'{text}' is not package://PACKAGE/PATH (a package name, then a relative path inside it)")
    return match.group(1), inner


def resolve_mjcf(text: str, folder: Path, where: str) -> Path:
    """The MJCF a body file names: relative to ``folder`` (the body file's), or inside an installed package.

    Paths stay absolute with symbolic links kept: MuJoCo resolves meshes from the folder of the path it is given.
    """
    try:
        inside = package_path(text)
    except ValueError as exc:
        raise BodyError(f"{where}: mjcf: {exc}") from None
    if inside is None:
        mjcf = Path(os.path.abspath(folder / Path(text).expanduser()))
        if not mjcf.is_file():
            raise BodyError(f"{where}: mjcf '{text}' not found (searched {mjcf.parent}, relative to the body file)")
        return mjcf
    package, inner = inside
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        found = None
    if found is None:
        raise BodyError(f"{where}: mjcf '{text}': no package '{package}' is installed in this Python")
    roots = list(found.submodule_search_locations or ())
    if not roots:
        raise BodyError(f"{where}: mjcf '{text}': '{package}' is a module, not a package with files")
    for root in roots:
        mjcf = Path(os.path.abspath(Path(root) / inner))
        if mjcf.is_file():
            return mjcf
    raise BodyError(f"{where}: mjcf '{text}' not found (searched {', '.join(roots)}); is the package's version right?")


def read_mjcf(mjcf: Path, where: str) -> mujoco.MjSpec:
    """The MJCF at ``mjcf`` as an editable spec; a one-line BodyError naming ``where`` when it cannot be read."""
    require_regular_file(mjcf, BodyError, f"{where}: MJCF file")
    try:
        return mujoco.MjSpec.from_file(str(mjcf))
    except ValueError as exc:
        raise BodyError(_mujoco_message(where, mjcf, str(exc), "cannot be read")) from None


def compile_spec(spec: mujoco.MjSpec, mjcf: Path, where: str) -> mujoco.MjModel:
    try:
        return spec.compile()
    except ValueError as exc:
        raise BodyError(_mujoco_message(where, mjcf, str(exc), "does not compile")) from None


def _mujoco_message(where: str, mjcf: Path, message: str, what: str) -> str:
    opening = re.search(r"Error opening file '([^']*)'", message)
    if opening:  # an included file, mesh, texture, skin or height field that is not there
        named = Path(opening.group(1))
        full = named if named.is_absolute() else mjcf.parent / named
        kind = "included file" if "include" in message else "asset file"
        return (
            f"{where}: {kind} '{named.name}' of {mjcf} not found: MuJoCo looked for {full} "
            f"(folder searched: {full.parent}, from the MJCF's folder and its meshdir/texturedir/assetdir)"
        )
    return f"{where}: MJCF {mjcf} {what}: {_one_line(message)}"


def build(settings: BuildSettings, scale: float = 1.0, trainable: bool = False, notes: list | None = None):
    """The body's spec: rooted, scaled, on a floor if asked, actuated; trimmed contacts if ``trainable``.

    ``notes`` collects one line per thing derived or detected (the body file's info lines).
    """
    where, mjcf = settings.where, settings.mjcf
    notes = [] if notes is None else notes
    if not (math.isfinite(scale) and scale > 0):
        raise BodyError(f"{where}: scale must be a positive number, got {scale!r}")
    spec = read_mjcf(mjcf, where)
    model = compile_spec(spec, mjcf, where)
    _apply_root(spec, model, settings.root, where, notes)
    if scale != 1.0:
        scale_spec(spec, scale, skin_arrays(model) if spec.skins else None)
    if settings.timestep is not None:
        spec.option.timestep = float(settings.timestep)
    # One compile serves both: a floor changes no mass, inertia or joint the gains are derived from.
    model = compile_spec(spec, mjcf, where)
    _add_floor(spec, model, settings.floor, notes)
    act = settings.actuation
    if act.kind == "auto" and model.nu == 0 and settings.servos_if_none:
        act = dataclasses.replace(act, kind="position")
        notes.append("actuation: the MJCF has no actuators, so position servos are added to its joints")
    _apply_actuation(spec, model, act, mjcf, where, notes)
    if trainable and settings.contacts is not None:
        keep_contacts(spec, settings.contacts, where, settings.contacts_floor_only)
    if trainable and settings.solver is not None:
        name, iterations, ls_iterations = settings.solver
        spec.option.solver = SOLVERS[name]
        spec.option.iterations, spec.option.ls_iterations = iterations, ls_iterations
    if settings.edit is not None:
        settings.edit(spec, trainable)
    return spec


def free_joints_checked(model: mujoco.MjModel, where: str) -> list[int]:
    """Ids of the model's free joints: none, or one that is the root (else a BodyError)."""
    free = [j for j in range(model.njnt) if model.jnt_type[j] == _FREE]
    for j in free:
        body = int(model.jnt_bodyid[j])
        if model.body_parentid[body] != 0 or j != 0 or len(free) > 1:
            name = model.joint(j).name or f"#{j}"
            raise BodyError(
                f"{where}: free joint '{name}' on body '{model.body(body).name}' is not the root; a body may "
                f"have one free joint, the model's first, on a child of the world body ({len(free)} free "
                f"joint(s) found); remove the others or make them hinges/slides"
            )
    return free


def _apply_root(spec: mujoco.MjSpec, model: mujoco.MjModel, root: str, where: str, notes: list) -> None:
    free = free_joints_checked(model, where)
    if root == "auto":
        how = "its first joint is free" if free else "it has no free joint; 'root: free' adds one"
        notes.append(f"root: {'free' if free else 'fixed'} (detected from the MJCF: {how})")
        return
    if root == "fixed" and free:
        for joint in list(spec.joints):
            if joint.type == _FREE:
                spec.delete(joint)
        notes.append("root: fixed (the MJCF's free joint is removed, as the body file asks)")
    elif root == "free" and not free:
        movable = [b for b in spec.worldbody.bodies if _has_joints_or_children(b)]
        if len(movable) != 1:
            raise BodyError(
                f"{where}: root: free needs one top-level body to carry the free joint; the MJCF has "
                f"{len(movable)} ({', '.join(b.name for b in movable) or 'none'})"
            )
        if list(movable[0].joints):
            raise BodyError(
                f"{where}: root: free cannot add a free joint to '{movable[0].name}', which has joints of its own; "
                f"put a free joint first in the MJCF instead"
            )
        movable[0].add_freejoint(name="root")
        notes.append(f"root: free (a free joint 'root' is added to '{movable[0].name}', as the body file asks)")
    else:
        notes.append(f"root: {root} (detected from the MJCF, as the body file says)")


def _has_joints_or_children(body) -> bool:
    return bool(list(body.joints)) or bool(list(body.bodies))


def _add_floor(spec: mujoco.MjSpec, model: mujoco.MjModel, floor: bool | None, notes: list) -> None:
    has_plane = bool(np.any(model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE))
    free = model.njnt > 0 and model.jnt_type[0] == _FREE
    if floor is None:
        floor = free and not has_plane and float(np.linalg.norm(model.opt.gravity)) > 0
        if floor:
            notes.append("floor: a plane 'floor' is added at z = 0 (free root under gravity, no plane in the MJCF)")
    if not floor:
        return
    if FLOOR in {model.geom(g).name for g in range(model.ngeom)}:
        notes.append("floor: the MJCF's own geom 'floor'")
        return
    ext = float(model.stat.extent)  # the body's size: the floor's drawn size follows it
    spec.worldbody.add_geom(
        name=FLOOR, type=mujoco.mjtGeom.mjGEOM_PLANE, size=(20 * ext, 20 * ext, 0.1 * ext), rgba=(0.35, 0.4, 0.45, 1)
    )


def select_joints(model: mujoco.MjModel, patterns, where: str, what: str) -> list[int]:
    """Hinge/slide joint ids matching the names or glob patterns (all of them for none)."""
    scalar = [j for j in range(model.njnt) if model.jnt_type[j] in (_HINGE, _SLIDE)]
    names = {model.joint(j).name: j for j in scalar}
    if not patterns:
        return scalar
    chosen = []
    for pattern in patterns:
        hits = [j for n, j in names.items() if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            every = {model.joint(j).name for j in range(model.njnt)}
            why = " (it is not a hinge or slide joint)" if pattern in every else did_you_mean(pattern, names)
            raise BodyError(f"{where}: {what}: no hinge or slide joint matches '{pattern}'{why}")
        chosen += [j for j in hits if j not in chosen]
    return sorted(chosen)


def servo_gains(model: mujoco.MjModel, joint: int, act: Actuation, where: str) -> tuple[float, float, float, bool]:
    """(peak torque, kp, kv, kp capped) of an added actuator on ``joint`` of the unactuated model.

    Peak torque: GRAVITY_MULTIPLE x the joint's subtree mass x |gravity| x the subtree's radius
    of gyration about the joint (sqrt of the joint's diagonal inertia at qpos0 over the subtree
    mass; force on a slide joint: mass x gravity). kp: the peak at SATURATION_RAD off target,
    capped so that the servo's natural frequency sqrt(kp / inertia) stays resolved by the
    timestep; kv: critical damping 2 sqrt(kp inertia). All three follow the body's size and units.
    """
    dof, body = int(model.jnt_dofadr[joint]), int(model.jnt_bodyid[joint])
    inertia = float(model.dof_M0[dof])
    mass = float(model.body_subtreemass[body])
    slide = model.jnt_type[joint] == _SLIDE
    peak = act.max_torque
    if peak is None:
        gravity = float(np.linalg.norm(model.opt.gravity))
        if gravity <= 0:
            raise BodyError(
                f"{where}: the model has no gravity, so no default actuator strength can be derived from the "
                f"body's weight; give actuation.max_torque (N m)"
            )
        lever = 1.0 if slide else math.sqrt(inertia / mass)
        peak = GRAVITY_MULTIPLE * mass * gravity * lever
    capped = False
    kp = act.kp
    if kp is None:
        kp = peak / (SLIDE_SATURATION * float(model.stat.extent) if slide else SATURATION_RAD)
        fastest = inertia * (MAX_OMEGA_DT / float(model.opt.timestep)) ** 2
        capped = kp > fastest
        kp = min(kp, fastest)
    kv = 2.0 * math.sqrt(kp * inertia) if act.kv is None else act.kv
    return peak, kp, kv, capped


def _apply_actuation(
    spec: mujoco.MjSpec, model: mujoco.MjModel, act: Actuation, mjcf: Path, where: str, notes: list
) -> None:
    if act.kind in ("auto", "model"):
        if model.nu == 0:
            raise BodyError(
                f"{where}: {mjcf.name} has no actuators and the body file asks for none; add "
                f"'actuation: position' (servos on every hinge and slide joint), 'actuation: torque', or a "
                f"mapping with kind, joints and max_torque"
            )
        notes.append(f"actuation: the MJCF's {model.nu} actuators")
        return
    joints = select_joints(model, act.joints, where, "actuation.joints")
    if model.nu:
        for a in list(spec.actuators):
            spec.delete(a)
        notes.append(f"actuation: the MJCF's {model.nu} actuators are replaced by the body file's")
    capped = 0
    ext = float(model.stat.extent)
    for j in joints:
        name = model.joint(j).name
        peak, kp, kv, was_capped = servo_gains(model, j, act, where)
        capped += was_capped
        a = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.forcelimited, a.forcerange = mujoco.mjtLimited.mjLIMITED_TRUE, (-peak, peak)
        a.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        gain = np.zeros(len(a.gainprm))
        bias = np.zeros(len(a.biasprm))
        if act.kind == "torque":
            gain[0] = peak  # ctrl in [-1, 1] is a fraction of the peak torque
            a.ctrlrange = (-1.0, 1.0)
        else:  # force = kp (ctrl - q) - kv qdot: ctrl is the target position
            gain[0], bias[1], bias[2] = kp, -kp, -kv
            a.biastype = mujoco.mjtBias.mjBIAS_AFFINE
            if model.jnt_limited[j]:
                a.ctrlrange = tuple(model.jnt_range[j])
            else:
                half = ext if model.jnt_type[j] == _SLIDE else math.pi
                a.ctrlrange = (-half, half)
        a.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        a.gainprm, a.biasprm = gain, bias
    source = "from the body file" if act.max_torque is not None else f"{GRAVITY_MULTIPLE:g}x each subtree's weight"
    notes.append(f"actuation: {act.kind} actuators on {len(joints)} joint(s), peak torque {source}")
    if capped:
        notes.append(
            f"actuation: {capped} servo gain(s) lowered so that the {model.opt.timestep:g} s timestep resolves "
            f"them; give a smaller timestep (or actuation.kp) for stiffer servos"
        )


def keep_contacts(spec: mujoco.MjSpec, patterns, where: str, floor_only: bool = False) -> None:
    """Only geoms whose names match a pattern (and the floor) keep their collision flags.

    ``floor_only``: the kept geoms collide with the floor and nothing else. MuJoCo collides two
    geoms when ``contype1 & conaffinity2`` or ``contype2 & conaffinity1`` is non-zero, so kept geoms
    get 0/1 and the floor 1/0: no self-contacts, the cheapest contact set a walker can train with.
    """
    names = [g.name for g in spec.geoms]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise BodyError(f"{where}: contacts: no geom matches '{pattern}'{did_you_mean(pattern, names)}")
    if floor_only and FLOOR not in names:
        raise BodyError(f"{where}: contacts: against: floor, but the model has no geom '{FLOOR}' (set floor: true)")
    for geom in spec.geoms:
        kept = any(fnmatch.fnmatchcase(geom.name, p) for p in patterns)
        if geom.name == FLOOR:
            if floor_only:
                geom.contype, geom.conaffinity = 1, 0
        elif not kept:
            geom.contype, geom.conaffinity = 0, 0
        elif floor_only:
            geom.contype, geom.conaffinity = 0, 1
