"""The exported ONNX controller in closed loop on MuJoCo's C engine, next to the JAX policy.

Trains nothing. Exports RUN's deterministic controller as ONNX (or takes
``--onnx FILE``), then rolls every clip out twice from its first frame on a
plain ``mujoco.MjData``: once with controls from onnxruntime, once from the
JAX policy. Each control step runs the task's ``substeps`` ``mj_step`` calls at
the task's timestep (the env's model), and observations come from the env's
own observation function on the current physics state, as the native backend
sees it. Prints per clip the joint RMSE against the reference and the fraction
of steps within the task's termination thresholds, for both; the last line is
one JSON object {"onnx": {...}, "jax": {...}, "max_abs_action_diff": ...}
(the largest action difference of the two on the JAX rollout's observations).

    .venv/bin/python benchmarks/onnx_closed_loop.py RUN --clips FILE.h5 [--onnx policy.onnx] [--max-steps N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def load(run_dir, clips):
    """The run's policy and its task on ``clips`` (native backend: only its model and functions are used)."""
    from mimic_mjx.analysis.rollout import check_sizes
    from mimic_mjx.training.checkpoint import load_policy
    from mimic_mjx.training.experiment import build_eval_env

    policy = load_policy(run_dir)
    cfg = policy.config
    cfg = cfg.replace(env=dataclasses.replace(cfg.env, backend="native", native_threads=1))
    env = build_eval_env(cfg, clips)
    check_sizes(policy, env)
    return policy, env


def onnx_controller(path):
    """``act(ref_obs, prop_obs, state) -> (action, ctrl, next state)`` from onnxruntime, one thread.

    ``state``: a recurrent decoder's state before the step (zeros at an episode's first step); a
    stateless controller ignores it and returns it as it came.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    recurrent = "decoder_state" in {i.name for i in sess.get_inputs()}

    def act(ref_obs, prop_obs, state):
        feed = {"reference_obs": np.asarray(ref_obs, np.float32), "proprio_obs": np.asarray(prop_obs, np.float32)}
        if not recurrent:
            return (*sess.run(["action", "ctrl"], feed), state)
        feed["decoder_state"] = np.asarray(state, np.float32)
        return tuple(sess.run(["action", "ctrl", "next_decoder_state"], feed))

    return act


def jax_controller(policy, env):
    """``act(ref_obs, prop_obs, state) -> (action, ctrl, next state)`` from the JAX policy and the task's
    squashing."""
    import jax

    to_ctrl = jax.jit(env.action_to_ctrl)

    def act(ref_obs, prop_obs, state):
        action, extras = policy.act(ref_obs, prop_obs, decoder_state=state)
        return np.asarray(action), np.asarray(to_ctrl(action)), np.asarray(extras["decoder_state"])

    return act


def _task_fns(env):
    import jax
    import jax.numpy as jnp

    def check(phys, clip, frame):
        err = env.errors(phys, clip, frame)
        return jnp.sum(jnp.square(err.joint)), err.joint.size, env._lost(phys, err, clip, frame)

    return jax.jit(env._observe), jax.jit(check)


def _physics(d, zero_forces: bool = False):
    from mimic_mjx.environments.physics import Physics

    f32 = lambda x: np.asarray(x, np.float32)
    force = np.zeros_like(d.actuator_force) if zero_forces else d.actuator_force
    vel = np.zeros_like(d.actuator_velocity) if zero_forces else d.actuator_velocity
    return Physics(
        qpos=f32(d.qpos),
        qvel=f32(d.qvel),
        act=f32(d.act),
        xpos=f32(d.xpos),
        xquat=f32(d.xquat),
        actuator_force=f32(force),
        actuator_velocity=f32(vel),
    )


def rollout(env, act, clip: int, max_steps: int | None = None, fns=None, state_size: int = 0) -> dict:
    """Roll clip ``clip`` out from its first frame on MjData with controller ``act``; no resets."""
    import mujoco

    observe, check = fns or _task_fns(env)
    m, ce = env.model, env.cfg.control_every
    steps = int((int(env.bank.lengths[clip]) - 1) // ce)
    steps = min(steps, max_steps) if max_steps else steps
    d = mujoco.MjData(m)
    first = int(env.bank.starts[clip])  # the clip's frame 0 on the bank's flat frame axis
    d.qpos[:] = np.asarray(env.ref_qpos[first])
    d.qvel[:] = np.asarray(env.ref_qvel[first])
    mujoco.mj_kinematics(m, d)  # as a backend's init: bodies posed, no forces or activations yet
    phys = _physics(d, zero_forces=True)
    frame, prev_ctrl = 0, np.zeros(m.nu, np.float32)
    state = np.zeros((1, state_size), np.float32)  # a recurrent decoder starts the episode from zeros
    rec = {k: [] for k in ("ref_obs", "prop_obs", "decoder_state", "action", "qpos")}
    sq, n, within, finite = 0.0, 0, 0, True
    for t in range(steps):
        ref_obs, prop_obs = (np.asarray(o) for o in observe(phys, clip, frame, prev_ctrl))
        rec["decoder_state"].append(state[0])
        action, ctrl, state = act(ref_obs[None], prop_obs[None], state)
        rec["ref_obs"].append(ref_obs), rec["prop_obs"].append(prop_obs), rec["action"].append(action[0])
        ctrl = np.asarray(ctrl[0], np.float32)
        d.ctrl[:] = ctrl
        if m.na and t == 0:  # the task starts each episode with activations equal to the first controls
            d.act[:] = ctrl[env._act_of_actuator]
        for _ in range(env.cfg.substeps):
            mujoco.mj_step(m, d)
        mujoco.mj_kinematics(m, d)  # body poses at the final joint angles, as the backends leave them
        frame, prev_ctrl = frame + ce, ctrl
        if not (np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel))):
            finite = False
            break
        phys = _physics(d)
        s, size, lost = check(phys, clip, frame)
        sq, n, within = sq + float(s), n + int(size), within + int(not bool(lost))
        rec["qpos"].append(d.qpos.copy())
    out = {k: np.asarray(v) for k, v in rec.items()}
    out.update(
        steps=steps,
        finite=finite,
        joint_rmse_rad=float(np.sqrt(sq / max(n, 1))) if finite else float("nan"),
        fraction_within=within / max(steps, 1),
    )
    return out


def closed_loop(run_dir, clips, onnx_path=None, max_steps: int | None = None, log=print) -> dict:
    """Both rollouts of every clip; the figures and, per controller, the rollouts themselves (``rollouts``)."""
    from mimic_mjx.cli.export import export_onnx

    policy, env = load(run_dir, clips)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_path is None:
            onnx_path = Path(tmp) / "policy.onnx"
            export_onnx(run_dir, onnx_path)
        controllers = {"onnx": onnx_controller(onnx_path), "jax": jax_controller(policy, env)}
        fns = _task_fns(env)
        result, rollouts, diff = {}, {}, 0.0
        size = policy.decoder_state_size
        for name, act in controllers.items():
            rollouts[name] = [rollout(env, act, i, max_steps, fns, size) for i in range(env.bank.num_clips)]
        for r in rollouts["jax"]:  # both controllers on the very same observations and decoder states
            a_onnx, _, _ = controllers["onnx"](r["ref_obs"], r["prop_obs"], r["decoder_state"])
            diff = max(diff, float(np.max(np.abs(a_onnx - r["action"]))))
    for name, rs in rollouts.items():
        per_clip = {
            env.bank.names[i]: {
                "steps": r["steps"],
                "joint_rmse_rad": r["joint_rmse_rad"],
                "fraction_within": r["fraction_within"],
            }
            for i, r in enumerate(rs)
        }
        result[name] = {
            "clips": per_clip,
            "mean_joint_rmse_rad": float(np.mean([r["joint_rmse_rad"] for r in rs])),
            "mean_fraction_within": float(np.mean([r["fraction_within"] for r in rs])),
        }
        for clip, c in per_clip.items():
            log(
                f"{name:<5} {clip:<28} {c['steps']:>5} steps  joint RMSE {c['joint_rmse_rad']:.4f} rad  "
                f"within thresholds {100 * c['fraction_within']:5.1f}%"
            )
    result["max_abs_action_diff"] = diff
    result["rollouts"] = rollouts
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run directory written by `mimic train`")
    ap.add_argument("--clips", nargs="+", required=True, help="clip files (HDF5)")
    ap.add_argument("--onnx", help="exported controller (default: export RUN to a temporary file)")
    ap.add_argument("--max-steps", type=int, help="at most this many control steps per clip")
    args = ap.parse_args(argv)
    from mimic_mjx.data.clips import read_clip_files

    result = closed_loop(args.run, read_clip_files(args.clips), args.onnx, args.max_steps)
    result.pop("rollouts")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
