"""The ``native`` physics backend: MuJoCo's C engine stepping the whole batch in C++ threads.

Called from the jit-compiled loop through ``jax.pure_callback``; the state,
solver warm start included, lives in JAX arrays (``NativeState``), so resets,
checkpoints and resume stay exact, and results are the same for any number of
threads. ``environments.physics`` builds it (``make_backend``) next to the MJX
backends and defines the ``Physics`` record all backends return.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct

from mimic_mjx.environments.physics import Physics
from mimic_mjx.environments.randomize import SETCONST_PARAMS, model_fields, nominal_fields, param_shapes

#: Packed-input name prefix of a domain-randomisation draw's arrays.
_PARAM = "param:"

_BAD_STATE_WARNINGS = (
    int(mujoco.mjtWarning.mjWARN_BADQPOS),
    int(mujoco.mjtWarning.mjWARN_BADQVEL),
    int(mujoco.mjtWarning.mjWARN_BADQACC),
)


@struct.dataclass
class NativeState:
    qpos: jax.Array
    qvel: jax.Array
    act: jax.Array
    qacc_warmstart: jax.Array
    xpos: jax.Array
    xquat: jax.Array
    actuator_force: jax.Array
    actuator_velocity: jax.Array


class NativeBackend:
    """MuJoCo's C engine stepping a batch of environments on a thread pool.

    The batch runs in ``mujoco.batch`` (MuJoCo >= 3.17): one call loads every
    environment's state row into an MjData per thread, runs ``substeps``
    ``mj_step`` calls, poses the bodies on the model's kinematic skeleton (see
    ``_Batch``) and copies the fields out, all in C++ threads without the GIL.
    A per-environment Python loop held the GIL and ran the forelimb at ~0.2x
    the raw C rate. Results are bit-identical for any number of threads.
    """

    name = "native"

    def __init__(self, model: mujoco.MjModel, threads: int = 0):
        self.model = copy.deepcopy(model)
        self.threads = int(threads) if threads and threads > 0 else (os.cpu_count() or 1)
        # One batch per batch size and set of randomised draw keys: a Batch has a fixed
        # number of simulations, reset/init may see another batch size than step, and a
        # batch that never sees a draw never gets per-simulation model fields.
        self._batches: dict[tuple, _Batch] = {}
        self._params = param_shapes(self.model)
        self._nominal = None  # the body's own fields draws scale, built on first use
        self._lock = threading.Lock()  # a Batch must not run two calls at once
        # Wall seconds spent in host calls (pool hand-off and the batch itself), for ``mimic bench``'s
        # account of where training time goes.
        self.host_seconds = 0.0
        # MuJoCo never runs on XLA's callback thread: MuJoCo calls made directly
        # on that thread crashed XLA:CPU (jax 0.10.2), presumably for the small
        # stacks of XLA's worker threads. The batch's caller thread is this one.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mimic-native")
        m = self.model
        self._skeleton = kinematic_skeleton(m)
        # Per-environment shape of every NativeState field; the field names are
        # also MjData's, so a state is read straight off the batch's bound fields.
        self._sizes = {
            "qpos": (m.nq,),
            "qvel": (m.nv,),
            "act": (m.na,),
            "qacc_warmstart": (m.nv,),
            "xpos": (m.nbody, 3),
            "xquat": (m.nbody, 4),
            "actuator_force": (m.nu,),
            "actuator_velocity": (m.nu,),
        }
        assert tuple(self._sizes) == tuple(f.name for f in dataclasses.fields(NativeState))

    # -- host side ---------------------------------------------------------
    def _batch(self, n: int, randomized: tuple = ()) -> _Batch:
        b = self._batches.get((n, randomized))
        if b is None:
            if randomized and self._nominal is None:
                self._nominal = nominal_fields(self.model)
            shapes = {k: self._params[k] for k in randomized}
            b = _Batch(self.model, self._skeleton, self._sizes, n, self.threads, shapes, self._nominal)
            self._batches[(n, randomized)] = b
        return b

    def _host(self, packed, names: tuple, substeps: int):
        """Unpack ``names`` from ``packed`` (..., width), step, return the packed NativeState (..., width)."""
        lead = packed.shape[:-1]
        n = int(np.prod(lead))
        rows = np.asarray(packed).reshape(n, packed.shape[-1])
        cols = np.cumsum([0] + [self._width(k) for k in names])
        inputs = {k: rows[:, cols[i] : cols[i + 1]] for i, k in enumerate(names) if not k.startswith(_PARAM)}
        params = {k[len(_PARAM) :]: rows[:, cols[i] : cols[i + 1]] for i, k in enumerate(names) if k.startswith(_PARAM)}
        t = time.perf_counter()
        with self._lock:
            out = self._pool.submit(self._batch(n, tuple(params)).run, inputs, substeps, params).result()
        self.host_seconds += time.perf_counter() - t
        return out.reshape(lead + out.shape[1:])

    # -- traced side -------------------------------------------------------
    # One packed array each way: every argument of a pure_callback costs ~20 us
    # of conversion (jax 0.10.2, CPU), which is ~5% of a forelimb control step.
    def _width(self, name: str) -> int:
        if name == "ctrl":
            return self.model.nu
        if name == "xfrc_applied":
            return 6 * self.model.nbody
        if name.startswith(_PARAM):
            return int(np.prod(self._params[name[len(_PARAM) :]]))
        return int(np.prod(self._sizes[name]))

    def _call(self, names: tuple, values: tuple, substeps: int) -> NativeState:
        packed = jnp.concatenate([jnp.asarray(v, jnp.float32) for v in values], axis=-1)
        width = sum(self._width(k) for k in self._sizes)
        fn = lambda x: self._host(x, names, substeps)
        # Under vmap, "broadcast_all" hands the callback the whole batch at once.
        out = jax.pure_callback(fn, jax.ShapeDtypeStruct((width,), jnp.float32), packed, vmap_method="broadcast_all")
        fields, start = {}, 0
        for k, shape in self._sizes.items():
            size = self._width(k)
            fields[k] = out[..., start : start + size].reshape(out.shape[:-1] + shape)
            start += size
        return NativeState(**fields)

    #: ``init_posed`` builds a fresh state without a host call (see there).
    init_takes_poses = True

    def init(self, qpos, qvel) -> NativeState:
        return self._call(("qpos", "qvel"), (qpos, qvel), 0)

    def init_posed(self, qpos, qvel, xpos, xquat) -> NativeState:
        """The state ``init(qpos, qvel)`` returns, given its body poses ``xpos``/``xquat``; no host call.

        The poses must be the float32 ``mj_kinematics`` poses at ``qpos``
        (``data.binding.reference_poses``): ``init`` poses the bodies that way
        and zeroes the rest (activations, warm start, actuator forces and
        velocities). A task resets into reference frames whose poses it
        computed once, so a reset, which the task computes for every
        environment at every step, costs no second callback per step.
        """
        qpos = jnp.asarray(qpos, jnp.float32)
        lead = qpos.shape[:-1]
        zeros = lambda k: jnp.zeros(lead + self._sizes[k], jnp.float32)
        return NativeState(
            qpos=qpos,
            qvel=jnp.asarray(qvel, jnp.float32),
            act=zeros("act"),
            qacc_warmstart=zeros("qacc_warmstart"),
            xpos=jnp.asarray(xpos, jnp.float32),
            xquat=jnp.asarray(xquat, jnp.float32),
            actuator_force=zeros("actuator_force"),
            actuator_velocity=zeros("actuator_velocity"),
        )

    def step(self, state: NativeState, ctrl, act, substeps: int, xfrc=None, params=None) -> NativeState:
        """``xfrc``: an external wrench per body (nbody, 6) held for this step (virtual experiments).

        ``params``: a domain-randomisation draw (``environments.randomize``) per
        environment, packed with the other inputs; None: the body's own fields.
        """
        names, values = _Batch.INPUTS, (state.qpos, state.qvel, act, state.qacc_warmstart, ctrl)
        if xfrc is not None:
            names, values = (*names, "xfrc_applied"), (*values, jnp.reshape(xfrc, xfrc.shape[:-2] + (-1,)))
        for k in sorted(params or {}):  # a fixed order: the batch is chosen by these names
            v = jnp.asarray(params[k])
            lead = v.shape[: v.ndim - len(self._params[k])]
            names, values = (*names, _PARAM + k), (*values, jnp.reshape(v, lead + (-1,)))
        return self._call(names, values, int(substeps))

    def view(self, state: NativeState) -> Physics:
        return Physics(
            qpos=state.qpos,
            qvel=state.qvel,
            act=state.act,
            xpos=state.xpos,
            xquat=state.xquat,
            actuator_force=state.actuator_force,
            actuator_velocity=state.actuator_velocity,
        )


class _Batch:
    """``n`` simulations of one model in ``mujoco.batch``, with the fields a NativeState reads.

    Two batches: the dynamics on the model itself, and body poses on its
    kinematic skeleton. Posing bodies on the full model (``mjSTAGE_POS``)
    also wraps tendons, collides geoms and factors the mass matrix: on the
    forelimb that is ~60% of a physics step, and the task poses bodies twice
    per control step where resets are noisy (final poses, and the reset states
    it asks for every step), ~25% of a 5-substep control step; on the
    skeleton, ~10%.
    """

    INPUTS = ("qpos", "qvel", "act", "qacc_warmstart", "ctrl")

    def __init__(
        self,
        model: mujoco.MjModel,
        skeleton: mujoco.MjModel,
        sizes: dict,
        n: int,
        threads: int,
        randomized: dict | None = None,
        nominal: dict | None = None,
    ):
        from mujoco import batch as mjbatch

        self._errors = mjbatch.SimulationError
        threads = max(1, min(threads, n))
        self.dyn = mjbatch.Batch(model, nsim=n, nthread=threads)
        self.kin = mjbatch.Batch(skeleton, nsim=n, nthread=threads)
        for b in (self.dyn, self.kin):
            b.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        # Every call starts from the model's default row (time 0, no applied
        # forces, default equality and mocap state), so nothing but the inputs
        # carries from one call, or one environment, to the next.
        self.row0 = self.dyn.state.copy()
        names = self.INPUTS + ("xfrc_applied", "actuator_force", "actuator_velocity")
        self.fields = {k: self.dyn.bind(k) for k in names} | {k: self.kin.bind(k) for k in ("xpos", "xquat")}
        self.kin_qpos = self.kin.bind("qpos")
        # Columns of each NativeState field in the packed output.
        ends = np.cumsum([int(np.prod(v)) for v in sizes.values()])
        self.cols = {k: slice(e - int(np.prod(v)), e) for (k, v), e in zip(sizes.items(), ends, strict=True)}
        self.width = int(ends[-1])
        self.nominal, self.param_shapes = nominal, randomized or {}
        if randomized:
            # Per-simulation model fields, only in a batch that is given draws.
            probe = {k: np.ones((1, *shape)) for k, shape in randomized.items()}
            self.model_fields = {k: self.dyn.expand(k) for k in model_fields(nominal, probe, np)}
            if "com" in randomized:
                # MuJoCo's diagonal-mass shortcut for "simple" bodies assumes the centre of mass at the joint.
                self.dyn.expand("body_simple")[:, 1:] = 0
                self.dyn.expand("dof_simplenum")[:] = 0
            self.setconst = any(k in randomized for k in SETCONST_PARAMS)
            self.last = None  # each simulation's draw as written (the call's packed rows)

    def _set_params(self, params: dict) -> None:
        """Write each simulation's draw into its model fields, and recompute the constants MuJoCo derives from them.

        Only rows whose draw changed since the last call are written: a draw
        changes at an episode's start, not at every step. MuJoCo derives
        constants from masses, centres of mass and armature when it compiles a
        model (mj_setConst: inverse inertias at qpos0 that set how soft joint
        limits and contacts are, actuator_acc0, ...); they are recomputed for
        those rows, so a simulation runs exactly as the model compiled with
        its draw would (``randomize.apply_to_model``).
        """
        now = np.concatenate([v.reshape(len(v), -1) for v in params.values()], axis=1)
        rows = np.arange(len(now)) if self.last is None else np.flatnonzero((now != self.last).any(axis=1))
        if not rows.size:
            return
        for name, value in model_fields(self.nominal, {k: v[rows] for k, v in params.items()}, np).items():
            self.model_fields[name][rows] = value
        if self.setconst:
            self.dyn.set_const(rows)
        self.last = now.copy()

    def _call(self, fn, **kw) -> np.ndarray:
        """``fn(**kw)``; which simulations MuJoCo raised an error in (e.g. a full arena)."""
        failed = np.zeros(self.dyn.nsim, bool)
        try:
            fn(**kw)
        except self._errors as exc:
            failed[exc.ids] = True
        return failed

    def run(self, inputs: dict, substeps: int, params: dict | None = None) -> np.ndarray:
        """Step ``substeps`` (0: only place the bodies) from ``inputs``; the packed NativeState (n, width).

        ``params``: draw key -> (n, ...) rows of a domain-randomisation draw (a batch built for those keys).
        """
        b, f = self.dyn, self.fields
        if params:
            self._set_params({k: v.reshape((b.nsim, *self.param_shapes[k])) for k, v in params.items()})
        b.state[:] = self.row0
        for k, v in inputs.items():
            f[k][:] = v.reshape(f[k].shape)
        failed = np.zeros(b.nsim, bool)
        if substeps:
            b.warning[:] = 0
            # Actuator forces and velocities stay those of the last step's
            # forward pass: nothing after it runs on this batch.
            failed = self._call(b.step, nstep=substeps)
            # On a non-finite state MuJoCo warns and resets the simulation to
            # the model's default pose; the warning counters show the blow-up.
            failed |= (b.warning[:, list(_BAD_STATE_WARNINGS), 1] > 0).any(axis=1)  # (lastinfo, number)
        self.kin_qpos[:] = f["qpos"]
        failed |= self._call(self.kin.forward, stage=mujoco.mjtStage.mjSTAGE_POS)  # poses at the final angles
        out = np.empty((b.nsim, self.width), np.float32)
        for k, cols in self.cols.items():
            out[:, cols] = f[k].reshape(b.nsim, -1)
        if not substeps:  # no forward pass has run: the bound values are another call's
            out[:, self.cols["actuator_force"]] = out[:, self.cols["actuator_velocity"]] = 0.0
        out[failed, self.cols["qpos"]] = np.nan
        return out


def kinematic_skeleton(model: mujoco.MjModel) -> mujoco.MjModel:
    """The bodies and joints of ``model`` alone, with the same body poses for every ``qpos``.

    No geoms, tendons, actuators or sensors, so that posing the bodies costs
    what ``mj_kinematics`` does. Returns ``model`` itself where the skeleton
    would not pose the bodies as ``model`` does (mocap bodies, or a check at a
    random pose finds a pose that differs in any bit).
    """
    if model.nmocap:
        return model
    spec = mujoco.MjSpec()
    spec.compiler.degree = False  # joint references (qpos0) in radians, as MjModel holds them
    spec.compiler.fusestatic = False
    # Nothing to collide or constrain: skip those passes outright (~20% of posing the forelimb).
    spec.option.disableflags = int(mujoco.mjtDisableBit.mjDSBL_CONTACT | mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)
    bodies = [spec.worldbody]
    for i in range(1, model.nbody):
        b = bodies[model.body_parentid[i]].add_body(pos=model.body_pos[i], quat=model.body_quat[i])
        # Any positive inertia: it plays no part in the poses, but a moving body needs one.
        b.explicitinertial, b.mass, b.inertia = True, 1.0, [1.0, 1.0, 1.0]
        for j in np.flatnonzero(model.jnt_bodyid == i):
            ref = model.qpos0[model.jnt_qposadr[j]]  # hinge/slide: poses depend on qpos - qpos0
            b.add_joint(type=mujoco.mjtJoint(model.jnt_type[j]), pos=model.jnt_pos[j], axis=model.jnt_axis[j], ref=ref)
        bodies.append(b)
    try:
        skeleton = spec.compile()
    except ValueError:
        return model
    # Check at a random pose: unit quaternions for free and ball joints.
    if (skeleton.nq, skeleton.nbody) != (model.nq, model.nbody):
        return model
    rng = np.random.default_rng(0)
    qpos = model.qpos0 + rng.uniform(-1.0, 1.0, model.nq)
    d, k = mujoco.MjData(model), mujoco.MjData(skeleton)
    for j in np.flatnonzero(model.jnt_type <= int(mujoco.mjtJoint.mjJNT_BALL)):  # free, ball
        a = model.jnt_qposadr[j] + (3 if model.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_FREE) else 0)
        qpos[a : a + 4] /= np.linalg.norm(qpos[a : a + 4])
    d.qpos[:] = k.qpos[:] = qpos
    mujoco.mj_kinematics(model, d)
    mujoco.mj_kinematics(skeleton, k)
    # MuJoCo runs the same arithmetic on both, so the poses agree to the bit.
    same = np.array_equal(d.xpos, k.xpos) and np.array_equal(d.xquat, k.xquat)
    return skeleton if same else model
