"""Fruit fly: dm_control's fruitfly_v2 walker, set up for walking: what bodies/files/fruitfly.yaml cannot say.

The built-in fruit fly is the body file ``bodies/files/fruitfly.yaml``
(registered as ``fruitfly`` by bodies/registry.py): the model, a free root, a
floor, its actuators, claw-only contacts, end effectors and joint bounds. This
module keeps the edits a body file cannot express (:func:`walking_setup`, the
body file's ``edit``) and the variants that change them (:func:`build_spec`).

The model file is ``dm_control/locomotion/walkers/assets/fruitfly_v2/fruitfly.xml``
of the installed dm_control (the flybody fly of Vaxenburg et al.), read in place
with ``mujoco.MjSpec.from_file``: its 85 meshes (``*.msh``) resolve relative to
the XML's directory, and it includes no other file. As authored (MuJoCo 3.17):
a free joint ``free`` on ``thorax`` plus 102 hinges (nq = 109, nv = 108), 78
actuators (70 ``general`` ones: position servos, except motors on the wings;
8 adhesion actuators), 68 bodies, total mass 0.88 mg, no floor.

Units are the model's own: centimetres, grams, seconds (gravity -981 cm/s^2,
the fly is about 0.3 cm long). We keep them, so clips of fly walking made for
flybody (also in cm) need no conversion; tasks must not assume metres for
this body.

What the body file and :func:`walking_setup` change, with MjSpec edits:

* Fixed parts (``fixed``, default :data:`DEFAULT_FIXED`): the wings, the
  mouth (proboscis: rostrum, haustellum, labrum), the antennae and the halteres
  lose their joints and actuators. Each such body is frozen at its joints'
  spring reference angles, i.e. the pose its passive springs hold it in (the
  wings folded back over the abdomen): the joint rotations at
  ``springref`` are folded into the body's orientation before the joints are
  deleted, as dm_control's walker does when it retracts legs. All their joints
  sit at the body origin, so no translation is involved. dm_control's walking
  set-up (``use_wings=False, use_mouth=False, use_antennae=False``) only removes
  the actuators and leaves these joints passive; fixing them removes 19 degrees of
  freedom that walking does not use (wings 6, mouth 5, antennae 6, halteres 2),
  and the halteres' stiff springs.
  ``"head"`` and ``"abdomen"`` may be added to ``fixed``; by default they stay
  actuated (3 head hinges; 14 abdomen hinges driven by 2 tendon actuators), as
  in flybody's walking-imitation task, whose policy also moves head and abdomen.
* Adhesion actuators (claws and labrum) are removed: they use body
  transmission, which MJX does not implement. The leg actuators remain:
  8 per leg (coxa x3, femur x2, tibia, tarsus, and one on a fixed tendon that
  couples the four distal tarsal joints), 48 in all, plus head (3) and abdomen
  (2) unless fixed. All are affine position servos, ``force = k (ctrl - length)``:
  the control is the target joint angle (target tendon length for the tarsal
  and abdomen tendon actuators). Like dm_control's walker
  (``joint_filter=0.01``), we pass the controls through a first-order filter
  with a 10 ms time constant (``joint_filter``; 0 disables it), so
  ``data.act`` holds one activation per actuator.
* Contacts (the body file's ``contacts``): only the six tarsal claw capsules
  (``tarsal_claw_T{1,2,3}_{left,right}_collision``, the geoms the fly stands
  on; with every collision geom enabled these are the only ones touching the
  floor at rest) collide, and only with the floor: claws ``contype 0 /
  conaffinity 1``, floor ``contype 1 / conaffinity 0``, everything else
  ``0 / 0``. Plane-capsule is an MJX collision function. :func:`walking_setup`
  sets the contact parameters: the claws' ``margin``/``gap`` (0.0005, there
  for adhesion) are zeroed and their ``condim`` set to 3 (they inherit 1 from the collision class; the contact
  got 3 from the floor anyway).
* A floor plane at z = 0, and the thorax (root) placed at dm_control's spawn
  height, 0.1278 cm, where the claws are within 0.01 cm of the floor.
* Options: the authored 0.1 ms timestep (dm_control's walker default; its
  control step is 2 ms), elliptic cone and Newton solver (100 / 50 iterations)
  are kept unless ``timestep`` / ``solver`` / ``iterations`` /
  ``ls_iterations`` are given. A quick check (C MuJoCo, 16 rollouts of 0.2 s
  from the spawn pose with 0.02 rad hinge noise and uniform random controls
  held for 2 ms) found no failure for Newton 100/50 or CG 6/6 at 0.1 ms, nor
  for Newton 100/50, CG 6/6, CG 4/4 or Newton 2/4 at 0.2 ms; CG 6/6 ran about
  1.5x as fast as Newton in C. ``noslip_iterations`` is set to 0 (MJX has no
  noslip solver, so C MuJoCo and MJX would otherwise differ) and the air's ``density`` and
  ``viscosity`` to 0 (MuJoCo's inertia-box fluid model: irrelevant at walking
  speeds once the wings are fixed, and it costs a pass over all bodies).
"""

from __future__ import annotations

import functools
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.bodies.assets import dm_control_walker_asset
from mimic_mjx.bodies.bodyfile import read_settings
from mimic_mjx.bodies.mjcf import FLOOR, SOLVERS, build
from mimic_mjx.errors import BodyError
from mimic_mjx.quaternions import quat_mul

#: The built-in fruit fly's body file.
FILE = Path(__file__).resolve().parent / "files" / "fruitfly.yaml"
ROOT_BODY = "thorax"
ROOT_JOINT = "free"
#: dm_control's ``fruitfly_v2._SPAWN_POS`` height (cm): claws just above the floor.
SPAWN_HEIGHT = 0.1278
#: The floor's drawn size (half-lengths, cm), as the fly was always built.
FLOOR_SIZE = (5.0, 5.0, 0.1)
LEGS = tuple(f"T{i}_{side}" for i in (1, 2, 3) for side in ("left", "right"))
#: Leg-tip bodies (the last tarsal segment, carrying the claw).
CLAW_BODIES = tuple(f"claw_{leg}" for leg in LEGS)
CLAW_GEOMS = tuple(f"tarsal_claw_{leg}_collision" for leg in LEGS)

#: Name patterns of each fixable part (substrings of body, joint, actuator and
#: tendon names, as dm_control's walker classifies them).
PARTS = {
    "wings": ("wing",),
    "mouth": ("rostrum", "haustellum", "labrum"),
    "antennae": ("antenna",),
    "halteres": ("haltere",),
    "head": ("head",),
    "abdomen": ("abdomen",),
}
DEFAULT_FIXED = ("wings", "mouth", "antennae", "halteres")
#: dm_control's ``FruitFly(joint_filter=0.01)``: actuator control filter (s).
JOINT_FILTER = 0.01


def fruitfly_xml_path() -> Path:
    """Path of dm_control's fruitfly_v2 XML inside the installed package."""
    return dm_control_walker_asset("fruitfly_v2/fruitfly.xml", "fruit fly")


def load_raw_spec() -> mujoco.MjSpec:
    """dm_control's fruit fly exactly as authored (free joint, no floor)."""
    return mujoco.MjSpec.from_file(str(fruitfly_xml_path()))


def _matches(name: str, parts) -> bool:
    return any(s in name for p in parts for s in PARTS[p])


def _freeze_joints(spec: mujoco.MjSpec, body) -> None:
    """Delete ``body``'s hinges, keeping the body at their spring reference angles.

    MuJoCo rotates a body by its joints in order: xquat = quat * q1 * q2 * ...
    with qi the rotation by (angle - qpos0) about joint i's local axis. qpos0 is
    0 for hinges, so the frozen orientation is quat * prod(axis-angle(springref)).
    """
    quat = np.asarray(body.quat, float)
    for joint in list(body.joints):
        if joint.type != mujoco.mjtJoint.mjJNT_HINGE:
            raise BodyError(f"cannot fix joint '{joint.name}': only hinges are supported")
        if np.any(np.asarray(joint.pos) != 0):
            raise BodyError(f"cannot fix joint '{joint.name}': it is not at its body's origin")
        axis = np.asarray(joint.axis, float)
        axis = axis / np.linalg.norm(axis)
        qrot = np.zeros(4)
        mujoco.mju_axisAngle2Quat(qrot, axis, float(joint.springref))
        quat = quat_mul(quat, qrot)
    body.quat = quat / np.linalg.norm(quat)
    for joint in list(body.joints):
        spec.delete(joint)


def walking_setup(
    spec: mujoco.MjSpec,
    trainable: bool,
    fixed: tuple[str, ...] = DEFAULT_FIXED,
    joint_filter: float = JOINT_FILTER,
) -> None:
    """The edits fruitfly.yaml cannot say (the module docstring), on a spec the body file built.

    ``fixed`` names the parts frozen in place (see :data:`PARTS`); ``joint_filter`` is the
    actuators' control filter (s; 0 applies controls directly). The same in both variants.
    """
    unknown = [p for p in fixed if p not in PARTS]
    if unknown:
        raise BodyError(f"unknown fruit fly parts {unknown}; fixable parts are {', '.join(PARTS)}")
    if joint_filter < 0 or not np.isfinite(joint_filter):
        raise BodyError(f"joint_filter must be >= 0 seconds, got {joint_filter!r}")
    thorax = spec.body(ROOT_BODY)
    if thorax is None or not any(j.type == mujoco.mjtJoint.mjJNT_FREE for j in thorax.joints):
        raise BodyError("dm_control's fruit fly has no free joint on 'thorax'; unsupported dm_control version")

    # Actuators first: adhesion ones (body transmission, not in MJX) and those
    # of the parts being fixed (joint or tendon named like the part).
    for act in list(spec.actuators):
        if act.trntype == mujoco.mjtTrn.mjTRN_BODY or _matches(act.name, fixed) or _matches(act.target, fixed):
            spec.delete(act)
    for tendon in list(spec.tendons):
        if _matches(tendon.name, fixed):
            spec.delete(tendon)
    for body in list(spec.bodies):
        if body.name and _matches(body.name, fixed) and body.joints:
            _freeze_joints(spec, body)

    if joint_filter > 0:
        for act in spec.actuators:
            act.dyntype = mujoco.mjtDyn.mjDYN_FILTER
            dynprm = np.zeros_like(np.asarray(act.dynprm))
            dynprm[0] = joint_filter
            act.dynprm = dynprm

    # Claw contacts (which geoms collide is the body file's): no adhesion margin, and the
    # condim the contact got from the floor anyway (the collision class gives the claws 1).
    names = {g.name for g in spec.geoms}
    missing = set(CLAW_GEOMS) - names
    if missing:  # pragma: no cover - guards against a changed dm_control
        raise BodyError(f"dm_control's fruit fly lacks the claw geoms {sorted(missing)}")
    for name in CLAW_GEOMS:
        geom = spec.geom(name)
        geom.condim, geom.margin, geom.gap = 3, 0.0, 0.0
    floor = spec.geom(FLOOR)
    floor.condim, floor.size = 3, FLOOR_SIZE
    thorax.pos = (0.0, 0.0, SPAWN_HEIGHT)

    spec.option.noslip_iterations = 0
    spec.option.density = 0.0
    spec.option.viscosity = 0.0


def build_spec(
    fixed: tuple[str, ...] | list[str] = DEFAULT_FIXED,
    joint_filter: float = JOINT_FILTER,
    *,
    timestep: float | None = None,
    solver: str | None = None,
    iterations: int | None = None,
    ls_iterations: int | None = None,
) -> mujoco.MjSpec:
    """The walking fruit fly of fruitfly.yaml as an editable spec, or a variant of it.

    ``fixed`` and ``joint_filter``: see :func:`walking_setup`. ``timestep``, ``solver``
    (``"cg"`` or ``"newton"``), ``iterations`` and ``ls_iterations`` override the authored
    simulation options when given.
    """
    if solver is not None and solver not in SOLVERS:
        raise BodyError(f"fruit fly solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    edit = functools.partial(walking_setup, fixed=tuple(fixed), joint_filter=joint_filter)
    _, settings = read_settings(FILE, edit=edit)
    spec = build(settings, trainable=True)  # the fly's one model: claw contacts (bodies/registry.py)
    if timestep is not None:
        if not (np.isfinite(timestep) and timestep > 0):
            raise BodyError(f"timestep must be a positive number, got {timestep!r}")
        spec.option.timestep = float(timestep)
    if solver is not None:
        spec.option.solver = SOLVERS[solver]
    for name, value in (("iterations", iterations), ("ls_iterations", ls_iterations)):
        if value is not None:
            if int(value) < 1:
                raise BodyError(f"{name} must be >= 1, got {value}")
            setattr(spec.option, name, int(value))
    return spec
