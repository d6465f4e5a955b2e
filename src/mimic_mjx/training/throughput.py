"""Raw physics throughput: the simulator alone under random controls, no task logic.

``RawPhysics`` steps a batch from given start states for a few control steps
per call and times each call, so that a benchmark can interleave these small
pieces with the work it compares against: on a shared machine the speed drifts
within seconds, and figures taken minutes apart compare the machine's load,
not the code. ``raw_mjx_steps_per_s`` is the one-shot MJX figure.
"""

from __future__ import annotations

import copy
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx


class RawPhysics:
    """One backend's simulator for ``num_envs`` worlds of ``model`` (whose timestep is the physics step).

    ``tick(qpos, qvel, act)`` runs ``control_steps`` control steps of
    ``substeps`` physics steps each from those start states under uniformly
    random controls held per control step, and returns (control steps,
    seconds). ``native``: ``mujoco.rollout`` on ``threads`` C++ threads (its
    pool stays open between ticks; ``close`` ends it); ``mjx``/``warp``: one
    compiled batched ``mjx.step`` loop. Construction runs one untimed tick
    (thread start-up, compilation) and records its seconds in ``compile_s``.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        substeps: int,
        backend: str = "native",
        threads: int = 1,
        control_steps: int = 2,
        seed: int = 0,
    ):
        self.model, self.n, self.substeps, self.control_steps = copy.deepcopy(model), num_envs, substeps, control_steps
        self.backend = backend
        self._rng = np.random.default_rng(seed)
        self._key = jax.random.PRNGKey(seed)
        m = self.model
        self._lo, self._hi = m.actuator_ctrlrange[:, 0], m.actuator_ctrlrange[:, 1]
        if backend == "native":
            from mujoco import rollout

            self._rollout = rollout.Rollout(nthread=max(1, threads))
            self._datas = [mujoco.MjData(m) for _ in range(max(1, threads))]
            data = mujoco.MjData(m)
            mujoco.mj_forward(m, data)
            self._nstate = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_FULLPHYSICS)
            self._rest = np.empty(self._nstate)
            mujoco.mj_getState(m, data, self._rest, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        else:
            self._run, self._blank = _mjx_runner(m, num_envs, substeps * control_steps, impl=_IMPL[backend])
        t = time.perf_counter()
        self.tick(np.tile(m.qpos0, (num_envs, 1)), np.zeros((num_envs, m.nv)))
        self.compile_s = time.perf_counter() - t

    def tick(self, qpos, qvel, act=None) -> tuple[int, float]:
        """(control steps, seconds) of one piece started from these states (num_envs, ...) each."""
        if self.backend == "native":
            return self._tick_native(np.asarray(qpos), np.asarray(qvel), None if act is None else np.asarray(act))
        self._key, k = jax.random.split(self._key)
        data = self._blank.replace(qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32))
        jax.block_until_ready(data)
        t = time.perf_counter()
        jax.block_until_ready(self._run(data, k))
        return self.n * self.control_steps, time.perf_counter() - t

    def _tick_native(self, qpos, qvel, act) -> tuple[int, float]:
        m, n = self.model, self.n
        state = np.tile(self._rest, (n, 1))
        # FULLPHYSICS rows: time, qpos, qvel, act, ...
        state[:, 1 : 1 + m.nq] = qpos
        state[:, 1 + m.nq : 1 + m.nq + m.nv] = qvel
        if act is not None and m.na:
            state[:, 1 + m.nq + m.nv : 1 + m.nq + m.nv + m.na] = act
        ctrl = self._rng.uniform(self._lo, self._hi, (n, self.control_steps, m.nu)).repeat(self.substeps, axis=1)
        warm = np.zeros((n, m.nv))
        t = time.perf_counter()
        states, _ = self._rollout.rollout(m, self._datas, state, ctrl, initial_warmstart=warm)
        seconds = time.perf_counter() - t
        self.final_qpos = states[:, -1, 1 : 1 + m.nq]  # where each world ended (tests check the starts were used)
        return n * self.control_steps, seconds

    def close(self) -> None:
        if self.backend == "native":
            self._rollout.close()


_IMPL = {"mjx": "jax", "warp": "warp"}


def _mjx_runner(model: mujoco.MjModel, num_envs: int, steps: int, impl: str = "jax"):
    """(jitted run(data, key) -> data of ``steps`` batched mjx.step calls under random controls, blank batched data)."""
    mx = mjx.put_model(model, impl=impl)
    lo, hi = jnp.asarray(model.actuator_ctrlrange[:, 0]), jnp.asarray(model.actuator_ctrlrange[:, 1])

    def run(data, key):
        def body(d, k):
            ctrl = jax.random.uniform(k, (num_envs, model.nu), minval=lo, maxval=hi)
            return jax.vmap(mjx.step, in_axes=(None, 0))(mx, d.replace(ctrl=ctrl)), None

        return jax.lax.scan(body, data, jax.random.split(key, steps))[0]

    if impl == "jax":
        blank = jax.vmap(lambda _: mjx.make_data(mx))(jnp.arange(num_envs))
    else:  # Warp sizes its buffers from the MjModel
        one = mjx.make_data(model, impl=impl)
        blank = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs,) + jnp.shape(x)), one)
    return jax.jit(run), blank


def raw_mjx_steps_per_s(
    model: mujoco.MjModel,
    num_envs: int,
    timestep: float,
    steps_per_call: int = 20,
    calls: int = 10,
    seed: int = 0,
    qpos=None,
    qvel=None,
    impl: str = "jax",
) -> dict:
    """Physics steps/s of ``num_envs`` batched MJX worlds; compile timed separately.

    ``qpos``/``qvel`` (num_envs, ...): initial states (default: the rest pose);
    ``impl``: MJX implementation ("jax" or "warp").
    """
    model = copy.deepcopy(model)
    model.opt.timestep = timestep
    run, data = _mjx_runner(model, num_envs, steps_per_call, impl)
    qpos = model.qpos0 if qpos is None else qpos
    qvel = np.zeros(model.nv) if qvel is None else qvel
    data = data.replace(
        qpos=jnp.broadcast_to(jnp.asarray(qpos), (num_envs, model.nq)),
        qvel=jnp.broadcast_to(jnp.asarray(qvel), (num_envs, model.nv)),
    )
    key = jax.random.PRNGKey(seed)
    t = time.perf_counter()
    data = jax.block_until_ready(run(data, key))
    compile_s = time.perf_counter() - t
    data = jax.block_until_ready(run(data, key))  # a fed-back output can trigger one more compile
    t = time.perf_counter()
    for i in range(calls):
        data = run(data, jax.random.fold_in(key, i))
    jax.block_until_ready(data)
    elapsed = time.perf_counter() - t
    return {"physics_steps_per_s": num_envs * steps_per_call * calls / elapsed, "compile_s": compile_s}
