"""What domain randomisation costs per environment step: the forelimb on the native backend.

One process, one machine state: the forelimb task (its shipped config,
``--envs`` environments, synthetic reaches) is stepped with random actions
with randomisation off, with every ``randomize.*`` range on (and the same
ranges made too narrow to change the motion), and with only
the ranges that need no recomputed MuJoCo constants (friction, damping,
strength). The calls alternate, each between two pieces of raw physics
(``mujoco.rollout`` from the task's reset states), so the figures share
whatever the machine did. Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/randomize.py [--envs 256] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

ALL = {
    "friction_scale": [0.5, 1.5],
    "mass_scale": [0.8, 1.2],
    "com_shift": [-0.2, 0.2],
    "damping_scale": [0.5, 2.0],
    "armature_scale": [0.5, 2.0],
    "strength_scale": [0.8, 1.2],
}
NO_SETCONST = {k: ALL[k] for k in ("friction_scale", "damping_scale", "strength_scale")}
# Every key drawn, in ranges too narrow to change the motion: the mechanism's own cost (the
# wider ranges also change which states the physics meets, and so what a step costs).
TINY = {k: [0.0, 1e-6] if k == "com_shift" else [1.0, 1.0 + 1e-6] for k in ALL}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=8, help="timed calls per variant (20 steps each)")
    args = ap.parse_args()

    from mimic_mjx import config as config_lib
    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.synthetic import make_reaching_clips
    from mimic_mjx.training.bench import _Interleaved
    from mimic_mjx.training.experiment import build_env

    base = get_body("mouse_forelimb").default_config()
    base = config_lib.apply_overrides(base, ["env.backend=native", f"ppo.num_envs={args.envs}"])
    clips = make_reaching_clips(8, seed=0)
    variants = {"off": {}, "all_tiny": TINY, "all": ALL, "no_setconst": NO_SETCONST}
    steps = 20
    runs, states = {}, {}
    for name, ranges in variants.items():
        rz = config_lib.RandomizeConfig(**{key: tuple(v) for key, v in ranges.items()})
        env = build_env(base.replace(randomize=rz), clips)

        def run(state, key, env=env):
            def body(s, k_act):
                s = jax.vmap(env.step)(s, jax.random.normal(k_act, (args.envs, env.action_size)))
                return s, jnp.sum(s.terminated + s.truncated)

            state, ends = jax.lax.scan(body, state, jax.random.split(key, steps))
            return state, jnp.sum(ends)

        runs[name] = (env, jax.jit(run))
        state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), args.envs))
        for i in range(2):  # compile, then once more (a jitted output fed back can compile again)
            state, _ = jax.block_until_ready(runs[name][1](state, jax.random.PRNGKey(i)))
        states[name] = state
    raw = _Interleaved(runs["off"][0], args.envs, 0, jax.jit(jax.vmap(runs["off"][0].reset)))
    calls = {k: [] for k in variants}  # (seconds, host seconds, episode ends) per timed call
    names = list(variants)
    try:
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # each variant first in turn
                env, fn = runs[name]
                raw.before(name, states[name])
                h, t = env.backend.host_seconds, time.perf_counter()
                states[name], n_ends = jax.block_until_ready(fn(states[name], jax.random.PRNGKey(100 + r)))
                calls[name].append((time.perf_counter() - t, env.backend.host_seconds - h, float(n_ends)))
    finally:
        raw.close()
    per_call = args.envs * steps
    sec = {k: np.array([c[0] for c in v]) for k, v in calls.items()}
    rate = {k: per_call * len(v) / v.sum() for k, v in sec.items()}
    ends = {k: sum(c[2] for c in v) for k, v in calls.items()}
    us = lambda k, i: round(1e6 * sum(c[i] for c in calls[k]) / (per_call * args.rounds), 2)
    out = {
        "body": "mouse_forelimb",
        "backend": "native",
        "num_envs": args.envs,
        "substeps": base.env.substeps,
        "rounds": args.rounds,
        "raw_physics_steps_per_s": round(raw.reset.rate, 1),
        **{f"env_steps_per_s_{k}": round(v, 1) for k, v in rate.items()},
        # Median over rounds of each round's time ratio: robust to a machine whose speed drifts.
        **{f"ratio_{k}_to_off": round(float(np.median(sec["off"] / sec[k])), 3) for k in names[1:]},
        # Per environment step: microseconds in the host physics call, and in the rest (XLA: the task).
        **{f"host_us_per_step_{k}": us(k, 1) for k in names},
        **{f"all_us_per_step_{k}": us(k, 0) for k in names},
        # Random actions end episodes often: each end is a new draw (and new MuJoCo constants).
        **{f"mean_episode_steps_{k}": round(per_call * args.rounds / max(1.0, ends[k]), 1) for k in names},
        **{f"raw_from_its_states_{k}": round(raw.visited[k].rate, 1) for k in names},
    }
    print(f"raw physics {raw.reset.rate:,.0f} control steps/s ({args.envs} environments, {base.env.substeps} substeps)")
    for k, v in rate.items():
        ratio = "" if k == "off" else f", {out[f'ratio_{k}_to_off']:.3f} x off (median of rounds)"
        print(f"environment, randomisation {k:<12} {v:,.0f} steps/s ({v / raw.reset.rate:.2f} x raw{ratio})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
