"""C. elegans anatomy and mechanics: the numbers bodies/worm.py builds the worm from, with their sources.

Units are those of the worm's MJCF: metres, seconds and MILLIGRAMS (bodies/worm.py
explains why): densities in mg/m^3, forces in uN (mg m/s^2), torques in uN m.
Converting a literature value in SI: N -> x1e6 uN, N m -> x1e6 uN m, kg -> x1e6 mg.

Sources (numbers quoted as facts; "chosen" marks our own choices):

* Length ~1 mm, mid-body diameter ~80 um (adult hermaphrodite; WormAtlas,
  "Introduction to C. elegans anatomy"; Cohen & Ranner 2017, Phil. Trans. R.
  Soc. B, use L = 1 mm, R = 40 um).
* Radius profile: r(u) = R 2 sqrt((eps + u)(1 + eps - u)) / (1 + 2 eps), u = s / L
  in [0, 1] from the head (a prolate profile of the form Cohen & Ranner 2017
  use); eps = 0.05 is chosen (a head/tail tip radius of ~17 um, as the blunt nose looks).
* 24 rigid segments, one per row of body-wall muscle cells: 95 cells in four
  quadrants, MDL/MDR 24 each, MVR 24, MVL 23 (WormAtlas, "Muscle system - somatic
  muscle"; named by quadrant and row, MDL01 .. MVR24).
  Each quadrant lies between a dorsal or ventral chord and a lateral line, i.e.
  ~45 degrees from the dorsoventral plane: its moment arm is r/sqrt(2) about
  both bending axes.
* Density of water (1,000 kg/m^3 = 1e9 mg/m^3): the worm is close to neutrally
  buoyant (its density ~1.07 g/ml).
* Bending stiffness: EI = E pi r^4 / 4 with E = 110 kPa, the Young's modulus of
  adult worms from micropipette deflection (Backholm, Ryu & Dalnoki-Veress 2013,
  PNAS; the value as we read it: an order of magnitude); Fang-Yen et al. 2010
  (PNAS) found the body's elasticity of the same order; Sznitman et al. 2010 (Biophys J)
  fitted 3.8 kPa from swimming alone. A hinge between two segments of length l
  has stiffness EI / l (uN m/rad).
* Internal damping: the hinge damping is the stiffness times 0.1 s (chosen, of
  the order of 1 / (2 pi 1.76 Hz) ~ 0.09 s: Fang-Yen et al. 2010 model the body
  as viscoelastic, its internal viscosity mattering at swimming frequencies).
* Joint ranges: dorsoventral +-1.0 rad per 1/24 of the body = curvature up to
  24 per body length, what omega turns and coils reach (Stephens et al. 2008,
  PLoS Comput Biol: omega turns bring the head to the tail, kappa L
  ~ 20); out-of-plane +-0.3 rad (chosen: a worm on agar stays in its plane).
* Agar friction: the body slides along its axis far more easily than sideways;
  the normal/tangential drag ratio on wet agar is ~10 (Shen et al. 2012,
  Biophys J, "Undulatory locomotion of C. elegans on wet surfaces":
  c_n ~ 220, c_t ~ 22; Niebur & Erdos 1991, Biophys J: ratios 10-100).
  We use Coulomb friction 1.0 across and 0.1 along (ratio 10).
* Water: density 1,000 kg/m^3 (1e9 mg/m^3), viscosity 1 mPa s (1e3 mg/(m s)).
"""

from __future__ import annotations

import math

import numpy as np

LENGTH_M = 1.0e-3
MAX_RADIUS_M = 40e-6
PROFILE_EPS = 0.05
SEGMENTS = 24
QUADRANTS = ("MDL", "MDR", "MVL", "MVR")
#: Quadrant -> (sign of the dorsal side, sign of the left side): +1 dorsal/left, -1 ventral/right.
QUADRANT_SIDES = {"MDL": (1, 1), "MDR": (1, -1), "MVL": (-1, 1), "MVR": (-1, -1)}
#: MVL24 does not exist in the animal: 24 x 4 - 1 = 95 body-wall muscles.
ABSENT_MUSCLES = ("MVL24",)
WATER_DENSITY_MG_M3 = 1.0e9
WATER_VISCOSITY_MG_M_S = 1.0e3
YOUNGS_MODULUS_PA = 110e3
DAMPING_TIME_S = 0.1
DV_RANGE_RAD = 1.0
LAT_RANGE_RAD = 0.3
FRICTION_ACROSS = 1.0
FRICTION_ALONG = 0.1
GRAVITY_M_S2 = 9.81
#: Peak muscle force: chosen (no per-cell force is published) so that one quadrant's row at full
#: activation holds every hinge against its passive stiffness at this angle, 3x the largest
#: per-hinge angle the generator draws (curvature 12 per body length -> 0.5 rad per hinge).
MUSCLE_TARGET_ANGLE_RAD = 1.5


def segment_length() -> float:
    return LENGTH_M / SEGMENTS


def radius(s_m: np.ndarray | float) -> np.ndarray:
    """Body radius (m) at arc length ``s_m`` from the head tip (Cohen & Ranner 2017's profile)."""
    u = np.clip(np.asarray(s_m, float) / LENGTH_M, 0.0, 1.0)
    e = PROFILE_EPS
    return MAX_RADIUS_M * 2.0 * np.sqrt((e + u) * (1.0 + e - u)) / (1.0 + 2.0 * e)


def segment_radius(k: int) -> float:
    """Radius at the midpoint of segment ``k`` (1 = head .. 24 = tail)."""
    return float(radius((k - 0.5) * segment_length()))


def joint_radius(j: int) -> float:
    """Radius at hinge ``j`` (between segments j and j+1)."""
    return float(radius(j * segment_length()))


def segment_mass_mg(k: int, n: int = 200) -> float:
    """Mass (mg) of segment ``k``: water density x the volume of the profile over its length."""
    lo = (k - 1) * segment_length()
    s = lo + (np.arange(n) + 0.5) / n * segment_length()
    return float(WATER_DENSITY_MG_M3 * np.sum(math.pi * radius(s) ** 2) * segment_length() / n)


def bending_stiffness(j: int) -> float:
    """Hinge ``j``'s passive stiffness (uN m/rad): E pi r^4 / 4 / l, in the model's units."""
    ei_si = YOUNGS_MODULUS_PA * math.pi * joint_radius(j) ** 4 / 4.0  # N m^2
    return ei_si / segment_length() * 1e6  # N m -> uN m


def muscle_force(k: int) -> float:
    """Peak force (uN) of a segment-``k`` muscle: see :data:`MUSCLE_TARGET_ANGLE_RAD`.

    A hinge is spanned by two muscles of each quadrant (its two segments), each with
    moment arm r / sqrt(2): the row's torque is sqrt(2) F r, set equal to stiffness x angle.
    """
    j = min(max(k, 1), SEGMENTS - 1)
    r = joint_radius(j)
    return bending_stiffness(j) * MUSCLE_TARGET_ANGLE_RAD / (math.sqrt(2.0) * r)


def muscle_names() -> list[tuple[str, str, int]]:
    """(name, quadrant, segment) of the 95 body-wall muscles, quadrant by quadrant."""
    out = []
    for q in QUADRANTS:
        for k in range(1, SEGMENTS + 1):
            name = f"{q}{k:02d}"
            if name not in ABSENT_MUSCLES:
                out.append((name, q, k))
    return out
