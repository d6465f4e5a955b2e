"""Physics backends behind one interface.

The imitation task never touches a simulator directly. It asks a backend to
``init`` a state from joint positions and velocities, to ``step`` it for
``substeps`` physics steps under constant controls, and to ``view`` it as a
``Physics`` record (joint state, muscle state, body positions, actuator
forces). All three are pure functions of JAX pytrees, so the task, the agent
and the jit-compiled training loop are the same for every backend:

- ``mjx``: MuJoCo XLA on JAX (compiled; the GPU default).
- ``warp``: MJX's Warp implementation (NVIDIA GPUs; ``pip install "mujoco-mjx[warp]"``).
- ``native``: MuJoCo's C engine on the host, one thread pool over the batch of
  environments, called from jit through ``jax.pure_callback``. Nothing of the
  physics is compiled by XLA, so a large body starts training in seconds; its
  state (including the solver warm start) lives in JAX arrays, which keeps
  resets, checkpoints and resume exact.

Both MJX flavours and the native engine leave the state in the same place after
a control step: positions of bodies are evaluated at the final joint angles,
actuator forces and velocities are those of the last physics step's forward pass.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct

from mimic_mjx.config import BACKENDS
from mimic_mjx.errors import BackendError

_BAD_STATE_WARNINGS = (
    int(mujoco.mjtWarning.mjWARN_BADQPOS),
    int(mujoco.mjtWarning.mjWARN_BADQVEL),
    int(mujoco.mjtWarning.mjWARN_BADQACC),
)


@struct.dataclass
class Physics:
    """What the task reads from a physics state (one environment)."""

    qpos: jax.Array
    qvel: jax.Array
    act: jax.Array
    xpos: jax.Array  # (nbody, 3) world positions of every body, m
    xquat: jax.Array  # (nbody, 4) world orientations of every body (wxyz)
    actuator_force: jax.Array
    actuator_velocity: jax.Array


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


def default_backend(body: str = "") -> str:
    """``mjx`` when JAX has a GPU; on a CPU the body's fastest measured backend (else native)."""
    if jax.default_backend() == "gpu":
        return "mjx"
    if body:
        from mimic_mjx.bodies import get_body

        return get_body(body).cpu_backend
    return "native"


def warp_installed() -> bool:
    """MJX ships MuJoCo Warp; it needs NVIDIA's ``warp`` package (``warp-lang``) to run."""
    if importlib.util.find_spec("warp") is None:
        return False
    from mujoco.mjx import warp as mjx_warp

    return bool(getattr(mjx_warp, "WARP_INSTALLED", False))


def make_backend(name: str, model: mujoco.MjModel, body: str = "", threads: int = 0):
    """Build the backend ``name`` for ``model`` (a copy is kept)."""
    if name == "auto":
        name = default_backend(body)
    if name == "native":
        return NativeBackend(model, threads)
    if name == "mjx":
        return MjxBackend(model, "jax", body)
    if name == "warp":
        if not warp_installed():
            raise BackendError(
                'backend "warp" needs NVIDIA Warp, which is not installed; install it with '
                'pip install "mujoco-mjx[warp]==3.17.0" (or .venv/bin/pip install -e ".[warp]"; an '
                "NVIDIA GPU is recommended), or use env.backend=mjx or env.backend=native"
            )
        return MjxBackend(model, "warp", body)
    raise BackendError(f"unknown physics backend '{name}'; choose one of {', '.join(BACKENDS)}")


class MjxBackend:
    """MJX (``impl='jax'``) or MuJoCo Warp through MJX (``impl='warp'``)."""

    def __init__(self, model: mujoco.MjModel, impl: str, body: str = ""):
        from mujoco import mjx

        self._mjx = mjx
        self.name = "mjx" if impl == "jax" else "warp"
        self.model = copy.deepcopy(model)
        try:
            self.mx = mjx.put_model(self.model, impl=impl)
            # The Warp implementation sizes its buffers from the MjModel itself.
            self._blank = mjx.make_data(self.model, impl=impl) if impl != "jax" else mjx.make_data(self.mx)
        except NotImplementedError as exc:
            what = f"body '{body}'" if body else "this body"
            raise BackendError(f"{what} cannot run on backend '{self.name}': {exc}; use env.backend=native") from None

    def init(self, qpos, qvel):
        data = self._blank.replace(qpos=qpos, qvel=qvel)
        return self._mjx.kinematics(self.mx, data)

    def step(self, data, ctrl, act, substeps: int):
        mjx = self._mjx
        data = data.replace(ctrl=ctrl, act=act)
        data = jax.lax.fori_loop(0, substeps, lambda _, d: mjx.step(self.mx, d), data)
        # mjx.step evaluates kinematics before integrating; refresh them so body
        # positions belong to the final joint angles.
        return mjx.kinematics(self.mx, data)

    def view(self, data) -> Physics:
        # MJX 3.17 keeps actuator velocities in the implementation-specific part of Data.
        impl = getattr(data, "_impl", None)
        vel = impl.actuator_velocity if hasattr(impl, "actuator_velocity") else data.actuator_velocity
        return Physics(
            qpos=data.qpos,
            qvel=data.qvel,
            act=data.act,
            xpos=data.xpos,
            xquat=data.xquat,
            actuator_force=data.actuator_force,
            actuator_velocity=vel,
        )


class NativeBackend:
    """MuJoCo's C engine stepping a batch of environments on a thread pool.

    The batch runs in ``mujoco.batch`` (MuJoCo >= 3.17): one call loads every
    environment's state row into an MjData per thread, runs ``substeps``
    ``mj_step`` calls and a final kinematics pass, and copies the bound fields
    out, all in C++ threads without the GIL. A per-environment Python loop
    held the GIL and ran the forelimb at ~0.2x the raw C rate. Results are
    bit-identical for any number of threads.
    """

    name = "native"

    def __init__(self, model: mujoco.MjModel, threads: int = 0):
        self.model = copy.deepcopy(model)
        self.threads = int(threads) if threads and threads > 0 else (os.cpu_count() or 1)
        # One batch per batch size: a Batch has a fixed number of simulations,
        # and reset/init may see another batch size than step.
        self._batches: dict[int, _Batch] = {}
        self._lock = threading.Lock()  # a Batch must not run two calls at once
        # MuJoCo never runs on XLA's callback thread: MuJoCo calls made directly
        # on that thread crashed XLA:CPU (jax 0.10.2), presumably for the small
        # stacks of XLA's worker threads. The batch's caller thread is this one.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mimic-native")
        m = self.model
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
    def _batch(self, n: int) -> _Batch:
        b = self._batches.get(n)
        if b is None:
            b = self._batches[n] = _Batch(self.model, n, self.threads)
        return b

    def _run(self, n: int, lead: tuple, inputs: dict, substeps: int) -> tuple:
        """Load ``inputs`` (field -> (n, ...)) into ``n`` simulations, step them, read a NativeState out."""
        with self._lock:
            return self._pool.submit(self._batch(n).run, inputs, substeps, lead).result()

    def _host_step(self, qpos, qvel, act, warm, ctrl, substeps):
        lead = qpos.shape[:-1]
        n = int(np.prod(lead))
        # Explicit row counts: a body without activations has (..., 0) arrays.
        rows = lambda x: np.asarray(x).reshape(n, x.shape[-1])
        inputs = dict(zip(_Batch.INPUTS, map(rows, (qpos, qvel, act, warm, ctrl)), strict=True))
        return self._run(n, lead, inputs, int(substeps))

    def _host_init(self, qpos, qvel):
        lead = qpos.shape[:-1]
        n = int(np.prod(lead))
        inputs = {"qpos": np.asarray(qpos).reshape(n, -1), "qvel": np.asarray(qvel).reshape(n, -1)}
        return self._run(n, lead, inputs, 0)

    # -- traced side -------------------------------------------------------
    def _result_shapes(self):
        return tuple(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in self._sizes.values())

    def init(self, qpos, qvel) -> NativeState:
        # Under vmap, "broadcast_all" hands the callback the whole batch at once.
        res = jax.pure_callback(self._host_init, self._result_shapes(), qpos, qvel, vmap_method="broadcast_all")
        return NativeState(*res)

    def step(self, state: NativeState, ctrl, act, substeps: int) -> NativeState:
        fn = lambda *a: self._host_step(*a, substeps)
        res = jax.pure_callback(
            fn,
            self._result_shapes(),
            state.qpos,
            state.qvel,
            act,
            state.qacc_warmstart,
            ctrl,
            vmap_method="broadcast_all",
        )
        return NativeState(*res)

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
    """``n`` simulations of one model in ``mujoco.batch``, with the fields a NativeState reads."""

    INPUTS = ("qpos", "qvel", "act", "qacc_warmstart", "ctrl")
    _DERIVED = ("xpos", "xquat", "actuator_force", "actuator_velocity")
    _OUTPUTS = tuple(f.name for f in dataclasses.fields(NativeState))

    def __init__(self, model: mujoco.MjModel, n: int, threads: int):
        from mujoco import batch as mjbatch

        self._errors = mjbatch.SimulationError
        self.b = mjbatch.Batch(model, nsim=n, nthread=max(1, min(threads, n)))
        self.b.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        # Every call starts from the model's default row (time 0, no applied
        # forces, default equality and mocap state), so nothing but the inputs
        # carries from one call, or one environment, to the next.
        self.row0 = self.b.state.copy()
        self.fields = {k: self.b.bind(k) for k in self.INPUTS + self._DERIVED}

    def run(self, inputs: dict, substeps: int, lead: tuple) -> tuple:
        """Step ``substeps`` (0: only place the bodies) from ``inputs``; NativeState arrays with ``lead`` shape."""
        b, f = self.b, self.fields
        b.state[:] = self.row0
        for k, v in inputs.items():
            f[k][:] = v
        pass
        failed = np.zeros(b.nsim, bool)
        # mjSTAGE_POS after the steps puts the bodies at the final joint angles;
        # actuator forces and velocities (velocity and acceleration stages) stay
        # those of the last step's forward pass, as the module docstring says.
        try:
            if substeps:
                b.step(nstep=substeps, stage=mujoco.mjtStage.mjSTAGE_POS)
            else:
                b.forward(stage=mujoco.mjtStage.mjSTAGE_POS)
        except self._errors as exc:  # a MuJoCo error (e.g. arena full) in some: end their episodes
            failed[exc.ids] = True
        # On a non-finite state MuJoCo warns and resets the simulation to the
        # model's default pose; the warning counters are how a blow-up shows.
        failed |= (b.warning[:, list(_BAD_STATE_WARNINGS), 1] > 0).any(axis=1)  # (lastinfo, number)
        out = {k: np.asarray(f[k], np.float32) for k in self._OUTPUTS}
        if not substeps:  # no forward pass has run: the bound values are another call's
            out["actuator_force"][:] = out["actuator_velocity"][:] = 0.0
        out["qpos"][failed] = np.nan
        return tuple(v.reshape(lead + v.shape[1:]) for v in out.values())
