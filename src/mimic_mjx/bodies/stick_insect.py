"""Stick insect (*Carausius morosus*): the MJCF this project writes, and the built-in body over it.

No installable package ships a stick insect, so this module writes one from
published morphometrics (the numbers, their sources and the leg table are in
bodies/stick_insect_anatomy.py) to ``bodies/files/stick_insect.xml``; the
built-in body ``stick_insect`` is the body file ``files/stick_insect.yaml``
over it (keypoints, end effectors, contacts, timestep, default config).
``python -m mimic_mjx.bodies.stick_insect --write`` rewrites the XML; a test
checks that the shipped file is what this module writes.

The model: a free root joint ``root`` on ``thorax`` (pro-, meso- and
metathorax as one rigid body, with ``head`` and ``abdomen`` as jointless
child bodies); six legs ``L1``..``R3`` (side, then 1 front, 2 middle, 3 hind),
each ``coxa_XN`` -> ``femur_XN`` -> ``tibia_XN`` -> ``tarsus_XN`` with hinges
``tc_XN`` (protraction +), ``ctr_XN`` (levation +) and ``fti_XN`` (extension
+): 18 hinges, nq = 25, nv = 24. Joint zeros are the standing posture, and
the thorax is placed so that the standing tarsi just touch the floor.

Contacts: only the six tarsus capsules collide, and only with the floor
(``contype 0 / conaffinity 1``, every other geom ``0 / 0``; the body file's
floor is ``1 / 1``) in both the registration and the training model.
Plane-capsule contacts are an MJX collision function.

Actuation: 18 position servos written into the MJCF (the body file says
``actuation: model``), not the body-file reader's ``actuation: position``.
The reader sizes each servo by its own subtree's weight (3x a 15 mg leg at its
radius of gyration: ~6e-6 N m), but a stance leg carries a third to a sixth
of the whole 0.9 g insect at a lever of ~2 cm (~3e-5 N m), so those servos
let the insect sink. Here each joint's peak torque is the whole body's weight
at the leg's length (femur + tibia; 2.0-2.6e-4 N m: one leg could hold the
whole insect; the body file's ``actuation: position`` cannot say this, since
it sizes each joint by its own subtree), reached at 0.25 rad off target (kp = peak / 0.25 rad: the standing
insect sinks by under 1 mm), critically damped (kv = 2 sqrt(kp I) with I the
joint's inertia at the standing pose, armature included). Position servos
because the reference is a joint trajectory and zero controls then hold the
standing posture (the passive test of ``mimic bodies check``); the integrator
is ``implicitfast`` so the servos' damping is implicit, and the 0.5 ms
timestep resolves the servos.

Armature: every leg hinge carries 3e-10 kg m^2 of armature (about the middle
legs' tibia-plus-tarsus inertia about the femur-tibia joint; 15-30% of the
coxa and femur joints' own). It is a numerical device, not anatomy: without
it the middle legs' femur-tibia servos (~1,500 rad/s on a 3e-10 kg m^2
tibia) were resolved too coarsely at 0.5 ms, and 24 of 60 half-second runs
started from walking frames under bang-bang controls (what an untrained
policy does) diverged; with it none did, nor at 0.25 ms without it (which
would halve the simulation's speed).

Contact softness: the tarsi's contacts use their own ``solref`` (2 ms time
constant) and ``solimp`` (priority over the floor's). With MuJoCo's defaults
the standing insect sank by ~1 cm into the floor: a 15 mg leg carries a
sixth of a 0.9 g body, and the contact's regularisation grows with the load
over the leg's effective mass.

Slip: soft contacts let a loaded tarsus creep, and at friction 1 the
insect driven by its reference joint angles (servo targets = the walking
clips' angles, no learning) fell behind the reference thorax by 2-43 mm
over 2 s (4 held-out walks, 2 training ones; the fast tripod worst). With
friction 2 and ``impratio`` 10 (friction 10x stiffer than the normal
contact) the lag is 1.5-11 mm at the same cost per step (an elliptic cone
did as well at twice the cost).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.bodies import stick_insect_anatomy as anat

HERE = Path(__file__).resolve().parent
XML_FILE = HERE / "files" / "stick_insect.xml"
BODY_FILE = HERE / "files" / "stick_insect.yaml"
ROOT_BODY = "thorax"
#: Physics timestep (s) and integrator: see the module docstring.
TIMESTEP = 0.0005
#: A servo reaches its peak torque this far from its target (rad).
SATURATION_RAD = 0.25
#: Rotor-like inertia added to every leg hinge (kg m^2): a numerical device, see the module docstring.
ARMATURE = 3e-10
#: Floor contact of the tarsi: friction. The adhesive pads and claws hold far more than the weight
#: (stick insects' pads resist shear of several body weights); 2 keeps stance tarsi put while the
#: servos push (the module docstring: "Slip").
FRICTION = 2.0
#: Frictional-to-normal impedance ratio (MuJoCo's opt.impratio): stiffer friction, less creep.
IMPRATIO = 10.0
#: The tarsi's contact softness (solref time constant s, damping ratio; solimp), used over the floor's
#: (priority 1). MuJoCo's defaults let the insect sink ~1 cm: a light leg carries several times its
#: own weight, and the contact's regularisation grows with the load over the leg's effective mass.
SOLREF = (0.002, 1.0)
SOLIMP = (0.95, 0.99, 0.0002)


def _f(x: float) -> str:
    """A number as the XML writes it: 6 significant digits, no '-0'."""
    s = f"{float(x):.6g}"
    return "0" if s == "-0" else s


def _v(*xs) -> str:
    return " ".join(_f(x) for x in xs)


def _axis_quat(axis, angle: float) -> str:
    axis = np.asarray(axis, float)
    return _v(math.cos(angle / 2), *(math.sin(angle / 2) * axis))


def peak_torque(leg: str) -> float:
    """A servo's peak torque on ``leg`` (N m): the body's weight at the leg's length (femur + tibia)."""
    lengths = anat.LENGTHS[int(leg[1])]
    return anat.body_weight() * (lengths["femur"] + lengths["tibia"])


def _capsule(name: str, length: float, radius: float, mass: float, rgba: str, contact: bool = False) -> str:
    flags = 'contype="0" conaffinity="0"'
    if contact:
        flags = (
            f'contype="0" conaffinity="1" condim="3" priority="1" friction="{_f(FRICTION)} 0.005 0.0001" '
            f'solref="{_v(*SOLREF)}" solimp="{_v(*SOLIMP)}"'
        )
    return (
        f'<geom name="{name}" type="capsule" fromto="0 0 0 {_f(length)} 0 0" size="{_f(radius)}" '
        f'mass="{_f(mass)}" {flags} rgba="{rgba}"/>'
    )


def _joint(kind: str, leg: str, axis: str, ranges: dict) -> str:
    name = f"{kind}_{leg}"
    return f'<joint name="{name}" armature="{_f(ARMATURE)}" axis="{axis}" range="{_v(*ranges[kind])}"/>'


def _leg_xml(leg: str, indent: str) -> list[str]:
    """The body tree of one leg, its joint zeros at the standing posture."""
    n = int(leg[1])
    lengths = anat.LENGTHS[n]
    stand = anat.standing_angles(leg)
    ranges = anat.joint_ranges(leg)
    sign = anat.side_sign(leg)
    yaw = float(stand.yaw(leg))
    # Joint axes in each body's frame: x along the segment, z up in the leg plane.
    tc_axis = _v(0, 0, -sign)  # protraction turns the leg plane forward on both sides
    plane_axis = _v(0, -1, 0)  # levation / extension: the segment's x turns towards +z
    rgba = "0.55 0.5 0.3 1"
    seg = {s: (anat.segment_mass(s, n), anat.RADII[s]) for s in anat.SEGMENT_NAMES}
    i = indent
    lines = [
        f'{i}<body name="coxa_{leg}" pos="{_v(*anat.coxa_position(leg))}" quat="{_axis_quat((0, 0, 1), yaw)}">',
        f"{i}  " + _joint("tc", leg, tc_axis, ranges),
        f"{i}  " + _capsule(f"coxa_{leg}", lengths["coxa"], seg["coxa"][1], seg["coxa"][0], rgba),
        f'{i}  <body name="femur_{leg}" pos="{_f(lengths["coxa"])} 0 0" '
        f'quat="{_axis_quat((0, -1, 0), float(stand.elevation))}">',
        f"{i}    " + _joint("ctr", leg, plane_axis, ranges),
        f"{i}    " + _capsule(f"femur_{leg}", lengths["femur"], seg["femur"][1], seg["femur"][0], rgba),
        f'{i}    <body name="tibia_{leg}" pos="{_f(lengths["femur"])} 0 0" '
        f'quat="{_axis_quat((0, -1, 0), float(stand.femur_tibia) - math.pi)}">',
        f"{i}      " + _joint("fti", leg, plane_axis, ranges),
        f"{i}      " + _capsule(f"tibia_{leg}", lengths["tibia"], seg["tibia"][1], seg["tibia"][0], rgba),
        f'{i}      <body name="tarsus_{leg}" pos="{_f(lengths["tibia"])} 0 0">',
        f"{i}        "
        + _capsule(f"tarsus_{leg}", lengths["tarsus"], seg["tarsus"][1], seg["tarsus"][0], "0.4 0.3 0.2 1", True),
        f'{i}        <site name="tip_{leg}" pos="{_f(lengths["tarsus"])} 0 0" size="{_f(anat.RADII["tarsus"])}"/>',
        f"{i}      </body>",
        f"{i}    </body>",
        f"{i}  </body>",
        f"{i}</body>",
    ]
    return lines


def _part_geom(name: str, origin_x: float) -> str:
    x0, x1, mass, radius = anat.BODY_PARTS[name]
    return (
        f'<geom name="{name}" type="capsule" fromto="{_v(x0 - origin_x, 0, 0)} {_v(x1 - origin_x, 0, 0)}" '
        f'size="{_f(radius)}" mass="{_f(mass)}" contype="0" conaffinity="0" rgba="0.45 0.55 0.3 1"/>'
    )


def _xml(actuators: list[str]) -> str:
    head_x = anat.BODY_PARTS["head"][0]
    abdomen_x = anat.BODY_PARTS["abdomen"][1]
    lines = [
        "<!-- Generated by `python -m mimic_mjx.bodies.stick_insect --write`; do not edit by hand. -->",
        "<!-- Carausius morosus, adult female; SI units; sources in bodies/stick_insect_anatomy.py. -->",
        '<mujoco model="stick_insect">',
        '  <compiler angle="radian" autolimits="true"/>',
        f'  <option timestep="{_f(TIMESTEP)}" integrator="implicitfast" impratio="{_f(IMPRATIO)}"/>',
        "  <worldbody>",
        f'    <body name="{ROOT_BODY}" pos="0 0 {_f(anat.STANDING_HEIGHT - anat.COXA_POS[2][2])}">',
        '      <freejoint name="root"/>',
        "      " + _part_geom("prothorax", 0.0),
        "      " + _part_geom("mesothorax", 0.0),
        "      " + _part_geom("metathorax", 0.0),
        f'      <body name="head" pos="{_f(head_x)} 0 0">',
        "        " + _part_geom("head", head_x),
        "      </body>",
        f'      <body name="abdomen" pos="{_f(abdomen_x)} 0 0">',
        "        " + _part_geom("abdomen", abdomen_x),
        "      </body>",
    ]
    for leg in anat.LEGS:
        lines += _leg_xml(leg, "      ")
    lines += ["    </body>", "  </worldbody>"]
    if actuators:
        lines += ["  <actuator>", *(f"    {a}" for a in actuators), "  </actuator>"]
    lines += ["</mujoco>", ""]
    return "\n".join(lines)


def _actuators(model: mujoco.MjModel) -> list[str]:
    out = []
    for leg in anat.LEGS:
        peak = peak_torque(leg)
        kp = peak / SATURATION_RAD
        for j in anat.JOINTS:
            name = f"{j}_{leg}"
            joint = model.joint(name)
            inertia = float(model.dof_M0[joint.dofadr[0]])
            kv = 2.0 * math.sqrt(kp * inertia)
            lo, hi = joint.range
            out.append(
                f'<position name="{name}" joint="{name}" kp="{_f(kp)}" kv="{_f(kv)}" ctrlrange="{_v(lo, hi)}" '
                f'forcerange="{_v(-peak, peak)}"/>'
            )
    return out


def xml() -> str:
    """The stick insect's MJCF, as this module writes it (actuators sized on the compiled bare body)."""
    bare = mujoco.MjModel.from_xml_string(_xml([]))
    return _xml(_actuators(bare))


def builtin(name: str):
    """(body file, edit, one_model) of the built-in ``stick_insect`` (bodies/registry.py)."""
    if name != "stick_insect":
        raise ValueError(f"bodies.stick_insect builds 'stick_insect', not {name!r}")
    return BODY_FILE, None, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {XML_FILE}")
    args = parser.parse_args(argv)
    text = xml()
    if args.write:
        XML_FILE.write_text(text)
        print(f"wrote {XML_FILE}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
