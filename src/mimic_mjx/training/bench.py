"""``mimic bench``: throughput of one body x backend x number of environments.

Everything is measured in the same process, in control (environment) steps:

- raw physics: the simulator alone stepping the same model with the same
  substeps and threads under random controls (native: ``mujoco.rollout`` on
  the C engine; mjx/warp: batched ``mjx.step``), divided by the substeps,
  from start states the environment's own resets produce (several batches,
  two control steps each): contacts make a state's cost, and the task keeps
  restarting from reference poses; measured before and after the other
  figures and averaged, since a shared machine's speed drifts;
- environment: the task's jit-compiled batched ``step`` with random actions,
  observations, reward, terminations and automatic resets included;
- training: whole PPO updates (rollout + optimisation), for the experiment's
  network sizes and, unless skipped, for the published intention-network sizes;
- compile: the first environment step and the first training update, compile
  included, timed separately from the steady state.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import jax
import mujoco
import numpy as np

from mimic_mjx import config as config_lib
from mimic_mjx.data.clips import Clip

#: Intention-network sizes of the published rodent imitation agents (encoder
#: 3 x 512, decoder 2 x 1024, critic 1024-1024-512-512-512, 60-d intention).
PUBLISHED_NETWORKS = {
    "agent.encoder_layers": [512, 512, 512],
    "agent.decoder_layers": [1024, 1024],
    "agent.value_layers": [1024, 1024, 512, 512, 512],
    "agent.latent_dim": 60,
}


#: Raw physics: batches of start states, and control steps rolled out from each.
RAW_START_BATCHES = 6
RAW_CONTROL_STEPS = 2


def raw_native_steps_per_s(
    model: mujoco.MjModel,
    num_envs: int,
    substeps: int,
    threads: int,
    qpos: np.ndarray | None = None,
    qvel: np.ndarray | None = None,
    control_steps: int = 10,
    repeats: int = 3,
    seed: int = 0,
) -> float:
    """Control steps/s of MuJoCo's C engine via ``mujoco.rollout``, random controls held per control step.

    ``qpos``/``qvel`` (num_envs, ...): initial states (default: the model's rest pose).
    Where the body starts matters (contacts cost), so the bench passes the
    environment's own reset states.
    """
    from mujoco import rollout

    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    nstate = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    state = np.empty(nstate)
    mujoco.mj_getState(model, data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    state = np.tile(state, (num_envs, 1))
    if qpos is not None:  # FULLPHYSICS starts with time, qpos, qvel
        state[:, 1 : 1 + model.nq] = qpos
        state[:, 1 + model.nq : 1 + model.nq + model.nv] = qvel
    lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    ctrl = rng.uniform(lo, hi, (num_envs, control_steps, model.nu)).repeat(substeps, axis=1)
    datas = [mujoco.MjData(model) for _ in range(threads)]
    seconds = 0.0
    with rollout.Rollout(nthread=threads) as r:
        r.rollout(model, datas, state[:1], ctrl[:1, :1])  # start the thread pool untimed
        for _ in range(repeats):
            t = time.perf_counter()
            r.rollout(model, datas, state, ctrl, initial_warmstart=np.zeros((num_envs, model.nv)))
            seconds += time.perf_counter() - t
    return num_envs * control_steps * repeats / seconds


def raw_mjx_control_steps_per_s(
    model: mujoco.MjModel, num_envs: int, substeps: int, qpos=None, qvel=None, impl: str = "jax"
) -> tuple[float, float]:
    from mimic_mjx.training.throughput import raw_mjx_steps_per_s

    r = raw_mjx_steps_per_s(
        model, num_envs, model.opt.timestep, steps_per_call=substeps * 4, calls=5, qpos=qpos, qvel=qvel, impl=impl
    )
    return r["physics_steps_per_s"] / substeps, r["compile_s"]


def raw_physics(env, num_envs: int, seed: int = 0, reset=None) -> tuple[float, float]:
    """(control steps/s, compile seconds) of the simulator alone for ``env``'s backend and model.

    Started from the states the environment resets to: a state's cost depends
    on its contacts, and the task keeps restarting episodes from reference
    poses, so rest-pose rollouts would flatter the physics. ``reset``: the
    environment's jit-compiled batched reset, if the caller has one.
    """
    model = copy.deepcopy(env.model)  # carries the task's timestep
    substeps = env.cfg.substeps
    reset = reset or jax.jit(jax.vmap(env.reset))
    starts = [
        jax.device_get(reset(jax.random.split(jax.random.PRNGKey(seed + i), num_envs)).data)
        for i in range(RAW_START_BATCHES)
    ]
    if env.backend.name == "native":
        rates = [
            raw_native_steps_per_s(
                model,
                num_envs,
                substeps,
                env.backend.threads,
                np.asarray(st.qpos),
                np.asarray(st.qvel),
                control_steps=RAW_CONTROL_STEPS,
                repeats=1,
                seed=i,
            )
            for i, st in enumerate(starts)
        ]
        return len(rates) / sum(1.0 / r for r in rates), 0.0  # total steps over total time
    return raw_mjx_control_steps_per_s(
        model,
        num_envs,
        substeps,
        np.asarray(starts[0].qpos),
        np.asarray(starts[0].qvel),
        impl="warp" if env.backend.name == "warp" else "jax",
    )


def _time_env(env, reset, num_envs: int, steps_per_call: int, calls: int, seed: int) -> tuple[float, float, float]:
    """(compile seconds, environment steps/s, unstable episodes per 1000 steps) with random actions.

    Compile seconds: the first call's time less a steady call's.
    """

    def run(state, key):
        def body(s, k):
            a = jax.random.normal(k, (num_envs, env.action_size))
            s = jax.vmap(env.step)(s, a)
            return s, s.metrics["episode/unstable"].sum()

        state, unstable = jax.lax.scan(body, state, jax.random.split(key, steps_per_call))
        return state, unstable.sum()

    run = jax.jit(run)
    key = jax.random.PRNGKey(seed)
    state = jax.block_until_ready(reset(jax.random.split(key, num_envs)))
    t = time.perf_counter()
    state, _ = jax.block_until_ready(run(state, key))
    compile_s = time.perf_counter() - t
    state, _ = jax.block_until_ready(run(state, jax.random.fold_in(key, 1)))
    t = time.perf_counter()
    unstable = 0.0
    for i in range(calls):
        state, u = run(state, jax.random.fold_in(key, i + 2))
        unstable += float(u)
    jax.block_until_ready(state)
    elapsed = time.perf_counter() - t
    steps = num_envs * steps_per_call * calls
    # The first call also ran the steps once; count only what compiling added.
    return max(compile_s - elapsed / calls, 0.0), steps / elapsed, 1000.0 * unstable / steps


def _time_training(cfg, clips, updates: int) -> tuple[float, float]:
    """(first update seconds incl. compile, training steps/s over the next ``updates`` updates)."""
    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.ppo import PPOTrainer

    t = time.perf_counter()
    trainer = PPOTrainer(cfg, build_env(cfg, clips))
    ts = trainer.init(jax.random.PRNGKey(cfg.train.seed))
    ts, m = trainer.update(ts)
    jax.block_until_ready(m)
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(updates):
        ts, m = trainer.update(ts)
    jax.block_until_ready(m)
    return first, trainer.steps_per_update * updates / (time.perf_counter() - t)


def bench(
    cfg: config_lib.ExperimentConfig,
    clips: Sequence[Clip],
    *,
    updates: int = 5,
    env_calls: int = 5,
    published: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Measure one configuration; returns the figures (see the module docstring)."""
    from mimic_mjx.training.experiment import build_env

    n = cfg.ppo.num_envs
    t = time.perf_counter()
    env = build_env(cfg, clips)
    setup_s = time.perf_counter() - t
    backend = env.backend.name  # what "auto" resolved to
    threads = getattr(env.backend, "threads", 0)
    log(f"bench: body {cfg.env.body}, backend {backend}, {n} environments, {cfg.env.substeps} substeps")

    reset = jax.jit(jax.vmap(env.reset))  # compiled once for the raw and the environment figures
    raw_before, raw_compile = raw_physics(env, n, seed=cfg.train.seed, reset=reset)
    env_compile, env_sps, unstable = _time_env(
        env, reset, n, steps_per_call=cfg.ppo.unroll_length, calls=env_calls, seed=cfg.train.seed
    )
    first, train_sps = _time_training(cfg, clips, updates)
    # Raw physics before and after, averaged: a shared VM's speed drifts between measurements.
    raw_after, _ = raw_physics(env, n, seed=cfg.train.seed + 1, reset=reset)
    raw = 0.5 * (raw_before + raw_after)
    log(
        f"  raw physics: {raw:,.0f} control steps/s ({raw * cfg.env.substeps:,.0f} physics steps/s; "
        f"{raw_before:,.0f} before, {raw_after:,.0f} after)"
    )
    log(f"  environment: {env_sps:,.0f} steps/s ({env_sps / raw:.2f} x raw), compile {env_compile:.1f} s")
    log(
        f"  training ({_nets(cfg)}): {train_sps:,.0f} steps/s ({train_sps / raw:.2f} x raw), "
        f"first update {first:.1f} s incl. compile"
    )
    out = {
        "body": cfg.env.body,
        "backend": backend,
        "num_envs": n,
        "substeps": cfg.env.substeps,
        "threads": threads,
        "device": jax.devices()[0].device_kind,
        "env_steps_per_s": round(env_sps, 1),
        "train_steps_per_s": round(train_sps, 1),
        "raw_physics_steps_per_s": round(raw, 1),
        "raw_physics_steps_per_s_before_after": [round(raw_before, 1), round(raw_after, 1)],
        "env_vs_raw": round(env_sps / raw, 3),
        "train_vs_raw": round(train_sps / raw, 3),
        "first_update_s": round(first, 2),
        "env_compile_s": round(env_compile, 2),
        "raw_compile_s": round(raw_compile, 2),
        "setup_s": round(setup_s, 2),
        "unstable_per_1000_steps": round(unstable, 3),
        "networks": _nets(cfg),
    }
    if published:
        pub = config_lib.apply_overrides(cfg, [f"{k}={v}" for k, v in PUBLISHED_NETWORKS.items()])
        first_p, train_p = _time_training(pub, clips, max(2, updates // 2))
        log(f"  training ({_nets(pub)}, published sizes): {train_p:,.0f} steps/s, first update {first_p:.1f} s")
        out.update(
            {
                "train_steps_per_s_published_networks": round(train_p, 1),
                "first_update_s_published_networks": round(first_p, 2),
                "published_networks": _nets(pub),
            }
        )
    return out


def _nets(cfg) -> str:
    a = cfg.agent
    f = lambda ls: "x".join(str(w) for w in ls)
    return f"enc {f(a.encoder_layers)} / dec {f(a.decoder_layers)} / value {f(a.value_layers)} / z {a.latent_dim}"
