"""The stick insect's numbers and leg geometry: morphometry, standing posture, joint ranges, leg IK.

The animal is an adult female *Carausius morosus* (Indian stick insect), the
standard animal of insect walking research. Units are SI (m, kg, s); angles
in radians unless a name says ``_deg``.

Body (x forward, y left, z up; x = 0 at the middle coxae)
---------------------------------------------------------
Body length (head to abdomen tip) 76 mm and mass 0.89 g: adult females are
7-8 cm long and weigh about 0.8-1 g (Cruse 1976, "The function of the legs in
the free walking stick insect, *Carausius morosus*", J Comp Physiol
112:235-262; the morphometry of Theunissen et al. 2015, PLoS ONE, and Duerr
et al. 2018). Leg insertions: front coxae 20 mm in front of
the middle ones, hind coxae 12 mm behind them (the long mesothorax; rounded
from the cited morphometry). Rigid parts on the thorax (``thorax`` is one
body; ``head`` and ``abdomen`` are jointless child bodies so that keypoints
and tracking can name them):

=============  ==============  =========  ===========
part           x extent (mm)   mass (mg)  radius (mm)
=============  ==============  =========  ===========
head           23.5 .. 28.0    30         1.2
prothorax      20.0 .. 23.5    20         1.0
mesothorax      1.0 .. 20.0    230        1.3
metathorax    -12.0 .. 1.0     170        1.4
abdomen       -48.0 .. -12.0   350        1.5
=============  ==============  =========  ===========

Legs (per side; lengths in mm, masses in mg)
--------------------------------------------
Segment lengths are rounded (0.5 mm) to the order of the morphometry in
Cruse 1976 and Theunissen et al. 2015 / Duerr et al. 2018 (front legs longest,
middle legs shortest); the five tarsomeres and the pretarsus are lumped into
one rigid ``tarsus`` segment continuing the tibia (no tibia-tarsus joint).
Masses are estimates, not measurements: 2 mg per coxa, 0.65 mg/mm of femur,
0.30 mg/mm of tibia and 0.15 mg/mm of tarsus (solid cylinders of cuticle and
muscle of the segments' widths at ~1.1 g/cm^3, filled to about 70%), giving
legs of 14-17 mg, 10% of the body mass together.

====  ======  ======  ======  =======  =====  =====  =====  ======  =====
leg   coxa    femur   tibia   tarsus   coxa   femur  tibia  tarsus  leg
      (mm)    (mm)    (mm)    (mm)     (mg)   (mg)   (mg)   (mg)    (mg)
====  ======  ======  ======  =======  =====  =====  =====  ======  =====
1     1.6     15.0    14.0    6.5      2.0    9.75   4.20   0.975   16.9
2     1.4     11.5    11.0    5.5      2.0    7.48   3.30   0.825   13.6
3     1.4     13.0    13.0    6.0      2.0    8.45   3.90   0.900   15.3
====  ======  ======  ======  =======  =====  =====  =====  ======  =====

These values are rounded to the order of the cited sources (their tables were
not at hand when the model was written): refine them against the tables. The
whole insect's centre of mass lies 8.4 mm behind the middle coxae, between
the middle and the hind ones and close to the latter.

Radii (capsules): coxa 0.6 mm, femur 0.5 mm, tibia 0.3 mm, tarsus 0.25 mm.
The tarsus's radius is a floor, not a measurement: thinner and lighter
segments compile (MuJoCo refuses principal inertias below 1e-15 kg m^2; the
smallest here, the tarsus's about its own axis, is ~3e-14) but contacts of a
thinner capsule need a smaller timestep.

Joints and standing posture
---------------------------
Each leg has three hinges, their zero the standing posture (so zero controls
of the position servos hold the insect standing): ``tc`` (thorax-coxa,
protraction +, about the vertical: a simplification of the tilted axis),
``ctr`` (coxa-trochanter, levation +, horizontal axis perpendicular to the
leg plane; the trochantero-femoral joint is nearly immobile in *Carausius*
and is fused with it) and ``fti`` (femur-tibia, extension +, parallel to
``ctr``). The leg is then planar (femur and tibia in a vertical plane through
the thorax-coxa joint) and :func:`leg_ik` solves it in closed form.

Standing: the coxae 10 mm above the floor (walking *Carausius* hold the
body about 1 cm high, the order Cruse 1976 reports) and the tarsus tips at the positions of
:data:`FOOT_FROM_COXA` (front tarsi ahead of their coxae, hind ones behind:
the typical standing and mid-stance positions of Cruse 1976 and Theunissen
et al. 2015, rounded). The anatomical joint ranges (:data:`RANGES_DEG`,
protraction from the perpendicular to the body axis, femur elevation above
the horizontal, femur-tibia angle with 180 deg = straight) enclose the
walking excursions of Cruse & Bartling 1995 (J Insect Physiol 41:761-771)
and Theunissen et al. 2015 with a margin; they are rounded, not measured
limits of motion.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

GRAVITY = 9.81
SIDES = ("L", "R")
SEGMENTS = (1, 2, 3)
#: Legs in the generator's order.
LEGS = tuple(f"{s}{i}" for s in SIDES for i in SEGMENTS)
BODY_LENGTH = 0.076  # m, head tip to abdomen tip
#: Height of the thorax-coxa joints above the floor when standing (m).
STANDING_HEIGHT = 0.010
#: Rigid body parts: name -> (x_start, x_end, mass, radius), m and kg.
BODY_PARTS = {
    "head": (0.0235, 0.028, 30e-6, 0.0012),
    "prothorax": (0.020, 0.0235, 20e-6, 0.0010),
    "mesothorax": (0.001, 0.020, 230e-6, 0.0013),
    "metathorax": (-0.012, 0.001, 170e-6, 0.0014),
    "abdomen": (-0.048, -0.012, 350e-6, 0.0015),
}
SEGMENT_NAMES = ("coxa", "femur", "tibia", "tarsus")
RADII = {"coxa": 0.0006, "femur": 0.0005, "tibia": 0.0003, "tarsus": 0.00025}
#: Mass per length of the long segments (kg/m) and the coxa's mass (kg).
LINEAR_DENSITY = {"femur": 0.65e-3, "tibia": 0.30e-3, "tarsus": 0.15e-3}
COXA_MASS = 2.0e-6
#: Segment lengths (m) by leg segment number (1 front, 2 middle, 3 hind).
LENGTHS = {
    1: {"coxa": 0.0016, "femur": 0.0150, "tibia": 0.0140, "tarsus": 0.0065},
    2: {"coxa": 0.0014, "femur": 0.0115, "tibia": 0.0110, "tarsus": 0.0055},
    3: {"coxa": 0.0014, "femur": 0.0130, "tibia": 0.0130, "tarsus": 0.0060},
}
#: Thorax-coxa joint, left side (x, |y|, z) in the thorax frame (m); the right side mirrors y.
COXA_POS = {1: (0.020, 0.0012, -0.0005), 2: (0.0, 0.0013, -0.0005), 3: (-0.012, 0.0014, -0.0005)}
#: Standing tarsus tip relative to its thorax-coxa joint, left side (x, |y|) in m.
FOOT_FROM_COXA = {1: (0.010, 0.017), 2: (0.0, 0.019), 3: (-0.009, 0.017)}
#: Anatomical ranges (deg): protraction (tc), femur elevation (ctr), femur-tibia angle (fti).
RANGES_DEG = {
    1: {"tc": (-20.0, 90.0), "ctr": (-30.0, 80.0), "fti": (30.0, 170.0)},
    2: {"tc": (-60.0, 60.0), "ctr": (-30.0, 80.0), "fti": (30.0, 170.0)},
    3: {"tc": (-80.0, 40.0), "ctr": (-30.0, 80.0), "fti": (30.0, 170.0)},
}
JOINTS = ("tc", "ctr", "fti")


def segment_mass(segment: str, number: int) -> float:
    """Mass (kg) of one leg segment of leg pair ``number``."""
    if segment == "coxa":
        return COXA_MASS
    return LINEAR_DENSITY[segment] * LENGTHS[number][segment]


def leg_mass(number: int) -> float:
    return sum(segment_mass(s, number) for s in SEGMENT_NAMES)


def total_mass() -> float:
    return sum(p[2] for p in BODY_PARTS.values()) + 2 * sum(leg_mass(i) for i in SEGMENTS)


def body_weight() -> float:
    """The whole insect's weight (N)."""
    return total_mass() * GRAVITY


def side_sign(leg: str) -> float:
    return 1.0 if leg[0] == "L" else -1.0


def coxa_position(leg: str) -> np.ndarray:
    """The thorax-coxa joint of ``leg`` in the thorax frame (m)."""
    x, y, z = COXA_POS[int(leg[1])]
    return np.array([x, side_sign(leg) * y, z])


def standing_foot(leg: str) -> np.ndarray:
    """The standing tarsus tip of ``leg`` in the thorax frame (m): its capsule end touches the floor."""
    c = coxa_position(leg)
    dx, dy = FOOT_FROM_COXA[int(leg[1])]
    z = -STANDING_HEIGHT + RADII["tarsus"]  # the tip's centre one radius above the floor
    return np.array([c[0] + dx, c[1] + side_sign(leg) * dy, c[2] + z])


@dataclasses.dataclass(frozen=True)
class LegAngles:
    """Anatomical angles of one leg (rad): protraction, femur elevation, femur-tibia angle."""

    protraction: np.ndarray | float
    elevation: np.ndarray | float
    femur_tibia: np.ndarray | float

    def yaw(self, leg: str):
        """Heading of the leg plane in the thorax frame (rad from +x towards +y)."""
        return side_sign(leg) * (math.pi / 2 - np.asarray(self.protraction))


def leg_ik(leg: str, tip: np.ndarray) -> LegAngles:
    """Anatomical angles that put ``leg``'s tarsus tip at ``tip`` (thorax frame, m; (..., 3)), knee up.

    Closed form: the leg plane's heading from the tip's horizontal direction
    seen from the thorax-coxa joint, then a two-link planar solution (femur;
    tibia plus tarsus) from the coxa's end. Raises ValueError if out of reach.
    """
    n = int(leg[1])
    lengths = LENGTHS[n]
    d = np.asarray(tip, float) - coxa_position(leg)
    yaw = np.arctan2(d[..., 1], d[..., 0])
    r = np.hypot(d[..., 0], d[..., 1]) - lengths["coxa"]
    z = d[..., 2]
    lf, ld = lengths["femur"], lengths["tibia"] + lengths["tarsus"]
    dist = np.hypot(r, z)
    if np.any(dist >= lf + ld) or np.any(dist <= abs(lf - ld)):
        raise ValueError(f"leg {leg}: target out of reach ({dist.min():.4f}-{dist.max():.4f} m from the femur base)")
    gamma = np.arccos(np.clip((lf**2 + ld**2 - dist**2) / (2 * lf * ld), -1, 1))
    delta = np.arccos(np.clip((lf**2 + dist**2 - ld**2) / (2 * lf * dist), -1, 1))
    elevation = np.arctan2(z, r) + delta
    protraction = math.pi / 2 - side_sign(leg) * yaw
    return LegAngles(protraction, elevation, gamma)


def standing_angles(leg: str) -> LegAngles:
    return leg_ik(leg, standing_foot(leg))


def joint_ranges(leg: str) -> dict[str, tuple[float, float]]:
    """Joint ranges of ``leg`` (rad) relative to the standing posture (the joints' zero)."""
    stand = standing_angles(leg)
    zero = {"tc": stand.protraction, "ctr": stand.elevation, "fti": stand.femur_tibia}
    return {j: tuple(math.radians(a) - float(zero[j]) for a in RANGES_DEG[int(leg[1])][j]) for j in JOINTS}


def joint_angles(leg: str, tip: np.ndarray) -> np.ndarray:
    """(..., 3) joint angles (tc, ctr, fti) of ``leg`` (zero = standing) putting its tarsus tip at ``tip``."""
    a, s = leg_ik(leg, tip), standing_angles(leg)
    return np.stack([a.protraction - s.protraction, a.elevation - s.elevation, a.femur_tibia - s.femur_tibia], axis=-1)
