"""The training loop: compile once, update repeatedly, log, checkpoint, resume."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.stored import has_stored_body
from mimic_mjx.config import ExperimentConfig
from mimic_mjx.data.clip_files import open_clip_files, store_clips
from mimic_mjx.data.clips import Clip
from mimic_mjx.environments.starts import hardest_frames
from mimic_mjx.errors import RunDirError
from mimic_mjx.training.checkpoint import Checkpoints
from mimic_mjx.training.experiment import build_env
from mimic_mjx.training.logging import MetricsLog
from mimic_mjx.training.parallel import describe_devices, gather
from mimic_mjx.training.ppo import PPOTrainer, check_nonfinite
from mimic_mjx.training.processes import agree, from_writer, tree_from_writer, writer_only
from mimic_mjx.training.runbody import body_dir, resume_body, store_run_body
from mimic_mjx.training.rundir import prepare_run_dir, record_provenance
from mimic_mjx.training.signals import StopRequest, signal_name


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


#: Error metrics the progress line shows, with their labels (others go to the logs only).
_SHOWN_ERRORS = {
    "error/joint_deg": ("joint err", "deg", 2),
    "error/ee_mm": ("end-effector err", "mm", 3),
    "error/body_mm": ("body err", "mm", 1),
    "error/root_mm": ("root err", "mm", 1),
    "error/keypoint_mm": ("keypoint err", "mm", 3),
}


def progress_line(update, total_updates, env_steps, steps_per_s, metrics, eta_s) -> str:
    """One line per logged update, read from the metrics record."""
    parts = [
        f"update {update}/{total_updates}",
        f"{env_steps / 1e6:.2f}M steps",
        f"{steps_per_s:,.0f} steps/s",
        f"reward {metrics.get('reward/total', float('nan')):.3f}",
    ]
    free_root = bool(metrics.get("error/root_mm"))
    for key, (label, unit, digits) in _SHOWN_ERRORS.items():
        # Body and root errors only for free-root bodies (a fixed base tracks its end effectors).
        if key in ("error/body_mm", "error/root_mm") and not free_root:
            continue
        if key == "error/keypoint_mm" and not metrics.get(key):
            continue  # clips without recorded keypoints
        if key in metrics:
            value = metrics[key]
            if unit == "mm" and 0 < abs(value) < 0.1:  # a worm's errors: micrometres, not "0.0 mm"
                value, unit_shown, digits_shown = 1e3 * value, "um", 1
            else:
                unit_shown, digits_shown = unit, digits
            parts.append(f"{label} {value:.{digits_shown}f} {unit_shown}")
    if "episode/success" in metrics:  # a task without references (environments/tasks.py)
        parts.append(f"success {100 * metrics['episode/success']:.0f}%")
    ends = metrics.get("episode/count", 0.0)
    unstable = int(round(metrics.get("episode/unstable", 0.0) * ends))
    parts.append(f"ends by termination {100 * metrics.get('episode/terminated', 0.0):.0f}% ({unstable} unstable)")
    parts.append(f"left {_fmt_time(eta_s)}")
    return " | ".join(parts)


def time_left(total_updates, upd, done_since, elapsed, deadline_left_s=None) -> float:
    """Seconds left: the rate so far over the remaining updates, capped by the time limit."""
    eta = (total_updates - upd) * elapsed / done_since if done_since else float("nan")
    if deadline_left_s is not None:
        eta = min(eta, deadline_left_s) if np.isfinite(eta) else deadline_left_s
    return max(0.0, eta) if np.isfinite(eta) else 0.0


def warn_implausible_clips(clips, body: str, log, limit: int = 8) -> None:
    """Warn (not stop: users decide) about joint speeds beyond the body's physiological bounds
    and frames whose joint torques its muscles cannot produce."""
    from mimic_mjx.data.check import clip_speed_warnings

    lines = clip_speed_warnings(clips, body)
    for line in lines[:limit]:
        log(f"warning: {line}")
    if len(lines) > limit:
        log(f"warning: ... and {len(lines) - limit} more; `mimic clips check FILES` lists them all")
    if lines:
        log(
            "warning: a controller cannot follow such references; re-register the keypoints (`mimic register`) "
            "to get physically plausible ones, or check that the clips belong to this body"
        )


def checkpoint_meta(cfg: ExperimentConfig, env) -> dict:
    """Sizes that rebuild the network from a checkpoint without an environment."""
    return {
        "ref_obs_size": int(env.ref_obs_size),
        "prop_obs_size": int(env.prop_obs_size),
        "action_size": int(env.action_size),
        "latent_dim": cfg.agent.latent_dim,
        "body": cfg.env.body,
        "metric_names": list(env.metric_names),
    }


def train(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    clips: Sequence[Clip] | None = None,
    *,
    resume: bool = False,
    stored_body: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train (or resume) an experiment in ``run_dir``; returns a summary dict.

    ``clips`` are the training clips for a new run; a resumed run reads the
    copy stored in the run directory. SIGTERM and SIGINT stop it after the
    current update with a checkpoint; the summary's ``stopped_by`` names the signal.

    The run folder keeps the body it trains (``body/``, training/runbody.py). A
    resumed run whose body files now give another model stops with what
    changed, unless ``stored_body``: then it continues with the stored body.
    """
    with StopRequest() as stop:
        return _train(cfg, Path(run_dir), clips, resume, log, stop, stored_body)


def _prepare_resume(run_dir: Path, cfg, log) -> str:
    mode = prepare_run_dir(run_dir, cfg, True, log)
    if not (run_dir / "train_clips.h5").exists():
        if mode == "restart":
            raise RunDirError(
                f"{run_dir} stopped before its first checkpoint and before its clips were stored; "
                f"start it again with `mimic train --run-dir {run_dir} --clips FILE [FILE ...]`"
            )
        raise RunDirError(f"{run_dir / 'train_clips.h5'} is missing; the run cannot be resumed")
    return mode


def _prepare_new(run_dir: Path, cfg, clips, body, log) -> str:
    mode = prepare_run_dir(run_dir, cfg, False, log)
    store_clips(run_dir / "train_clips.h5", clips)
    store_run_body(run_dir, body)
    return mode


def _restore(ckpts: Checkpoints, template, run_dir: Path, log):
    """The newest checkpoint that verifies; newer damaged ones are moved aside."""
    state = ckpts.restore(template)
    if ckpts.skipped:
        # Moved, not deleted: the updates after the restored one are trained and saved again.
        aside = run_dir / "damaged_checkpoints"
        ckpts.set_aside(ckpts.skipped, aside)
        log(f"moved the damaged checkpoints (updates {', '.join(map(str, ckpts.skipped))}) to {aside}")
    return state


def _train(cfg, run_dir: Path, clips, resume: bool, log, stop: StopRequest, stored_body: bool) -> dict:
    # With several processes (docs/scaling.md) process 0 alone reads the run folder's state and
    # writes it (config, clips, checkpoints, logs), and shares what it found (training.processes):
    # every process restores the step it chose, and all leave the loop at the same update.
    if resume:
        mode = from_writer(_prepare_resume, run_dir, cfg, log)
        clips = open_clip_files([run_dir / "train_clips.h5"])  # read clip by clip while binding
        body = resume_body(run_dir, cfg.env.body, log, stored_body)
        env = build_env(cfg, clips, body=body)
        if not has_stored_body(body_dir(run_dir)):
            writer_only(store_run_body, run_dir, body)  # a run from before bodies were stored: from now on
    else:
        if not clips:
            raise RunDirError("no training clips given")
        # Bind the clips and build the backend before creating the run folder, so
        # bad input (clips of another body, a backend not installed) leaves nothing behind.
        body = get_body(cfg.env.body)
        env = build_env(cfg, clips, body=body)
        warn_implausible_clips(clips, cfg.env.body, log)
        mode = from_writer(_prepare_new, run_dir, cfg, clips, body, log)

    what = f"{len(clips)} clips"
    names = env.bank.names
    return run_training(cfg, run_dir, PPOTrainer(cfg, env), mode, what, log, stop, failure_names=names)


def run_training(
    cfg: ExperimentConfig,
    run_dir: Path,
    trainer: PPOTrainer,
    mode: str,
    what: str,
    log: Callable[[str], None],
    stop: StopRequest,
    failure_names: Sequence[str] = (),
    resume_command: str = "",
) -> dict:
    """The loop every run shares (imitation, transfer): init or restore, update, log, checkpoint, stop.

    ``mode`` is what ``prepare_run_dir`` decided ("new", "restart", "resume");
    ``what`` names the training data in the start line; ``failure_names``
    name the clips of the termination memory (empty: none kept);
    ``resume_command`` is the command that resumes the run (default ``mimic train``'s).
    """
    env = trainer.env
    ckpts = writer_only(Checkpoints, run_dir / "checkpoints", log=log)  # None in the other processes
    p = cfg.ppo
    total_updates = trainer.total_updates

    t0 = time.perf_counter()
    state = trainer.init(jax.random.PRNGKey(cfg.train.seed))
    if mode == "resume":
        state = trainer.place(tree_from_writer(_restore, state, ckpts, state, run_dir, log))
        log(f"resumed from update {int(state.updates)} ({int(state.updates) * trainer.steps_per_update:,} steps)")
    start_update = saved_update = int(state.updates)
    writer_only(record_provenance, run_dir, describe_devices(trainer.mesh), mode, start_update)
    meta = checkpoint_meta(cfg, env)
    mlog = writer_only(
        MetricsLog,
        run_dir,
        tensorboard=cfg.train.tensorboard,
        wandb=cfg.train.wandb,
        wandb_project=cfg.train.wandb_project,
        wandb_run_name=cfg.name,
        config=cfg.to_dict(),
        resume_from_update=start_update if mode != "new" else None,
    )

    log(
        f"training {cfg.name}: body {cfg.env.body}, {what}, {p.num_envs} envs x "
        f"{p.unroll_length} steps per update, {total_updates} updates on "
        f"{describe_devices(trainer.mesh)}; compiling..."
    )
    compile_s = None
    t_loop = None
    deadline = t0 + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
    last = {}
    stopped_early = False
    discarded = None  # None: no update ran; False: updates ran and are kept; else why the first was dropped
    loop_start_update = start_update
    resume_command = resume_command or f"mimic train --run-dir {run_dir} --resume"
    resume_hint = f"resume with `{resume_command}`"
    # A signal to any process stops every one (``agree``: the largest signal number over processes).
    (signum,) = agree([stop.signum or 0])
    with mlog if mlog is not None else contextlib.nullcontext():
        while int(state.updates) < total_updates and not signum:
            state, metrics = trainer.update(state)
            upd = int(state.updates)
            check_nonfinite(metrics, learning_rate=cfg.ppo.learning_rate)
            discarded = False
            if compile_s is None:
                jax.block_until_ready(state)
                compile_s = time.perf_counter() - t0
                t_loop, loop_start_update = time.perf_counter(), upd
                (signum,) = agree([stop.signum or 0])
                if signum:
                    # Stopped while compiling: the caller wants out now, not a checkpoint of one update.
                    discarded = "during compilation"
                    break
                log(f"first update done in {compile_s:.1f} s (compile included)")
            if upd % cfg.train.log_every_updates == 0 or upd == total_updates:
                m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                elapsed, done_since = now - t_loop, upd - loop_start_update
                sps = done_since * trainer.steps_per_update / elapsed if done_since else float("nan")
                eta = time_left(total_updates, upd, done_since, elapsed, None if deadline is None else deadline - now)
                m.update({"train/steps_per_s": sps, "train/wall_s": now - t0})
                writer_only(MetricsLog.log, mlog, upd, upd * trainer.steps_per_update, m)
                log(progress_line(upd, total_updates, upd * trainer.steps_per_update, sps, m, eta))
                last = m
            if upd % cfg.train.checkpoint_every_updates == 0:
                host = gather(state)  # a collective: every process takes part, process 0 writes
                writer_only(Checkpoints.save, ckpts, upd, host, meta)
                saved_update = upd
            # Clocks differ between machines: the first process past the deadline stops them all.
            signum, late = agree([stop.signum or 0, deadline is not None and time.perf_counter() > deadline])
            if late and upd < total_updates:
                log(f"time limit of {cfg.train.max_minutes} min reached at update {upd}")
                stopped_early = True
                break
        writer_only(MetricsLog.close, mlog)  # before the final save, as leaving the block did
    stopped_by = signal_name(signum)
    if stopped_by and discarded is not False:
        log(
            f"stopped by {stopped_by} {discarded or 'before training started'}; nothing new to save; "
            + (resume_hint if start_update else f"start again with `{resume_command}`")
        )
        upd, t_loop = start_update, None
    else:
        jax.block_until_ready(state)
        upd = int(state.updates)
        if upd > saved_update:
            host = gather(state)
            writer_only(Checkpoints.save, ckpts, upd, host, meta)
        if stopped_by:
            log(f"stopped by {stopped_by} at update {upd}; {resume_hint}")
    writer_only(Checkpoints.close, ckpts)
    summary = _summary(run_dir, upd, start_update, trainer, t0, t_loop, loop_start_update, compile_s, last)
    if trainer.uses_failure_memory:
        summary["hardest_frames"] = hardest_frames(jax.device_get(state.failures), failure_names)
        if summary["hardest_frames"]:
            where = ", ".join(f"{h['clip']} frame {h['frame']}" for h in summary["hardest_frames"][:3])
            log(f"where tracking was lost most recently (episodes start there at env.failure_start_prob): {where}")
    return {**summary, "stopped_early": stopped_early or bool(stopped_by), "stopped_by": stopped_by}


def _summary(run_dir, upd, start_update, trainer, t0, t_loop, loop_start_update, compile_s, last) -> dict:
    loop_s = time.perf_counter() - t_loop if t_loop else 0.0
    steady = (upd - loop_start_update) * trainer.steps_per_update / loop_s if t_loop and loop_s > 0 else float("nan")
    return {
        "run_dir": str(run_dir),
        "updates": upd,
        "env_steps": upd * trainer.steps_per_update,
        "wall_s": time.perf_counter() - t0,
        "compile_s": compile_s or 0.0,
        "steps_per_s": steady,
        "steps_this_run": (upd - start_update) * trainer.steps_per_update,
        "last_metrics": last,
    }


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
