"""Musculoskeletal mouse forelimb: 4 hinges, 9 site-routed Hill-type muscles.

The kinematic tree reproduces the registered arm of the head-fixed reaching data
(track-mjx mouse arm): body offsets, body orientations and joint axes were
recovered by fitting the recorded body poses (`xpos`, `xquat`) of all 37 trials
against their `qpos`; the residual of that fit is below float32 precision, so a
clip's joint angles place our bodies exactly where the registration put them.
Shoulder to elbow is 6.8 mm, elbow to wrist 6.9 mm.

Muscle paths are our own: straight site-to-site tendons. Pulling each joint
both ways is not enough: at a quarter of the poses the reaches visit, the
first paths reached no torque at all along some combinations of shoulder
elevation and rotation, and a third of the reference frames asked for such a
torque. The shoulder insertions (on the humeral shaft, 0.3-0.7 mm from its
axis, 1-3.5 mm below the joint) and the origins were then chosen so that at
every pose of a grid over the reaches' joint ranges the muscles, at peak
force, reach over 0.1 mN m in every direction (``bodies.strength.weakest_torque``).
With MuJoCo's force-length curves they reach at least 50 uN m at every pose
the reaches visit (``tests/test_bodies.py``; docs/benchmarks.md). Masses sum
to about 1 g.
"""

from __future__ import annotations

import mujoco
import numpy as np

from mimic_mjx.quaternions import quat_rotate

JOINTS = ("sh_elv", "sh_extension", "sh_rotation", "elbow_joint")
# Degrees, from the registered arm.
JOINT_RANGES_DEG = {
    "sh_elv": (-70.0, 0.0),
    "sh_extension": (-70.0, 40.0),
    "sh_rotation": (-25.0, 89.0),
    "elbow_joint": (-80.0, 90.0),
}
MUSCLES = (
    "Pec_C",
    "Lat",
    "PD",
    "AD",
    "MD",
    "Triceps_Lateral",
    "Triceps_Long",
    "Brachialis",
    "Biceps_Long",
)

# Kinematic tree (metres, wxyz quaternions), recovered from the registration data.
_SCAPULA_POS = (-0.0001, -0.0001, 0.0005)
_SCAPULA_QUAT = (0.957662, -0.256604, -0.126079, 0.033783)
_MINUS_15_DEG_X = (float(np.cos(np.deg2rad(-7.5))), float(np.sin(np.deg2rad(-7.5))), 0.0, 0.0)
_HUMERUS_POS = (0.0, 0.0007, -0.0002)
_ULNA_POS = (-0.0005, 0.0003, -0.0068)
_RADIUS_POS = (0.00035, 0.0002, 0.0002)
_WRIST_POS = (-0.002, 0.0065, 0.0005)

# Maximum shortening velocity in optimal lengths per second. MuJoCo's default
# (1.5) suits slow human muscle; mouse fast-twitch muscle shortens at roughly
# 10-15 L0/s, and the recorded reaches need up to ~5 L0/s (95th percentile),
# which at 1.5 L0/s would leave the muscles without force mid-reach.
MUSCLE_VMAX = 15.0

# Segment masses (kg): about 1 g in total.
_MASS = {"scapula": 1.5e-4, "humerus": 4.5e-4, "ulna": 2.0e-4, "radius": 1.5e-4, "wrist_body": 5.0e-5}

# Muscle routing. Each entry: (origin body, origin point, insertion body,
# insertion point, peak force N). Points on the scapula are written in the
# humerus frame at zero joint angles ("shoulder frame", mm) and converted below,
# so the geometry is easy to reason about: the humerus shaft runs along -z, the
# elbow sits at (-0.5, 0.3, -6.8) mm. Points on the ulna are in the ulna frame
# (the forearm runs along +y from the elbow).
_MUSCLE_PATHS = {
    #               origin                      insertion
    "Pec_C": ("scapula", (3.7, 2.1, 1.9), "humerus", (0.25, -0.65, -3.4), 0.8),
    "Lat": ("scapula", (-0.1, -3.3, -1.7), "humerus", (0.7, 0.15, -1.0), 0.9),
    "PD": ("scapula", (1.1, -3.7, -0.9), "humerus", (-0.1, -0.7, -3.0), 0.5),
    "AD": ("scapula", (-1.1, 3.7, 2.1), "humerus", (-0.7, -0.05, -2.55), 0.5),
    "MD": ("scapula", (-3.7, 1.9, -0.7), "humerus", (0.05, 0.7, -1.0), 0.6),
    # Elbow: flexors insert on the forearm side, extensors behind the joint.
    "Triceps_Lateral": ("humerus", (-0.2, -0.5, -3.5), "ulna", (0.0, -0.6, 0.15), 1.2),
    "Triceps_Long": ("scapula", (-2.1, 0.5, -2.1), "ulna", (0.1, -0.6, 0.1), 0.9),
    "Brachialis": ("humerus", (0.1, 0.6, -4.2), "ulna", (0.0, 1.6, 0.35), 0.7),
    "Biceps_Long": ("scapula", (2.1, -0.1, -1.9), "ulna", (-0.1, 1.3, 0.4), 0.6),
}


def _shoulder_to_scapula(p_mm):
    """Convert a point from the zero-pose humerus frame (mm) to the scapula frame (m)."""
    return np.asarray(_HUMERUS_POS) + quat_rotate(_MINUS_15_DEG_X, np.asarray(p_mm) * 1e-3)


def build_spec() -> mujoco.MjSpec:
    """Return the forelimb as an editable ``mujoco.MjSpec``."""
    spec = mujoco.MjSpec()
    spec.modelname = "mouse_forelimb"
    spec.option.timestep = 0.001
    spec.option.gravity = (0.0, 0.0, -9.81)
    # Joint damping is integrated implicitly by Euler; it keeps a 1 g arm driven
    # by Newton-scale muscles stable at a 1 ms step.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_EULER
    spec.compiler.autolimits = True
    spec.compiler.degree = False  # all angles below are radians

    world = spec.worldbody
    world.add_light(pos=(0, -0.03, 0.03), dir=(0, 1, -1))
    ground = world.add_body(name="ground")
    clavicle = ground.add_body(name="clavicle")
    clavicle.add_geom(
        type=mujoco.mjtGeom.mjGEOM_SPHERE,
        size=(0.0004, 0, 0),
        rgba=(0.8, 0.7, 0.6, 1),
        contype=0,
        conaffinity=0,
        mass=0,
    )
    scapula = clavicle.add_body(name="scapula", pos=_SCAPULA_POS, quat=_SCAPULA_QUAT)
    scapula.add_geom(
        type=mujoco.mjtGeom.mjGEOM_SPHERE,
        size=(0.0006, 0, 0),
        rgba=(0.8, 0.7, 0.6, 1),
        contype=0,
        conaffinity=0,
        mass=_MASS["scapula"],
    )
    humerus = scapula.add_body(name="humerus", pos=_HUMERUS_POS, quat=_MINUS_15_DEG_X)
    for axis, name in zip(((0, 1, 0), (0, 0, 1), (1, 0, 0)), JOINTS[:3], strict=True):
        lo, hi = JOINT_RANGES_DEG[name]
        humerus.add_joint(
            name=name,
            type=mujoco.mjtJoint.mjJNT_HINGE,
            axis=axis,
            range=np.deg2rad((lo, hi)),
            damping=2e-6,
            armature=2e-8,
        )
    humerus.add_geom(
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        size=(0.0004, 0, 0),
        fromto=(0, 0, 0, *_ULNA_POS),
        rgba=(0.9, 0.8, 0.7, 1),
        contype=0,
        conaffinity=0,
        mass=_MASS["humerus"],
    )
    ulna = humerus.add_body(name="ulna", pos=_ULNA_POS, quat=_MINUS_15_DEG_X)
    lo, hi = JOINT_RANGES_DEG["elbow_joint"]
    ulna.add_joint(
        name="elbow_joint",
        type=mujoco.mjtJoint.mjJNT_HINGE,
        axis=(1, 0, 0),
        range=np.deg2rad((lo, hi)),
        damping=1e-6,
        armature=1e-8,
    )
    ulna.add_geom(
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        size=(0.0003, 0, 0),
        fromto=(0, 0, 0, *_RADIUS_POS),
        rgba=(0.9, 0.8, 0.7, 1),
        contype=0,
        conaffinity=0,
        mass=_MASS["ulna"],
    )
    ulna.add_body(name="elbow")
    radius = ulna.add_body(name="radius", pos=_RADIUS_POS)
    radius.add_geom(
        type=mujoco.mjtGeom.mjGEOM_CAPSULE,
        size=(0.0003, 0, 0),
        fromto=(0, 0, 0, *_WRIST_POS),
        rgba=(0.9, 0.8, 0.7, 1),
        contype=0,
        conaffinity=0,
        mass=_MASS["radius"],
    )
    wrist = radius.add_body(name="wrist_body", pos=_WRIST_POS)
    wrist.add_geom(
        type=mujoco.mjtGeom.mjGEOM_SPHERE,
        size=(0.0005, 0, 0),
        rgba=(0.9, 0.6, 0.6, 1),
        contype=0,
        conaffinity=0,
        mass=_MASS["wrist_body"],
    )
    wrist.add_site(name="wrist", size=(0.0003, 0, 0), rgba=(1, 0, 0, 1))

    bodies = {"scapula": scapula, "humerus": humerus, "ulna": ulna}
    for muscle, (ob, op, ib, ip, force) in _MUSCLE_PATHS.items():
        o_pos = _shoulder_to_scapula(op) if ob == "scapula" else np.asarray(op) * 1e-3
        bodies[ob].add_site(name=f"{muscle}_origin", pos=o_pos, size=(0.0001, 0, 0))
        bodies[ib].add_site(name=f"{muscle}_insertion", pos=np.asarray(ip) * 1e-3, size=(0.0001, 0, 0))
        tendon = spec.add_tendon(name=f"{muscle}_tendon", width=0.00008, rgba=(0.8, 0.2, 0.2, 1))
        tendon.wrap_site(f"{muscle}_origin")
        tendon.wrap_site(f"{muscle}_insertion")
        act = spec.add_actuator(name=muscle, target=f"{muscle}_tendon", trntype=mujoco.mjtTrn.mjTRN_TENDON)
        act.set_to_muscle(timeconst=[0.01, 0.04], tausmooth=0.0, range=[0.75, 1.05], force=force, vmax=MUSCLE_VMAX)
        act.ctrlrange = (0.0, 1.0)
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
    _set_length_ranges(spec)
    return spec


def _set_length_ranges(spec: mujoco.MjSpec, points_per_joint: int = 9) -> None:
    """Set each muscle's length range from a grid over the joint ranges.

    MuJoCo's simulation-based length-range estimate does not converge for a
    1 g arm with a 1 ms step; the geometric range over the reachable joint
    space is exact for straight site-to-site tendons and cheap to compute.
    """
    spec.compiler.LRopt.mode = mujoco.mjtLRMode.mjLRMODE_NONE
    model = spec.compile()
    data = mujoco.MjData(model)
    grids = np.meshgrid(*[np.linspace(*model.jnt_range[j], points_per_joint) for j in range(model.njnt)], indexing="ij")
    poses = np.stack([g.ravel() for g in grids], axis=1)
    lengths = np.empty((len(poses), model.nu))
    for i, q in enumerate(poses):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_tendon(model, data)
        lengths[i] = data.ten_length[model.actuator_trnid[:, 0]]
    for a, act in enumerate(spec.actuators):
        act.lengthrange = (float(lengths[:, a].min()), float(lengths[:, a].max()))
