"""PPO's approximate KL per update on the demo's training, and what carries its largest value.

Trains the forelimb's default config on the demo's built-in synthetic reaches
(48 clips, seed 1) for ``--updates`` updates, one ``PPOTrainer.update`` at a
time, and records per update ``policy/approx_kl`` (the mean of
``(r - 1) - log r`` over the update's minibatches, r the probability ratio as
each minibatch is reached), its median over transitions and
``policy/clip_fraction``. The update with the largest approx KL is then
dissected: its rollout is regenerated from the state before it (the update is
deterministic), and each transition's KL between the policy that acted and
the policy after the update says whether a few transitions carry the mean, and
which (episode starts, sign of their advantage, how far in the tails of the
acting Gaussian their action was).

Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/ppo_kl.py [--updates 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def dissect(trainer, before, after) -> dict:
    """Per-transition KL between the acting policy of ``before`` and the parameters of ``after``."""
    import jax
    import jax.numpy as jnp

    from mimic_mjx.agents.networks import gaussian_log_prob
    from mimic_mjx.agents.policy import network_outputs
    from mimic_mjx.training.losses import compute_gae

    ts = jax.device_put(before)
    _, k_roll, _ = jax.random.split(ts.key, 3)  # the split _update makes
    env_state, prev_latent, dec_state, traj, _ = jax.jit(trainer._rollout)(ts, k_roll)
    pol, p = ts.policy, trainer.cfg.ppo
    b = traj._replace(metrics={})

    def outputs(params):
        pp = pol.replace(params=params)
        return network_outputs(trainer.agent, pp, b.ref_obs, b.prop_obs, b.eps, b.decoder_state)

    old, new = outputs(pol.params), outputs(jax.device_put(after.policy.params))
    log_r = np.asarray(gaussian_log_prob(b.action, new["action_mean"], new["action_log_std"]) - b.log_prob).ravel()
    z2 = np.asarray(jnp.sum(jnp.square((b.action - old["action_mean"]) / jnp.exp(old["action_log_std"])), -1)).ravel()
    obs = (env_state.ref_obs, env_state.prop_obs)
    boot = network_outputs(trainer.agent, pol, *obs, jnp.zeros_like(prev_latent), dec_state)
    adv, _ = compute_gae(
        b.reward * p.reward_scaling, old["value"], boot["value"], b.terminated, b.truncated, p.discount, p.gae_lambda
    )
    adv, first = np.asarray(adv).ravel(), np.asarray(b.first).ravel()
    kl = np.expm1(log_r) - log_r
    top = np.argsort(-kl)[:10]
    mu0, mu1 = (np.asarray(o["action_mean"]).reshape(-1, b.action.shape[-1]) for o in (old, new))
    sigma = np.exp(np.asarray(old["action_log_std"]).reshape(-1, b.action.shape[-1]))
    # What the actuators receive: the task squashes actions into the control range with tanh.
    lo, hi = np.asarray(trainer.env.actions.lo), np.asarray(trainer.env.actions.hi)
    ctrl = lambda a: lo + 0.5 * (np.tanh(a) + 1.0) * (hi - lo)
    d_ctrl = np.max(np.abs(ctrl(mu1) - ctrl(mu0)) / (hi - lo), axis=-1)
    return {
        "spike_kl_mean": float(kl.mean()),
        "spike_kl_median": float(np.median(kl)),
        "spike_top10_share": float(kl[top].sum() / kl.sum()),
        "spike_top10_log_ratio": [round(float(x), 1) for x in log_r[top]],
        "spike_top10_episode_start": [int(x) for x in first[top]],
        "spike_top10_positive_advantage": [int(x > 0) for x in adv[top]],
        # Sum of squared z-scores of the action under the acting Gaussian (its expected value is the action size).
        "spike_top10_action_z2": [round(float(x), 1) for x in z2[top]],
        "action_size": int(b.action.shape[-1]),
        "spike_unclipped_share": float(np.mean(np.abs(np.expm1(log_r)) <= p.clip_epsilon)),
        "spike_action_std": [round(float(x), 3) for x in sigma[0]],
        # Largest move of the action mean in units of the acting std, and of the control (share of its range).
        "spike_top10_mean_shift_std": [round(float(x), 1) for x in np.max(np.abs(mu1 - mu0) / sigma, -1)[top]],
        "spike_top10_ctrl_shift": [round(float(x), 3) for x in d_ctrl[top]],
        "spike_top10_max_abs_action_mean": [round(float(x), 2) for x in np.max(np.abs(mu0), -1)[top]],
        "spike_ctrl_shift_median": float(np.median(d_ctrl)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import dataclasses

    import jax

    from mimic_mjx.bodies import get_body
    from mimic_mjx.data.synthetic import make_reaching_clips
    from mimic_mjx.training.bench import raw_physics
    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.ppo import PPOTrainer

    cfg = get_body("mouse_forelimb").default_config()
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, seed=args.seed))
    env = build_env(cfg, make_reaching_clips(48, seed=1))
    raw, _ = raw_physics(env, cfg.ppo.num_envs, seed=args.seed)
    trainer = PPOTrainer(cfg, env, mesh=None)
    state = trainer.init(jax.random.PRNGKey(args.seed))
    rows, worst, t0 = [], (-1.0, None, None, 0), None
    for u in range(1, args.updates + 1):
        before = jax.device_get(state)
        state, m = trainer.update(state)
        m = {k: float(v) for k, v in jax.device_get(m).items()}
        if u == 1:
            t0 = time.perf_counter()
        rows.append((m["policy/approx_kl"], m["policy/approx_kl_median"], m["policy/clip_fraction"], m["reward/total"]))
        if m["policy/approx_kl"] > worst[0]:
            worst = (m["policy/approx_kl"], before, jax.device_get(state), u)
        if u % 100 == 0:
            print(
                f"update {u}: approx KL {m['policy/approx_kl']:.3g}, largest so far {worst[0]:.3g} (update {worst[3]})"
            )
    sps = (args.updates - 1) * trainer.steps_per_update / (time.perf_counter() - t0)
    kl, kl_med, clip, reward = (np.array(c) for c in zip(*rows, strict=True))
    # Harm test: the mean reward per step over the 20 updates after the largest KL against the 20 before.
    u = worst[3] - 1
    after = reward[u + 1 : u + 21]
    around = (float(reward[max(0, u - 20) : u].mean()), float(after.mean()) if after.size else None)
    figures = {
        "updates": args.updates,
        "seed": args.seed,
        "first_update_approx_kl": float(kl[0]),
        "approx_kl_median": float(np.median(kl)),
        "approx_kl_p99": float(np.quantile(kl, 0.99)),
        "approx_kl_max": float(kl.max()),
        "approx_kl_max_update": worst[3],
        "updates_approx_kl_above_1": int(np.sum(kl > 1)),
        "transition_kl_median_max": float(kl_med.max()),
        "clip_fraction_median": float(np.median(clip)),
        "reward_20_updates_before_max": around[0],
        "reward_20_updates_after_max": around[1],
        **dissect(trainer, worst[1], worst[2]),
        "train_steps_per_s": sps,
        "raw_physics_steps_per_s": raw,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
