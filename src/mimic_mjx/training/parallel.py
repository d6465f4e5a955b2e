"""Data-parallel training: environments split over devices, and over processes on several machines.

One mesh axis, ``envs``. The environment batch (states, latent and decoder
state carry, trajectories) is split along it; parameters, optimiser state and keys are
replicated, and XLA inserts the all-reduce of the gradients of the globally
averaged loss. Random draws are made for the global batch and then split
(threefry is partitionable), so a seed and a global batch give the same
training whatever the number of devices, up to the order of floating-point sums.

The environment step runs under ``shard_map``: each device steps its own
shard, so the native backend's host callback runs in every process on the
environments that process holds, never gathering the batch on one device.
"""

from __future__ import annotations

import os
import socket
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mimic_mjx.errors import ConfigError, MimicError

AXIS = "envs"


class DistributedError(MimicError):
    """Processes of a multi-machine run cannot find each other."""


def make_mesh(num_devices: int | None = None, devices=None) -> Mesh:
    """A one-axis mesh over the first ``num_devices`` of ``devices`` (all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ConfigError(f"asked for {num_devices} devices but {len(devices)} are available")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))


def default_mesh() -> Mesh | None:
    """All devices when there are several, else None (the single-device code path)."""
    return make_mesh() if jax.device_count() > 1 else None


def describe_devices(mesh: Mesh | None = None) -> str:
    """For the training log: which devices (and processes) the run uses."""
    devices = list(mesh.devices.flat) if mesh is not None else jax.local_devices()[:1]
    kinds = sorted({d.device_kind for d in devices})
    procs = jax.process_count()
    where = f" in {procs} processes" if procs > 1 else ""
    names = ", ".join(str(d) for d in devices[:8]) + (", ..." if len(devices) > 8 else "")
    plural = "s" if len(devices) > 1 else ""
    return f"{len(devices)} {devices[0].platform} device{plural}{where} ({'/'.join(kinds)}: {names})"


def check_divisible(num_envs: int, num_devices: int, num_minibatches: int = 1, unroll_length: int = 1) -> None:
    """A clear error when the environments cannot be split evenly over the devices."""
    if num_envs % num_devices:
        lo = num_envs - num_envs % num_devices
        ok = [n for n in (lo, lo + num_devices) if n > 0]
        divisors = [d for d in range(1, num_devices + 1) if num_envs % d == 0]
        raise ConfigError(
            f"ppo.num_envs ({num_envs}) must be divisible by the number of devices ({num_devices}); "
            f"use ppo.num_envs={' or '.join(map(str, ok))}, or run on {', '.join(map(str, divisors))} device(s) "
            "(CUDA_VISIBLE_DEVICES, or JAX_NUM_CPU_DEVICES on the CPU)"
        )


def env_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split along ``axis`` (the environment axis) over the mesh."""
    return NamedSharding(mesh, P(*([None] * axis), AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def state_shardings(state, mesh: Mesh):
    """Shardings of a TrainState: per-environment fields (environments, latent and decoder state) split,
    everything else replicated."""
    rep, env = replicated(mesh), env_sharding(mesh)
    shard = jax.tree.map(lambda _: rep, state)
    return shard.replace(env_state=jax.tree.map(lambda _: env, state.env_state), prev_latent=env, decoder_state=env)


def shard_envs(fn, mesh: Mesh | None, shared_args: int = 0):
    """``fn`` over a batch of environments, each device running its own shard (identity without a mesh).

    The last ``shared_args`` arguments are the same for every environment (replicated).
    """
    if mesh is None:
        return fn

    def sharded(*args):
        specs = tuple(P(AXIS) if i < len(args) - shared_args else P() for i in range(len(args)))
        # check_vma off: the native backend's pure_callback has no replication rule.
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(AXIS), check_vma=False)(*args)

    return sharded


def constrain(x, mesh: Mesh | None, axis: int):
    """Ask XLA to keep ``x`` split along ``axis`` (no-op without a mesh or when it does not divide)."""
    if mesh is None:
        return x

    def one(a):
        if a.ndim <= axis or a.shape[axis] % mesh.size:
            return a
        return jax.lax.with_sharding_constraint(a, env_sharding(mesh, axis))

    return jax.tree.map(one, x)


def place(tree, shardings):
    """Put a host tree (e.g. a restored checkpoint) onto the mesh; works when devices span processes.

    Every process must pass the same full values; each keeps the shards its devices hold.
    """
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: np.asarray(x)[idx]),
        tree,
        shardings,
    )


def gather(tree):
    """Full host copies of a tree whose arrays may span processes (for checkpoints and logs)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


# -- several processes --------------------------------------------------------
_ENV = ("MIMIC_COORDINATOR", "MIMIC_NUM_PROCESSES", "MIMIC_PROCESS_ID")


def init_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 120,
    local_device_ids=None,
) -> bool:
    """Join a multi-process run; returns False (and does nothing) for a single process.

    Arguments default to ``MIMIC_COORDINATOR`` (host:port of process 0),
    ``MIMIC_NUM_PROCESSES`` and ``MIMIC_PROCESS_ID``; under SLURM (``srun``,
    one task per node or per GPU) JAX reads all three from SLURM's variables.
    Must run before anything else uses JAX. A coordinator that does not
    answer within ``timeout_s`` is a one-line DistributedError, not a hang.
    """
    coordinator = coordinator or os.environ.get("MIMIC_COORDINATOR") or None
    if num_processes is None and os.environ.get("MIMIC_NUM_PROCESSES"):
        num_processes = int(os.environ["MIMIC_NUM_PROCESSES"])
    if process_id is None and os.environ.get("MIMIC_PROCESS_ID"):
        process_id = int(os.environ["MIMIC_PROCESS_ID"])
    slurm = int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ
    if coordinator is None and num_processes is None and not slurm:
        return False
    if num_processes == 1:
        return False
    if not slurm and None in (coordinator, num_processes, process_id):
        missing = [n for n, v in zip(_ENV, (coordinator, num_processes, process_id), strict=True) if v is None]
        raise DistributedError(f"a multi-process run needs {', '.join(missing)} (or run it under SLURM's srun)")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise DistributedError(f"process id {process_id} is not in 0..{num_processes - 1}")
    if coordinator is not None and process_id not in (None, 0):
        _wait_for(coordinator, timeout_s, process_id)
    # CPU processes exchange data through gloo; without it collectives across processes fail.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=int(timeout_s),
        )
    except Exception as exc:  # XLA raises several types; all mean the same to a user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = coordinator or "the SLURM coordinator"
        raise DistributedError(
            f"process {process_id if process_id is not None else '?'} could not join the run at {where} within "
            f"{timeout_s} s ({first[:200]}); check that process 0 is running and that the address and port are "
            "reachable from this machine"
        ) from None
    return True


def _wait_for(coordinator: str, timeout_s: float, process_id) -> None:
    """Wait until the coordinator accepts connections.

    XLA's client aborts the whole process (no Python exception) when the
    coordinator does not answer in time, so its reachability is checked here
    first, where failing can be a one-line error.
    """
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"coordinator address '{coordinator}' is not host:port (e.g. node001:12345)")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout_s)):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"process {process_id} could not join the run at {coordinator} within {timeout_s:g} s "
                    f"({exc.strerror or exc}); check that process 0 is running and that the address and port "
                    "are reachable from this machine"
                ) from None
            time.sleep(0.5)
