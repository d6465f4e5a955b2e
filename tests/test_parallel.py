"""Data-parallel training: one result for a seed and global batch on 1 or 2 devices, and several processes.

The device count is fixed when JAX starts, so every case runs in its own
process (this file is also that process's script).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def _run(args, devices: int, timeout: float = 300, extra_env: dict | None = None):
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu", **(extra_env or {})}
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
    )


def _train(backend: str, devices: int, out: Path, updates: int = 2) -> dict:
    r = _run(["train", backend, out, updates], devices)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", [pytest.param("mjx", marks=pytest.mark.slow), "native"])
def test_one_result_whatever_the_device_count(backend, tmp_path):
    one = _train(backend, 1, tmp_path / "one.npz")
    two = _train(backend, 2, tmp_path / "two.npz")
    assert one["devices"].startswith("1 cpu device") and two["devices"].startswith("2 cpu devices")
    assert one["mesh"] is None and two["mesh"] == 2
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(a) == sorted(b)
    assert a["failures"].sum() > 0  # terminations were remembered, so their agreement says something
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)
    finals = [k for k in a if k.startswith("final_")]
    # Training changed the parameters, so their agreement says something.
    assert any(not np.allclose(a[k], a["init_" + k[len("final_") :]], rtol=1e-3, atol=1e-4) for k in finals)
    np.testing.assert_allclose(two["reward"], one["reward"], rtol=1e-4, atol=1e-6)
    # The two-device run really split the environments.
    assert two["env_shards"] == 2 and one["env_shards"] == 1
    if backend == "native":  # each device stepped its own half of the 8 environments on the host
        assert one["host_batches"] == [8] and two["host_batches"] == [4]


def test_envs_not_divisible_by_devices_is_a_clear_error():
    r = _run(["indivisible"], 2)
    assert r.returncode == 0, r.stderr[-3000:]
    msg = r.stdout.strip().splitlines()[-1]
    assert "ppo.num_envs (7) must be divisible by the number of devices (2)" in msg
    assert "ppo.num_envs=6 or 8" in msg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_join_reduce_and_train(tmp_path):
    port = _free_port()
    env = lambda i: {"MIMIC_COORDINATOR": f"127.0.0.1:{port}", "MIMIC_NUM_PROCESSES": "2", "MIMIC_PROCESS_ID": str(i)}
    base = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1", "MIMIC_TEST_TRAIN": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "multihost"],
            env={**base, **env(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            outs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any("gloo" in err.lower() and "unavailable" in err.lower() for _, _, err in outs):
        pytest.skip("JAX's gloo CPU collectives are unavailable in this jaxlib")
    for rc, _out, err in outs:
        assert rc == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in outs]
    assert sorted(r["process"] for r in results) == [0, 1]
    for r in results:
        assert r["processes"] == 2 and r["devices"] == 2
        assert r["sum"] == 1.0 + 2.0  # each process contributed its id + 1
        assert r["gathered"] == [[0.0, 1.0], [2.0, 3.0]]
        assert r["host_batches"] == [4]  # each process stepped its own 4 of the 8 environments
    # One PPO update over both processes: both hold the same (replicated) parameters.
    assert results[0]["param_sum"] == results[1]["param_sum"] and np.isfinite(results[0]["param_sum"])
    assert results[0]["reward"] == results[1]["reward"]


def test_unreachable_coordinator_fails_fast_in_one_line():
    port = _free_port()  # nothing listens there
    t = time.perf_counter()
    r = _run(
        ["unreachable", f"127.0.0.1:{port}"],
        1,
        timeout=120,
    )
    took = time.perf_counter() - t
    assert r.returncode == 0, r.stderr[-3000:]
    msg = r.stdout.strip().splitlines()[-1]
    assert msg.startswith("DistributedError: process 1 could not join the run at 127.0.0.1:") and "\n" not in msg
    assert "within 3 s" in msg and took < 90


def test_init_distributed_is_a_no_op_for_one_process(monkeypatch):
    from mimic_mjx.training.parallel import DistributedError, init_distributed

    for k in ("MIMIC_COORDINATOR", "MIMIC_NUM_PROCESSES", "MIMIC_PROCESS_ID", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(k, raising=False)
    assert init_distributed() is False
    assert init_distributed(num_processes=1) is False
    with pytest.raises(DistributedError, match="needs MIMIC_PROCESS_ID"):
        init_distributed(coordinator="127.0.0.1:1", num_processes=2)
    with pytest.raises(DistributedError, match=r"process id 2 is not in 0..1"):
        init_distributed(coordinator="127.0.0.1:1", num_processes=2, process_id=2)


# -- the subprocesses ------------------------------------------------------------
def _trainer(backend="mjx", **ppo):
    from conftest import tiny_config_dict
    from mimic_mjx import config as config_lib
    from mimic_mjx.data.synthetic import make_reaching_clips
    from mimic_mjx.training.experiment import build_env
    from mimic_mjx.training.ppo import PPOTrainer

    d = tiny_config_dict()
    # Episodes also start before remembered terminations: the memory is shared by the shards.
    d["env"] = {"backend": backend, "failure_start_prob": 0.5}
    d["ppo"].update(ppo)
    cfg = config_lib.from_dict(d)
    return PPOTrainer(cfg, build_env(cfg, make_reaching_clips(3, seed=7, num_frames=30)))


def _worker_train(backend, out, updates):
    import jax

    from mimic_mjx.training.parallel import describe_devices

    tr = _trainer(backend)
    state = tr.init(jax.random.PRNGKey(3))
    init = jax.device_get(state.policy.params)
    rewards = []
    for _ in range(int(updates)):
        state, m = tr.update(state)
        rewards.append(float(m["reward/total"]))
    leaves = lambda t: jax.tree_util.tree_flatten_with_path(jax.device_get(t))[0]
    arrays = {f"final_{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves(state.policy.params)}
    arrays |= {f"init_{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves(init)}
    arrays |= {f"stats_{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves(state.policy.ref_stats)}
    arrays["failures"] = np.asarray(jax.device_get(state.failures))
    np.savez(out, **arrays)
    shards = len(state.env_state.steps.addressable_shards)
    summary = {
        "devices": describe_devices(tr.mesh),
        "mesh": None if tr.mesh is None else tr.mesh.size,
        "reward": rewards,
        "env_shards": shards,
        # Batch sizes the native backend's host callback was called with.
        "host_batches": sorted(n for n, _ in getattr(tr.env.backend, "_batches", {})),  # (batch size, draws)
    }
    print(json.dumps(summary))


def _worker_indivisible():
    from mimic_mjx.errors import ConfigError

    try:
        _trainer("mjx", num_envs=7, num_minibatches=1)
    except ConfigError as exc:
        print(exc)


def _worker_multihost():
    from mimic_mjx.training.parallel import init_distributed

    assert init_distributed(timeout_s=60)
    import jax
    import jax.numpy as jnp
    from jax.experimental import multihost_utils

    from mimic_mjx.training.parallel import env_sharding, make_mesh, replicated

    mesh = make_mesh()
    pid = jax.process_index()
    local = np.full((1,), pid + 1.0, np.float32)
    x = multihost_utils.host_local_array_to_global_array(local, mesh, jax.sharding.PartitionSpec("envs"))
    total = jax.jit(jnp.sum, out_shardings=replicated(mesh))(x)
    rows = np.arange(2 * pid, 2 * pid + 2, dtype=np.float32)[None]
    g = jax.make_array_from_process_local_data(env_sharding(mesh), rows, (2, 2))
    gathered = multihost_utils.process_allgather(g, tiled=True)
    summary = {
        "process": pid,
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "sum": float(total),
        "gathered": np.asarray(gathered).tolist(),
    }
    if os.environ.get("MIMIC_TEST_TRAIN"):  # one PPO update over both processes' devices
        tr = _trainer("native")
        state = tr.init(np.asarray(jax.random.PRNGKey(3)))
        state, m = tr.update(state)
        params = jax.device_get(state.policy.params)  # replicated: every process holds all of it
        summary["param_sum"] = float(sum(np.abs(x).sum() for x in jax.tree.leaves(params)))
        summary["reward"] = float(m["reward/total"])
        summary["host_batches"] = sorted(n for n, _ in tr.env.backend._batches)
    print(json.dumps(summary), flush=True)
    jax.distributed.shutdown()


def _worker_unreachable(address):
    from mimic_mjx.training.parallel import DistributedError, init_distributed

    try:
        init_distributed(address, 2, 1, timeout_s=3)
    except DistributedError as exc:
        print(f"DistributedError: {exc}", flush=True)
        os._exit(0)  # the failed client may hold threads that would delay a normal exit


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    {
        "train": _worker_train,
        "indivisible": _worker_indivisible,
        "multihost": _worker_multihost,
        "unreachable": _worker_unreachable,
    }[sys.argv[1]](*sys.argv[2:])
