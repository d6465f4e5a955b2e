"""Can the native backend's physics run while XLA optimises? What JAX's CPU runtime allows.

The native backend steps MuJoCo from a ``pure_callback`` inside the compiled
rollout; stepping the next batch while XLA runs the PPO update would need
the two to execute at the same time. This probe times a 0.2-s host callback
program (``physics``) and a ~0.1-s compute program (``update``), each alone
and dispatched together: on one CPU device, in one program, and on two CPU
devices (a second process with ``JAX_NUM_CPU_DEVICES=2``). Together they
overlap only where the time is near the longer of the two, not their sum.
Last line: one JSON object of the timings (seconds).

    .venv/bin/python benchmarks/overlap_probe.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CALLBACK_S = 0.2


def _programs():
    import jax
    import jax.numpy as jnp

    def sleepy(x):
        time.sleep(CALLBACK_S)  # stands in for the C threads stepping MuJoCo (the GIL is released)
        return x

    physics = jax.jit(lambda x: jax.pure_callback(sleepy, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1)

    def update(y):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ c), None), y, None, length=300)[0]

    return jax, jnp, physics, jax.jit(update), jax.jit(lambda x, y: (physics(x), update(y)))


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def one_device() -> dict:
    jax, jnp, physics, update, both = _programs()
    x, y = jnp.ones((8, 8)), jnp.ones((256, 256)) * 0.01
    jax.block_until_ready((physics(x), update(y), both(x, y)))
    out = {"physics_alone": _best(lambda: jax.block_until_ready(physics(x)))}
    out["update_alone"] = _best(lambda: jax.block_until_ready(update(y)))
    t = time.perf_counter()
    r = physics(x)
    out["physics_dispatch_returns_after"] = time.perf_counter() - t  # a callback program runs synchronously
    jax.block_until_ready(r)
    out["update_then_physics_one_device"] = _best(lambda: jax.block_until_ready((update(y), physics(x))))
    out["both_in_one_program"] = _best(lambda: jax.block_until_ready(both(x, y)))
    return out


def two_devices() -> dict:
    jax, jnp, physics, update, _ = _programs()
    d0, d1 = jax.devices()[:2]
    x, y = jax.device_put(jnp.ones((8, 8)), d0), jax.device_put(jnp.ones((256, 256)) * 0.01, d1)
    jax.block_until_ready((physics(x), update(y)))
    # The update is dispatched first (asynchronously) on device 1, the physics then runs on device 0.
    return {"update_then_physics_two_devices": _best(lambda: jax.block_until_ready((update(y), physics(x))))}


def main() -> int:
    if sys.argv[1:] == ["--two-devices"]:
        print(json.dumps(two_devices()))
        return 0
    out = one_device()
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    child = subprocess.run([sys.executable, __file__, "--two-devices"], env=env, capture_output=True, text=True)
    if child.returncode:
        print(child.stderr[-2000:], file=sys.stderr)
        return child.returncode
    out.update(json.loads(child.stdout.strip().splitlines()[-1]))
    alone = out["physics_alone"] + out["update_alone"]
    for k in ("update_then_physics_one_device", "both_in_one_program", "update_then_physics_two_devices"):
        print(f"{k}: {out[k]:.3f} s (alone: {out['physics_alone']:.3f} + {out['update_alone']:.3f} = {alone:.3f})")
    print(f"dispatching the callback program returned after {out['physics_dispatch_returns_after']:.3f} s")
    print(json.dumps({k: round(v, 4) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
