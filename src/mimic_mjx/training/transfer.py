"""Reuse a trained decoder on a task without reference kinematics: ``mimic transfer``.

An imitation run's decoder maps a latent intention plus proprioception to
muscle commands. A transfer run trains a new high-level policy (the encoder,
now reading the task's observation) whose output is that latent, with the
same PPO, checkpoints, logs and resume as imitation. The decoder is

- ``frozen``: the imitation run's decoder, never updated (the reusable motor system),
- ``trainable``: the imitation run's decoder as the starting point, then trained with the rest,
- ``scratch``: a fresh decoder of the same shape, trained from random weights (the baseline).

Frozen and trainable runs also keep the imitation run's proprioception
statistics fixed: the decoder reads its inputs normalised as in imitation.
The run folder records where the decoder came from (``transfer.json``) and
stores its own body, so evaluating or resuming it never needs the imitation
run again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import jax
import numpy as np

from mimic_mjx.agents.policy import Policy, PolicyParams
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.errors import MimicError, RunDirError
from mimic_mjx.files import read_text, write_text

#: How a transfer run treats the imitation run's decoder.
DECODER_MODES = ("frozen", "trainable", "scratch")
#: The file of a transfer run that says where its decoder came from.
TRANSFER_FILE = "transfer.json"


class TransferError(MimicError):
    """A transfer that cannot be set up (body, task or network shape do not fit)."""


def is_transfer_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / TRANSFER_FILE).is_file()


def read_transfer(run_dir: str | Path) -> dict:
    """The record ``transfer.json`` of a transfer run."""
    path = Path(run_dir) / TRANSFER_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a transfer run (no {TRANSFER_FILE}); `mimic transfer` writes one")
    try:
        info = json.loads(read_text(path, RunDirError, "transfer record"))
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is corrupted ({exc})") from None
    missing = {"source_run", "decoder", "task", "control_dt"} - set(info)
    if missing:
        raise RunDirError(f"{path} lacks {', '.join(sorted(missing))}; start the transfer again in a new --run-dir")
    return info


def source_control_dt(run_dir: Path, cfg: ExperimentConfig) -> float:
    """Control timestep of an imitation run: its clips' frame interval times ``env.control_every``."""
    path = Path(run_dir) / "train_clips.h5"
    try:
        with h5py.File(path, "r") as f:
            group = f["clips"] if isinstance(f.get("clips"), h5py.Group) else f  # the attributes alone: no arrays
            rates = {float(g.attrs.get("fps", f.attrs.get("fps", np.nan))) for g in group.values()}
    except OSError as exc:
        raise RunDirError(f"cannot read the training clips of {run_dir} ({exc}); is it an imitation run?") from None
    rates = {r for r in rates if np.isfinite(r) and r > 0}
    if len(rates) != 1:
        raise RunDirError(f"{path} records {'no' if not rates else 'several'} clip frame rates; cannot tell its rate")
    return cfg.env.control_every / rates.pop()


def _shapes(tree) -> dict:
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(x)) for path, x in _leaves(tree)}


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def check_decoder_shape(fresh: dict, source: dict, source_run: Path, cfg: ExperimentConfig) -> None:
    """TransferError naming both shapes when the source's decoder is not the one ``cfg`` builds."""
    want, have = _shapes(fresh["decoder"]), _shapes(source["decoder"])
    if want != have:
        a = cfg.agent
        diff = sorted(set(want.items()) ^ set(have.items()))[:4]
        raise TransferError(
            f"the decoder of {source_run} has another shape than agent.decoder={a.decoder!r}, "
            f"decoder_layers={list(a.decoder_layers)}, latent_dim={a.latent_dim} builds "
            f"(parameters differing: {', '.join(f'{k} {s}' for k, s in diff)}); transfer with the source run's "
            "agent settings (leave agent.* unset) or use --decoder scratch"
        )


def paste_decoder(source: PolicyParams) -> Callable[[PolicyParams], PolicyParams]:
    """``initial_policy`` for PPOTrainer: the fresh policy with the source's decoder, action noise and
    proprioception statistics."""
    decoder = jax.tree.map(np.asarray, source.params["decoder"])
    log_std = np.asarray(source.params["log_std"])
    prop_stats = jax.tree.map(np.asarray, source.prop_stats)

    def initial(pp: PolicyParams) -> PolicyParams:
        params = {**pp.params, "decoder": jax.tree.map(jax.numpy.asarray, decoder), "log_std": log_std}
        return pp.replace(params=params, prop_stats=jax.tree.map(jax.numpy.asarray, prop_stats))

    return initial


def transfer_config(source: Policy, task: str, overrides: list[str]) -> ExperimentConfig:
    """The transfer run's config: the source's body, physics and network, the task ``task``, then ``overrides``."""
    from mimic_mjx import config as config_lib

    cfg = source.config
    cfg = cfg.replace(
        name=f"{task}_from_{cfg.name}",
        train_clips=(),
        task=dataclasses.replace(cfg.task, name=task),
        env=dataclasses.replace(cfg.env, failure_start_prob=0.0, first_frame_start_prob=0.0),
    )
    return config_lib.apply_overrides(cfg, overrides)


def trainer_hooks(decoder: str, source: Policy | None) -> dict:
    """PPOTrainer's keyword arguments for a decoder mode (``source`` None: a resumed run, restored whole)."""
    if decoder not in DECODER_MODES:
        raise TransferError(f"--decoder must be one of {', '.join(DECODER_MODES)}, got {decoder!r}")
    if decoder == "scratch":
        return {}
    hooks = {"freeze_prop_stats": True, "frozen": ("decoder",) if decoder == "frozen" else ()}
    if source is not None:
        hooks["initial_policy"] = paste_decoder(source.params)
    return hooks


def write_transfer(run_dir: Path, info: dict) -> None:
    write_text(Path(run_dir) / TRANSFER_FILE, json.dumps(info, indent=2, sort_keys=True))


def task_body(run_dir: Path, name: str, log: Callable[[str], None]):
    """The body of a run for a task: the body's own files where they give the run's model (a task such as
    the bowl edits the body's spec, which a stored compiled model lacks), else the run's stored copy."""
    from mimic_mjx.training.runbody import resume_body

    return resume_body(Path(run_dir), name, log, stored_body=True)


def _task_env(cfg: ExperimentConfig, body, control_dt: float):
    from mimic_mjx.environments.tasks import make_task_env

    return make_task_env(cfg.task.name, cfg, body, control_dt)


def _check_fits(env, source: Policy, source_run: Path) -> None:
    """The task's proprioception and actions must be those the source's decoder reads and writes."""
    if (env.prop_obs_size, env.action_size) != (source.prop_obs_size, source.action_size):
        raise TransferError(
            f"the task's body gives {env.prop_obs_size} proprioceptive inputs and {env.action_size} actuators, "
            f"the decoder of {source_run} reads {source.prop_obs_size} and drives {source.action_size}: "
            f"it was trained on another body or body version; transfer from a run of body '{source.config.env.body}'"
        )


def _load_source(source_run: Path) -> Policy:
    from mimic_mjx.training.checkpoint import load_policy

    if is_transfer_run(source_run):
        origin = read_transfer(source_run)["source_run"]
        raise TransferError(
            f"{source_run} is itself a transfer run; transfer from the imitation run its decoder came from ({origin})"
        )
    return load_policy(source_run)


def transfer(
    source_run: str | Path | None,
    run_dir: str | Path,
    *,
    task: str = "",
    decoder: str = "frozen",
    overrides: list[str] | None = None,
    resume: bool = False,
    stored_body: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train a high-level policy for ``task`` on the decoder of ``source_run`` in ``run_dir``; the summary.

    A resumed run (``resume``) reads task, decoder mode and source from its own
    folder; ``source_run`` may then be None. SIGTERM/SIGINT stop after the
    current update with a checkpoint, as ``mimic train`` does.
    """
    from mimic_mjx.agents.networks import init_params, make_agent
    from mimic_mjx.training.ppo import PPOTrainer
    from mimic_mjx.training.runbody import resume_body, store_run_body
    from mimic_mjx.training.rundir import prepare_run_dir, stored_config
    from mimic_mjx.training.signals import StopRequest
    from mimic_mjx.training.trainer import run_training

    run_dir, overrides = Path(run_dir), list(overrides or [])
    if resume:
        info = read_transfer(run_dir)
        if source_run is not None and Path(source_run).resolve() != Path(info["source_run"]).resolve():
            raise TransferError(
                f"{run_dir} transfers from {info['source_run']}, not {source_run}; "
                f"resume it with `mimic transfer --run-dir {run_dir} --resume`"
            )
        from mimic_mjx import config as config_lib

        cfg = config_lib.apply_overrides(stored_config(run_dir), overrides)
        decoder, control_dt = info["decoder"], float(info["control_dt"])
        mode = prepare_run_dir(run_dir, cfg, True, log)
        body = resume_body(run_dir, cfg.env.body, log, stored_body)
        # Stopped before its first checkpoint: it starts again, from the source's decoder.
        source = _load_source(Path(info["source_run"])) if mode == "restart" and decoder != "scratch" else None
        env = _task_env(cfg, body, control_dt)
    else:
        if source_run is None:
            raise TransferError("name the imitation run whose decoder to reuse: `mimic transfer RUN --task NAME ...`")
        if not task:
            raise TransferError("name the task: --task NAME (see `mimic transfer --help`)")
        source_run = Path(source_run)
        source = _load_source(source_run)
        cfg = transfer_config(source, task, overrides)
        control_dt = source_control_dt(source_run, source.config)
        body = task_body(source_run, cfg.env.body, log)
        env = _task_env(cfg, body, control_dt)
        _check_fits(env, source, source_run)
        agent, a = make_agent(cfg.agent, env.action_size), cfg.agent
        key = jax.random.PRNGKey(0)
        fresh = jax.eval_shape(lambda: init_params(agent, key, env.ref_obs_size, env.prop_obs_size, a.latent_dim))
        check_decoder_shape(fresh, source.params.params, source_run, cfg)
    trainer = PPOTrainer(cfg, env, **trainer_hooks(decoder, source))
    if not resume:
        mode = prepare_run_dir(run_dir, cfg, False, log)
        write_transfer(
            run_dir,
            {
                "source_run": str(source_run.resolve()),
                "source_update": int(source.update),
                "source_body": source.config.env.body,
                "decoder": decoder,
                "task": task,
                "control_dt": control_dt,
            },
        )
        store_run_body(run_dir, body)
    what = f"task {cfg.task.name}, {decoder} decoder"
    with StopRequest() as stop:
        summary = run_training(
            cfg, run_dir, trainer, mode, what, log, stop, resume_command=f"mimic transfer --run-dir {run_dir} --resume"
        )
    return {**summary, "decoder": decoder, "task": cfg.task.name}
