"""``mimic bench``: throughput of one body x backend x number of environments.

Everything is measured in the same process, in control (environment) steps:

- raw physics: the simulator alone stepping the same model with the same
  substeps and threads under random controls (native: ``mujoco.rollout`` on
  the C engine; mjx/warp: batched ``mjx.step``), divided by the substeps,
  from start states the environment's own resets produce (several batches,
  two control steps each): contacts make a state's cost, and the task keeps
  restarting from reference poses. Timed in small pieces between the calls
  of the other figures, since a shared machine's speed drifts within seconds.
  Pieces started from the states each workload is in at that moment give a
  second raw figure per workload: what its physics meets (random actions
  drive the forelimb into states that cost more to simulate than its reset
  poses), so that the ratio to it counts only the task's and the update's time;
- environment: the task's jit-compiled batched ``step`` with random actions,
  observations, reward, terminations and automatic resets included;
- training: whole PPO updates (rollout + optimisation), for the experiment's
  network sizes and, unless skipped, for the published intention-network sizes;
- compile: the first environment step and the first training update, compile
  included, timed separately from the steady state;
- native backend: the share of the environment's and the training's time
  spent in the host physics calls (the rest is XLA: the task's arithmetic,
  the policy, the PPO optimisation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import mujoco
import numpy as np

from mimic_mjx import config as config_lib
from mimic_mjx.data.clips import Clip
from mimic_mjx.training.throughput import RawPhysics

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


class _Tally:
    """Control steps and seconds of raw physics pieces, and each piece's rate."""

    def __init__(self):
        self.steps, self.seconds, self.rates = 0, 0.0, []

    def add(self, steps: int, seconds: float) -> None:
        self.steps, self.seconds = self.steps + steps, self.seconds + seconds
        self.rates.append(steps / seconds)

    @property
    def rate(self) -> float:
        return self.steps / self.seconds if self.seconds else float("nan")


def _physics_state(env, state) -> tuple:
    """Host (qpos, qvel, act) of a batched environment state."""
    phys = env.backend.view(state.data)
    return tuple(np.asarray(jax.device_get(x)) for x in (phys.qpos, phys.qvel, phys.act))


def _raw_sim(env, num_envs: int, seed: int) -> RawPhysics:
    name = env.backend.name
    return RawPhysics(
        env.model, num_envs, env.cfg.substeps, name, getattr(env.backend, "threads", 1), RAW_CONTROL_STEPS, seed
    )


def _reset_starts(env, num_envs: int, seed: int, reset=None) -> list[tuple]:
    reset = reset or jax.jit(jax.vmap(env.reset))
    keys = [jax.random.split(jax.random.PRNGKey(seed + i), num_envs) for i in range(RAW_START_BATCHES)]
    return [_physics_state(env, reset(k)) for k in keys]


def raw_physics(env, num_envs: int, seed: int = 0, reset=None) -> tuple[float, float]:
    """(control steps/s, compile seconds) of the simulator alone for ``env``'s backend and model.

    Started from the states the environment resets to: a state's cost depends
    on its contacts, and the task keeps restarting episodes from reference
    poses, so rest-pose rollouts would flatter the physics. ``reset``: the
    environment's jit-compiled batched reset, if the caller has one.
    """
    sim = _raw_sim(env, num_envs, seed)
    tally = _Tally()
    try:
        for start in _reset_starts(env, num_envs, seed, reset):
            tally.add(*sim.tick(*start))
    finally:
        sim.close()
    return tally.rate, sim.compile_s


class _Interleaved:
    """Raw physics in small pieces between the measured calls, so both see the same machine.

    Before each call of a workload: two pieces from the environment's reset
    states (the bench's raw figure) and two from the states the workload is
    in now (what its physics actually meets), tallied apart.
    """

    def __init__(self, env, num_envs: int, seed: int, reset):
        self.env, self.starts = env, _reset_starts(env, num_envs, seed, reset)
        self.sim = _raw_sim(env, num_envs, seed)
        self.reset, self.visited, self._i = _Tally(), {}, 0

    def before(self, workload: str, env_state) -> None:
        here = _physics_state(self.env, env_state)
        tally = self.visited.setdefault(workload, _Tally())
        for _ in range(2):
            self.reset.add(*self.sim.tick(*self.starts[self._i % len(self.starts)]))
            self._i += 1
            tally.add(*self.sim.tick(*here))

    def close(self) -> None:
        self.sim.close()


def _time_env(env, reset, num_envs: int, steps_per_call: int, calls: int, seed: int, before=None):
    """(compile seconds, environment steps/s, unstable episodes per 1000 steps, seconds in physics calls).

    Random actions. Compile seconds: the first call's time less a steady
    call's. ``before(state)`` runs ahead of each timed call, untimed.
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
    elapsed, unstable, host = 0.0, 0.0, 0.0
    for i in range(calls):
        if before is not None:
            before(state)
        h0, t = _host_seconds(env), time.perf_counter()
        state, u = jax.block_until_ready(run(state, jax.random.fold_in(key, i + 2)))
        elapsed += time.perf_counter() - t
        host += _host_seconds(env) - h0
        unstable += float(u)
    steps = num_envs * steps_per_call * calls
    # The first call also ran the steps once; count only what compiling added.
    return max(compile_s - elapsed / calls, 0.0), steps / elapsed, 1000.0 * unstable / steps, host / elapsed


def _host_seconds(env) -> float:
    """Seconds the backend spent in host physics calls so far (0 for backends without any)."""
    return float(getattr(env.backend, "host_seconds", 0.0))


def _time_training(cfg, clips, updates: int, before=None) -> tuple[float, float, float]:
    """(first update seconds incl. compile, training steps/s over the next ``updates`` updates,
    share of that time spent in host physics calls). ``before(env_state)`` runs ahead of each, untimed."""
    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.ppo import PPOTrainer

    t = time.perf_counter()
    env = build_env(cfg, clips)
    trainer = PPOTrainer(cfg, env)
    ts = trainer.init(jax.random.PRNGKey(cfg.train.seed))
    ts, m = trainer.update(ts)
    jax.block_until_ready(m)
    first = time.perf_counter() - t
    elapsed, host = 0.0, 0.0
    for _ in range(updates):
        if before is not None:
            before(ts.env_state)
        h0, t = _host_seconds(env), time.perf_counter()
        ts, m = jax.block_until_ready(trainer.update(ts))
        elapsed += time.perf_counter() - t
        host += _host_seconds(env) - h0
    return first, trainer.steps_per_update * updates / elapsed, host / elapsed


def bench(
    cfg: config_lib.ExperimentConfig,
    clips: Sequence[Clip],
    *,
    updates: int = 5,
    env_calls: int = 10,
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
    raw = _Interleaved(env, n, cfg.train.seed, reset)
    try:
        env_compile, env_sps, unstable, env_host = _time_env(
            env,
            reset,
            n,
            steps_per_call=cfg.ppo.unroll_length,
            calls=env_calls,
            seed=cfg.train.seed,
            before=lambda s: raw.before("environment", s),
        )
        first, train_sps, train_host = _time_training(cfg, clips, updates, lambda s: raw.before("training", s))
    finally:
        raw.close()
    rate, seen = raw.reset.rate, {k: v.rate for k, v in raw.visited.items()}
    log(
        f"  raw physics: {rate:,.0f} control steps/s ({rate * cfg.env.substeps:,.0f} physics steps/s; "
        f"{len(raw.reset.rates)} pieces between the others, {min(raw.reset.rates):,.0f}-{max(raw.reset.rates):,.0f})"
    )
    log(
        f"  environment: {env_sps:,.0f} steps/s ({env_sps / rate:.2f} x raw; {env_sps / seen['environment']:.2f} x "
        f"raw from the states it was in, {seen['environment']:,.0f}), compile {env_compile:.1f} s"
    )
    log(
        f"  training ({_nets(cfg)}): {train_sps:,.0f} steps/s ({train_sps / rate:.2f} x raw; "
        f"{train_sps / seen['training']:.2f} x raw from the states it was in, {seen['training']:,.0f}), "
        f"first update {first:.1f} s incl. compile"
    )
    if backend == "native":
        log(f"  share of the time in physics calls: environment {env_host:.0%}, training {train_host:.0%}")
    out = {
        "body": cfg.env.body,
        "backend": backend,
        "num_envs": n,
        "substeps": cfg.env.substeps,
        "threads": threads,
        "device": jax.devices()[0].device_kind,
        "env_steps_per_s": round(env_sps, 1),
        "train_steps_per_s": round(train_sps, 1),
        "raw_physics_steps_per_s": round(rate, 1),
        "raw_physics_steps_per_s_range": [round(min(raw.reset.rates), 1), round(max(raw.reset.rates), 1)],
        "raw_physics_pieces": len(raw.reset.rates),
        "raw_physics_visited_steps_per_s": {k: round(v, 1) for k, v in seen.items()},
        "env_vs_raw": round(env_sps / rate, 3),
        "train_vs_raw": round(train_sps / rate, 3),
        "env_vs_raw_visited": round(env_sps / seen["environment"], 3),
        "train_vs_raw_visited": round(train_sps / seen["training"], 3),
        "first_update_s": round(first, 2),
        "env_compile_s": round(env_compile, 2),
        "raw_compile_s": round(raw.sim.compile_s, 2),
        "setup_s": round(setup_s, 2),
        "unstable_per_1000_steps": round(unstable, 3),
        "networks": _nets(cfg),
    }
    if backend == "native":
        out.update(env_physics_call_share=round(env_host, 3), train_physics_call_share=round(train_host, 3))
    if published:
        pub = config_lib.apply_overrides(cfg, [f"{k}={v}" for k, v in PUBLISHED_NETWORKS.items()])
        first_p, train_p, _ = _time_training(pub, clips, max(2, updates // 2))
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
