"""C. elegans: a 24-segment worm with 95 body-wall muscles, written from published anatomy.

No installable package ships a worm model, so this module writes one
(``files/worm.xml``; ``python -m mimic_mjx.bodies.worm --write`` rewrites it,
and tests/test_worm.py checks the shipped file equals what this module
generates). The numbers and their sources are in bodies/worm_anatomy.py. Two
built-in bodies read the same XML through their body files:

* ``worm`` (``files/worm.yaml``): lying on its side on agar, under gravity,
  with anisotropic friction (see below);
* ``worm_liquid`` (``files/worm_liquid.yaml``): swimming in water, the floor
  and its contacts removed by :func:`liquid_setup`.

Units: metres, seconds and MILLIGRAMS. MuJoCo refuses a moving body whose
mass or inertia is below 1e-15 (mjMINVAL); a 42-um segment 80 um wide at
water density weighs ~2e-10 kg, and its inertia (~1e-19 kg m^2) fails to
compile in kg. In milligrams densities are in mg/m^3 (water: 1e9), forces in
uN (mg m/s^2), torques in uN m and power in uW. This is a change of units and
nothing else: every force (gravity, contact, friction, muscles, passive
stiffness, fluid) is written in the same units, so the motion is identical to
the SI model's (dynamic similarity). Reward and termination scales in metres
(the body's config) are unaffected; an energy cost would be per uW.

The body (rest pose: straight along -x from the head tip at the origin, the
dorsoventral plane parallel to the agar): ``seg01`` (head) .. ``seg24``
(tail), each a capsule (``segNN_capsule``) whose radius follows the profile
and whose axis lies at its own radius above the agar, so that all 24 rest on
it (the frames and hinges sit at the mid-body radius, 40 um up). Masses and
inertias are explicit (``<inertial>``): water density x the profile's volume
over each segment (overlapping capsules would count the joints twice). A free
joint ``root`` on ``seg01`` (its origin is the head tip). Between segment k
and k+1: ``dvKK`` (axis normal to the agar at rest; positive bends towards
dorsal, +y) and ``latKK`` (positive bends towards the left, +z, out of the
plane), each with the cuticle's passive stiffness and damping.

Armature: the worm lives at Reynolds number ~1e-2 (water) or below; its
segments' inertia (~1e-14 mg m^2 about a hinge) against a stiffness of ~1e-3
uN m/rad gives natural frequencies of ~1e5 rad/s that no practical timestep
resolves. Each hinge gets an armature (rotor inertia) that brings its
inertial time armature / damping to ~1 ms, still two orders below the
fastest motion (3-Hz swimming), so the hinges stay overdamped, as the animal
is, while the 1/900-s step resolves them. Root translation keeps the true mass.

Muscles: 95 MuJoCo muscles (``MDL01``.., ``MDR01``.., ``MVL01``..23,
``MVR01``..; MVL24 does not exist), each on a fixed tendon ``t_NAME`` over
the hinges next to its segment (one or two), coefficients = the moment arm
r / sqrt(2) at the hinge, signed so that a dorsal muscle shortens when the
body bends dorsally and a left one when it bends left. Length ranges are
explicit (the tendons' extremes over the joint ranges), so MuJoCo computes no
length ranges at compile time. Peak forces: see worm_anatomy.muscle_force.

Agar (anisotropic friction): each capsule touches the floor through an
explicit ``<contact><pair>`` with condim 3 and friction
``[FRICTION_ALONG, FRICTION_ACROSS, 0, 0, 0]`` = [0.1, 1.0, ...]: for a
capsule on a plane the contact frame's first tangent is the capsule's axis
(measured on C MuJoCo and on MJX, for any heading: tests/test_worm.py pushes
a capsule with half its weight; it slides along its axis and holds across).
Dynamic contacts are off (segments ``contype 0 / conaffinity 0``, the floor
``1 / 0``): the pairs are the only contacts, segment-floor only, no
self-contacts. The body file's ``contacts`` key cannot say anisotropic
friction, so :func:`agar_setup` (its ``edit``) undoes what that key switches
on. The friction cone is elliptic: with MuJoCo's default pyramidal cone MJX
(float32) let the resting worm's head jitter at 20-60 rad/s, against 1e-4 on
C MuJoCo; elliptic brings MJX to 0.1 rad/s. The normal load is the worm's
weight only (0.036 uN); on real agar a liquid film's surface tension presses
it down far harder, which this model leaves out. Contacts are scaled for an
80-um body: solimp width 5 um, margin 1 um, solref time constant 2.2 ms
(twice the step). Measured: a travelling wave of muscle activation (0.3 Hz,
wavelength 0.65 L, 15% activation) moves the worm forward along its body by
~0.3 mm in 2 s (slip ~25% of the wave speed): the anisotropy gives thrust.

Integrator: ``implicitfast``, so that hinge damping, the muscles'
force-velocity term and (in water) the viscous drag are integrated
implicitly; explicitly the drag on the root's tiny mass (viscous time ~0.3
ms) diverges at this step.

Liquid: MuJoCo's inertia-box fluid model (the default without ``fluidshape``,
the only one MJX implements) with water's density and viscosity, and no
gravity (the worm is about neutrally buoyant; its slow sinking is ignored).
MJX (MuJoCo 3.17) cannot run ``worm_liquid``: "implicitfast not implemented
for fluid drag", and with Euler it would need a step under ~0.3 ms; both worm
bodies train on ``native``. Thrust: that model's viscous term is an isotropic
Stokes drag per body, with no normal/tangential anisotropy, so undulation
produces no forward thrust. Measured (tests/test_worm.py): a muscle-driven
swimming wave (1.76 Hz, wavelength 1.54 L, bending 0.6 rad per hinge) moves
the worm's centroid 0.4 um per cycle along its body, against ~150 um a real
worm swims per cycle; it drifts sideways by ~11 um per cycle (the tapered
segments' unequal drag). Swimming clips' slow drift must therefore be
tracked with the root, not earned by the muscles.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import mujoco

from mimic_mjx.bodies import worm_anatomy as A

FILES = Path(__file__).resolve().parent / "files"
XML = FILES / "worm.xml"
BODY_FILES = {"worm": FILES / "worm.yaml", "worm_liquid": FILES / "worm_liquid.yaml"}
#: Clips at 30 Hz, 30 physics steps per frame.
TIMESTEP = 1.0 / 900.0
#: The hinges' inertial time armature / damping (s): see the module docstring.
INERTIAL_TIME_S = 1.0e-3
CONTACT_SOLREF = (2.0 * TIMESTEP, 1.0)
CONTACT_SOLIMP = (0.95, 0.99, 5e-6, 0.5, 2.0)
CONTACT_MARGIN = 1e-6


def _f(x: float) -> str:
    return f"{x:.6g}"


def _v(xs) -> str:
    return " ".join(_f(float(x)) for x in xs)


def hinge_names() -> list[str]:
    return [f"{kind}{j:02d}" for j in range(1, A.SEGMENTS) for kind in ("dv", "lat")]


def tendon_coefficients(quadrant: str, k: int) -> list[tuple[str, float]]:
    """(joint, coefficient) of the tendon of the quadrant's segment-``k`` muscle: its length change per rad."""
    dorsal, left = A.QUADRANT_SIDES[quadrant]
    out = []
    for j in (k - 1, k):
        if 1 <= j < A.SEGMENTS:
            arm = A.joint_radius(j) / math.sqrt(2.0)
            out += [(f"dv{j:02d}", -dorsal * arm), (f"lat{j:02d}", -left * arm)]
    return out


def _segment_xml(k: int, indent: str) -> list[str]:
    seg_len, H, r = A.segment_length(), A.MAX_RADIUS_M, A.segment_radius(k)
    mass = A.segment_mass_mg(k)
    front = -r if k == 1 else 0.0  # the head's cap ends at the tip (x = 0) ...
    rear = -(seg_len - r) if k == A.SEGMENTS else -seg_len  # ... the tail's at the body's end
    z = r - H  # the capsule rests on the agar
    ixx = mass * r * r / 2.0
    iyy = mass * (3 * r * r + seg_len * seg_len) / 12.0
    pos = "0 0 " + _f(H) if k == 1 else _v((-seg_len, 0, 0))
    lines = [f'{indent}<body name="seg{k:02d}" pos="{pos}">']
    if k > 1:
        j = k - 1
        stiff = A.bending_stiffness(j)
        damp = stiff * A.DAMPING_TIME_S
        arm = damp * INERTIAL_TIME_S
        common = f'stiffness="{_f(stiff)}" damping="{_f(damp)}" armature="{_f(arm)}"'
        dv_range = _v((-A.DV_RANGE_RAD, A.DV_RANGE_RAD))
        lines.append(f'{indent}  <joint name="dv{j:02d}" axis="0 0 -1" range="{dv_range}" {common}/>')
        lines.append(
            f'{indent}  <joint name="lat{j:02d}" axis="0 1 0" range="{_v((-A.LAT_RANGE_RAD, A.LAT_RANGE_RAD))}" '
            f"{common}/>"
        )
    lines.append(
        f'{indent}  <inertial pos="{_v((-seg_len / 2, 0, z))}" mass="{_f(mass)}" diaginertia="{_v((ixx, iyy, iyy))}"/>'
    )
    lines.append(
        f'{indent}  <geom name="seg{k:02d}_capsule" type="capsule" size="{_f(r)}" '
        f'fromto="{_v((front, 0, z, rear, 0, z))}"/>'
    )
    return lines


def worm_xml() -> str:
    """The worm's MJCF (agar scene): see the module docstring."""
    L, H = A.LENGTH_M, A.MAX_RADIUS_M
    out = [
        "<!-- C. elegans, written by mimic_mjx.bodies.worm (python -m mimic_mjx.bodies.worm --write); do not edit.",
        "     Units: metres, seconds and MILLIGRAMS (densities mg/m^3, forces uN, torques uN m): MuJoCo refuses",
        "     the inertia of a 42-um segment in kg. A change of units only: every force is in the same units, so",
        "     the motion equals the SI model's (dynamic similarity). Sources: mimic_mjx/bodies/worm_anatomy.py. -->",
        '<mujoco model="worm">',
        '  <compiler angle="radian" autolimits="true" inertiafromgeom="false"/>',
        f'  <option timestep="{_f(TIMESTEP)}" integrator="implicitfast" cone="elliptic" '
        f'gravity="0 0 {_f(-A.GRAVITY_M_S2)}" density="0" viscosity="0"/>',
        f'  <statistic extent="{_f(L)}" center="{_v((-L / 2, 0, H))}" meansize="{_f(A.segment_length())}"/>',
        "  <default>",
        '    <geom contype="0" conaffinity="0" condim="3" rgba="0.85 0.75 0.6 1"/>',
        '    <joint type="hinge" limited="true"/>',
        '    <muscle ctrllimited="true" ctrlrange="0 1"/>',
        "  </default>",
        "  <worldbody>",
        '    <light pos="0 0 0.01" dir="0 0 -1" directional="true"/>',
        f'    <geom name="floor" type="plane" size="{_v((20 * L, 20 * L, 0.1 * L))}" contype="1" conaffinity="0" '
        'rgba="0.8 0.75 0.55 1"/>',
    ]
    closing = []
    for k in range(1, A.SEGMENTS + 1):
        indent = "    " + "  " * (k - 1)
        out += _segment_xml(k, indent)
        if k == 1:
            out.append(f'{indent}  <freejoint name="root"/>')
        closing.insert(0, f"{indent}</body>")
    out += closing
    out.append("  </worldbody>")
    out.append("  <contact>")
    friction = _v((A.FRICTION_ALONG, A.FRICTION_ACROSS, 0.0, 0.0, 0.0))
    for k in range(1, A.SEGMENTS + 1):
        out.append(
            f'    <pair name="floor_seg{k:02d}" geom1="seg{k:02d}_capsule" geom2="floor" condim="3" '
            f'friction="{friction}" solref="{_v(CONTACT_SOLREF)}" solimp="{_v(CONTACT_SOLIMP)}" '
            f'margin="{_f(CONTACT_MARGIN)}"/>'
        )
    out.append("  </contact>")
    out.append("  <tendon>")
    for name, q, k in A.muscle_names():
        out.append(f'    <fixed name="t_{name}">')
        out += [f'      <joint joint="{j}" coef="{_f(c)}"/>' for j, c in tendon_coefficients(q, k)]
        out.append("    </fixed>")
    out.append("  </tendon>")
    out.append("  <actuator>")
    for name, q, k in A.muscle_names():
        ranges = {"dv": A.DV_RANGE_RAD, "lat": A.LAT_RANGE_RAD}
        span = sum(abs(c) * ranges[j[:-2]] for j, c in tendon_coefficients(q, k))
        out.append(
            f'    <muscle name="{name}" tendon="t_{name}" force="{_f(A.muscle_force(k))}" '
            f'lengthrange="{_v((-span, span))}"/>'
        )
    out.append("  </actuator>")
    out.append("</mujoco>")
    return "\n".join(out) + "\n"


def agar_setup(spec: mujoco.MjSpec, trainable: bool) -> None:
    """The agar scene's contacts: the explicit pairs only (see the module docstring)."""
    for geom in spec.geoms:
        if geom.name == "floor":
            geom.contype, geom.conaffinity = 1, 0
        else:
            geom.contype, geom.conaffinity = 0, 0


def liquid_setup(spec: mujoco.MjSpec, trainable: bool) -> None:
    """Water instead of agar: no floor or contacts, MuJoCo's inertia-box fluid model, no gravity."""
    for pair in list(spec.pairs):
        spec.delete(pair)
    floor = spec.geom("floor")
    if floor is not None:
        spec.delete(floor)
    for geom in spec.geoms:
        geom.contype, geom.conaffinity = 0, 0
    spec.option.density = A.WATER_DENSITY_MG_M3
    spec.option.viscosity = A.WATER_VISCOSITY_MG_M_S
    spec.option.gravity = (0.0, 0.0, 0.0)


def builtin(name: str):
    """(body file, edit, one_model) of the built-in body ``name`` (bodies/registry.py)."""
    if name == "worm":
        return BODY_FILES["worm"], agar_setup, False
    if name == "worm_liquid":
        return BODY_FILES["worm_liquid"], liquid_setup, False
    raise ValueError(f"no worm body named {name!r}; the worm bodies are {', '.join(BODY_FILES)}")


def centreline_offsets() -> list[tuple[str, str, tuple[float, float, float]]]:
    """The 49 centreline keypoints: (name, body, offset in the body's frame, m): head tip, then each
    segment's midpoint and rear end, on the capsule's axis."""
    seg_len, H = A.segment_length(), A.MAX_RADIUS_M
    out = [("cl00", "seg01", (0.0, 0.0, A.segment_radius(1) - H))]
    for k in range(1, A.SEGMENTS + 1):
        z = A.segment_radius(k) - H
        out.append((f"cl{2 * k - 1:02d}", f"seg{k:02d}", (-seg_len / 2, 0.0, z)))
        out.append((f"cl{2 * k:02d}", f"seg{k:02d}", (-seg_len, 0.0, z)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the worm's MJCF, files/worm.xml.")
    parser.add_argument("--write", action="store_true", help="rewrite files/worm.xml")
    args = parser.parse_args(argv)
    text = worm_xml()
    if args.write:
        XML.write_text(text)
        print(f"wrote {XML}")
        return 0
    same = XML.is_file() and XML.read_text() == text
    print(f"{XML} is {'up to date' if same else 'out of date: run with --write'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
