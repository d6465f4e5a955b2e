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
    """MuJoCo's C engine stepping a batch of environments on a host thread pool."""

    name = "native"

    def __init__(self, model: mujoco.MjModel, threads: int = 0):
        self.model = copy.deepcopy(model)
        self.threads = int(threads) if threads and threads > 0 else (os.cpu_count() or 1)
        self._local = threading.local()
        # MuJoCo always runs on these threads, never on XLA's callback thread:
        # MuJoCo calls made directly on that thread crashed XLA:CPU (jax 0.10.2),
        # presumably for the small stacks of XLA's worker threads.
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mimic-native")
        m = self.model
        # Per-environment shape of every NativeState field; the field names are
        # also MjData's, so a state is read straight off an MjData.
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
    def _data(self) -> mujoco.MjData:
        d = getattr(self._local, "data", None)
        if d is None:
            d = self._local.data = mujoco.MjData(self.model)
        return d

    def _batched(self, n: int, lead: tuple, row) -> tuple:
        """Fill a NativeState's arrays with ``row(d, b)`` for rows ``b < n`` across the pool.

        ``row`` leaves environment ``b`` in the thread's MjData ``d`` and says whether
        its state stayed finite; the C calls release the GIL. The arrays come back
        with the callers' leading shape.
        """
        out = {k: np.empty((n,) + s, np.float32) for k, s in self._sizes.items()}

        def rows(idx):
            d = self._data()
            for b in idx:
                finite = row(d, b)
                for k in out:
                    out[k][b] = getattr(d, k)
                if not finite:  # MuJoCo has reset the data; report the blow-up instead
                    out["qpos"][b] = np.nan

        k = max(1, min(self.threads, n))
        list(self._pool.map(rows, [range(i, n, k) for i in range(k)]))
        return tuple(v.reshape(lead + v.shape[1:]) for v in out.values())

    def _host_step(self, qpos, qvel, act, warm, ctrl, substeps):
        m = self.model
        lead = qpos.shape[:-1]
        substeps = int(substeps)
        qp, qv, ac, wa, ct = (np.asarray(x, np.float64).reshape(-1, x.shape[-1]) for x in (qpos, qvel, act, warm, ctrl))

        def row(d, b):
            d.time = 0.0
            d.qpos[:], d.qvel[:], d.act[:], d.qacc_warmstart[:], d.ctrl[:] = qp[b], qv[b], ac[b], wa[b], ct[b]
            for w in _BAD_STATE_WARNINGS:
                d.warning[w].number = 0
            for _ in range(substeps):
                mujoco.mj_step(m, d)
            mujoco.mj_kinematics(m, d)
            # On a non-finite state MuJoCo warns and resets the data to the model's
            # default pose; the warning counters are how a blow-up shows.
            return not any(d.warning[w].number for w in _BAD_STATE_WARNINGS)

        return self._batched(qp.shape[0], lead, row)

    def _host_init(self, qpos, qvel):
        m = self.model
        lead = qpos.shape[:-1]
        qp = np.asarray(qpos, np.float64).reshape(-1, m.nq)
        qv = np.asarray(qvel, np.float64).reshape(-1, m.nv)

        def row(d, b):
            d.qpos[:], d.qvel[:] = qp[b], qv[b]
            for k in ("act", "qacc_warmstart", "actuator_force", "actuator_velocity"):
                getattr(d, k)[:] = 0.0
            mujoco.mj_kinematics(m, d)
            return True

        return self._batched(qp.shape[0], lead, row)

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
