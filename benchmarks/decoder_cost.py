"""Time per PPO update of each decoder (``agent.decoder``) on the forelimb benchmark's config, in one process.

Builds the forelimb task on the 30 training trials of ``benchmarks/forelimb.py``
(its re-registered references, cached in ``--run-dir``), then alternates one
``PPOTrainer.update`` of each decoder, ``--updates`` times, after one update
each for compilation. Alternating puts a shared machine's changing load on
every decoder alike, so the ratio of their times means something where two
separate runs' rates do not. Reports each decoder's median update time and
steps/s, and the median over rounds of each decoder's time over the MLP's.
Last output line: one JSON object of the figures.

    .venv/bin/python benchmarks/decoder_cost.py [--decoders mlp lstm] [--updates 40] [--run-dir runs/bench_forelimb]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decoders", nargs="+", default=["mlp", "lstm"], help="agent.decoder values (the first is 1x)")
    ap.add_argument("--updates", type=int, default=40, help="timed updates per decoder")
    ap.add_argument("--run-dir", default=str(HERE.parent / "runs" / "bench_forelimb"), help="references cache")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for all")
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    sys.path.insert(0, str(HERE))
    from forelimb import split_trials

    from mimic_mjx import config as config_lib
    from mimic_mjx.bodies import get_body
    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.ppo import PPOTrainer

    train_clips, _ = split_trials("registered", Path(args.run_dir), print)
    cfg0 = config_lib.apply_overrides(get_body("mouse_forelimb").default_config(), args.set)
    env = build_env(cfg0, train_clips)
    runs = {}
    for name in args.decoders:
        trainer = PPOTrainer(config_lib.apply_overrides(cfg0, [f"agent.decoder={name}"]), env, mesh=None)
        t = time.perf_counter()
        state, _ = trainer.update(trainer.init(jax.random.PRNGKey(0)))
        jax.block_until_ready(state)
        print(f"{name}: first update {time.perf_counter() - t:.1f} s (compile included)", flush=True)
        runs[name] = {"trainer": trainer, "state": state, "times": []}
    for _ in range(args.updates):
        for r in runs.values():
            t = time.perf_counter()
            r["state"], _ = r["trainer"].update(r["state"])
            jax.block_until_ready(r["state"])
            r["times"].append(time.perf_counter() - t)
    steps = cfg0.ppo.num_envs * cfg0.ppo.unroll_length
    base = np.asarray(runs[args.decoders[0]]["times"])
    out = {"num_envs": cfg0.ppo.num_envs, "unroll_length": cfg0.ppo.unroll_length, "updates": args.updates}
    for name, r in runs.items():
        times = np.asarray(r["times"])
        out[name] = {
            "median_update_s": round(float(np.median(times)), 4),
            "steps_per_s": round(steps / float(np.median(times))),
            "time_over_first": round(float(np.median(times / base)), 3),
        }
        print(f"{name}: median update {np.median(times):.3f} s, {out[name]['time_over_first']} x {args.decoders[0]}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
