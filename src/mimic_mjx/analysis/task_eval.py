"""``mimic evaluate`` of a transfer run: held-out task instances, success, effort, smoothness, latents.

Each instance is an episode from a reset drawn with an evaluation key stream
(``seed``) that training never uses, rolled out with the deterministic
controller (latent and action means) for the task's whole episode, frozen
where it ended early. Per instance: success (the task's own criterion, e.g.
within the radius for the hold time), time to first reach, final distance,
muscle energy (summed absolute actuator power times the control step, mJ)
and jerk of the moving point (the end effector of a fixed-base body, the
root of a free one: RMS of its third time derivative, m/s^3). The latent
the decoder received is compared with the latents it saw in imitation: the
imitation run's controller rolled out on up to 8 of its training clips, once,
on the first evaluation; kept in ``transfer.json`` (``imitation_latent``) so
later evaluations do not need the imitation run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mimic_mjx.errors import MimicError
from mimic_mjx.files import write_text

#: Keys of the evaluation episodes' other draws (start noise): folded into the seed, never a training key.
_EVAL_STREAM = 0x5EED_E7A1


def _moving_point_ids(env) -> np.ndarray:
    """The root of a free body, else the end effector (the environment's own ids)."""
    return np.asarray([1]) if env.layout.free_root else np.asarray(env.ee_ids[:1])


def _rollout_fn(policy, env, steps: int, ids):
    act = policy.inference_fn(deterministic=True)

    def run_one(key, target):
        state = env.reset_to(key, target)

        def body(carry, _):
            state, dec_state, alive = carry
            a, extras = act(policy.params, state.ref_obs, state.prop_obs, key, dec_state)
            nxt = env.step_no_reset(state, a)
            phys = env.view(nxt)
            rec = {
                "metrics": nxt.metrics,
                "latent": extras["latent"],
                "point": phys.xpos[ids],
                "qpos": phys.qpos,
                "alive": alive,
            }
            new_alive = alive & (nxt.terminated == 0)
            new_dec = jnp.where(alive, extras["decoder_state"], dec_state)  # a recurrent decoder's state
            return (jax.tree.map(lambda n, o: jnp.where(alive, n, o), nxt, state), new_dec, new_alive), rec

        start = (state, policy.initial_state(), jnp.bool_(True))
        _, recs = jax.lax.scan(body, start, None, length=steps)
        return recs

    return jax.jit(jax.vmap(run_one))


def rms_jerk(points: np.ndarray, dt: float, alive: np.ndarray) -> float:
    """RMS over steps of |d^3 x / dt^3| of a trajectory (steps, n, 3), over the steps it was alive."""
    if len(points) < 4:
        return float("nan")
    jerk = np.diff(points, n=3, axis=0) / dt**3
    ok = alive[3:]
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean(np.sum(jerk[ok] ** 2, axis=-1))))


def latent_comparison(latents: np.ndarray, imitation: dict | None) -> dict:
    """Task latents (N, D) against the imitation run's per-dimension mean and standard deviation."""
    mean, std = latents.mean(axis=0), latents.std(axis=0)
    out = {"task_mean": mean.round(4).tolist(), "task_std": std.round(4).tolist()}
    if not imitation:
        out["note"] = "no imitation latent statistics recorded for this run"
        return out
    im_mean, im_std = np.asarray(imitation["mean"]), np.maximum(np.asarray(imitation["std"]), 1e-6)
    z = (latents - im_mean) / im_std
    out.update(
        {
            "imitation_mean": im_mean.round(4).tolist(),
            "imitation_std": im_std.round(4).tolist(),
            # How far, in imitation standard deviations, the task drives the latent on average.
            "rms_z": float(np.sqrt(np.mean(z**2))),
            # Share of task latents inside the imitation range (|z| <= 3 in every dimension).
            "fraction_within_3sd": float(np.mean(np.all(np.abs(z) <= 3.0, axis=-1))),
            "std_ratio_mean": float(np.mean(std / im_std)),
        }
    )
    return out


def imitation_latent_stats(source_run: Path, max_clips: int = 8) -> dict | None:
    """Per-dimension mean and standard deviation of the latent means of the imitation controller."""
    from mimic_mjx.analysis.rollout import collect
    from mimic_mjx.data.clips import read_clips
    from mimic_mjx.training.checkpoint import load_policy
    from mimic_mjx.training.experiment import build_eval_env

    if not (source_run / "train_clips.h5").is_file():
        return None
    policy = load_policy(source_run)
    clips = read_clips(source_run / "train_clips.h5")[:max_clips]
    recs = collect(policy, build_eval_env(policy.config, clips, body=policy.body))
    lm = recs["latent_mean"].reshape(-1, recs["latent_mean"].shape[-1])
    lm = lm[np.all(np.isfinite(lm), axis=-1)]
    if not len(lm):
        return None
    return {"mean": lm.mean(axis=0).tolist(), "std": lm.std(axis=0).tolist(), "clips": len(clips), "steps": len(lm)}


def _imitation_latent(run_dir: Path, info: dict) -> dict | None:
    """The recorded imitation latent statistics, computed and recorded now if missing (None: source gone)."""
    from mimic_mjx.training.transfer import write_transfer

    if "imitation_latent" in info:
        return info["imitation_latent"]
    stats = imitation_latent_stats(Path(info["source_run"]))
    if stats is not None:
        write_transfer(run_dir, {**info, "imitation_latent": stats})
    return stats


def evaluate_task(run_dir: str | Path, out: str | Path, *, instances: int = 50, seed: int = 0) -> dict:
    """Roll the transfer run's controller out on ``instances`` held-out task instances; write summary.json."""
    from mimic_mjx.config.randomize import RandomizeConfig
    from mimic_mjx.environments.task_env import held_out_targets
    from mimic_mjx.environments.tasks import make_task_env
    from mimic_mjx.training.checkpoint import load_policy
    from mimic_mjx.training.transfer import read_transfer, task_body

    if instances < 1:
        raise MimicError(f"--instances must be at least 1, got {instances}")
    run_dir, out = Path(run_dir), Path(out)
    info = read_transfer(run_dir)
    policy = load_policy(run_dir)
    # Evaluated on the body itself, as imitation evaluation is: no randomised physics, no start-pose noise.
    cfg = policy.config.replace(randomize=RandomizeConfig())
    body = task_body(run_dir, cfg.env.body, lambda m: print(m, file=sys.stderr))
    env = make_task_env(cfg.task.name, cfg, body, float(info["control_dt"]))
    steps, dt = env.episode_steps, env.control_dt
    targets = held_out_targets(env, instances, seed)
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(_EVAL_STREAM), seed), instances)
    recs = jax.device_get(_rollout_fn(policy, env, steps, _moving_point_ids(env))(keys, targets))
    recs = jax.tree.map(np.asarray, recs)
    m, alive = recs["metrics"], recs["alive"].astype(bool)
    per = []
    for i in range(instances):
        a = alive[i]
        reached = np.flatnonzero(m["task/reached"][i][a] > 0)
        last = int(np.flatnonzero(a)[-1])
        per.append(
            {
                "instance": i,
                "success": bool(np.any(m["task/success"][i][a] > 0)),
                "reached": bool(len(reached)),
                "time_to_reach_s": float((reached[0] + 1) * dt) if len(reached) else None,
                "final_distance_mm": float(m["task/distance_mm"][i][last]),
                "ended_early": bool(not a.all() or m["episode/terminated"][i][last] > 0),
                "energy_mj": float(m["effort/energy_mj"][i][last]),
                "jerk_m_s3": rms_jerk(recs["point"][i], dt, a),
            }
        )
    lat = recs["latent"][alive]
    times = [p["time_to_reach_s"] for p in per if p["time_to_reach_s"] is not None]
    summary = {
        "run_dir": str(run_dir),
        "task": cfg.task.name,
        "decoder": info["decoder"],
        "source_run": info["source_run"],
        "update": policy.update,
        "instances": instances,
        "seed": seed,
        "episode_s": steps * dt,
        "success_rate": float(np.mean([p["success"] for p in per])),
        "reach_rate": float(np.mean([p["reached"] for p in per])),
        "median_time_to_reach_s": float(np.median(times)) if times else None,
        "mean_final_distance_mm": float(np.mean([p["final_distance_mm"] for p in per])),
        "mean_energy_mj": float(np.mean([p["energy_mj"] for p in per])),
        "mean_jerk_m_s3": float(np.nanmean([p["jerk_m_s3"] for p in per])),
        "latent": latent_comparison(lat, _imitation_latent(run_dir, info)),
        "instances_detail": per,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    np.savez_compressed(
        out / "rollouts.npz",
        qpos=recs["qpos"],
        point=recs["point"],
        latent=recs["latent"],
        alive=alive,
        target=np.asarray(targets),
        distance_mm=m["task/distance_mm"],
        control_dt=dt,
    )
    return summary


def format_task_summary(s: dict) -> str:
    t = s["median_time_to_reach_s"]
    lat = s["latent"]
    lines = [
        f"{s['task']} ({s['decoder']} decoder, update {s['update']}): {s['instances']} held-out instances",
        f"  success {100 * s['success_rate']:.0f}%, reached {100 * s['reach_rate']:.0f}%, "
        f"median time to reach {'-' if t is None else f'{t:.2f} s'}, "
        f"final distance {s['mean_final_distance_mm']:.2f} mm",
        f"  muscle energy {s['mean_energy_mj']:.3f} mJ per episode, jerk {s['mean_jerk_m_s3']:.3g} m/s^3",
    ]
    if "rms_z" in lat:
        lines.append(
            f"  latent vs imitation: RMS z {lat['rms_z']:.2f}, {100 * lat['fraction_within_3sd']:.0f}% within "
            f"3 SD, spread ratio {lat['std_ratio_mean']:.2f}"
        )
    return "\n".join(lines)
