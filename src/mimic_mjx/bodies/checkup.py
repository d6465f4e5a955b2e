"""What a newcomer needs to know about a body before training it (``mimic bodies check``).

Facts (degrees of freedom, root kind, actuators by kind, total mass,
keypoints, joint ranges, the contacts the trainable variant keeps), a 1-s
passive stability test of the trainable model at its own timestep on MuJoCo's
C engine and, where MJX supports the model, on MJX, and the raw physics
throughput of one C world. ``problems`` holds one line per thing that would
stop or spoil training; the CLI exits 1 when there is any.

"Passive": zero controls (position servos hold their zero target, motors push
nothing) from the rest pose. The run fails when a state turns non-finite, when
MuJoCo warns (it resets the state on a diverging acceleration), or when a
speed passes what no body reaches without exploding: ``MAX_ANGULAR_RAD_S`` on
a rotational degree of freedom, and on a translational one ten times the speed
of a second's free fall plus a hundred body lengths per second (both scale
with the model's units and size).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time

import mujoco
import numpy as np

from mimic_mjx.bodies.model import BodyModel

MAX_ANGULAR_RAD_S = 1000.0
PASSIVE_SECONDS = 1.0
THROUGHPUT_SECONDS = 0.3  # wall time spent timing one C world

_FREE, _BALL, _SLIDE = (
    int(t) for t in (mujoco.mjtJoint.mjJNT_FREE, mujoco.mjtJoint.mjJNT_BALL, mujoco.mjtJoint.mjJNT_SLIDE)
)


@dataclasses.dataclass
class PassiveRun:
    backend: str
    stable: bool | None  # None: not run (reason in detail)
    detail: str
    max_angular_rad_s: float = float("nan")
    max_linear: float = float("nan")  # model length units per second


@dataclasses.dataclass
class BodyReport:
    name: str
    root: str  # "free" or "fixed"
    nq: int
    nv: int
    joints: list[tuple[str, str, float, float]]  # name, type, lower, upper (+-inf: unlimited)
    actuators: dict[str, int]  # kind -> count
    total_mass: float
    keypoints: list[tuple[str, str, tuple[float, float, float]]]  # keypoint, body, offset
    contacts: list[str]  # geoms that can collide in the trainable variant
    timestep: float
    runs: list[PassiveRun] = dataclasses.field(default_factory=list)
    steps_per_s: float | None = None
    problems: list[str] = dataclasses.field(default_factory=list)


def actuator_kind(model: mujoco.MjModel, a: int) -> str:
    """muscle, position (servo), velocity, torque (motor) or general, from gain and bias."""
    if model.actuator_gaintype[a] == mujoco.mjtGain.mjGAIN_MUSCLE:
        return "muscle"
    if model.actuator_biastype[a] == mujoco.mjtBias.mjBIAS_NONE:
        return "torque" if model.actuator_gaintype[a] == mujoco.mjtGain.mjGAIN_FIXED else "general"
    if model.actuator_biastype[a] == mujoco.mjtBias.mjBIAS_AFFINE:
        if model.actuator_biasprm[a, 1] < 0:
            return "position"
        if model.actuator_biasprm[a, 2] < 0:
            return "velocity"
    return "general"


def markers_at_rest(model: mujoco.MjModel, body: BodyModel) -> np.ndarray:
    """(K, 3) keypoint markers of the rest pose (qpos0), in the map's order."""
    if body.keypoint_map is None:
        return np.zeros((0, 3))
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    out = []
    for b, off in body.keypoint_map.keypoints.values():
        i = model.body(b).id
        out.append(data.xpos[i] + data.xmat[i].reshape(3, 3) @ np.asarray(off))
    return np.asarray(out)


def describe(body: BodyModel) -> BodyReport:
    model = body.compile()
    train = body.compile_trainable()
    root = "free" if model.njnt and model.jnt_type[0] == _FREE else "fixed"
    types = {_FREE: "free", _BALL: "ball", _SLIDE: "slide", int(mujoco.mjtJoint.mjJNT_HINGE): "hinge"}
    joints = []
    for j in range(model.njnt):
        lo, hi = model.jnt_range[j] if model.jnt_limited[j] else (-math.inf, math.inf)
        joints.append((model.joint(j).name, types[int(model.jnt_type[j])], float(lo), float(hi)))
    kinds: dict[str, int] = {}
    for a in range(train.nu):
        k = actuator_kind(train, a)
        kinds[k] = kinds.get(k, 0) + 1
    kmap = body.keypoint_map
    keypoints = [(n, b, tuple(off)) for n, (b, off) in kmap.keypoints.items()] if kmap else []
    contacts = [
        train.geom(g).name or f"#{g}" for g in range(train.ngeom) if train.geom_contype[g] or train.geom_conaffinity[g]
    ]
    report = BodyReport(
        name=body.display_name,
        root=root,
        nq=int(model.nq),
        nv=int(model.nv),
        joints=joints,
        actuators=kinds,
        total_mass=float(model.body_subtreemass[0]),
        keypoints=keypoints,
        contacts=contacts,
        timestep=float(train.opt.timestep),
    )
    for a in range(train.nu):
        if not train.actuator_ctrllimited[a]:
            report.problems.append(
                f"actuator '{train.actuator(a).name}' has no control range: the controller's actions are mapped "
                f"onto ctrlrange; give it one in the MJCF"
            )
    return report


def _speed_limits(model: mujoco.MjModel, seconds: float) -> tuple[np.ndarray, float]:
    """Which dofs rotate, and the translational speed that means an explosion (see the docstring)."""
    rotational = np.ones(model.nv, bool)
    for j in range(model.njnt):
        adr = model.jnt_dofadr[j]
        if model.jnt_type[j] == _SLIDE:
            rotational[adr] = False
        elif model.jnt_type[j] == _FREE:
            rotational[adr : adr + 3] = False
    linear = 10.0 * float(np.linalg.norm(model.opt.gravity)) * seconds + 100.0 * float(model.stat.extent)
    return rotational, linear


def _verdict(run: PassiveRun, qpos, qvel, rotational, linear_limit, warnings: str = "") -> PassiveRun:
    finite = bool(np.isfinite(qpos).all() and np.isfinite(qvel).all())
    if qvel.size:
        run.max_angular_rad_s = float(np.max(np.abs(qvel[..., rotational]), initial=0.0))
        run.max_linear = float(np.max(np.abs(qvel[..., ~rotational]), initial=0.0))
    if not finite:
        run.stable, run.detail = False, "the state turned non-finite (NaN/Inf)"
    elif warnings:
        run.stable, run.detail = False, f"MuJoCo warned: {warnings}"
    elif run.max_angular_rad_s > MAX_ANGULAR_RAD_S or run.max_linear > linear_limit:
        run.stable = False
        run.detail = (
            f"it exploded: peak speeds {run.max_angular_rad_s:.3g} rad/s, {run.max_linear:.3g} length units/s "
            f"(limits {MAX_ANGULAR_RAD_S:g} and {linear_limit:.3g})"
        )
    else:
        run.stable = True
        run.detail = f"stable; peak speeds {run.max_angular_rad_s:.3g} rad/s, {run.max_linear:.3g} length units/s"
    return run


def passive_native(model: mujoco.MjModel, seconds: float = PASSIVE_SECONDS) -> tuple[PassiveRun, float]:
    """The passive test on MuJoCo's C engine, and the steps/s of one world (timed after it)."""
    model = copy.deepcopy(model)
    data = mujoco.MjData(model)
    steps = max(1, math.ceil(seconds / model.opt.timestep))
    rotational, linear = _speed_limits(model, seconds)
    qvels = np.empty((steps, model.nv))
    for t in range(steps):
        mujoco.mj_step(model, data)
        qvels[t] = data.qvel
    warned = [
        f"{name} x{data.warning[int(w)].number}"
        for name, w in mujoco.mjtWarning.__members__.items()
        if name != "mjNWARNING" and data.warning[int(w)].number
    ]
    run = _verdict(PassiveRun("native", None, ""), data.qpos, qvels, rotational, linear, ", ".join(warned))
    mujoco.mj_resetData(model, data)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < THROUGHPUT_SECONDS:
        for _ in range(50):
            mujoco.mj_step(model, data)
        done += 50
    return run, done / (time.perf_counter() - start)


def passive_mjx(model: mujoco.MjModel, seconds: float = PASSIVE_SECONDS) -> PassiveRun:
    """The passive test on MJX (compiled once; minutes for large bodies on a CPU)."""
    import jax
    import jax.numpy as jnp
    from mujoco import mjx

    try:
        mx = mjx.put_model(model)
    except (NotImplementedError, ValueError, TypeError) as exc:
        return PassiveRun("mjx", None, f"not run: MJX does not support this model ({' '.join(str(exc).split())})")
    steps = max(1, math.ceil(seconds / model.opt.timestep))
    rotational, linear = _speed_limits(model, seconds)

    @jax.jit
    def run(d):
        def step(carry, _):
            d, peak = carry
            d = mjx.step(mx, d)
            return (d, jnp.maximum(peak, jnp.abs(d.qvel))), None

        (d, peak), _ = jax.lax.scan(step, (d, jnp.zeros(model.nv)), None, length=steps)
        return d.qpos, peak

    try:
        qpos, peak = jax.device_get(run(mjx.make_data(mx)))
    except NotImplementedError as exc:
        return PassiveRun("mjx", None, f"not run: MJX does not support this model ({' '.join(str(exc).split())})")
    return _verdict(PassiveRun("mjx", None, ""), np.asarray(qpos), np.asarray(peak), rotational, linear)


def check_body(body: BodyModel, *, mjx: bool = True) -> BodyReport:
    """``describe`` plus the passive tests and throughput; problems listed in the report."""
    report = describe(body)
    model = body.compile_trainable()
    native, report.steps_per_s = passive_native(model)
    report.runs.append(native)
    if mjx:
        report.runs.append(passive_mjx(model))
    for run in report.runs:
        if run.stable is False:
            report.problems.append(
                f"{run.backend}: the passive {PASSIVE_SECONDS:g}-s test at the {report.timestep:g} s timestep "
                f"failed: {run.detail}; try a smaller timestep, softer actuators or fewer contacts"
            )
    return report
