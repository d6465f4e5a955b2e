"""Rat: what bodies/files/rat.yaml cannot say, the measurements behind it, and the rat's variants.

The built-in rat is the body file ``bodies/files/rat.yaml`` (registered as
``rat`` by bodies/registry.py): dm_control's rodent walker at scale 0.9, a
free root, a floor, its own actuators, the stac-mjx rat23 keypoint map, paw
contacts and CG 6/6 for training. This module keeps the floor's drawn size
(:func:`finish`, so the compiled model stays byte for byte what it was), the
torque-actuated and re-scaled variants, and the reasons for the file's values.

The model file is ``dm_control/locomotion/walkers/assets/rodent.xml`` of the
installed dm_control; we read it in place (never copy it), so its skin file
``rodent_walker_skin.skn`` resolves through the XML's own ``meshdir="./"``,
relative to the XML's directory. It includes no other files and no meshes.

What the XML alone gives, compiled with MuJoCo (3.17): 67 hinges, nq = nv = 67,
38 position-style ``general`` actuators (8 on fixed tendons coupling the spine,
neck and tail joints, 30 on single joints, all with gear 1), 65 bodies
(``torso`` and its subtree), total mass 0.338 kg, no keyframes, no floor.
dm_control makes the rat free-floating only when a walker is attached to an
arena: the arena wraps it in an attachment frame that carries a free joint.
We reproduce that by putting a free joint named ``root`` directly on ``torso``
(as stac-mjx's own copy of this rodent does), which gives nq = 7 + 67 = 74,
nv = 6 + 67 = 73 and leaves the torso's authored position, (0.031, 0, 0.065) m,
as the default root position. The body file then adds a plane named
``floor`` at z = 0, because the XML has none and training needs one.

Scale. The dm_control rodent is a rat of about 0.34 kg whose default pose puts
the torso origin 6.5 cm above the ground. stac-mjx registers real rat DANNCE
recordings (the ``rodent/`` data in the shared data set come from its test data)
onto this same model shrunk by ``SCALE_FACTOR: 0.9`` (configs/model/rodent.yaml
of talmolab/stac-mjx; the keypoints are in millimetres there, hence
``MOCAP_SCALE_FACTOR: 0.001``). The body file therefore says ``scale: 0.9`` so
the rat has the proportions those recordings were fitted with.

How scaling is done (bodies/scaling.py, shared with body files; uniform about the world origin, factor s):
  * lengths are multiplied by s: body, geom, site, joint, camera and light
    positions, geom and site sizes, ``fromto`` segments, mesh scales, the skin's
    vertices and bind positions, and the model's mean size statistic;
  * masses come from geom volumes times the authored densities, so they shrink
    as s**3 and the computed inertias as s**5 without touching the densities;
    explicitly given masses / inertias (none in this XML, handled anyway) are
    scaled by s**3 / s**5 to stay consistent;
  * angles are unchanged: joint ranges, axes, orientations, the fixed tendons
    (which combine joint angles, not lengths) and their ranges;
  * actuators, joint stiffness/damping/armature are kept as authored. They act
    on angles, so scaling lengths does not change their meaning; the smaller rat
    is somewhat stronger relative to its own weight (gravity torques drop as
    s**4), which is the conservative direction for tracking.
stac-mjx's own rescale helper (stac_mjx/rescale.py) also scales body positions,
geom sizes and positions and mesh scales, and in addition multiplies actuator
gears by s**2 (a muscle cross-section argument) and keyframe heights by s. It
leaves joint positions, sites, cameras and the skin alone; we scale those too,
so that off-centre spine/neck joint axes, sensor sites and the rendered surface
stay attached to the shrunken bones. We keep the gears at 1 (see above), so at
s = 0.9 our actuators are 1/0.81 times as strong as stac-mjx's scaled copy;
pose fitting, the use stac-mjx makes of its copy, does not depend on forces.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.bodies.assets import dm_control_walker_asset
from mimic_mjx.bodies.bodyfile import read_settings
from mimic_mjx.bodies.mjcf import FLOOR, SOLVERS, build
from mimic_mjx.errors import BodyError

#: The built-in rat's body file.
FILE = Path(__file__).resolve().parent / "files" / "rat.yaml"
ROOT_BODY = "torso"
ROOT_JOINT = "root"
#: Figures of the unscaled XML (checked by tests/test_rat_body.py).
N_HINGES = 67
N_ACTUATORS = 38
#: The floor's drawn size (half-lengths, m) since the rat was first built; a body file's floor
#: follows the body's extent instead. Only drawing uses it, but it is part of the compiled model
#: and so of the body hash that clips and runs record.
FLOOR_SIZE = (2.0, 2.0, 0.05)


def rodent_xml_path() -> Path:
    """Path of dm_control's rodent walker XML inside the installed package."""
    return dm_control_walker_asset("rodent.xml", "rat")


def load_raw_spec() -> mujoco.MjSpec:
    """dm_control's rodent exactly as authored: no root joint, no floor, unscaled."""
    return mujoco.MjSpec.from_file(str(rodent_xml_path()))


def finish(spec: mujoco.MjSpec, trainable: bool) -> None:
    """What rat.yaml cannot say, applied to both variants: the floor's size."""
    spec.geom(FLOOR).size = FLOOR_SIZE


def build_spec(scale: float | None = None) -> mujoco.MjSpec:
    """The registration rat (rat.yaml) as an editable spec; ``scale`` replaces the file's 0.9 when given."""
    bf, settings = read_settings(FILE, edit=finish)
    return build(settings, bf.scale if scale is None else float(scale))


# --------------------------------------------------------------------------
# Trainable rat: the registration rat made cheap and robust to simulate.
# --------------------------------------------------------------------------

ACTUATIONS = ("position", "torque")
#: Peak torques (N m) that replace dm_control's ``forcerange[1]`` in the torque
#: variant. dm_control authors 20 N m for the three lumbar tendons (which act on
#: vertebrae with 1e-5 armature); as motors driven by random controls, that made
#: 63-64 of 64 CG rollouts diverge at every iteration count up to 10/6, while
#: with 1 N m CG 8/6 and 10/6 had no failure (table below). The authored position
#: servos never need more there: under random controls (Newton, 8 x 1 s) their
#: lumbar forces have a median of 0.4-0.5 N m, a 99th percentile of 1.1-1.7 N m
#: and a maximum of 3 N m. 1 N m is still 3x the strongest limb actuator (hip
#: extension, 0.3 N m) and far above the lumbar joints' passive spring torques
#: (stiffness 0.02-0.03 N m/rad over ranges of at most 0.8 rad).
TORQUE_PEAK_OVERRIDES = {"lumbar_extend": 1.0, "lumbar_bend": 1.0, "lumbar_twist": 1.0}

# Physics timestep of the trainable rat: 2 ms (rat.yaml). dm_control's rodent
# tasks step physics at 1 ms (basic_rodent_2020.py, control every 20 ms);
# MuJoCo's default (and the registration rat's) is 2 ms. 2 ms halves the cost
# of simulated time and was stable in the measurements below.
#
# Solver choice, on evidence. C MuJoCo 3.17 (mujoco.rollout, 2 threads, on a
# 2-core CPU shared with another job, so speeds are +-15%), the rat of
# build_trainable_spec (scale 0.9, paws-only contacts, 2 ms step). Per config:
# 64 rollouts of 1 s (500 steps) from qpos0 with N(0, 0.02 rad) noise on every
# hinge, controls uniform in [-1, 1] held for 10 ms (5 steps), seeds 0/1/2.
# "bad" = rollouts that hit NaN/Inf, were reset by MuJoCo's bad-acceleration
# guard (time jumps back) or exploded (max |qvel| > 1000). "vel" = median over
# rollouts of the largest |qvel| (rad/s, m/s): it matches the converged
# Newton 100/50 value once the solver is accurate enough. tests/
# test_large_bodies.py holds the measuring function (_rollout_stats).
#
#   position actuation          bad (of 64)   steps/s   vel
#   Newton  1 / 4               62             (diverges)
#   Newton  2 / 4               11             -         305
#   Newton  3 / 4                0             14.2k      73.1
#   CG      4 / 4                0 / 0 / 1     17.8k     121 / 96 / 117
#   CG      4 / 6                0 / 0 / 0     17.8k      91 / 103 / 97
#   CG      6 / 4                0 / 0 / 0     15.4k      73.5
#   CG      6 / 6  <- default    0 / 0 / 0     16.0k      73.4
#   CG      8 / 4                0             14.6k      73.0
#   CG      8 / 6                0             14.5k      73.0
#   CG     10 / 4                0             13.4k      72.8
#   CG     10 / 6                0             13.3k      72.8
#   Newton 100 / 50 (reference)  0 / 0 / 0     14.0k      72.8
#
#   torque actuation            bad (of 64)   steps/s   vel
#   Newton  1 / 4, 2 / 4        64, 64         (diverge)
#   Newton  3 / 4               38             -
#   Newton  4 / 4                0 / 1 / 1     11.7k      96
#   CG      4 / 4, 4 / 6        54, 32         -
#   CG      6 / 4               22             -
#   CG      6 / 6                3 / 2 / 3     13.4k     357
#   CG      8 / 4                9 / 6 / 3     12.6k     382
#   CG      8 / 6  <- default    0 / 0 / 0     11.8k     241
#   CG     10 / 4                0 / 3 / 1     10.8k     267
#   CG     10 / 6                0 / 0 / 0     10.9k     172
#   Newton 100 / 50 (reference)  0 / 0 / 0     11.2k      30
#   (with dm_control's 20 N m lumbar torques, every CG setting up to 10 / 6
#   diverged in 63-64 of 64 rollouts; Newton 100 / 50 in none.)
#
# Position control: every CG setting is stable; 4 iterations leave the
# dynamics visibly unconverged (peak speeds 25-65% above the reference) and
# CG 4/4 had a failure, so the default is CG 6/6, the cheapest setting that
# matches the reference, with 2 line-search iterations of margin over 6/4
# (MJX runs in float32). Torque control is much harder on the solver: random
# torques slam joints into their limits; CG 8/6 is the cheapest setting with
# no failure in 192 rollouts, but its dynamics are still far from converged
# (peak speeds 8x the reference), so use Newton with many iterations where
# accuracy matters (evaluation). Newton with 1-3 iterations is NOT a fast safe
# choice for this body in C MuJoCo.
#: CG (iterations, ls_iterations) of the torque variant, from the table above
#: (position actuation: rat.yaml's CG 6/6).
TORQUE_ITERATIONS = (8, 6)


def build_trainable_spec(
    scale: float | None = None,
    actuation: str = "position",
    solver: str = "cg",
    iterations: int | None = None,
    ls_iterations: int | None = None,
    timestep: float | None = None,
) -> mujoco.MjSpec:
    """The trainable rat (rat.yaml's trainable variant), or a variant of it.

    Same bodies, joints, actuator names and order, keypoint sites and scale as
    the registration rat (so registered clips bind by name); differences:

    * contacts: only the 16 paw geoms collide, and only with the floor (paws
      ``contype 0 / conaffinity 1``, floor ``1 / 0``, everything else ``0 / 0``;
      bodies/mjcf.py ``keep_contacts``). The tail and torso therefore pass
      through the floor; an episode in which the rat falls must end on a
      height/tracking criterion. Contact parameters stay dm_control's (paws:
      solref 5 ms, condim 3, friction 1.5). The very light toes sink deep into
      the floor under their servos: landing from qpos0 a toe capsule reaches
      14 mm below the floor for a few steps (~1 mm at rest), with any solver
      and in the registration rat as well;
    * actuation (``actuation``):

      - ``"position"`` (default): dm_control's actuators as authored. Each of
        the 38 ``general`` actuators (30 on hinges, 8 on the fixed tendons
        that couple the lumbar, cervical and caudal joints) is an affine
        position servo ``force = g*act + b0 - kp*length`` whose target
        ``(g*act + b0)/kp`` sweeps the joint's (or tendon's) range as the
        control goes from -1 to 1; ``act`` follows the control through a
        first-order filter with a 40 ms time constant (dm_control's
        ``dyntype="filter"``, so ``data.act`` is part of the state, na = 38).
        The XML leaves ``forcelimited`` false, so ``forcerange`` is inactive;
      - ``"torque"``: dm_control's own ``Rat(torque_actuators=True)``
        conversion: ``gain = forcerange[1]``, no bias term, so
        ``force = forcerange[1] * act`` (act in [-1, 1], same 40 ms filter). The
        peak torque of each actuator is the force range dm_control authored
        for it (0.025-0.3 N m on limb joints, 20 N m on the cervical tendons,
        0.1 N m on the tail), except the lumbar tendons, lowered from 20 to
        1 N m (:data:`TORQUE_PEAK_OVERRIDES`, needed for stability);

      gear stays 1 and gains stay as authored at every scale;
    * solver: ``solver`` (``"cg"`` or ``"newton"``) with ``iterations`` /
      ``ls_iterations``; by default rat.yaml's CG 6/6 for position and CG 8/6
      for torque actuation (:data:`TORQUE_ITERATIONS`), chosen on the
      measurements above;
    * ``timestep``: rat.yaml's 2 ms unless given.
    """
    if actuation not in ACTUATIONS:
        raise BodyError(f"rat actuation must be one of {', '.join(ACTUATIONS)}, got {actuation!r}")
    if solver not in SOLVERS:
        raise BodyError(f"rat solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    bf, settings = read_settings(FILE, edit=finish)
    _, default_it, default_ls = bf.solver
    if actuation == "torque":
        default_it, default_ls = TORQUE_ITERATIONS
    iterations = default_it if iterations is None else iterations
    ls_iterations = default_ls if ls_iterations is None else ls_iterations
    if int(iterations) < 1 or int(ls_iterations) < 1:
        raise BodyError(f"solver iterations must be >= 1, got {iterations}/{ls_iterations}")
    if timestep is not None and not (np.isfinite(timestep) and timestep > 0):
        raise BodyError(f"timestep must be a positive number, got {timestep!r}")
    spec = build(settings, bf.scale if scale is None else float(scale), trainable=True)
    if timestep is not None:
        spec.option.timestep = float(timestep)
    spec.option.solver = SOLVERS[solver]
    spec.option.iterations = int(iterations)
    spec.option.ls_iterations = int(ls_iterations)
    if actuation == "torque":
        for act in spec.actuators:
            # dm_control's walkers/rodent.py, torque_actuators=True, except
            # for the lumbar tendons (see TORQUE_PEAK_OVERRIDES).
            gain = np.zeros_like(np.asarray(act.gainprm))
            gain[0] = TORQUE_PEAK_OVERRIDES.get(act.name, act.forcerange[1])
            act.gainprm = gain
            act.biastype = mujoco.mjtBias.mjBIAS_NONE
            act.biasprm = np.zeros_like(np.asarray(act.biasprm))
    return spec
