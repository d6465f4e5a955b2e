"""Raw physics throughput: batched mjx.step with random controls, no task logic."""

from __future__ import annotations

import copy
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx


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
    mx = mjx.put_model(model, impl=impl)
    lo = jnp.asarray(model.actuator_ctrlrange[:, 0])
    hi = jnp.asarray(model.actuator_ctrlrange[:, 1])

    def run(data, key):
        def body(d, k):
            ctrl = jax.random.uniform(k, (num_envs, model.nu), minval=lo, maxval=hi)
            return jax.vmap(mjx.step, in_axes=(None, 0))(mx, d.replace(ctrl=ctrl)), None

        data, _ = jax.lax.scan(body, data, jax.random.split(key, steps_per_call))
        return data

    run = jax.jit(run)
    if impl == "jax":
        data = jax.vmap(lambda _: mjx.make_data(mx))(jnp.arange(num_envs))
    else:  # Warp sizes its buffers from the MjModel
        blank = mjx.make_data(model, impl=impl)
        data = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs,) + jnp.shape(x)), blank)
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
